"""Config composition and validation: typos and bad values fail before any compute."""

import pytest

from po_bench.config import ConfigError, validate

from .conftest import ROOT, run_cli
from .conftest import compose as _compose
from .helpers import HEAVY


def test_default_composes_and_validates():
    cfg = _compose()
    assert (
        cfg.model.name,
        cfg.dataset.name,
        cfg.loss.name,
        cfg.noise.kind,
        cfg.judge.name,
        cfg.generation.backend,
    ) == ("tiny", "world", "dpo", "none", "gold", "hf")
    validate(cfg)


@pytest.mark.parametrize("loss", ["sft", "dpo", "ipo", "simpo", "kto"])
def test_every_loss_config_validates(loss):
    cfg = _compose([f"loss={loss}"])
    validate(cfg)
    assert cfg.loss.name == loss  # the file is the loss it is named for (not a copy of another one)


def test_typo_in_key_fails_at_composition():
    with pytest.raises(Exception, match="betaa"):
        _compose(["loss.betaa=0.2"])


def test_unknown_group_option_lists_choices():
    with pytest.raises(Exception) as e:
        _compose(["loss=dpoo"])
    msg = str(e.value)
    assert "dpoo" in msg and "dpo" in msg and "simpo" in msg


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["noise=flip", "noise.rate=0.5"], "noise.rate"),
        (["noise=flip", "noise.rate=-0.1"], "noise.rate"),
        (["noise.rate=0.2"], "noise=flip"),
        (["loss.beta=0"], "loss.beta"),
        (["+loss.args.not_a_trl_option=1"], "not_a_trl_option"),
        (["loss=simpo", "loss.implicit_reward=logratio"], "reference-free"),
        (["model.kind=hub", "model.name_or_path=/no/such/model"], "no such directory"),
        (["loss=kto", "train.batch_size=1"], "batch_size"),
        (["judge.max_requests=-1"], "judge.max_requests=-1: must be >= 0"),
        (["judge.max_cost_usd=-0.5"], "judge.max_cost_usd=-0.5: must be >= 0"),
        (["judge.max_cost_usd=5"], "judge.max_cost_usd=5 needs the judge's prices"),
        (["judge.api_key_env=sk-not-a-variable"], "judge.api_key_env must name an environment variable"),
        (["judge.api_key_file=/no/such/key/file"], "judge.api_key_file: no such file"),
        (["+judge.api_key=sk-planted"], "judge.api_key: API keys are never read from the config"),
        (
            ["model=smollm2_135m", "dataset=hh_rlhf", "judge=alpaca_eval", "judge.base_url=null"],
            "judge=alpaca_eval needs an endpoint: set judge.base_url",
        ),
        (["judge=mt_bench"], "judge=mt_bench scores real-data answers: dataset=world is scored by judge=gold"),
    ],
)
def test_semantic_errors_name_the_key(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(_compose(overrides))


def test_cli_config_error_is_one_line_exit_2(tmp_path):
    r = run_cli(["noise=flip", "noise.rate=0.7", f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/run"], ROOT)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert err[-1].startswith("po-bench: config error: noise.rate=0.7")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "c").exists()  # nothing computed, nothing cached
    assert not (tmp_path / "run").exists() and err[-1].endswith("was removed")  # no run folder left behind


@pytest.mark.parametrize(
    "override",
    [
        "judge.api_key=sk-PLANTED-cli",
        "+judge.api_key=sk-PLANTED-cli",
        "++judge.openai_token=sk-PLANTED-cli",
        "judge.api_key_env=sk-PLANTED-cli",
        "judge.api_key_file=sk-PLANTED-cli",
        "hydra.job.env_set.OPENAI_API_KEY=sk-PLANTED-cli",
        "+loss.args.judge.api_key=sk-PLANTED-cli",  # the online loop's judge preference source
        "+loss.args.judge.api_key_env=sk-PLANTED-cli",
    ],
)
def test_cli_refuses_a_key_on_the_command_line(override, tmp_path):
    """Keys come only from the environment or a key file: an override that would carry one is
    refused before Hydra writes anything, in one line that does not echo it."""
    r = run_cli([override, f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/run"], ROOT)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("po-bench: config error: ") and "value is not shown" in lines[0]
    assert "PLANTED" not in r.stdout + r.stderr
    assert list(tmp_path.iterdir()) == []  # no .hydra/, no run.json, no cache


def test_help_lists_groups():
    r = run_cli(["--help"], ROOT)
    assert r.returncode == 0
    for group in ("model", "dataset", "loss", "noise", "judge", "generation"):
        assert f"{group}:" in r.stdout
    assert "simpo" in r.stdout and "kto" in r.stdout


@pytest.mark.parametrize(
    "args, needles",
    [
        (["loss=dpoo"], ["Could not find 'loss/dpoo'", "available options in 'loss'", "simpo"]),
        (["loss.betaa=0.2"], ["loss.betaa", "not in 'LossConfig'"]),
        (["-m", "loss=dpo,nope"], ["loss/nope"]),
    ],
)
def test_cli_composition_errors_are_one_line_exit_2(args, needles, tmp_path):
    r = run_cli(
        [*args, f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep"], ROOT
    )
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("po-bench: config error: "), r.stderr
    for n in needles:
        assert n in lines[0]
    assert not (tmp_path / "c").exists()


VALIDATE_ALL = """
import glob, json, os, sys
from hydra import compose, initialize_config_dir
from po_bench.cli.app import CONF_DIR
from po_bench.config import ConfigError, validate
checked = 0
with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
    for group in ("loss", "judge", "dataset", "model", "generation", "launch"):
        for path in sorted(glob.glob(os.path.join(CONF_DIR, group, "*.yaml"))):
            try:
                validate(compose(config_name="config", overrides=[f"{group}={os.path.basename(path)[:-5]}"]))
            except ConfigError:
                pass
            checked += 1
print(json.dumps({"checked": checked, "modules": sorted(m.split(".")[0] for m in sys.modules)}))
"""


def test_validating_every_config_imports_no_torch_trl_or_transformers():
    """Validation (every ConfigError path of every loss, judge, dataset, model, generation and launch
    config) reads TRL's config fields from a table and the loss registries without torch: no import of
    torch, TRL, transformers, vLLM or wandb."""
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", VALIDATE_ALL], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["checked"] > 60 and set(out["modules"]) & HEAVY == set()


def test_brain_validates_and_refuses_what_it_cannot_weight():
    """brain weights n samples by a scalar reward: the gold reward or the annotator's score, no verdicts, no flips."""
    validate(_compose(["loss=brain"]))
    validate(_compose(["loss=brain", "loss.args.labeller=annotator", "loss.args.proposal=policy"]))
    for extra, msg in (
        (
            ["loss.args.labeller=implicit", "loss.args.label_temperature=1.0"],
            "loss=brain weights samples by a scalar reward: loss.args.labeller gold, annotator or explicit (got implicit)",
        ),
        (["loss.args.label_temperature=0.5"], "loss=brain weights samples by softmax(r/beta), not by sampled"),
        (
            ["noise=flip"],
            "loss=brain weights samples by a scalar reward: noise=flip flips pair labels (set noise=none)",
        ),
        (["loss.args.n=1"], "loss=brain: loss.args.n=1: must be an integer >= 2"),
        (["loss.args.targets=hard"], "loss=brain: loss.args.targets='hard': must be soft or argmax"),
    ):
        with pytest.raises(ConfigError) as e:
            validate(_compose(["loss=brain", *extra]))
        assert str(e.value).startswith(msg), str(e.value)


def test_ofs_dpo_validates_and_refuses_more_domains_than_keyword_counts():
    validate(_compose(["loss=ofs_dpo"]))
    validate(_compose(["loss=ofs_dpo", "loss.args.domains=3", "loss.args.weights=[1,1,2]"]))
    for extra, msg in (
        (["loss.args.domains=4"], "loss=ofs_dpo: loss.args.domains=4 families need as many keyword counts"),
        (["loss.args.domains=2", "loss.args.weights=[1]"], "loss=ofs_dpo: loss.args.weights needs one weight per"),
        (["model.lora.enabled=true"], "loss=ofs_dpo: model.lora.enabled is not supported by the online loop"),
    ):
        with pytest.raises(ConfigError) as e:
            validate(_compose(["loss=ofs_dpo", *extra]))
        assert str(e.value).startswith(msg), str(e.value)


@pytest.mark.parametrize("loss", ["online_dpo", "xpo"])
def test_the_online_losses_validate(loss):
    validate(_compose([f"loss={loss}"]))
    validate(_compose([f"loss={loss}", "loss.args.labeller=annotator"]))
    validate(_compose([f"loss={loss}", "loss.args.labeller=implicit", "loss.args.label_temperature=1.0"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["loss.args.labeller=oracle"], "loss=xpo: loss.args.labeller='oracle': allowed gold, annotator, implicit"),
        (["loss.args.alpha=-1"], "loss=xpo: loss.args.alpha=-1: must be a number >= 0"),
        (["+loss.args.beta2=1"], "loss=xpo: loss.args.beta2 is not an argument of xpo"),
        (["loss.args.labeller=implicit"], "loss=xpo: loss.args.labeller=implicit at label_temperature=0 never labels"),
        (
            ["loss.args.labeller=annotator", "loss.args.label_temperature=0.5"],
            "loss=xpo: loss.args.label_temperature does not apply to the annotator",
        ),
        (["generation=vllm"], "loss=xpo samples from the policy while it trains: generation=hf (got vllm)"),
        (["launch=ddp"], "loss=xpo: the online loop runs in one process (launch=local; got ddp)"),
        (["train.precision=bf16-mixed"], "loss=xpo: the online loop trains in fp32"),
        (["model.lora.enabled=true"], "loss=xpo: model.lora.enabled is not supported by the online loop"),
        (["diagnostics.ches=true"], "loss=xpo trains on its own samples: diagnostics.ches"),
    ],
)
def test_the_online_loop_refuses_what_it_does_not_support(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate(_compose(["loss=xpo", *overrides]))
    assert str(e.value).startswith(message), str(e.value)

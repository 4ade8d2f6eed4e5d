"""RTO (loss=rto, po_bench/training/rto.py) end to end on the tiny world: SFT, the DPO guide policy (the store's
loss=dpo policy), RTO's online training with real generation and the world's gold reward as the sparse reward,
run.json's counts, the dense reward recomputed from the stored guide, the sparse-only row (dense: false) without
a guide, and a rerun that reuses everything from the store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from po_bench.generation.logprobs import render_prompt
from po_bench.specs import plan, spec_key
from po_bench.stages import checkpoint_dir, get, load_model, load_tokenizer
from po_bench.store import Store

from .conftest import compose, run_cli

SMALL = [
    "dataset.n_sft=300",
    "dataset.n_pref=64",
    "dataset.n_eval=32",
    "dataset.n_ood=16",
    "train.sft_epochs=2",
    "train.max_steps=4",
    "train.batch_size=8",
    "tracking=none",
    "threads=1",
]


def _token_logps(model, tokenizer, prompt: str, ids: list[int]) -> torch.Tensor:
    """log pi(y_t | x, y_<t) of each completion token, one sequence, no batching."""
    p = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + ids])).logits[0].double()
    lsm = torch.log_softmax(logits, -1)
    return torch.stack([lsm[len(p) - 1 + t, y] for t, y in enumerate(ids)])


@pytest.mark.slow  # end to end: SFT, DPO guide, RTO online training, generation, judges
def test_rto_runs_end_to_end_with_the_stored_dpo_guide_and_reuses_the_store(tmp_path):
    cache = tmp_path / "cache"
    runs = {}
    for name, extra in (("rto", []), ("sparse", ["loss.args.dense=false"]), ("again", [])):
        args = ["loss=rto", *SMALL, *extra, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / name}"]
        r = run_cli(args, cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "run.json").read_text())["metrics"]
    cfg = compose(["loss=rto", *SMALL, f"cache_dir={cache}"])
    p = plan(cfg)
    dpo_policy = plan(compose(["loss=dpo", *SMALL, f"cache_dir={cache}"])).policy
    assert p.guide == dpo_policy  # the guide is loss=dpo's policy on the same data: one artifact, shared
    for name in ("rto", "sparse"):
        m = runs[name]
        assert m["online"]["samples_generated"] == 2 * 8 * 4 and m["online"]["labels_requested"] == 64
        assert m["online"]["judge_calls"] == 0 and set(m["online"]["seconds"]) == {"generate", "label", "train"}
        assert m["train"]["steps"] == 4 and math.isfinite(m["gold_reward"]) and math.isfinite(m["kl_to_ref"])
    store = Store(str(cache))
    n_pairs = len(get(store, "pairs", dpo_policy["pairs"])["train"])  # (ties dropped: up to one per pref prompt)
    assert runs["rto"]["online"]["guide"] == {"policy": spec_key("policy", dpo_policy), "pairs": n_pairs}
    assert 0 < n_pairs <= 64
    assert spec_key("policy", dpo_policy) in runs["rto"]["artifacts"]["built"]
    # the sparse-only row: no guide, no DPO policy, no pairs; its own policy (the SFT model reused from the store)
    sparse = runs["sparse"]
    assert "guide" not in sparse["online"] and not any(
        k.startswith(("pairs/", "ref_logps/")) for k in sparse["artifacts"]["built"]
    )
    assert any(k.startswith("sft/") for k in sparse["artifacts"]["hits"])
    again = runs["again"]["artifacts"]
    assert again["built"] == [] and spec_key("policy", p.policy) in again["hits"]
    assert runs["again"]["gold_reward"] == runs["rto"]["gold_reward"]
    # a token's dense reward recomputed from the stored DPO guide and the reference (the SFT checkpoint)
    policy_dir = Path(store.path("policy", p.policy))
    record = json.loads((policy_dir / "train_metrics.json").read_text())["online_record"]
    first = record[0]
    tokenizer = load_tokenizer(checkpoint_dir(store, p.policy["start"]), p.policy["model"])
    guide = load_model(str(Path(store.path("policy", dpo_policy))), p.policy["model"])
    ref = load_model(checkpoint_dir(store, p.policy["start"]), p.policy["model"])
    ids = first["first_ids"]
    g, r = (
        _token_logps(guide, tokenizer, first["prompts"][0], ids),
        _token_logps(ref, tokenizer, first["prompts"][0], ids),
    )
    want = torch.clamp(0.05 * (g - r), -0.05, 0.05)  # rto.yaml: beta 0.05, clip 0.05
    assert len(first["first_dense"]) == len(ids) and want.abs().max() > 0
    assert torch.allclose(torch.tensor(first["first_dense"], dtype=torch.float64), want, atol=1e-4)

"""po-bench's online loop (po_bench/training/online.py) with real generation, the world's real preference sources
and real optimizer steps on the tiny model: the labels are those of the current policy's samples of the step (not
the offline pairs), XPO's second response is the reference's, its growing preference set, label noise, a new
preference source through the registry, BRAIn's n samples per prompt, and the pipeline end to end (run.json's counts,
reuse from the store)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from po_bench.data import world
from po_bench.generation.generate import generate_hf
from po_bench.specs import plan
from po_bench.stages import get
from po_bench.store import Store
from po_bench.training import labellers, models
from po_bench.training.labellers import labeller_for
from po_bench.training.online import LoopInputs, gen_seed, train_online

from .conftest import compose, run_cli

PROMPTS = world.make_prompts(world.WorldSpec(n_pref=16), "pref")
GEN = OmegaConf.create(
    {"backend": "hf", "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "batch_size": 128, "progress": False}
)
SEED = 3


def _train(steps: int = 3, batch: int = 4):
    return OmegaConf.create(
        {
            "batch_size": batch,
            "grad_accum": 1,
            "max_steps": steps,
            "epochs": 1.0,
            "max_length": 48,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
        }
    )


def _models(tokenizer):
    policy = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128, seed=0)
    return policy, copy.deepcopy(policy), copy.deepcopy(policy)  # policy, reference, the start kept for checks


def _run(tokenizer, function, args, labeller=None, noise=None, steps=3, logging_steps=1):
    policy, ref, start = _models(tokenizer)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    res = train_online(
        LoopInputs(
            policy=policy,
            tokenizer=tokenizer,
            prompts=PROMPTS,
            function=function,
            args=args,
            beta=0.1,
            lr=1e-3,
            train=_train(steps),
            gen=GEN,
            seed=SEED,
            labeller=labeller or labeller_for({"kind": "gold", "temperature": 0.0}),
            noise=noise or {"kind": "none", "rate": 0.0},
            gold=lambda p, y: world.gold_reward(p, y),
            ref_model=ref,
            logging_steps=logging_steps,
        )
    )
    moved = any(not torch.equal(before[k], v) for k, v in res["model"].state_dict().items())
    return res, start, moved


def _logp_by_hand(model, tokenizer, prompt: str, completion_ids: list[int]) -> float:
    """log pi(y | x) of sampled tokens, one sequence at a time: sum over t of log softmax(logits_{t-1})[y_t]."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + list(completion_ids)])).logits[0].double()
    lsm = torch.log_softmax(logits, -1)
    return float(sum(lsm[len(p) - 1 + t, y] for t, y in enumerate(completion_ids)))


def _gen(model, tokenizer, xs, seed):
    side = tokenizer.padding_side
    try:
        return generate_hf(model, tokenizer, xs, GEN, seed)
    finally:
        tokenizer.padding_side = side


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_online_dpo_labels_the_current_policys_samples_of_each_step(tokenizer):
    res, start, moved = _run(tokenizer, "online_dpo", {})
    c = res["online"]
    assert moved and math.isfinite(res["train_loss_final"])
    assert c["samples_generated"] == 2 * 4 * 3 and c["labels_requested"] == 12
    assert c["labels_used"] + c["ties_dropped"] == 12 and c["labels_used"] > 0
    assert c["judge_calls"] == c["judge_tokens"] == 0 and c["noise_flipped"] == 0
    assert set(c["seconds"]) == {"generate", "label", "train"} and all(v > 0 for v in c["seconds"].values())
    first, last = res["online_record"]
    assert (first["step"], last["step"]) == (0, 2)
    # step 0: the current policy is the start; its samples are exactly what the start draws at the step's seeds
    assert [s[0] for s in first["samples"]] == _gen(start, tokenizer, first["prompts"], gen_seed(SEED, 0, 0))
    assert [s[1] for s in first["samples"]] == _gen(start, tokenizer, first["prompts"], gen_seed(SEED, 0, 1))
    # the last step: the policy has moved, so its samples are no longer the start's at those seeds
    assert [s[0] for s in last["samples"]] != _gen(start, tokenizer, last["prompts"], gen_seed(SEED, 2, 0))
    for rec in (first, last):
        for p in rec["pairs"]:  # every labelled pair is the step's two samples of its prompt, the gold argmax chosen
            assert p["prompt"] == rec["prompts"][p["row"]]
            assert {p["chosen"], p["rejected"]} == set(rec["samples"][p["row"]])
            assert world.gold_reward(p["prompt"], p["chosen"]) > world.gold_reward(p["prompt"], p["rejected"])
    h = res["history"]
    assert [e["step"] for e in h] == [1, 2, 3] and all("gold_reward" in e and "kl" in e for e in h)
    assert h[0]["loss"] == pytest.approx(math.log(2), abs=1e-6) and h[0]["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow  # trains (make test-fast runs no training)
@pytest.mark.parametrize("accumulate", [False, True])
def test_xpo_pairs_a_policy_sample_with_the_references_and_adds_its_bonus(tokenizer, accumulate):
    alpha = 0.05
    res, start, moved = _run(tokenizer, "xpo", {"alpha": alpha, "accumulate": accumulate})
    assert moved
    first, last = res["online_record"]
    # the second response is the reference's (the start's, fixed) at every step, the first the current policy's
    assert [s[1] for s in last["samples"]] == _gen(start, tokenizer, last["prompts"], gen_seed(SEED, 2, 1))
    assert [s[0] for s in last["samples"]] != _gen(start, tokenizer, last["prompts"], gen_seed(SEED, 2, 0))
    # the first step from policy == reference: DPO's part is log 2 for every pair, the bonus alpha * mean log pi(y~)
    used = first["pairs"]
    _, ref_ids = generate_hf(start, tokenizer, first["prompts"], GEN, gen_seed(SEED, 0, 1), with_ids=True)
    tokenizer.padding_side = "right"
    lp = [_logp_by_hand(start, tokenizer, p["prompt"], ref_ids[p["row"]]) for p in used]
    h = res["history"]
    assert h[0]["loss"] == pytest.approx(math.log(2) + alpha * sum(lp) / len(lp), abs=1e-4)
    per_step = [e["labels_used"] for e in h]
    expected_rows = [sum(per_step[: i + 1]) for i in range(3)] if accumulate else per_step
    assert [e["rows"] for e in h] == expected_rows  # the growing preference set, re-solved on all of it each step


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_label_noise_flips_the_steps_labels(tokenizer):
    res, _, _ = _run(tokenizer, "online_dpo", {}, noise={"kind": "flip", "rate": 0.25})
    flipped = [p for rec in res["online_record"] for p in rec["pairs"] if p.get("flipped")]
    assert res["online"]["noise_flipped"] >= len(flipped) > 0
    for p in flipped:  # a flipped gold label prefers the lower exact reward
        assert world.gold_reward(p["prompt"], p["chosen"]) < world.gold_reward(p["prompt"], p["rejected"])


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_the_implicit_source_and_a_registered_new_source_run_in_the_same_loop(tokenizer):
    res, _, moved = _run(tokenizer, "online_dpo", {}, labeller=labeller_for({"kind": "implicit", "temperature": 1.0}))
    assert moved and res["online"]["labels_used"] > 0

    @labellers.register_labeller("counting_judge")
    class CountingJudge:  # a stand-in for a judge: prefers the shorter response, counts its calls and tokens
        @staticmethod
        def spec(args, dataset):
            return {}

        def __init__(self, spec):
            pass

        def label(self, req):
            wins = [None if len(a) == len(b) else len(a) < len(b) for a, b in zip(req.first, req.second)]
            tokens = sum(len(a.split()) + len(b.split()) for a, b in zip(req.first, req.second))
            return labellers.Labels(wins, len(wins), judge_calls=len(wins), judge_tokens=tokens)

    try:
        res, _, moved = _run(tokenizer, "online_dpo", {}, labeller=labeller_for({"kind": "counting_judge"}))
    finally:
        del labellers.LABELLERS["counting_judge"]
    assert moved and res["online"]["judge_calls"] == 12 and res["online"]["judge_tokens"] > 0
    for rec in res["online_record"]:
        assert all(len(p["chosen"]) < len(p["rejected"]) for p in rec["pairs"])


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


@pytest.mark.slow  # end to end: SFT, online training, generation, judges
def test_online_runs_end_to_end_report_their_counts_and_reuse_the_policy(tmp_path):
    cache = tmp_path / "cache"
    runs = {}
    for name, extra in (("online_dpo", []), ("xpo", ["loss.args.accumulate=true"]), ("xpo_again", [])):
        loss = "xpo" if name.startswith("xpo") else name
        args = [f"loss={loss}", *SMALL, *extra, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / name}"]
        if name == "xpo_again":
            args = [*runs["xpo"]["args"]]
            args[-1] = f"hydra.run.dir={tmp_path / name}"
        r = run_cli(args, cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        runs[name] = {"args": args, **json.loads((tmp_path / name / "run.json").read_text())["metrics"]}
    for name in ("online_dpo", "xpo"):
        m = runs[name]
        assert m["online"]["samples_generated"] == 2 * 8 * 4 and m["online"]["labels_requested"] == 32
        assert m["online"]["judge_calls"] == 0 and set(m["online"]["seconds"]) == {"generate", "label", "train"}
        assert m["train"]["steps"] == 4 and math.isfinite(m["gold_reward"]) and 0 <= m["win_rate_vs_sft"] <= 1
        assert math.isfinite(m["kl_to_ref"]) and m["diagnostics"]["probe"]["absent"].startswith("online training")
        assert not any(k.startswith(("pairs/", "ref_logps/")) for k in m["artifacts"]["built"])
    again = runs["xpo_again"]["artifacts"]
    assert again["built"] == [] and any(k.startswith("policy/") for k in again["hits"])  # reused from the store
    assert runs["xpo_again"]["gold_reward"] == runs["xpo"]["gold_reward"]
    # the online labels are the policy's own samples, not the offline pairs of the same world (loss=dpo's)
    cfg = compose(["loss=online_dpo", *SMALL, f"cache_dir={cache}"])
    store = Store(str(cache))
    (policy_dir,) = [Path(store.path("policy", plan(cfg).policy))]
    record = json.loads((policy_dir / "train_metrics.json").read_text())["online_record"]
    offline = get(store, "pairs", plan(compose(["loss=dpo", *SMALL, f"cache_dir={cache}"])).pairs)["train"]
    offline_pairs = {(p["prompt"], p["chosen"], p["rejected"]) for p in offline}
    online_pairs = [(p["prompt"], p["chosen"], p["rejected"]) for rec in record for p in rec["pairs"]]
    assert online_pairs and not set(online_pairs) & offline_pairs
    for rec in record:  # each the step's two samples of its prompt, as the loop drew them
        assert all({p["chosen"], p["rejected"]} == set(rec["samples"][p["row"]]) for p in rec["pairs"])


# BRAIn (loss=brain): n samples per prompt from the proposal (the SFT model, i.e. the loop's fixed reference, or
# the current policy), weighted by the source's scalar reward; its loss against a hand transcription and its
# relation to DPO: tests/test_online_losses.py


def _brain(tokenizer, proposal: str, n: int = 3, labeller=None):
    return _run(tokenizer, "brain", {"n": n, "proposal": proposal}, labeller=labeller)


@pytest.mark.slow  # trains (make test-fast runs no training)
@pytest.mark.parametrize("proposal", ["sft", "policy"])
def test_brain_draws_n_samples_per_prompt_from_its_proposal_and_weights_them_by_the_gold_reward(tokenizer, proposal):
    n = 3
    res, start, moved = _brain(tokenizer, proposal, n)
    c = res["online"]
    assert moved and math.isfinite(res["train_loss_final"])
    assert c["samples_generated"] == n * 4 * 3 == c["labels_requested"] == c["labels_used"]
    assert c["ties_dropped"] == c["judge_calls"] == c["judge_tokens"] == c["noise_flipped"] == 0
    assert set(c["seconds"]) == {"generate", "label", "train"} and all(v > 0 for v in c["seconds"].values())
    first, last = res["online_record"]
    for rec, step in ((first, 0), (last, 2)):
        rep = [x for x in rec["prompts"] for _ in range(n)]
        drawn = [y for ys in rec["samples"] for y in ys]
        assert all(len(ys) == n for ys in rec["samples"])
        # the rewards are the world's exact r* of exactly those samples
        assert [r for rs in rec["rewards"] for r in rs] == pytest.approx(
            [world.gold_reward(p, y) for p, y in zip(rep, drawn)]
        )
        from_start = _gen(start, tokenizer, rep, gen_seed(SEED, step, 0))
        if proposal == "sft" or step == 0:  # the SFT proposal is the fixed start; the policy is the start at step 0
            assert drawn == from_start
        else:  # the policy proposal has moved by the last step
            assert drawn != from_start
    h = res["history"]
    assert [e["step"] for e in h] == [1, 2, 3]
    # step 0: the policy is its reference and its proposal, every self-normalised weight 1/n: the loss is log n
    assert h[0]["loss"] == pytest.approx(math.log(n), abs=1e-5) and h[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert all(1.0 <= e["target_ess"] <= n for e in h)
    key = "gold_reward" if proposal == "policy" else "gold_reward_proposal"
    assert all(key in e for e in h)


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_brain_reads_the_annotators_biased_score(tokenizer):
    lab = labeller_for({"kind": "annotator", "temperature": 0.5, "length_bias": 0.5})
    res, _, _ = _brain(tokenizer, "sft", 2, labeller=lab)
    rec = res["online_record"][0]
    for x, ys, rs in zip(rec["prompts"], rec["samples"], rec["rewards"]):
        assert rs == pytest.approx([world.gold_reward(x, y) + 0.5 * len(y.split()) for y in ys], rel=1e-6)


@pytest.mark.slow  # end to end: SFT, online training, generation, judges
def test_brain_runs_end_to_end_reports_its_counts_and_reuses_the_policy(tmp_path):
    cache = tmp_path / "cache"
    args = ["loss=brain", "loss.args.n=3", *SMALL, f"cache_dir={cache}"]
    runs = []
    for name in ("first", "again"):
        r = run_cli([*args, f"hydra.run.dir={tmp_path / name}"], cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(json.loads((tmp_path / name / "run.json").read_text())["metrics"])
    m, again = runs
    assert m["online"]["samples_generated"] == 3 * 8 * 4 == m["online"]["labels_requested"]
    assert m["online"]["judge_calls"] == 0 and set(m["online"]["seconds"]) == {"generate", "label", "train"}
    assert m["train"]["steps"] == 4 and math.isfinite(m["gold_reward"]) and 0 <= m["win_rate_vs_sft"] <= 1
    assert not any(k.startswith(("pairs/", "ref_logps/")) for k in m["artifacts"]["built"])
    assert any(k.startswith("policy/") for k in m["artifacts"]["built"])
    assert again["artifacts"]["built"] == [] and any(k.startswith("policy/") for k in again["artifacts"]["hits"])
    assert again["gold_reward"] == m["gold_reward"]


# ---- launch=ddp: a real 2-process gloo group on the CPU ------------------------------------------------------


def test_generation_seeds_differ_per_rank_and_one_process_keeps_its_own():
    seeds = {gen_seed(SEED, step, draw, rank, 2) for step in range(50) for draw in (0, 1) for rank in (0, 1)}
    assert len(seeds) == 200  # distinct across steps, draws and ranks
    assert [gen_seed(SEED, s, d, 0, 1) for s in range(3) for d in (0, 1)] == [
        10_000 + SEED * 2_000_003 + 2 * s + d for s in range(3) for d in (0, 1)
    ]  # one process: the seeds (and so the artifacts) of before the process group


@pytest.mark.slow  # a 2-process group: the online loop under launch=ddp
def test_online_dpo_under_ddp_shards_the_prompts_sums_the_counts_and_keeps_the_weights_identical(tmp_path):
    cache = tmp_path / "cache"
    args = ["loss=online_dpo", *SMALL, "stages.sft=false", "stages.generate=false", "launch=ddp"]
    args += ["launch.num_processes=2", f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}"]
    r = run_cli(args, cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]
    t, o = m["train"], m["online"]
    assert (t["world_size"], t["per_device_batch"], t["global_batch"], t["steps"]) == (2, 4, 8, 4)
    ranks = o["ranks"]
    assert len(ranks) == 2 and o["samples_generated"] == 2 * 8 * 4  # the global batch's, as one process draws
    for k in ("samples_generated", "labels_requested", "labels_used", "ties_dropped", "judge_calls", "judge_tokens"):
        assert o[k] == sum(x[k] for x in ranks), k
    assert all(x["samples_generated"] == 2 * 4 * 4 for x in ranks)
    assert o["seconds"] == {k: max(x["seconds"][k] for x in ranks) for k in ("generate", "label", "train")}
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # the averaged gradients: one model
    (metrics_file,) = (cache / "v2" / "policy").glob("*/train_metrics.json")
    record = json.loads(metrics_file.read_text())["online_record"]
    assert sorted((rec["rank"], rec["step"]) for rec in record) == [(0, 0), (0, 3), (1, 0), (1, 3)]
    for step in (0, 3):  # each rank its own half of the step's prompts, its own samples, labels of those samples
        r0, r1 = (next(x for x in record if (x["rank"], x["step"]) == (k, step)) for k in (0, 1))
        assert len(r0["prompts"]) == len(r1["prompts"]) == 4 and not set(r0["prompts"]) & set(r1["prompts"])
        for rec in (r0, r1):
            for p in rec["pairs"]:
                assert p["prompt"] == rec["prompts"][p["row"]]
                assert {p["chosen"], p["rejected"]} == set(rec["samples"][p["row"]])
            assert rec["pairs"], "a step without labels checks nothing"

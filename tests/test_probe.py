"""po_bench/training/trl/probe.py: the log-probability trajectories during training.  Through a real TRL DPO
run: each logged value equals a separate forward pass with the policy's weights at that same step (copied by
a second callback), the values reach the run's history (and so wandb) under ``probe/``, the start is the
reference, and the chosen log-prob's change is the per-pair change the CHES analysis reads.

``diagnostics.probe`` wired into the policy stage (po_bench/stages.py, po_bench/training/probe_set.py): with the
probe off the policy does exactly training's forward passes, with it on exactly the probe's sequences more; the
weights and losses are the same either way; the stored values equal a forward pass with the stored weights; the
run's metrics carry them; sharded launches are refused; KTO's and the listwise trainer take the callback too."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from transformers import TrainerCallback

from po_bench.config import ConfigError, validate
from po_bench.generation.logprobs import completion_logps
from po_bench.training import models, probe_set
from po_bench.training.trl.preference import train_preference
from po_bench.training.trl.probe import ProbeCallback, interval

from .conftest import compose
from .helpers import loss_args, step_args


class Snapshots(TrainerCallback):
    """The policy's weights at every training logging step (runs after the probe)."""

    def __init__(self):
        self.states: dict[int, dict] = {}

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.states[state.global_step] = copy.deepcopy(model.state_dict())


def test_probe_without_pairs_is_refused(tokenizer):
    with pytest.raises(ValueError, match="the probe set is empty"):
        ProbeCallback(tokenizer, [])


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_the_trajectory_equals_a_separate_forward_pass_at_the_same_step(tokenizer, pairs, tmp_path):
    cfg = compose(["loss=dpo"])
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = copy.deepcopy(model)
    start_state = copy.deepcopy(model.state_dict())
    probe_pairs = pairs[:6]
    unseen = [{"prompt": p["prompt"], "response": " river stone"} for p in pairs[:4]]
    probe = ProbeCallback(tokenizer, probe_pairs, unseen, max_length=int(cfg.train.max_length))
    snaps = Snapshots()
    res = train_preference(
        model,
        ref,
        tokenizer,
        pairs,
        loss_args(cfg.loss, 5e-3),
        step_args(cfg.train, 3),
        tmp_path,
        0,
        callbacks=[probe, snaps],
    )
    assert res["steps"] == 3 and sorted(snaps.states) == [1, 2, 3]
    assert [h["step"] for h in probe.history] == [0, 1, 2, 3]  # the start, then every logging step
    check = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)

    def by_hand(state, key_pairs):
        check.load_state_dict(state)
        sums, _ = completion_logps(check, tokenizer, *key_pairs, max_length=int(cfg.train.max_length))
        return sums.tolist()

    prompts = [p["prompt"] for p in probe_pairs]
    start = {
        "chosen": by_hand(start_state, (prompts, [p["chosen"] for p in probe_pairs])),
        "rejected": by_hand(start_state, (prompts, [p["rejected"] for p in probe_pairs])),
        "unseen": by_hand(start_state, ([u["prompt"] for u in unseen], [u["response"] for u in unseen])),
    }
    assert probe.history[0]["logp_chosen"] == pytest.approx(sum(start["chosen"]) / 6, rel=1e-5)
    assert probe.history[0]["delta_chosen"] == 0.0
    for h in probe.history[1:]:
        state = snaps.states[h["step"]]
        now = {
            "chosen": by_hand(state, (prompts, [p["chosen"] for p in probe_pairs])),
            "rejected": by_hand(state, (prompts, [p["rejected"] for p in probe_pairs])),
            "unseen": by_hand(state, ([u["prompt"] for u in unseen], [u["response"] for u in unseen])),
        }
        for key in ("chosen", "rejected", "unseen"):
            n = len(now[key])
            assert h[f"logp_{key}"] == pytest.approx(sum(now[key]) / n, rel=1e-5), (h["step"], key)
            delta = sum(a - b for a, b in zip(now[key], start[key])) / n
            assert h[f"delta_{key}"] == pytest.approx(delta, rel=1e-4, abs=1e-5), (h["step"], key)
        assert h["margin"] == pytest.approx(h["logp_chosen"] - h["logp_rejected"])
    assert not torch.equal(snaps.states[3]["lm_head.weight"], start_state["lm_head.weight"])  # it trained
    # the run's history (what wandb's callback logs too) carries the probe's values at each step
    logged = {h["step"]: h for h in res["history"] if "probe/logp_chosen" in h}
    assert sorted(logged) == [1, 2, 3]
    assert all(
        logged[h["step"]]["probe/delta_rejected"] == pytest.approx(h["delta_rejected"]) for h in probe.history[1:]
    )
    last = by_hand(snaps.states[3], (prompts, [p["chosen"] for p in probe_pairs]))
    assert probe.per_pair_delta("chosen") == pytest.approx([a - b for a, b in zip(last, start["chosen"])], rel=1e-4)
    # its cost: 6 + 6 + 4 sequences at the start and at each of the 3 logging steps
    assert probe.forward_sequences == 16 * 4 and math.isfinite(res["train_loss_final"])


# ---- the probe set and its schedule (no training) ---------------------------------------------------------


def test_the_interval_is_about_ten_measurements_unless_set():
    assert [interval(0, n) for n in (1, 3, 10, 11, 100, 1000)] == [1, 1, 1, 2, 10, 100]
    assert interval(7, 1000) == 7


@pytest.mark.parametrize("launch", ["zero3", "fsdp"])
def test_the_probe_is_refused_under_sharded_parameters(launch):
    with pytest.raises(ConfigError) as e:
        validate(compose([f"launch={launch}"]))
    assert str(e.value) == (
        f"diagnostics.probe under launch={launch}: the probe scores the policy between optimizer steps and cannot "
        "read its sharded parameters; add diagnostics.probe=false"
    )
    validate(compose([f"launch={launch}", "diagnostics.probe=false"]))
    validate(compose(["scale=paper"]))  # the paper scale (ZeRO-3) turns the probe off


# ---- wired into the policy stage (real TRL training on the tiny world) ------------------------------------

STAGE_RUN = [
    "stages.sft=false",  # the untrained tiny model is the start: no SFT training
    "dataset.n_pref=32",
    "train.max_steps=3",
    "train.batch_size=8",
    "train.logging_steps=1",
    "stages.generate=false",
    "diagnostics.probe_pairs=6",
    "diagnostics.probe_unseen=4",
    "diagnostics.probe_every=2",  # measured at 0, 2 and the last step (3)
    "threads=1",
    "tracking=none",
]


def _rows(args, kwargs) -> int:
    ids = kwargs.get("input_ids", args[0] if args else None)
    return int(ids.shape[0])


@pytest.mark.slow  # trains twice (make test-fast runs no training)
def test_the_policy_stage_probe_costs_exactly_its_sequences_and_changes_no_weight(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from po_bench import pipeline, stages
    from po_bench.specs import plan, run_options
    from po_bench.store import Store

    cfg_on = compose([*STAGE_RUN, f"cache_dir={tmp_path}/cache"])
    cfg_off = compose([*STAGE_RUN, f"cache_dir={tmp_path}/cache", "diagnostics.probe=false"])
    validate(cfg_on)
    on, off = plan(cfg_on), plan(cfg_off)
    assert on.policy["probe"]["every"] == 2 and "probe" not in off.policy
    store = Store(tmp_path / "cache")
    stages.get(store, "sft", on.sft)
    stages.get(store, "samples", on.samples["pref_samples"])
    pairs = stages.get(store, "pairs", on.pairs)["train"]

    counts: list[list[int]] = []  # per model loaded by the stage, in load order: rows through its forward
    real_load = stages.load_model

    def counting(path, model):
        m = real_load(path, model)
        n = [0]
        m.register_forward_pre_hook(lambda mod, a, kw: n.__setitem__(0, n[0] + _rows(a, kw)), with_kwargs=True)
        counts.append(n)
        return m

    monkeypatch.setattr(stages, "load_model", counting)
    opts = run_options(cfg_on)
    d_off = stages.get(store, "policy", off.policy, opts)  # loads the policy, then the reference
    off_counts, counts[:] = [c[0] for c in counts], []
    d_on = stages.get(store, "policy", on.policy, opts)  # loads the probe's sampler, the policy, the reference
    on_counts = [c[0] for c in counts]
    m_off = json.loads((d_off / "train_metrics.json").read_text())
    m_on = json.loads((d_on / "train_metrics.json").read_text())
    assert "probe" not in m_off and m_off["steps"] == m_on["steps"] == 3
    # probe off: the policy's forward passes are training's own (3 steps x 8 pairs x chosen + rejected)
    assert off_counts[0] == 3 * 8 * 2 and len(off_counts) == 2
    pr = m_on["probe"]
    assert [h["step"] for h in pr["history"]] == [0, 2, 3] and pr["every"] == 2
    per_measure = 2 * len(pr["indices"]) + len(pr["unseen"])
    assert len(pr["indices"]) == 6 and 1 <= len(pr["unseen"]) <= 4
    assert pr["forward_sequences"] == per_measure * 3
    # probe on: the sampler generated the unseen responses; the policy did exactly the probe's sequences more
    assert len(on_counts) == 3 and on_counts[0] > 0
    assert on_counts[1] == off_counts[0] + pr["forward_sequences"]
    # the same weights and the same training losses either way
    w_on, w_off = load_file(str(d_on / "model.safetensors")), load_file(str(d_off / "model.safetensors"))
    assert w_on.keys() == w_off.keys() and all(torch.equal(w_on[k], w_off[k]) for k in w_on)

    def losses(m):
        timing = ("train_runtime", "train_samples_per_second", "train_steps_per_second")
        return [{k: v for k, v in h.items() if not k.startswith("probe/") and k not in timing} for h in m["history"]]

    assert losses(m_on) == losses(m_off)
    # the logged dicts carry the latest measurement (wandb's view): step 1 still the start's, 2 and 3 their own
    logged = {h["step"]: h for h in m_on["history"] if "loss" in h}
    hist = {h["step"]: h for h in pr["history"]}
    assert [logged[s]["probe/logp_chosen"] for s in (1, 2, 3)] == pytest.approx(
        [hist[0]["logp_chosen"], hist[2]["logp_chosen"], hist[3]["logp_chosen"]]
    )
    # the stored per-pair values equal a separate forward pass with the start and with the stored weights
    monkeypatch.setattr(stages, "load_model", real_load)
    tok = stages.load_tokenizer(str(d_on), on.policy["model"])
    probe_pairs = [pairs[i] for i in pr["indices"]]
    prompts = [p["prompt"] for p in probe_pairs]
    ml = int(cfg_on.train.max_length)
    for when, path in (("start", stages.checkpoint_dir(store, on.start)), ("final", str(d_on))):
        model = real_load(path, on.policy["model"])
        for key in ("chosen", "rejected"):
            sums, _ = completion_logps(model, tok, prompts, [p[key] for p in probe_pairs], max_length=ml)
            assert pr["per_pair"][f"{when}_{key}"] == pytest.approx(sums.tolist(), rel=1e-5, abs=1e-5), (when, key)
        u = pr["unseen"]
        sums, _ = completion_logps(model, tok, [x["prompt"] for x in u], [x["response"] for x in u], max_length=ml)
        assert pr["per_pair"][f"{when}_unseen"] == pytest.approx(sums.tolist(), rel=1e-5, abs=1e-5), when
    assert pr["per_pair"]["delta_chosen"] == pytest.approx(
        [a - b for a, b in zip(pr["per_pair"]["final_chosen"], pr["per_pair"]["start_chosen"])]
    )
    # unseen responses are in no training pair of their prompt
    trained = {(p["prompt"], y) for p in pairs for y in (p["chosen"], p["rejected"])}
    assert not any((x["prompt"], x["response"]) in trained for x in pr["unseen"])
    # the run's metrics (run.json) carry the final measurement and the history, from the stored policy
    metrics = pipeline.run(cfg_on, tmp_path / "run")
    got = metrics["diagnostics"]["probe"]
    assert got["history"] == pr["history"] and got["step"] == 3 and got["n_pairs"] == 6
    assert got["delta_chosen"] == pytest.approx(pr["history"][-1]["delta_chosen"]) and "unseen_gold" in got
    assert "diagnostics" not in pipeline.run(cfg_off, tmp_path / "run_off")


@pytest.mark.slow  # trains (make test-fast runs no training)
@pytest.mark.parametrize("loss", ["kto", "lipo"])
def test_the_unpaired_and_listwise_trainers_take_the_probe(loss, tokenizer, pairs, tmp_path):
    cfg = compose([f"loss={loss}"])
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = copy.deepcopy(model)
    _, probe_pairs = probe_set.draw(pairs, 4, 0)
    probe = ProbeCallback(tokenizer, probe_pairs, max_length=int(cfg.train.max_length), every=1)
    res = train_preference(
        model, ref, tokenizer, pairs, loss_args(cfg.loss, 5e-3), step_args(cfg.train, 2), tmp_path, 0, callbacks=[probe]
    )
    assert res["steps"] == 2 and [h["step"] for h in probe.history] == [0, 1, 2]
    assert probe.history[-1]["delta_chosen"] != 0.0  # the policy moved and the probe saw it
    assert any("probe/logp_chosen" in h for h in res["history"])

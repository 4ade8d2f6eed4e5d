"""po_bench/training/trl/probe.py: the log-probability trajectories during training.  Through a real TRL DPO
run: each logged value equals a separate forward pass with the policy's weights at that same step (copied by
a second callback), the values reach the run's history (and so wandb) under ``probe/``, the start is the
reference, and the chosen log-prob's change is the per-pair change the CHES analysis reads."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import TrainerCallback

from po_bench.generation.logprobs import completion_logps
from po_bench.training import models
from po_bench.training.trl.preference import train_preference
from po_bench.training.trl.probe import ProbeCallback

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

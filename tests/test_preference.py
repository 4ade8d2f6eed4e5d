"""Real TRL optimizer steps for every preference loss on the tiny model through train_preference
(po_bench/training/trl/preference.py), each loss's trainer, reference, store hook and scores as its Method asks;
the losses and gradient norms of both steps pinned in tests/golden/."""

import copy

import pytest
import torch

from po_bench.training import models
from po_bench.training.methods import method_of
from po_bench.training.trl.preference import train_preference

from .helpers import check_golden, config_with_loss, loss_args, preference_losses, step_args, training_trace

LOSSES = preference_losses()

# DiscoPOP (arXiv:2406.08414) is non-convex at zero margin: with rho = sigmoid(L/tau), its loss
# (1-rho)*softplus(-L) + rho*exp(-L) has dL-derivative rho'(0)(1 - ln 2) - 0.75 = (0.25/0.05)(0.307) - 0.75
# = +0.78 > 0 at L = 0 for tau = 0.05, so from a policy equal to its reference the first step
# lowers the margin.  Every other loss raises it.
MARGIN_DIRECTION_AT_INIT = {"discopop": -1}

# TPO trains on step-annotated lists only (each response's world steps): its two real optimizer steps are
# tests/test_tpo.py::test_two_real_optimizer_steps
PAIR_DATA_LOSSES = [x for x in LOSSES if x != "tpo"]


@pytest.mark.parametrize("loss", PAIR_DATA_LOSSES)
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_two_real_optimizer_steps(loss, tokenizer, pairs, tmp_path):
    """Two optimizer steps on one fixed batch: finite loss, parameters move, the logged reward
    margin on that batch grows (the loss pushes chosen above rejected)."""
    cfg = config_with_loss(loss)
    unpaired = cfg.loss.backend == "kto" or not cfg.loss.paired  # KTO, BCO: 8 unpaired rows, one batch of 8
    pairs = pairs[:4] if unpaired else pairs[:8]
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = None if cfg.loss.reference_free else copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = step_args(cfg.train, 2)
    lr = 1e-2 if loss == "sft_lowlr" else 1e-3
    loss_cfg = loss_args(cfg.loss, lr)
    saved = {}
    cache = (lambda: None, lambda obj: saved.update(obj)) if loss_cfg.backend == "dpo" else None
    # a guided loss (TGDPO) scores a guide policy per token: here a copy of the start (token rewards 0: DPO's step);
    # tests/test_fine_grained.py trains it with a guide that differs from the reference
    guide = {"guide_model": copy.deepcopy(model)} if cfg.loss.get("guide") else {}
    if method_of(
        loss_cfg
    ).needs_source_models:  # InfiFPO: source models (tests/test_unpaired_fused.py checks the fusion)
        guide["source_models"] = [
            models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128) for _ in range(2)
        ]
    if method_of(loss_cfg).needs_pair_scores:  # MADPO / Sem-DPO: one score per pair (tests/test_pair_weights.py)
        guide["pair_scores"] = [0.5] * len(pairs)
    res = train_preference(model, ref, tokenizer, pairs, loss_cfg, train, tmp_path, 0, ref_logps_cache=cache, **guide)
    assert res["steps"] == 2
    assert res["train_loss_final"] is not None and torch.isfinite(torch.tensor(res["train_loss_final"]))
    changed = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed > 0, "no parameter moved after two optimizer steps"
    if ref is not None and not loss_cfg.args.get("sync_ref_model"):  # the reference stays frozen
        assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())
    elif ref is not None:  # TR-DPO: tau = 10% of 2 steps -> the reference is mixed with the policy every step
        assert any(not torch.equal(before[k], v) for k, v in ref.state_dict().items())
    if cache is not None and not loss_cfg.reference_free and not loss_cfg.args.get("sync_ref_model"):
        # reference log-probs went through the store hook
        assert len(saved["ref_chosen_logps"]) == len(pairs)
    margins = [h["rewards/margins"] for h in res["history"] if "rewards/margins" in h]
    assert len(margins) == 2, res["history"]
    direction = MARGIN_DIRECTION_AT_INIT.get(loss, +1)
    assert direction * (margins[1] - margins[0]) > 0, f"{loss}: reward margin moved the wrong way: {margins}"
    # the losses and gradient norms of both steps, as recorded before the Method-record refactoring
    check_golden("trl_adapter_two_steps", loss, training_trace(res))


# ---- every hyperparameter reaches TRL's config ------------------------------------------------------------


# ---- KTO: the KL rows are truly mismatched pairs ------------------------------------------------------------


# ---- BCO's delta moves across steps ------------------------------------------------------------------------


# ---- beta-DPO: the trainer holds the running margin statistics ------------------------------------------


# ---- a curriculum order reaches the trainer (Curry-DPO) -------------------------------------------------

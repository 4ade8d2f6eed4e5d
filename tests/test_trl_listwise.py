"""Real optimizer steps of the listwise trainer (po_bench/training/trl/listwise.py) on the world's rated lists:
the golden two-step traces of every listwise loss and the store's cached k reference log-probs per row."""

import copy
from types import SimpleNamespace as NS

import pytest
import torch

from .conftest import compose as _compose
from .helpers import LIST_DATA, check_golden, training_trace, two_steps, world_lists


def _loss_cfg(name, **args):
    cfg = _compose([f"loss={name}", *LIST_DATA])
    return NS(**{**cfg.loss, "args": {**dict(cfg.loss.args), **args}, "lr": 1e-3}), cfg.train


@pytest.mark.parametrize(
    "name, args",
    [("lipo", {}), ("irpo", {}), ("adpo_list", {}), ("adpo_list", {"anchor": "dynamic", "anchor_rate": 0.5})],
)
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_two_real_optimizer_steps(name, args, tokenizer, tmp_path):
    """Two optimizer steps on one batch of 8 world lists (one of them shorter: padded): finite loss,
    parameters move, the best-vs-worst reward margin grows; a fixed reference stays frozen and its k
    log-probs per row go through the store hook; a dynamic anchor moves towards the policy."""
    rows = world_lists(n=8)[0][:8]
    rows[0] = {**rows[0], **{k: rows[0][k][:3] for k in ("responses", "scores", "gold", "ranks")}}
    res, _, ref, before, saved = two_steps(tokenizer, rows, *_loss_cfg(name, **args), tmp_path)
    check_golden(
        "listwise_two_steps", name + "".join(f"-{k}={v}" for k, v in sorted(args.items())), training_trace(res)
    )
    moved = any(not torch.equal(before[k], v) for k, v in ref.state_dict().items())
    if args.get("anchor") == "dynamic":
        assert moved and not saved
    else:
        assert not moved
        assert [len(x) for x in saved["ref_logps"]] == [len(r["responses"]) for r in rows]
    margins = [h["rewards/margins"] for h in res["history"] if "rewards/margins" in h]
    assert len(margins) == 2 and margins[1] > margins[0], margins
    sizes = [h["list/size"] for h in res["history"] if "list/size" in h]
    assert sizes[0] == pytest.approx((3 + 7 * 4) / 8)


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_cached_reference_log_probs_are_used(tokenizer, tmp_path):
    """With the store's k reference log-probs per row in place, the trainer reads them (a huge reference
    log-prob on the best response makes its reward very negative) instead of recomputing."""
    from po_bench.training import models
    from po_bench.training.trl.preference import train_preference

    rows = world_lists(n=8)[0][:8]
    loss_cfg, train = _loss_cfg("adpo_list")
    train = NS(**{**train, "max_steps": 1, "batch_size": 8, "logging_steps": 1, "progress": False})
    fake = {"ref_logps": [[1000.0] + [0.0] * (len(r["responses"]) - 1) for r in rows]}
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    res = train_preference(
        model,
        copy.deepcopy(model),
        tokenizer,
        rows,
        loss_cfg,
        train,
        tmp_path,
        0,
        ref_logps_cache=(lambda: fake, lambda obj: None),
    )
    chosen = [h["rewards/chosen"] for h in res["history"] if "rewards/chosen" in h]
    assert chosen and chosen[0] < -50

"""The run around a trainer (po_bench/training/trl/fit.py): resuming from the newest complete checkpoint,
LoRA adapters trained by TRL then merged into a plain checkpoint, and the reference model released once its
log-probs are precomputed."""

import copy
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.training import models
from po_bench.training.trl.fit import last_checkpoint, merged
from po_bench.training.trl.preference import train_preference

from .helpers import config_with_loss, loss_args, step_args


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_lora_trains_adapters_only_and_merges(tokenizer, pairs, tmp_path):
    """model.lora.enabled: TRL trains peft LoRA adapters (base weights frozen, reference = adapters off);
    the merged policy differs from the start, and its shape is a plain checkpoint."""
    cfg = config_with_loss("dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(**{**cfg.train, "max_steps": 2, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-2})
    model_cfg = NS(lora=NS(enabled=True, r=4, alpha=8, dropout=0.0, target_modules="all-linear"))
    res = train_preference(model, None, tokenizer, pairs[:8], loss_cfg, train, tmp_path, 0, model_cfg=model_cfg)
    peft_model = res["model"]
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    plain = merged(peft_model)
    after = plain.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_last_checkpoint_skips_partial_ones(tmp_path):
    """A kill during a checkpoint write leaves a folder without trainer_state.json: resume from the
    newest complete one instead."""
    assert last_checkpoint(tmp_path / "missing") is None
    for n in (4, 8):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-8" / "model.safetensors").write_bytes(b"half")  # partial: no trainer_state.json
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")


@pytest.mark.slow  # trains (make test-fast runs no training)
@pytest.mark.parametrize("loss, freed", [("dpo", True), ("cdpo", True), ("tr_dpo", False)])
def test_the_reference_is_freed_once_its_log_probs_are_precomputed(
    tokenizer, pairs, tmp_path, monkeypatch, loss, freed
):
    """Every batch carries the precomputed reference log-probs (TRL's DPO losses, po-bench's pure functions),
    so while the policy trains nothing holds the reference model any more (TRL kept it resident); TR-DPO's
    reference moves with the policy and stays."""
    import gc
    import weakref

    from po_bench.training.trl import preference

    seen = []

    def run(trainer, out_dir):
        fit_run(trainer, out_dir)
        gc.collect()
        seen.append((alive() is None, getattr(trainer, "ref_model", None) is None))

    fit_run = preference.run
    monkeypatch.setattr(preference, "run", run)
    cfg = config_with_loss(loss)
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    refs = [copy.deepcopy(model)]
    alive = weakref.ref(refs[0])
    cache = (lambda: None, lambda obj: None) if loss != "tr_dpo" else None
    train_preference(
        model,
        refs.pop(),
        tokenizer,
        pairs[:16],
        loss_args(cfg.loss, 1e-3),
        step_args(cfg.train, 1),
        tmp_path,
        0,
        ref_logps_cache=cache,
    )
    assert seen == [(freed, freed)]

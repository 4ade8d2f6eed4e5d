"""MADPO's reward model (po_bench/training/trl/reward.py): TRL's RewardTrainer on the preference pairs from a
causal-LM checkpoint, then its margin on every pair."""

import math
from types import SimpleNamespace as NS

import pytest

from po_bench.training import models
from po_bench.training.trl.reward import train_reward_model


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_reward_model_trains_with_trl_and_scores_every_pair(tokenizer, pairs, tmp_path):
    """MADPO's first step: TRL's RewardTrainer on the pairs from a causal-LM checkpoint; one margin per pair."""
    lm = models.build_tiny_model(tokenizer, hidden_size=32, num_layers=1, intermediate_size=64)
    lm.save_pretrained(tmp_path / "start")
    tokenizer.save_pretrained(tmp_path / "start")
    train = NS(
        lr=5e-3,
        epochs=1,
        batch_size=8,
        max_length=64,
        precision="fp32",
        lr_scheduler="constant",
        warmup_ratio=0.0,
        grad_accum=1,
        max_steps=3,
        logging_steps=1,
        save_steps=0,
        progress=False,
    )
    model, info = train_reward_model(tmp_path / "start", tokenizer, pairs[:24], train, tmp_path / "rm", 0)
    assert info["steps"] == 3 and len(info["margins"]) == 24
    assert all(math.isfinite(m) for m in info["margins"]) and len(set(info["margins"])) > 1
    assert model.config.num_labels == 1

"""The SFT stage's trainer (po_bench/training/trl/sft.py): TRL's SFTTrainer on prompt/completion examples in
real optimizer steps (the SFTConfig it is given: tests/test_args.py)."""

import copy
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.training import models
from po_bench.training.trl.sft import train_sft

from .conftest import compose as _compose


def _completion_logp(model, tokenizer, ex) -> float:
    prompt = tokenizer(ex["prompt"])["input_ids"]
    ids = tokenizer(ex["prompt"] + ex["completion"])["input_ids"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
    return float(sum(logp[t - 1, ids[t]] for t in range(len(prompt), len(ids))))


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_sft_steps_raise_the_completions_likelihood(tokenizer, pairs, tmp_path):
    """Three optimizer steps at a high learning rate on 8 prompt/completion examples: the steps and the
    logged loss are reported, and the examples' completions become more likely under the trained model."""
    examples = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs[:8]]
    cfg = _compose([])
    train = NS(
        **{
            **cfg.train,
            "sft_lr": 1e-2,
            "sft_batch_size": 8,
            "max_steps": 3,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        }
    )
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    start = copy.deepcopy(model).eval()
    res = train_sft(model, tokenizer, examples, train, tmp_path, 0)
    assert res["steps"] == 3 and res["train_loss_final"] is not None
    assert [h["loss"] for h in res["history"] if "loss" in h][-1] < [h["loss"] for h in res["history"] if "loss" in h][
        0
    ]
    model.eval()
    before = sum(_completion_logp(start, tokenizer, ex) for ex in examples)
    after = sum(_completion_logp(model, tokenizer, ex) for ex in examples)
    assert after > before + 1.0, (before, after)

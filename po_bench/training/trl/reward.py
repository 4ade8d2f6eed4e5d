"""MADPO's reward model (its pair scores, po_bench.training.pair_scores): TRL's RewardTrainer on the
preference pairs, then its margin on every pair."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification
from trl import RewardTrainer

from po_bench.training.trl.args import build_reward_config, precision_of
from po_bench.training.trl.fit import MetricsLog, batch_facts, cast_for_precision, run


def train_reward_model(start_dir, tokenizer, pairs: list[dict], train_cfg, out_dir: Path, seed: int):
    """MADPO's first step: a reward model trained on the preference pairs with TRL's RewardTrainer
    (Bradley-Terry loss -log sig(r(x, y_w) - r(x, y_l))), a sequence-classification head (one output) on
    the checkpoint in ``start_dir``; then its margin r(x, y_w) - r(x, y_l) on every pair, in order.
    Returns (model, info) with ``info["margins"]``."""

    args = build_reward_config(train_cfg, out_dir, seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(start_dir), num_labels=1, dtype=torch.float32)
    cast_for_precision(model, precision_of(train_cfg))
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    mlog = MetricsLog()
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[mlog.callback],
    )
    run(trainer, out_dir)
    margins = reward_margins(trainer, rows, int(train_cfg.batch_size))
    acc = sum(m > 0 for m in margins) / max(1, len(margins))
    return model, {
        "train_loss_final": mlog.final_loss(),
        "history": mlog.history,
        "steps": trainer.state.global_step,
        "train_accuracy": acc,
        "margins": margins,
        **batch_facts(trainer),
    }


def reward_margins(trainer, rows: list[dict], batch_size: int) -> list[float]:
    """r(x, y_w) - r(x, y_l) of the trainer's reward model on every row, tokenised as the trainer
    tokenised its training rows; over-long rows are truncated to max_length (kept: one margin per pair)."""

    out: list[float] = []
    for rc, rr in _row_scores(trainer, rows, batch_size):
        out += (rc - rr).tolist()
    return out


def _row_scores(trainer, rows: list[dict], batch_size: int):
    """(r(x, chosen), r(x, rejected)) of the trainer's reward model, one pair of tensors per batch of rows (as
    :func:`reward_margins` tokenises them)."""

    model, max_length = trainer.model, trainer.args.max_length
    trainer.args.max_length = None  # TRL's over-long filter off: every row gets its margin
    try:
        ds = trainer._prepare_dataset(Dataset.from_list(rows), trainer.processing_class, trainer.args, "margins")
    finally:
        trainer.args.max_length = max_length
    cut = slice(None, max_length)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for i in range(0, len(ds), batch_size):
            chunk = ds.select(range(i, min(i + batch_size, len(ds))))
            batch = trainer.data_collator(
                [{"chosen_ids": e["chosen_ids"][cut], "rejected_ids": e["rejected_ids"][cut]} for e in chunk]
            )
            scores = (
                model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                .logits.squeeze(-1)
                .float()
            )
            yield scores.chunk(2)


def score_pairs(model_dir, tokenizer, pair_sets: dict[str, list[dict]], train_cfg, out_dir: Path, seed: int) -> dict:
    """name -> the margins r(x, y_w) - r(x, y_l) of the stored reward model in ``model_dir`` (the reward_model
    stage's) on each list of pairs, tokenised as its trainer tokenised its training rows (a RewardTrainer of
    the same config, which trains nothing here); over-long rows are cut to max_length."""

    args = build_reward_config(train_cfg, out_dir, seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1, dtype=torch.float32)
    cast_for_precision(model, precision_of(train_cfg))
    sets = {
        name: [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
        for name, pairs in pair_sets.items()
    }
    rows_all = [r for rows in sets.values() for r in rows]
    if not rows_all:
        return {name: [] for name in sets}
    # the trainer needs a training set to build: the shortest row (one TRL's over-long filter keeps)
    shortest = min(rows_all, key=lambda r: len(json.dumps(r)))
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list([shortest]), processing_class=tokenizer
    )
    return {
        name: reward_margins(trainer, rows, int(train_cfg.batch_size)) if rows else [] for name, rows in sets.items()
    }


class RewardScorer:
    """The stored reward model in ``model_dir`` (the reward_model stage's), loaded once, scoring responses as
    :func:`score_pairs` does (a RewardTrainer of the same config, which trains nothing, tokenises the rows):
    the online loop's explicit preference source (po_bench/training/labellers.py) asks it every step."""

    def __init__(self, model_dir, tokenizer, train_cfg, seed: int):
        self._tmp = tempfile.TemporaryDirectory()  # (the trainer's output folder: nothing is saved there)
        args = build_reward_config(train_cfg, Path(self._tmp.name), seed)
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1, dtype=torch.float32)
        cast_for_precision(model, precision_of(train_cfg))
        dummy = [{"prompt": "x", "chosen": "a", "rejected": "b"}]  # (the trainer needs a training set to build)
        self.trainer = RewardTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(dummy), processing_class=tokenizer
        )
        self.batch_size = int(train_cfg.batch_size)

    def pair_scores(self, prompts, first, second) -> tuple[list[float], list[float]]:
        """(r(x, first), r(x, second)) of each prompt's two responses."""
        rows = [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in zip(prompts, first, second)]
        ra: list[float] = []
        rb: list[float] = []
        for rc, rr in _row_scores(self.trainer, rows, self.batch_size):
            ra += rc.tolist()
            rb += rr.tolist()
        return ra, rb

"""TRL's OnlineDPOTrainer (``trl.experimental.online_dpo``, TRL 1.16) on po-bench's settings, its reward a plain
Python callable wired to a preference source's score (the world's gold reward): the cross-check of po-bench's own
online loop (po_bench/training/online.py; tests/test_online_dpo.py shows the two agree on the world within seed
noise).  TRL's trainer is experimental (the group is under review for removal upstream), so po-bench's loop is
what ``loss=online_dpo`` runs; this module is the comparison, not a dependency.

Settings mapped: two completions per prompt per step from the current policy, the fixed reference, the batch,
steps, learning rate and schedule, warmup, max_length, the sampling fields and beta; ``use_cpu`` without a GPU,
``bf16=False`` and ``gradient_checkpointing=False`` (its default turns the KV cache off while it generates).
Where it differs from po-bench's loop: TRL keeps the first completion on a tie of the scores (po-bench drops the
pair) and cuts prompt + completion from the left at max_length (po-bench from the right, as its trainers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from datasets import Dataset
from transformers import PrinterCallback
from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

from po_bench.training.online import steps_of


def reward_function(score: Callable[[str, str], float]):
    """TRL's reward callable (all 2B completions of a step at once) from a per-response score."""

    def gold(prompts, completions, **kwargs):
        return [float(score(p, c)) for p, c in zip(prompts, completions)]

    return gold


def train_trl_online_dpo(
    policy,
    ref_model,
    tokenizer,
    prompts: list,
    beta: float,
    lr: float,
    train,
    gen_cfg,
    score: Callable[[str, str], float],
    seed: int,
    out_dir: Path,
) -> dict:
    """Train ``policy`` with TRL's OnlineDPOTrainer; returns the model, TRL's logged history and the steps."""
    steps = steps_of(train, len(prompts))
    args = OnlineDPOConfig(
        output_dir=str(out_dir),
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=int(train.batch_size),
        gradient_accumulation_steps=int(train.grad_accum),
        max_steps=steps,
        learning_rate=lr,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=float(train.warmup_ratio),
        weight_decay=0.0,
        max_length=int(train.max_length),
        max_new_tokens=int(gen_cfg.max_new_tokens),
        temperature=float(gen_cfg.temperature),
        top_p=float(gen_cfg.top_p),
        top_k=0,
        beta=[float(beta)],
        seed=int(seed),
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = OnlineDPOTrainer(
        model=policy,
        ref_model=ref_model,
        reward_funcs=reward_function(score),
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tokenizer,
    )
    trainer.remove_callback(PrinterCallback)  # (the history stays in trainer.state.log_history)
    trainer.train()
    return {"model": trainer.model, "history": trainer.state.log_history, "steps": trainer.state.global_step}

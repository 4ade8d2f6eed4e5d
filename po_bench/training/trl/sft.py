"""The SFT stage: TRL's SFTTrainer on prompt/completion examples (or conversations)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTTrainer

from po_bench.training.trl.args import build_sft_config, precision_of
from po_bench.training.trl.fit import MetricsLog, batch_facts, cast_for_precision, run, save_distributed


def train_sft(model, tokenizer, examples: list[dict], train_cfg, out_dir: Path, seed: int, save_dir=None) -> dict:
    """Supervised fine-tuning on prompt/completion examples (loss on completions only).  With
    ``save_dir`` (a process group) the trainer saves the consolidated model there itself."""

    args = build_sft_config(train_cfg, out_dir, seed, conversational="messages" in examples[0])
    cast_for_precision(model, precision_of(train_cfg))
    mlog = MetricsLog()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        callbacks=[mlog.callback],
    )
    run(trainer, out_dir)
    res = {
        "train_loss_final": mlog.final_loss(),
        "history": mlog.history,
        "steps": trainer.state.global_step,
        **batch_facts(trainer),
    }
    if save_dir is not None:
        save_distributed(trainer, tokenizer, save_dir)
    return res

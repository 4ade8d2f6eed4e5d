"""Running a TRL Trainer: the logged history, checkpoints and resuming from them, the facts of the run (the
batch it used, how its parameters are held), saving under a process group, the precision of the weights."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class MetricsLog:
    """Collects the trainer's logged dicts (loss curve, rewards) for the run record."""

    def __init__(self):
        from transformers import TrainerCallback  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~3.9 s)

        history: list[dict] = []

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if logs:
                    history.append(
                        {
                            "step": state.global_step,
                            **{k: float(v) for k, v in logs.items() if isinstance(v, (int, float))},
                        }
                    )

        self.history = history
        self.callback = _CB()

    def final_loss(self) -> float | None:
        losses = [h["loss"] for h in self.history if "loss" in h]
        if losses:
            return losses[-1]
        tl = [h["train_loss"] for h in self.history if "train_loss" in h]
        return tl[-1] if tl else None


def cast_for_precision(model, precision: str):
    """The trained model's parameter dtype: fp32 for fp32 and bf16-mixed (fp32 master weights; the
    loaded dtype is only for generation), bf16 for bf16-pure."""
    want = torch.bfloat16 if precision == "bf16-pure" else torch.float32
    if model is not None and next(model.parameters()).dtype != want:
        log.info("training in %s: parameters cast to %s", precision, want)
        model.to(want)
    return model


def shared_dataset(args, rows: list[dict], out_dir):
    """The training rows as a ``datasets.Dataset``.  Under a process group it is file-backed in the
    trainer folder (rank 0 writes it, the others read it), because TRL's DPO trainer hands the
    reference log-probs from rank 0 to the others through the dataset's cache folder, which an
    in-memory dataset keeps in a private temporary folder per process."""
    from datasets import Dataset, load_from_disk  # lazy: datasets, huggingface_hub, numpy, pandas, ... (~0.6 s)

    ds = Dataset.from_list(rows)
    if args.world_size <= 1:
        return ds
    path = Path(out_dir) / "train_rows"
    with args.main_process_first(local=False, desc="training rows"):
        if args.process_index == 0 and not (path / "dataset_info.json").exists():
            ds.save_to_disk(str(path))
    return load_from_disk(str(path))


def batch_facts(trainer) -> dict:
    """What the run actually used: world size, per-device batch, accumulation and the global batch."""
    a = trainer.args
    return {
        "world_size": a.world_size,
        "per_device_batch": a.per_device_train_batch_size,
        "grad_accum": a.gradient_accumulation_steps,
        "global_batch": a.per_device_train_batch_size * a.gradient_accumulation_steps * a.world_size,
    }


def param_facts(model) -> dict:
    """How the trained parameters are held, from inside the trainer on every rank: whether they are sharded
    (FSDP2's DTensor shards; DeepSpeed ZeRO-3's partitions), the full model's element count, each rank's local
    one (``per_rank``), and the L2 norm of the full trained parameters computed from the local shards (so the
    consolidated weights a run saves can be checked against it).  Reads only; a collective (every rank of a
    process group calls it)."""

    full = local = 0
    sq = {True: 0.0, False: 0.0}  # sum of squares of sharded / whole (replicated) parameters
    sharded = False
    for p in model.parameters():
        t = p.detach()
        if hasattr(t, "to_local"):  # FSDP2: a DTensor of which this rank holds one shard
            t, part = t.to_local(), True
            full += p.numel()
        elif hasattr(p, "ds_tensor"):  # DeepSpeed ZeRO-3: this rank's partition (zero-padded)
            t, part = p.ds_tensor.detach(), True
            full += int(p.ds_numel)
        else:
            part = False
            full += p.numel()
        sharded |= part
        local += t.numel()
        for chunk in t.reshape(-1).split(1 << 24):  # bounded memory for large parameters
            sq[part] += float(chunk.double().pow(2).sum())
    ranks = [(local, sq[True])]
    if dist.is_available() and dist.is_initialized():
        ranks = [None] * dist.get_world_size()
        dist.all_gather_object(ranks, (local, sq[True]))
    return {
        "sharded": sharded,
        "full": full,
        "per_rank": [n for n, _ in ranks],
        "norm": (sum(s for _, s in ranks) + sq[False]) ** 0.5,
    }


def save_distributed(trainer, tokenizer, save_dir) -> None:
    """Under a process group: every rank takes part (FSDP / ZeRO-3 gather the full weights), rank 0
    writes consolidated weights that reload with ``from_pretrained``."""
    trainer.save_model(str(save_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(save_dir))


def last_checkpoint(out_dir) -> str | None:
    """The newest *complete* ``checkpoint-N`` under a trainer folder (left by a killed run).

    A kill can land while a checkpoint is being written; the Trainer writes ``trainer_state.json``
    last, so a checkpoint without it is partial and skipped in favour of the one before."""

    d = Path(out_dir)
    if not d.is_dir():
        return None
    ckpts = sorted(
        (p for p in d.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
        key=lambda p: int(p.name.split("-")[1]),
        reverse=True,
    )
    for ckpt in ckpts:
        if (ckpt / "trainer_state.json").is_file():
            log.info("resuming from %s", ckpt)
            return str(ckpt)
        log.warning("skipping partial checkpoint %s (killed while it was written)", ckpt)
    return None


def merged(model):
    """A trained peft model with its adapters merged (a plain model for saving / generation)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def release_reference(trainer) -> bool:
    """Let the reference model go once its log-probs are in the training rows: with TRL's
    ``precompute_ref_log_probs`` and a fixed reference, every batch carries them and the reference never
    runs again, yet TRL keeps it resident for the whole run (an 8B reference: 15 GiB of GPU memory).  The
    trainer drops it and the accelerator its entry in the list of prepared models (accelerate has no public
    call for one model; transformers' Trainer reads the same list).  The model's own reference cycles (TRL's
    patched forward) are collected by the garbage collection ``Trainer.train`` starts with, before the first
    step: no collection of its own, which would cost as much again.  The memory is freed when the caller
    holds none (``stages.build_policy`` passes it without a name).  Not under DeepSpeed or FSDP, whose engines
    TRL manages.  Returns whether it was released."""
    args = trainer.args
    ref = getattr(trainer, "ref_model", None)
    if ref is None or not getattr(args, "precompute_ref_log_probs", False):
        return False
    if getattr(args, "sync_ref_model", False) or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        return False
    trainer.ref_model = None
    acc = trainer.accelerator
    acc._models = [m for m in acc._models if m is not ref]
    return True


def run(trainer, out_dir) -> None:
    """Train, resuming from the newest complete checkpoint a killed run left in ``out_dir``."""
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))

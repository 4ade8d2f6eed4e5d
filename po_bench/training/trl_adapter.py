"""The one module that touches TRL.

TRL moves fast (CPO/ORPO/OnlineDPO live in ``trl.experimental`` in 1.16); every import of TRL and
every use of its trainers and config classes is here, so that a TRL upgrade is a change to this
file only.  Losses name a *backend* (``dpo``, ``cpo``, ``kto``, ``sft``) and a dict of arguments
for that backend's TRL config class; :func:`validate_backend_args` checks those before any compute.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _backend_classes(backend: str):
    if backend in ("dpo", "pobench", "listwise"):
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if backend == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    if backend == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if backend == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if backend == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTConfig, SFTTrainer
    raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


BACKENDS = ("dpo", "cpo", "orpo", "kto", "pobench", "listwise", "sft")


def backend_fields(backend: str) -> set[str]:
    cfg_cls, _ = _backend_classes(backend)
    return {f.name for f in dataclasses.fields(cfg_cls)}


def validate_backend_args(backend: str, args: dict[str, Any], function: str = "") -> None:
    """Raise ValueError naming the first argument the backend does not have."""
    if backend == "pobench":
        from po_bench.training.losses import check_hparams

        check_hparams(function, args)
        return
    if backend == "listwise":  # po_bench.training.listwise: the function's hyperparameters and the trainer's
        from po_bench.training.listwise import check_hparams as check_listwise

        check_listwise(function, args)
        return
    fields = backend_fields(backend)
    for key in args:
        if key in POBENCH_LOSS_ARGS and POBENCH_LOSS_ARGS[key] in fields:
            continue
        if key not in fields:
            raise ValueError(f"loss.args.{key} is not an option of TRL's {_backend_classes(backend)[0].__name__}")


# Fields of TRL's DPO config that its reference log-prob pass reads (besides the reference model,
# the pairs and max_length): LD-DPO weights the reference's tail tokens by ld_alpha, and truncation
# decides which tokens are scored.  Part of the reference log-probs' artifact key.
REF_LOGP_ARGS = ("ld_alpha", "truncation_mode")


def ref_logp_args(backend: str, args: dict) -> dict:
    """The loss arguments that change TRL's reference log-probs (po-bench losses: none)."""
    if backend == "listwise":  # k log-probs per row: never the same artifact as a pairwise reference pass
        return {"view": "list"}
    return {} if backend == "pobench" else {k: args[k] for k in REF_LOGP_ARGS if k in args}


def moving_reference(backend: str, function: str, args: dict) -> bool:
    """Whether the reference moves during training (TR-DPO's sync, ADPO's dynamic anchor): its log-probs
    are computed each step, never precomputed or stored."""
    from po_bench.training.listwise import moving_anchor

    return bool(args.get("sync_ref_model")) or (backend == "listwise" and moving_anchor(function, args))


class _MetricsLog:
    """Collects the trainer's logged dicts (loss curve, rewards) for the run record."""

    def __init__(self):
        from transformers import TrainerCallback

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


def _common_args(train_cfg, out_dir: Path, seed: int, lr: float, epochs: float, batch_size: int) -> dict:
    from po_bench.training.launch import trainer_args

    return dict(
        output_dir=str(out_dir),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=train_cfg.grad_accum,
        num_train_epochs=epochs,
        max_steps=train_cfg.max_steps if train_cfg.max_steps > 0 else -1,
        learning_rate=lr,
        lr_scheduler_type=train_cfg.lr_scheduler,
        warmup_steps=float(train_cfg.warmup_ratio),  # transformers 5: a float in [0, 1) is a ratio of total steps
        weight_decay=0.0,
        logging_steps=train_cfg.logging_steps,
        save_strategy="steps" if getattr(train_cfg, "save_steps", 0) > 0 else "no",
        save_steps=max(1, getattr(train_cfg, "save_steps", 0)),
        save_total_limit=2,
        report_to=getattr(train_cfg, "report_to", "none"),  # the run option (pipeline: wandb under live_run_env)
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        **precision_args(precision_of(train_cfg)),
        disable_tqdm=not train_cfg.progress,
        dataloader_num_workers=0,
        remove_unused_columns=True,
        **trainer_args(getattr(train_cfg, "launch", None)),  # the process group's (fsdp, deepspeed, ddp_backend)
    )


# Every po-bench training field and the TRL (transformers TrainingArguments) field it sets; a field
# that is not here stops the run (:func:`check_train_fields`), so nothing set in a config is dropped.
# (SFT-stage fields on the left of "|" set the same TRL fields in the SFT stage.)
TRAIN_FIELD_MAP = {
    "sft_lr": "learning_rate",
    "sft_epochs": "num_train_epochs",
    "sft_batch_size": "per_device_train_batch_size",
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "max_steps": "max_steps",  # 0 -> -1 (no cap)
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",  # the ratio as a float in [0, 1) (transformers 5 has no warmup_ratio)
    "max_length": "max_length",
    "precision": "bf16",  # bf16-mixed -> bf16=True (autocast, fp32 weights); fp32 / bf16-pure -> False
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "progress": "disable_tqdm",  # run options
    "report_to": "report_to",
    # the launch (po_bench/training/launch.py): the process group's TrainingArguments (fsdp, deepspeed,
    # ddp_backend); world size and strategy are facts of the launch the trainer reads from its process
    # group, recorded in the spec; keep_checkpoints is applied by the stage after training
    "launch": "fsdp/fsdp_config/deepspeed/ddp_backend",
    "world_size": "(the process group)",
    "strategy": "(the process group)",
    "keep_checkpoints": "(the stage)",
    # the global batch, the same under every launch: the per-device batch and grad_accum derive from it and
    # the world size (specs.batch_fields)
    "global_batch_size": "per_device_train_batch_size/gradient_accumulation_steps",
}
PRECISIONS = ("fp32", "bf16-mixed", "bf16-pure")


def check_train_fields(train_cfg) -> None:
    """Raise ValueError naming a training field that no TRL field receives."""
    keys = train_cfg.keys() if hasattr(train_cfg, "keys") else vars(train_cfg).keys()
    for k in keys:
        if k not in TRAIN_FIELD_MAP:
            raise ValueError(
                f"train.{k} is not a training option po-bench passes to TRL "
                f"(options: {', '.join(sorted(TRAIN_FIELD_MAP))})"
            )


def precision_of(train_cfg) -> str:
    p = getattr(train_cfg, "precision", None) or "fp32"
    if p not in PRECISIONS:
        raise ValueError(f"train.precision={p!r}: allowed {', '.join(PRECISIONS)}")
    return p


def precision_args(precision: str) -> dict:
    """TRL's precision flags: bf16-mixed is autocast over fp32 weights and fp32 AdamW state."""
    return {"bf16": precision == "bf16-mixed", "fp16": False}


def cast_for_precision(model, precision: str):
    """The trained model's parameter dtype: fp32 for fp32 and bf16-mixed (fp32 master weights; the
    loaded dtype is only for generation), bf16 for bf16-pure."""
    want = torch.bfloat16 if precision == "bf16-pure" else torch.float32
    if model is not None and next(model.parameters()).dtype != want:
        log.info("training in %s: parameters cast to %s", precision, want)
        model.to(want)
    return model


def _make_config(cfg_cls, kwargs: dict, origin: dict | None = None):
    """``cfg_cls(**kwargs)``, refusing any key the TRL class does not have (nothing is dropped)."""
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    for k in kwargs:
        if k not in names:
            where = (origin or {}).get(k, k)
            raise ValueError(
                f"{where} has no field in TRL's {cfg_cls.__name__} (TRL field {k!r}); "
                "po-bench refuses to drop it silently"
            )
    return cfg_cls(**kwargs)


def build_sft_config(train_cfg, out_dir, seed: int, conversational: bool = False):
    """The TRL SFTConfig of the SFT stage (what was asked, field by field)."""
    cfg_cls, _ = _backend_classes("sft")
    check_train_fields(train_cfg)
    kwargs = _common_args(
        train_cfg, Path(out_dir), seed, train_cfg.sft_lr, train_cfg.sft_epochs, train_cfg.sft_batch_size
    )
    # prompt/completion data: loss on completions only; conversations ("messages"): TRL's default
    kwargs.update(
        max_length=train_cfg.max_length,
        packing=False,
        dataset_num_proc=None,
        completion_only_loss=None if conversational else True,
    )
    return _make_config(cfg_cls, kwargs)


def train_sft(model, tokenizer, examples: list[dict], train_cfg, out_dir: Path, seed: int, save_dir=None) -> dict:
    """Supervised fine-tuning on prompt/completion examples (loss on completions only).  With
    ``save_dir`` (a process group) the trainer saves the consolidated model there itself."""
    from datasets import Dataset

    _, trainer_cls = _backend_classes("sft")
    args = build_sft_config(train_cfg, out_dir, seed, conversational="messages" in examples[0])
    cast_for_precision(model, precision_of(train_cfg))
    mlog = _MetricsLog()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        callbacks=[mlog.callback],
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    res = {
        "train_loss_final": mlog.final_loss(),
        "history": mlog.history,
        "steps": trainer.state.global_step,
        **batch_facts(trainer),
    }
    if save_dir is not None:
        save_distributed(trainer, tokenizer, save_dir)
    return res


def train_reward_model(start_dir, tokenizer, pairs: list[dict], train_cfg, out_dir: Path, seed: int):
    """MADPO's first step: a reward model trained on the preference pairs with TRL's RewardTrainer
    (Bradley-Terry loss -log sig(r(x, y_w) - r(x, y_l))), a sequence-classification head (one output) on
    the checkpoint in ``start_dir``; then its margin r(x, y_w) - r(x, y_l) on every pair, in order.
    Returns (model, info) with ``info["margins"]``."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    check_train_fields(train_cfg)
    kwargs = _common_args(train_cfg, Path(out_dir), seed, train_cfg.lr, train_cfg.epochs, train_cfg.batch_size)
    kwargs["max_length"] = train_cfg.max_length
    args = _make_config(RewardConfig, kwargs)
    model = AutoModelForSequenceClassification.from_pretrained(str(start_dir), num_labels=1, dtype=torch.float32)
    cast_for_precision(model, precision_of(train_cfg))
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    mlog = _MetricsLog()
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[mlog.callback],
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
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
    from datasets import Dataset

    model, max_length = trainer.model, trainer.args.max_length
    trainer.args.max_length = None  # TRL's over-long filter off: every row gets its margin
    try:
        ds = trainer._prepare_dataset(Dataset.from_list(rows), trainer.processing_class, trainer.args, "margins")
    finally:
        trainer.args.max_length = max_length
    cut = slice(None, max_length)
    device = next(model.parameters()).device
    model.eval()
    out: list[float] = []
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
            rc, rr = scores.chunk(2)
            out += (rc - rr).tolist()
    return out


def shared_dataset(args, rows: list[dict], out_dir):
    """The training rows as a ``datasets.Dataset``.  Under a process group it is file-backed in the
    trainer folder (rank 0 writes it, the others read it), because TRL's DPO trainer hands the
    reference log-probs from rank 0 to the others through the dataset's cache folder, which an
    in-memory dataset keeps in a private temporary folder per process."""
    from datasets import Dataset, load_from_disk

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
    import torch.distributed as dist

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
    import re

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


def unpaired_view(pairs: list[dict]) -> list[dict]:
    """KTO's view of pairwise data: each chosen response desirable, each rejected undesirable."""
    out = []
    for p in pairs:
        out.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        out.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    return out


# Loss arguments that are po-bench's (converted here), not a TRL field of the same name.
# ref_model_sync_fraction: TR-DPO's sync interval tau as a fraction of the run's optimizer steps
# (-> ref_model_sync_steps), so that a short world run syncs as often, relative to its length, as the
# paper's runs; null to give tau in steps (ref_model_sync_steps) as the paper does.
POBENCH_LOSS_ARGS = {"ref_model_sync_fraction": "ref_model_sync_steps"}


def total_steps(train_cfg, n_rows: int, batch_size: int | None = None) -> int:
    """The optimizer steps TRL's Trainer will take on ``n_rows`` training rows (one process)."""
    import math

    if train_cfg.max_steps > 0:
        return int(train_cfg.max_steps)
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    bs = batch_size or train_cfg.batch_size
    batches = math.ceil(n_rows / (bs * world))
    per_epoch = max(1, math.ceil(batches / train_cfg.grad_accum))
    return max(1, math.ceil(per_epoch * float(train_cfg.epochs)))


def loss_trl_args(loss_cfg, train_cfg, n_rows: int | None) -> tuple[dict, dict]:
    """(TRL fields, their origin in the config) for a TRL-backed loss's ``args``."""
    out, origin = {}, {}
    for k, v in dict(loss_cfg.args).items():
        if k == "ref_model_sync_fraction":
            if v is None:
                continue
            if "ref_model_sync_steps" in dict(loss_cfg.args):
                raise ValueError(
                    "loss.args: set ref_model_sync_fraction or ref_model_sync_steps, not both "
                    "(ref_model_sync_fraction=null to give tau in steps)"
                )
            if n_rows is None and train_cfg.max_steps <= 0:
                raise ValueError("loss.args.ref_model_sync_fraction needs the run's length (the number of rows)")
            steps = total_steps(train_cfg, n_rows or 0)
            out["ref_model_sync_steps"] = max(1, round(float(v) * steps))
            origin["ref_model_sync_steps"] = f"loss.args.{k}"
            continue
        out[k], origin[k] = v, f"loss.args.{k}"
    return out, origin


def build_trl_config(
    loss_cfg,
    train_cfg,
    out_dir,
    seed: int,
    precompute_ref: bool = False,
    n_rows: int | None = None,
    ordered: bool = False,
):
    """The TRL config object a loss maps onto: training hyperparameters + the loss's beta and args.

    Every field is passed by name (:data:`TRAIN_FIELD_MAP`); a training field or loss argument with
    no TRL field raises ValueError naming it.  ``n_rows`` (training rows) sizes fractions of the run."""
    cfg_cls, _ = loss_classes(loss_cfg)
    check_train_fields(train_cfg)
    kwargs = _common_args(train_cfg, Path(out_dir), seed, loss_cfg.lr, train_cfg.epochs, train_cfg.batch_size)
    origin = {k: "train" for k in kwargs}
    kwargs["max_length"] = train_cfg.max_length
    origin["max_length"] = "train.max_length"
    if loss_cfg.backend not in ("pobench", "listwise"):  # po-bench functions: args are their hyperparameters
        largs, lorigin = loss_trl_args(loss_cfg, train_cfg, n_rows)
        kwargs.update(largs)
        origin.update(lorigin)
    kwargs["beta"] = loss_cfg.beta
    origin["beta"] = "loss.beta"
    if ordered:  # a curriculum (dataset.curriculum): batches in the dataset's order, transformers' documented
        # TrainingArguments.train_sampling_strategy="sequential" (a SequentialSampler instead of RandomSampler)
        kwargs["train_sampling_strategy"] = "sequential"
        origin["train_sampling_strategy"] = "dataset.curriculum"
    if loss_cfg.backend == "listwise":
        from po_bench.training.listwise import moving_anchor, step_inputs

        moving = moving_anchor(loss_cfg.function, dict(loss_cfg.args))
        if moving:  # ADPO's dynamic anchor: TRL's reference sync, the anchor <- a*policy + (1-a)*anchor each step
            kwargs.update(
                sync_ref_model=True, ref_model_mixup_alpha=float(loss_cfg.args["anchor_rate"]), ref_model_sync_steps=1
            )
            origin.update(
                sync_ref_model="loss.args.anchor",
                ref_model_mixup_alpha="loss.args.anchor_rate",
                ref_model_sync_steps="loss.args.anchor",
            )
        # the reference's k log-probs per row are computed once before training (none for a moving anchor, nor
        # for a loss with per-step inputs (TPO): its per-token reference log-probs are computed each batch)
        kwargs["precompute_ref_log_probs"] = not moving and not step_inputs(loss_cfg.function)
    elif loss_cfg.backend in ("dpo", "pobench"):
        # reference-free po-bench losses take the "precomputed" path with nothing to precompute,
        # so that TRL neither builds nor runs a reference model
        kwargs["precompute_ref_log_probs"] = (
            precompute_ref or (loss_cfg.backend == "pobench" and loss_cfg.reference_free) or fused_reference(loss_cfg)
        )
    if unpaired_loss(
        loss_cfg
    ):  # po-bench's unpaired losses: TRL's KTO trainer without its KL rows (the loss is replaced)
        kwargs["loss_type"] = "apo_zero_unpaired"
        origin["loss_type"] = f"loss.function={loss_cfg.function}"
    return _make_config(cfg_cls, kwargs, origin)


def peft_config(model_cfg):
    """peft's LoraConfig for ``model.lora.enabled``, else None."""
    lora = getattr(model_cfg, "lora", None) if model_cfg is not None else None
    if not lora or not lora.enabled:
        return None
    from peft import LoraConfig

    tm = lora.target_modules
    return LoraConfig(
        r=int(lora.r),
        lora_alpha=int(lora.alpha),
        lora_dropout=float(lora.dropout),
        target_modules=tm if isinstance(tm, str) else list(tm),
        task_type="CAUSAL_LM",
    )


def merged(model):
    """A trained peft model with its adapters merged (a plain model for saving / generation)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def train_preference(
    policy,
    ref_model,
    tokenizer,
    pairs: list[dict],
    loss_cfg,
    train_cfg,
    out_dir: Path,
    seed: int,
    ref_logps_cache: tuple[Callable[[], Any], Callable[[Any], None]] | None = None,
    model_cfg=None,
    save_dir=None,
    ordered: bool = False,
    guide_model=None,
    pair_scores: list[float] | None = None,
    source_models: list | None = None,
) -> dict:
    """Run the loss's TRL trainer on preference pairs; returns the logged history and final loss.

    ``ref_logps_cache`` is a (load, save) pair used by the DPO backend to read/write the reference
    log-probs of the training set through po-bench's artifact store instead of recomputing them.
    ``ordered``: train on the pairs in their order (a curriculum), not shuffled.
    ``guide_model``: a guided loss's guide policy (TGDPO: a trained DPO policy), scored per token.
    ``pair_scores``: one score per pair (po_bench.training.pair_scores) for a loss with per-pair weights;
    it travels with its pair through TRL's data pipeline as the ``pair_score`` column.
    ``source_models``: InfiFPO's source models (loss.args.sources), fused into its reference.
    """

    backend = loss_cfg.backend
    per_pair = needs_pair_scores(loss_cfg)
    if per_pair and (pair_scores is None or len(pair_scores) != len(pairs)):
        raise ValueError(
            f"loss={loss_cfg.name} weights each pair: needs one pair score per pair "
            f"(got {'none' if pair_scores is None else len(pair_scores)} for {len(pairs)} pairs)"
        )
    cfg_cls, trainer_cls = loss_classes(loss_cfg)
    needs_ref = not loss_cfg.reference_free
    unp = unpaired_loss(loss_cfg)
    if unp:  # BCO: unpaired rows, the reference scored each step (the store's reference artifact is per pair)
        ref_logps_cache = None
    if fused_reference(loss_cfg) and not source_models:
        raise ValueError(f"loss={loss_cfg.name} needs its source models (loss.args.sources)")
    if dict(loss_cfg.args).get("sync_ref_model"):  # TR-DPO: the reference moves, nothing to cache
        ref_logps_cache = None
    token = backend == "pobench" and _token_level(loss_cfg.function)
    if token:  # per-token reference log-probs each step (TRL precomputes only sums)
        ref_logps_cache = None
        if _guided(loss_cfg.function) and guide_model is None:
            raise ValueError(
                f"loss={loss_cfg.name} needs its guide policy (loss.guide={getattr(loss_cfg, 'guide', '')})"
            )
    kto_rows = None
    if ordered and (backend == "kto" or unp):
        raise ValueError(
            f"loss={loss_cfg.name}: KTO reorders its unpaired rows; a curriculum order needs a paired loss"
        )
    if unp:
        kto_rows = pairs if "label" in pairs[0] else unpaired_view(pairs)
    elif backend == "kto":
        kto_rows = kto_order(pairs if "label" in pairs[0] else unpaired_view(pairs), int(train_cfg.batch_size), seed)
    args = build_trl_config(
        loss_cfg,
        train_cfg,
        out_dir,
        seed,
        precompute_ref=ref_logps_cache is not None and needs_ref,
        n_rows=len(kto_rows) if kto_rows is not None else len(pairs),
        ordered=ordered,
    )
    cast_for_precision(policy, precision_of(train_cfg))
    peft = peft_config(model_cfg)
    extra = {"peft_config": peft} if peft is not None else {}
    if peft is not None and backend in ("dpo", "pobench", "listwise", "kto"):
        ref_model = None  # with LoRA the reference is the base model with adapters disabled
    mlog = _MetricsLog()
    rows = (
        [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
        if "chosen" in pairs[0]
        else None
    )
    if backend == "listwise":
        rows = list_view(pairs)
    if rows is None and backend != "kto" and not unp:
        raise ValueError(f"loss={loss_cfg.name} needs paired data (prompt/chosen/rejected); got unpaired rows")
    if per_pair:
        rows = [{**r, PAIR_SCORE: float(v)} for r, v in zip(rows, pair_scores)]

    if unp:
        trainer_cls = _unpaired_trainer(trainer_cls, loss_cfg.function, function_args(loss_cfg))
        trainer = trainer_cls(
            model=policy,
            ref_model=ref_model,
            args=args,
            train_dataset=shared_dataset(args, kto_rows, out_dir),
            processing_class=tokenizer,
            callbacks=[mlog.callback],
            **extra,
        )
    elif backend in ("dpo", "pobench"):
        trainer_cls = _cached_dpo_trainer(trainer_cls, ref_logps_cache if needs_ref else None)
        if "step" in pairs[0]:  # Step-DPO's one-step completions: the response goes on after them, no <eos>
            trainer_cls = _open_completion_trainer(trainer_cls)
        if backend == "pobench":
            trainer_cls = _pobench_trainer(
                trainer_cls, loss_cfg.function, function_args(loss_cfg), needs_ref, guide=guide_model
            )
            if fused_reference(loss_cfg):
                trainer_cls = _fused_reference_trainer(trainer_cls, source_models)
            if per_pair:
                trainer_cls = _pair_score_trainer(trainer_cls)
        trainer = trainer_cls(
            model=policy,
            ref_model=ref_model,
            args=args,
            train_dataset=shared_dataset(args, rows, out_dir),
            processing_class=tokenizer,
            callbacks=[mlog.callback],
            **extra,
        )
    elif backend == "listwise":
        trainer_cls = _listwise_trainer(
            trainer_cls,
            loss_cfg.function,
            dict(loss_cfg.args),
            needs_ref,
            None if moving_reference(backend, loss_cfg.function, dict(loss_cfg.args)) else ref_logps_cache,
        )
        trainer = trainer_cls(
            model=policy,
            ref_model=ref_model,
            args=args,
            train_dataset=shared_dataset(args, rows, out_dir),
            data_collator=ListCollator(
                tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                args.max_length,
            ),
            processing_class=tokenizer,
            callbacks=[mlog.callback],
            **extra,
        )
    elif backend in ("cpo", "orpo"):
        trainer = trainer_cls(
            model=policy,
            args=args,
            train_dataset=shared_dataset(args, rows, out_dir),
            processing_class=tokenizer,
            callbacks=[mlog.callback],
            **extra,
        )
    elif backend == "kto":
        trainer = trainer_cls(
            model=policy,
            ref_model=ref_model,
            args=args,
            train_dataset=shared_dataset(args, kto_rows, out_dir),
            processing_class=tokenizer,
            callbacks=[mlog.callback],
            **extra,
        )
        kto_matched = kl_matched_rows(trainer.train_dataset, int(train_cfg.batch_size))
        if kto_matched:
            log.warning(
                "KTO: %d of %d KL rows pair a completion with its own prompt (too few distinct prompts "
                "for fully mismatched KL pairs)",
                kto_matched,
                len(trainer.train_dataset),
            )
    else:
        raise ValueError(f"backend {backend!r} has no preference stage")
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    if peft is not None:
        policy = trainer.model
    params = param_facts(trainer.model_wrapped)
    if save_dir is not None:
        save_distributed(trainer, tokenizer, save_dir)
    return {
        "model": policy,
        "train_loss_final": mlog.final_loss(),
        "history": mlog.history,
        "steps": trainer.state.global_step,
        **batch_facts(trainer),
        "params": params,
        "precision": precision_of(train_cfg),
        **({"kto_kl_matched_rows": kto_matched} if backend == "kto" else {}),
        "resumed": bool(mlog.history and mlog.history[0].get("step", 0) > train_cfg.logging_steps),
    }


PAIR_SCORE = "pair_score"  # the per-pair score's column in the training rows and key in each batch


def needs_pair_scores(loss_cfg) -> bool:
    """Whether the loss weights each pair by a score computed before training (LossSpec.per_pair)."""
    if loss_cfg.backend != "pobench":
        return False
    from po_bench.training.losses import LOSSES

    spec = LOSSES.get(loss_cfg.function)
    return bool(spec is not None and spec.per_pair)


def _pair_score_trainer(base_cls):
    """DPOTrainer that carries the ``pair_score`` column to the loss.  TRL 1.16's DPO pipeline keeps an
    extra column through tokenisation and the over-long filter (``Dataset.map`` keeps columns) but drops
    it twice after: ``remove_unused_columns`` keeps only its signature columns, and its
    DataCollatorForPreference builds the batch from ids and reference log-probs only.  Here the column
    joins the signature columns, the collator is wrapped to add it to the batch (a float tensor, in the
    batch's row order), and the reference log-prob pass, which hands the batch to the model, drops it."""

    class PairScoreTrainer(base_cls):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            inner = self.data_collator

            def collate(examples):
                batch = inner(examples)
                batch[PAIR_SCORE] = torch.tensor([float(e[PAIR_SCORE]) for e in examples], dtype=torch.float64)
                return batch

            self.data_collator = collate

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            if PAIR_SCORE not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, PAIR_SCORE]

        def compute_ref_log_probs(self, model, inputs):
            return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != PAIR_SCORE})

    return PairScoreTrainer


def list_view(rows: list[dict]) -> list[dict]:
    """The listwise trainer's rows: rated lists as they are (prompt, responses best first, scores, and any
    per-response extras); a preference pair is a list of two, scores (1, 0)."""
    if "responses" in rows[0]:
        return [{k: v for k, v in r.items() if k not in ("gold", "ranks", "row")} for r in rows]
    return [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]], "scores": [1.0, 0.0]} for p in rows]


def kto_order(rows: list[dict], batch_size: int, seed: int) -> list[dict]:
    """KTO's unpaired rows in an order where every KL row is a truly mismatched pair.

    TRL builds KTO's KL completions by rotating the completions one row within each chunk of
    ``batch_size`` consecutive rows (its batches: KTO samples sequentially): row i is scored with the
    completion of row i-1, the chunk's first row with its last.  The KTO paper's reference point z0 is
    estimated from completions of *other* prompts; the unpaired view puts each prompt's desirable and
    undesirable rows side by side, so half of TRL's KL rows would be matched pairs.  Here the rows are
    shuffled (seeded) and rearranged so that no row's predecessor within its chunk has the same
    prompt; a last chunk of one row (it would be its own KL row) is left out."""
    import random

    rows = list(rows)
    random.Random(seed).shuffle(rows)
    if len(rows) % batch_size == 1 and len(rows) > 1:
        log.info("KTO: one row left out (a last batch of one row has no mismatched KL completion)")
        rows = rows[:-1]
    n, B = len(rows), batch_size
    for i in range(n):
        start = i - i % B
        last = i == min(start + B, n) - 1

        def fits(prompt) -> bool:  # the row at i may have this prompt
            return (i == start or prompt != rows[i - 1]["prompt"]) and (not last or prompt != rows[start]["prompt"])

        if fits(rows[i]["prompt"]):
            continue
        for j in range(i + 1, n):  # swap in a later row that fits here
            if fits(rows[j]["prompt"]):
                rows[i], rows[j] = rows[j], rows[i]
                break
    return rows


def kl_matched_rows(dataset, batch_size: int) -> int:
    """How many of TRL's KL rows (the prompt of row i with the completion of row i-1 in its chunk)
    share the prompt of the completion's own row: 0 when every KL pair is mismatched."""
    prompts = dataset["prompt_ids"] if "prompt_ids" in dataset.column_names else dataset["prompt"]
    n, matched = len(prompts), 0
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        for i in range(start, end):
            j = i - 1 if i > start else end - 1
            matched += int(prompts[i] == prompts[j])  # a chunk of one row is its own KL row
    return matched


def _cached_dpo_trainer(base_cls, cache):
    """DPOTrainer whose reference log-prob precomputation goes through po-bench's store."""
    if cache is None:
        return base_cls
    load, save = cache

    class CachedRefDPOTrainer(base_cls):
        def _precompute_ref_logps(self, dataset, name, batch_size):
            if name == "train":
                cached = load()
                if cached is not None and len(cached["ref_chosen_logps"]) == len(dataset):
                    log.info("reference log-probs: loaded from the artifact store")
                    return dataset.add_column("ref_chosen_logps", cached["ref_chosen_logps"]).add_column(
                        "ref_rejected_logps", cached["ref_rejected_logps"]
                    )
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            if name == "train" and self.is_world_process_zero():  # one writer under a process group
                save(
                    {
                        "ref_chosen_logps": [float(x) for x in out["ref_chosen_logps"]],
                        "ref_rejected_logps": [float(x) for x in out["ref_rejected_logps"]],
                    }
                )
            return out

    return CachedRefDPOTrainer


def _open_completion_trainer(base_cls):
    """DPOTrainer for completions that do not end the response (Step-DPO's one-step completions, pairs with a
    ``step``): TRL appends <eos> to every completion; it is removed again after tokenisation, as the Step-DPO
    authors' trainer leaves it out (dvlab-research/Step-DPO stepdpo_trainer.py: the EOS lines commented out),
    so the step is scored as a continuation, not as the end of the answer."""

    class OpenCompletionDPOTrainer(base_cls):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            ds = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            eos = self._tokenizer.eos_token_id

            def strip(ex):
                return {
                    k: ex[k][:-1] if len(ex[k]) > 1 and ex[k][-1] == eos else ex[k]
                    for k in ("chosen_ids", "rejected_ids")
                }

            return ds.map(strip)

    return OpenCompletionDPOTrainer


def _token_level(function: str) -> bool:
    from po_bench.training.losses import token_level

    return token_level(function)


def _guided(function: str) -> bool:
    from po_bench.training.losses import guided

    return guided(function)


def _token_logps(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token completion log-probs (0 off the completion) and the completion mask of every sequence of a
    batch (TRL's collated ``input_ids`` / ``attention_mask`` / ``completion_mask``), next-token aligned."""
    ids, attn = inputs["input_ids"], inputs["attention_mask"]
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
    tok = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = inputs["completion_mask"][:, 1:].to(tok.dtype)
    return tok * mask, mask


def _sequence_logps(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion-token log-probs and completion token counts of every sequence of a batch."""
    tok, mask = _token_logps(model, inputs)
    return tok.sum(1), mask.sum(1)


def _pobench_trainer(base_cls, function: str, hparams: dict, needs_ref: bool, guide=None):
    """DPOTrainer whose loss is one of po-bench's pure functions (po_bench.training.losses).

    TRL's data pipeline (tokenisation, collation, reference precompute, logging) is reused; only
    the loss is replaced: per-sequence statistics are computed here and handed to the function.
    Token-level losses (``losses.TOKEN_LOSSES``, TGDPO) get per-token statistics instead
    (:class:`losses.TokenStats`: policy, reference and ``guide`` log-prob of every completion token).
    """
    from po_bench.training.losses import LOSSES, TOKEN_LOSSES, PairStats, TokenStats, running_mean_update

    if function in TOKEN_LOSSES:
        return _token_trainer(base_cls, TOKEN_LOSSES[function], hparams, guide, TokenStats)
    spec = LOSSES[function]

    class PoBenchLossTrainer(base_cls):
        if not needs_ref:

            def _precompute_ref_logps(self, dataset, name, batch_size):
                return dataset  # reference-free: no reference log-probs at all

        def _sequence_logps(self, model, inputs):
            return _sequence_logps(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            logps, lens = self._sequence_logps(model, inputs)
            c, r = logps.chunk(2)
            nc, nr = lens.chunk(2)
            rc = rr = None
            if needs_ref:
                if "ref_chosen_logps" in inputs:
                    rc, rr = inputs["ref_chosen_logps"].to(c.dtype), inputs["ref_rejected_logps"].to(c.dtype)
                else:
                    with torch.no_grad():
                        ref = self.ref_model if self.ref_model is not None else model
                        ref_logps, _ = self._sequence_logps(ref, inputs)
                    rc, rr = ref_logps.chunk(2)
            stats = PairStats(c, r, nc, nr, rc, rr)
            state = {}
            m = self._metrics[mode]
            if "delta" in spec.state:  # BCO: the running mean of the rewards, updated before the loss
                rewards = self.accelerator.gather(
                    self.beta * torch.cat([stats.chosen_logratio, stats.rejected_logratio]).detach()
                )
                if mode == "train":
                    self._pob_delta = running_mean_update(*getattr(self, "_pob_delta", (0.0, 0)), rewards)
                state["delta"] = getattr(self, "_pob_delta", (0.0, 0))[0]
                m["bco/delta"].append(state["delta"])
            if spec.init_state is not None:  # a loss with running state (beta-DPO): held here, pure in losses.py
                if getattr(self, "_pob_state", None) is None:
                    self._pob_state = spec.init_state(self.args.seed)
                state.update(self._pob_state)
            if spec.per_pair:  # each pair's score, carried through TRL's data pipeline (_pair_score_trainer)
                state[spec.per_pair[0]] = inputs[PAIR_SCORE].to(device=c.device)
            out = spec.fn(stats, beta=self.beta, **hparams, **state)
            if out.state is not None and mode == "train":  # eval batches read the state, never move it
                self._pob_state = out.state
            for k, v in (out.logs or {}).items():
                m[k].append(float(v))
            loss = out.losses.mean()
            m["rewards/chosen"].append(out.chosen_rewards.mean().item())
            m["rewards/rejected"].append(out.rejected_rewards.mean().item())
            m["rewards/margins"].append((out.chosen_rewards - out.rejected_rewards).mean().item())
            m["rewards/accuracies"].append((out.chosen_rewards > out.rejected_rewards).float().mean().item())
            m["logps/chosen"].append(c.detach().mean().item())
            m["logps/rejected"].append(r.detach().mean().item())
            return (loss, None) if return_outputs else loss

    return PoBenchLossTrainer


def _token_trainer(base_cls, spec, hparams: dict, guide, token_stats_cls):
    """The token-level path of :func:`_pobench_trainer`: per-token log-probs of the policy, the reference (each
    step, no precomputed sums) and the guide policy (frozen, no gradient), handed to a pure function."""

    class PoBenchTokenLossTrainer(base_cls):
        def _token_logps(self, model, inputs):
            return _token_logps(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            tok, mask = self._token_logps(model, inputs)
            with torch.no_grad():
                ref = self.ref_model if self.ref_model is not None else model
                ref_tok, _ = self._token_logps(ref, inputs)
                guide_tok = None
                if guide is not None:
                    if getattr(self, "_pob_guide_on", None) is None:  # once: the guide on this process's device
                        self._pob_guide_on = guide.to(self.accelerator.device).eval()
                    guide_tok, _ = self._token_logps(self._pob_guide_on, inputs)
            c, r = tok.chunk(2)
            mc, mr = mask.chunk(2)
            rc, rr = ref_tok.chunk(2)
            gc, gr = guide_tok.chunk(2) if guide_tok is not None else (None, None)
            out = spec.fn(token_stats_cls(c, r, mc, mr, rc, rr, gc, gr), beta=self.beta, **hparams)
            m = self._metrics[mode]
            for k, v in (out.logs or {}).items():
                m[k].append(float(v))
            m["rewards/chosen"].append(out.chosen_rewards.mean().item())
            m["rewards/rejected"].append(out.rejected_rewards.mean().item())
            m["rewards/margins"].append((out.chosen_rewards - out.rejected_rewards).mean().item())
            m["rewards/accuracies"].append((out.chosen_rewards > out.rejected_rewards).float().mean().item())
            m["logps/chosen"].append(c.detach().sum(-1).mean().item())
            m["logps/rejected"].append(r.detach().sum(-1).mean().item())
            loss = out.losses.mean()
            return (loss, None) if return_outputs else loss

    return PoBenchTokenLossTrainer


# ---------------------------------------------------------------------------------------------
# listwise losses (po_bench.training.listwise): k responses per prompt
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ListCollator:
    """Rated lists -> one padded batch of B*K sequences (row b's K responses at b*K .. b*K+K-1; K the
    longest list of the batch).  A list shorter than K is padded with placeholder sequences (prompt + one
    pad token, no completion tokens) that ``list_mask`` marks False.  Truncation keeps the start, as TRL's
    preference collator.  ``scores``, ``ref_logps`` and any per-response ``extras`` come as [B, K]."""

    pad_token_id: int
    max_length: int | None = None
    extras: tuple = ()

    def __call__(self, examples: list[dict]) -> dict:
        B, K = len(examples), max(len(e["response_ids"]) for e in examples)
        seqs, comp, real = [], [], []
        for e in examples:
            p = list(e["prompt_ids"])
            for j in range(K):
                ok = j < len(e["response_ids"])
                r = list(e["response_ids"][j]) if ok else [self.pad_token_id]
                ids, cm = p + r, [0] * len(p) + [int(ok)] * len(r)
                if self.max_length is not None:
                    ids, cm = ids[: self.max_length], cm[: self.max_length]
                seqs.append(ids)
                comp.append(cm)
                real.append(ok)
        T = max(len(x) for x in seqs)
        out = {
            "input_ids": torch.full((B * K, T), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((B * K, T), dtype=torch.long),
            "completion_mask": torch.zeros((B * K, T), dtype=torch.long),
            "list_mask": torch.tensor(real, dtype=torch.bool).view(B, K),
        }
        for i, (ids, cm) in enumerate(zip(seqs, comp)):
            out["input_ids"][i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            out["attention_mask"][i, : len(ids)] = 1
            out["completion_mask"][i, : len(cm)] = torch.tensor(cm, dtype=torch.long)

        def padded(key):
            t = torch.zeros((B, K), dtype=torch.float32)
            for b, e in enumerate(examples):
                t[b, : len(e[key])] = torch.tensor([float(x) for x in e[key]], dtype=torch.float32)
            return t

        for key in ("scores", "ref_logps", *self.extras):
            if key in examples[0]:
                out[key] = padded(key)
        if "step_ids" in examples[0]:  # per-token step index of each completion token (0: no step), [B*K, T]
            out["step_ids"] = torch.zeros((B * K, T), dtype=torch.long)
            for b, e in enumerate(examples):
                n_p = len(e["prompt_ids"])
                for j, st in enumerate(e["step_ids"]):
                    st = list(st)[: max(T - n_p, 0)]
                    out["step_ids"][b * K + j, n_p : n_p + len(st)] = torch.tensor(st, dtype=torch.long)
        return out


def _listwise_trainer(base_cls, function: str, hparams: dict, needs_ref: bool, cache=None):
    """TRL's DPOTrainer (model and reference handling, LoRA, logging, the reference sync of a moving anchor)
    over rated lists: its own tokenisation (TRL's, per response), :class:`ListCollator`, a reference pass
    that stores k log-probs per row (through po-bench's store when ``cache`` = (load, save) is given), and
    the loss a pure function of :mod:`po_bench.training.listwise` over :class:`ListStats`."""
    import contextlib

    from accelerate.utils import is_peft_model
    from trl.data_utils import common_prefix_length

    from po_bench.training.listwise import LISTWISE, ListStats, fn_args

    spec = LISTWISE[function]
    kwargs = fn_args(function, hparams)

    class ListwiseTrainer(base_cls):
        def __init__(self, *a, data_collator=None, **kw):
            if data_collator is not None:
                data_collator.extras = tuple(spec.extras)
            super().__init__(*a, data_collator=data_collator, **kw)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            eos = self._tokenizer.eos_token

            def tok(x, **kw):
                if isinstance(x, list):  # conversational: the chat template, as TRL
                    return processing_class.apply_chat_template(x, tokenize=True, return_dict=True, **kw)["input_ids"]
                return processing_class(text=x)["input_ids"]

            def tokenize(ex):
                conv = isinstance(ex["prompt"], list)
                prompt_ids = tok(ex["prompt"], add_generation_prompt=True) if conv else tok(ex["prompt"])
                full = [
                    tok(ex["prompt"] + y) if conv else tok(ex["prompt"] + (y if y.endswith(eos) else y + eos))
                    for y in ex["responses"]
                ]
                n = min(common_prefix_length(prompt_ids, f) for f in full)  # where the completions start
                out = {"prompt_ids": prompt_ids[:n], "response_ids": [f[n:] for f in full]}
                if spec.steps:  # each completion token's step (1..m; 0 after the last step, e.g. <eos>)
                    if conv:
                        raise ValueError(f"loss.function={function}: step spans need plain-text prompts")
                    ids = []
                    for y, r, ends in zip(ex["responses"], out["response_ids"], ex["step_ends"]):
                        bounds = [min(max(len(tok(ex["prompt"] + y[:e])) - n, 0), len(r)) for e in ends]
                        st, lo = [0] * len(r), 0
                        for k, hi in enumerate(bounds, start=1):
                            st[lo:hi] = [k] * max(hi - lo, 0)
                            lo = max(lo, hi)
                        ids.append(st)
                    out["step_ids"] = ids
                return out

            dataset = dataset.map(tokenize)
            if args.max_length is not None:  # a prompt that fills max_length leaves no completion token
                dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < args.max_length)
            return dataset

        def _set_signature_columns_if_needed(self):
            if self._signature_columns is None:
                self._signature_columns = [
                    "prompt_ids",
                    "response_ids",
                    "scores",
                    "ref_logps",
                    *spec.extras,
                    *(["step_ids"] if spec.steps else []),
                ]

        def _reference(self, model):
            """The reference model and the context it runs in (LoRA: the policy with its adapters off)."""
            if self.ref_model is None and is_peft_model(self.model):
                return model, self.accelerator.unwrap_model(self.model).disable_adapter()
            return (self.ref_model if self.ref_model is not None else model), contextlib.nullcontext()

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if not needs_ref or spec.steps:  # per-step losses: per-token reference log-probs each batch
                return dataset
            if cache is not None and name == "train":
                cached = cache[0]()
                if cached is not None and len(cached["ref_logps"]) == len(dataset):
                    log.info("reference log-probs (lists): loaded from the artifact store")
                    return dataset.add_column("ref_logps", cached["ref_logps"])
            ref, ctx = self._reference(self.model)
            device = next(ref.parameters()).device
            out: list[list[float]] = []
            with torch.no_grad(), ctx:
                for start in range(0, len(dataset), batch_size):
                    rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                    batch = {k: v.to(device) for k, v in self.data_collator(rows).items()}
                    logps, _ = _sequence_logps(ref, batch)
                    logps = logps.view(batch["list_mask"].shape).float().cpu()
                    out += [logps[b, : len(r["response_ids"])].tolist() for b, r in enumerate(rows)]
            if cache is not None and name == "train" and self.is_world_process_zero():
                cache[1]({"ref_logps": out})
            return dataset.add_column("ref_logps", out)

        def _step_stats(self, model, inputs, lm):
            """Per-step inputs (TPO): each step's mean token log-ratio and mean last-layer hidden state
            (the policy's, with gradient), [B, K, S(, H)].  Steps past the list's shortest response's last
            step are merged into it, as the authors' dataset clamps step indices to the list's minimum."""
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            out = model(input_ids=ids, attention_mask=attn, use_cache=False, output_hidden_states=True)
            tok = torch.log_softmax(out.logits[:, :-1].float(), -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            hid = out.hidden_states[-1][:, 1:].float()  # token t's state, aligned with its log-prob
            rm, ctx = self._reference(model)
            with torch.no_grad(), ctx:
                rl = rm(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
                ref_tok = torch.log_softmax(rl, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            cm = inputs["completion_mask"][:, 1:].to(tok.dtype)
            st = inputs["step_ids"][:, 1:] * cm.long()
            big = st.new_full((), 1 << 30)
            last = torch.where(lm, st.amax(1).view(lm.shape), big).amin(-1, keepdim=True)  # [B, 1]
            st = torch.minimum(st, last.expand(lm.shape).reshape(-1, 1))
            S = max(int(st.max()), 1)
            oh = (st.unsqueeze(-1) == torch.arange(1, S + 1, device=st.device)).to(tok.dtype)  # [N, T-1, S]
            cnt = oh.sum(1)
            lr = ((tok - ref_tok) * cm).unsqueeze(-1)
            m = (oh * lr).sum(1) / cnt.clamp(min=1)
            e = torch.einsum("nts,nth->nsh", oh, hid) / cnt.clamp(min=1).unsqueeze(-1)
            B, K = lm.shape
            extra = {
                "step_logratio": m.view(B, K, S),
                "step_hidden": e.view(B, K, S, -1),
                "step_mask": (cnt > 0).view(B, K, S),
            }
            return ((tok * cm).sum(1).view(B, K), cm.sum(1).view(B, K), (ref_tok * cm).sum(1).view(B, K), extra)

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            lm = inputs["list_mask"].bool()
            step_extra = {}
            if spec.steps:
                logps, lens, ref, step_extra = self._step_stats(model, inputs, lm)
            else:
                logps, lens = _sequence_logps(model, inputs)
                logps, lens = logps.view(lm.shape), lens.view(lm.shape)
            ref = ref if spec.steps else None
            if needs_ref and not spec.steps:
                if "ref_logps" in inputs:
                    ref = inputs["ref_logps"].to(logps.dtype)
                else:  # a moving anchor (or no precompute): the reference's log-probs now
                    rm, ctx = self._reference(model)
                    with torch.no_grad(), ctx:
                        ref = _sequence_logps(rm, inputs)[0].view(lm.shape)
            scores = inputs["scores"].to(logps.dtype)
            stats = ListStats(
                logps, ref, lens, scores, lm, {**{n: inputs[n].to(logps.dtype) for n in spec.extras}, **step_extra}
            )
            state = {}
            if spec.init_state is not None:  # a loss with running state: held here, pure in listwise.py
                if getattr(self, "_pob_state", None) is None:
                    self._pob_state = spec.init_state(self.args.seed)
                state.update(self._pob_state)
            out = spec.fn(stats, beta=self.beta, **kwargs, **state)
            if out.state is not None and mode == "train":
                self._pob_state = out.state
            m = self._metrics[mode]
            for k, v in (out.logs or {}).items():
                m[k].append(float(v))
            # the best and the worst response of each list (by score) as "chosen" / "rejected"
            r = out.rewards.detach()
            best = scores.masked_fill(~lm, float("-inf")).argmax(-1, keepdim=True)
            worst = scores.masked_fill(~lm, float("inf")).argmin(-1, keepdim=True)
            rc, rr = r.gather(-1, best).squeeze(-1), r.gather(-1, worst).squeeze(-1)
            m["rewards/chosen"].append(rc.mean().item())
            m["rewards/rejected"].append(rr.mean().item())
            m["rewards/margins"].append((rc - rr).mean().item())
            m["rewards/accuracies"].append((rc > rr).float().mean().item())
            ordered = (scores.unsqueeze(-1) > scores.unsqueeze(-2)) & lm.unsqueeze(-1) & lm.unsqueeze(-2)
            agree = (r.unsqueeze(-1) > r.unsqueeze(-2)) & ordered
            m["rewards/pair_accuracy"].append((agree.sum() / ordered.sum().clamp(min=1)).item())
            m["logps/chosen"].append(logps.detach().gather(-1, best).mean().item())
            m["logps/rejected"].append(logps.detach().gather(-1, worst).mean().item())
            m["list/size"].append(lm.sum(-1).float().mean().item())
            loss = out.losses.mean()
            return (loss, None) if return_outputs else loss

    return ListwiseTrainer


# ---------------------------------------------------------------------------------------------
# po-bench's unpaired losses (BCO) and fused references (InfiFPO)
# ---------------------------------------------------------------------------------------------


def unpaired_loss(loss_cfg) -> bool:
    """Whether the loss is one of po-bench's unpaired losses (losses.UNPAIRED_LOSSES: BCO), run by a
    KTO-based trainer on the unpaired view (KTO's KL rows off)."""
    from po_bench.training.losses import unpaired

    return loss_cfg.backend == "pobench" and unpaired(loss_cfg.function)


def fused_reference(loss_cfg) -> bool:
    """Whether the loss replaces the reference by a fusion of source models (InfiFPO: loss.args.sources)."""
    from po_bench.training.losses import LOSSES

    spec = LOSSES.get(loss_cfg.function) if loss_cfg.backend == "pobench" else None
    return bool(spec is not None and "sources" in spec.stage_args)


def loss_classes(loss_cfg):
    """The TRL (config, trainer) classes a loss runs on: its backend's, KTO's for an unpaired po-bench loss."""
    return _backend_classes("kto" if unpaired_loss(loss_cfg) else loss_cfg.backend)


def function_args(loss_cfg) -> dict:
    """A po-bench loss's hyperparameters: loss.args without the stage's arguments (InfiFPO's sources)."""
    from po_bench.training.losses import LOSSES, TOKEN_LOSSES, UNPAIRED_LOSSES

    spec = {**LOSSES, **TOKEN_LOSSES, **UNPAIRED_LOSSES}.get(loss_cfg.function)
    drop = spec.stage_args if spec is not None else ()
    return {k: v for k, v in dict(loss_cfg.args).items() if k not in drop}


def _unpaired_trainer(base_cls, function: str, hparams: dict):
    """TRL's KTOTrainer (KL rows off: loss_type apo_zero_unpaired) whose loss is one of po-bench's unpaired
    functions (losses.UNPAIRED_LOSSES) over per-sequence statistics of each row (:class:`losses.UnpairedStats`).
    TRL's tokenisation and collation are reused; the reference log-probs are computed each step (no store
    cache: the unpaired rows are not the pairs the DPO reference artifact holds).  BCO's running mean delta
    is held here, over all processes (a gathered sum and count per step)."""
    from po_bench.training.losses import UNPAIRED_LOSSES, UnpairedStats, running_mean_update

    spec = UNPAIRED_LOSSES[function]

    class PoBenchUnpairedTrainer(base_cls):
        def _sequence_logps(self, model, inputs):
            return _sequence_logps(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            logps, lens = self._sequence_logps(model, inputs)
            if "ref_logps" in inputs:
                ref = inputs["ref_logps"].to(logps.dtype)
            else:
                with torch.no_grad():
                    ref, _ = self._sequence_logps(self.ref_model if self.ref_model is not None else model, inputs)
            labels = inputs["label"].to(device=logps.device, dtype=torch.bool)
            stats = UnpairedStats(logps, ref, lens, labels)
            state, m = {}, self._metrics[mode]
            if "delta" in spec.state:  # BCO: the running mean of the rewards (all rows), updated before the loss
                r = (self.beta * stats.logratio).detach().double()
                tot = self.accelerator.gather(torch.stack([r.sum(), r.new_tensor(float(r.numel()))]).unsqueeze(0))
                tot = tot.reshape(-1, 2).sum(0)
                if mode == "train":
                    self._pob_delta = running_mean_update(
                        *getattr(self, "_pob_delta", (0.0, 0)), (tot[0] / tot[1].clamp(min=1)).reshape(1)
                    )
                state["delta"] = getattr(self, "_pob_delta", (0.0, 0))[0]
                m["bco/delta"].append(state["delta"])
            out = spec.fn(stats, beta=self.beta, **hparams, **state)
            for k, v in (out.logs or {}).items():
                m[k].append(float(v))
            loss = out.losses.mean()
            if out.chosen_rewards.numel():
                m["rewards/chosen"].append(out.chosen_rewards.mean().item())
                m["logps/chosen"].append(logps[labels].detach().mean().item())
            if out.rejected_rewards.numel():
                m["rewards/rejected"].append(out.rejected_rewards.mean().item())
                m["logps/rejected"].append(logps[~labels].detach().mean().item())
            if out.chosen_rewards.numel() and out.rejected_rewards.numel():
                m["rewards/margins"].append(out.chosen_rewards.mean().item() - out.rejected_rewards.mean().item())
            return (loss, None) if return_outputs else loss

    return PoBenchUnpairedTrainer


def source_sequence_logps(trainer, model, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of completion log-probs, completion tokens) of every row's chosen and rejected completion under
    ``model``, with the trainer's own tokenisation and collation (rows in dataset order; shapes (2, n)).
    Every process scores every row (no sharding), so every process holds the same values."""
    from torch.utils.data import DataLoader

    device = trainer.accelerator.device
    model = model.to(device).eval()
    cols = [c for c in ("prompt_ids", "chosen_ids", "rejected_ids") if c in dataset.column_names]
    loader = DataLoader(
        dataset.select_columns(cols), batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False
    )
    sums, lens = [], []
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            s, n = (x.cpu().double() for x in _sequence_logps(model, batch))
            sums.append(torch.stack(s.chunk(2)))
            lens.append(torch.stack(n.chunk(2)))
    return torch.cat(sums, 1), torch.cat(lens, 1)


def _fused_reference_trainer(base_cls, sources: list):
    """A DPO-family trainer whose reference log-probs are InfiFPO's fused source model
    (losses.fuse_reference): the initial pivot's log-probs (TRL's reference pass, through the store's
    cache) and each source model's, length-normalised, clipped and fused per response; the fused
    length-normalised log-prob times the completion length replaces ``ref_*_logps`` of each training row."""
    from po_bench.training.losses import fuse_reference

    class FusedReferenceTrainer(base_cls):
        def _precompute_ref_logps(self, dataset, name, batch_size):
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            if name != "train":
                return out
            ref_w = torch.tensor(out["ref_chosen_logps"], dtype=torch.float64)
            ref_l = torch.tensor(out["ref_rejected_logps"], dtype=torch.float64)
            per_source = [source_sequence_logps(self, m, dataset, batch_size) for m in sources]
            n = per_source[0][1].clamp(min=1)  # completion tokens (the pivot's tokenisation, shared)
            src = torch.stack([s for s, _ in per_source])  # (N, 2, rows)
            fw, fl = fuse_reference(ref_w / n[0], ref_l / n[1], src[:, 0] / n[0], src[:, 1] / n[1])
            for m in sources:
                m.to("cpu")
            log.info(
                "InfiFPO: fused reference of %d source models on %d pairs (a source above the pivot on "
                "%.0f%% of the chosen, below it on %.0f%% of the rejected completions)",
                len(sources),
                len(dataset),
                100 * float((fw > ref_w / n[0]).double().mean()),
                100 * float((fl < ref_l / n[1]).double().mean()),
            )
            out = out.remove_columns(["ref_chosen_logps", "ref_rejected_logps"])
            return out.add_column("ref_chosen_logps", (fw * n[0]).tolist()).add_column(
                "ref_rejected_logps", (fl * n[1]).tolist()
            )

    return FusedReferenceTrainer

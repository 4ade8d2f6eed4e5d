"""po-bench's fields -> TRL's config classes, field by field.

Every training field has its TRL field (:data:`TRAIN_FIELD_MAP`); a loss's ``args`` are either fields of its
TRL trainer's config class (checked by :func:`validate_loss_args` before any compute) or the hyperparameters
of a po-bench pure function (checked by that function's registry).  :func:`make_config` refuses any key the
TRL class does not have: nothing set in a config is dropped silently.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from po_bench.choices import Precision
from po_bench.training.labellers import labeller_names
from po_bench.training.launch import trainer_args
from po_bench.training.listwise import check_hparams as check_listwise
from po_bench.training.losses import check_hparams
from po_bench.training.methods import Method, MethodKind, method_of
from po_bench.training.online_losses import check_online
from po_bench.training.trl.fields import CLASSES, config_class, table_fields


def trl_fields(method: Method) -> set[str]:
    """The fields of the method's TRL config class: from :mod:`.fields`' table while it describes the installed
    TRL (no import of TRL, transformers or torch: config validation runs before any compute), else the class's."""
    table = table_fields(method.trl_trainer)
    if table is not None:
        return set(table)
    return {f.name for f in dataclasses.fields(config_class(method.trl_trainer))}


def validate_loss_args(method: Method) -> None:
    """Raise ValueError naming the first loss argument the method does not have."""
    if method.pair_function:
        check_hparams(method.function, method.args)
        return
    if method.list_function:  # po_bench.training.listwise: the function's hyperparameters and the trainer's
        check_listwise(method.function, method.args)
        return
    if method.online:  # po_bench.training.online_losses: the method's and the online loop's arguments
        check_online(method.function, method.args, labeller_names())
        return
    fields = trl_fields(method)
    for key in method.args:
        if key in POBENCH_LOSS_ARGS and POBENCH_LOSS_ARGS[key] in fields:
            continue
        if key not in fields:
            raise ValueError(f"loss.args.{key} is not an option of TRL's {CLASSES[method.trl_trainer]}")


def common_args(train_cfg, out_dir: Path, seed: int, lr: float, epochs: float, batch_size: int) -> dict:
    import torch  # lazy: torch (~1 s): not for config validation (validate_loss_args)

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
    if not Precision.allows(p):
        raise ValueError(f"train.precision={p!r}: allowed {Precision.listed()}")
    return p


def precision_args(precision: str) -> dict:
    """TRL's precision flags: bf16-mixed is autocast over fp32 weights and fp32 AdamW state."""
    return {"bf16": precision == Precision.BF16_MIXED, "fp16": False}


def make_config(cfg_cls, kwargs: dict, origin: dict | None = None):
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
    check_train_fields(train_cfg)
    kwargs = common_args(
        train_cfg, Path(out_dir), seed, train_cfg.sft_lr, train_cfg.sft_epochs, train_cfg.sft_batch_size
    )
    # prompt/completion data: loss on completions only; conversations ("messages"): TRL's default
    kwargs.update(
        max_length=train_cfg.max_length,
        packing=False,
        dataset_num_proc=None,
        completion_only_loss=None if conversational else True,
    )
    return make_config(config_class("sft"), kwargs)


def build_reward_config(train_cfg, out_dir, seed: int):
    """The TRL RewardConfig of MADPO's reward model (the pair scores' training fields)."""
    from trl import RewardConfig  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.9 s)

    check_train_fields(train_cfg)
    kwargs = common_args(train_cfg, Path(out_dir), seed, train_cfg.lr, train_cfg.epochs, train_cfg.batch_size)
    kwargs["max_length"] = train_cfg.max_length
    return make_config(RewardConfig, kwargs)


# Loss arguments that are po-bench's (converted here), not a TRL field of the same name.
# ref_model_sync_fraction: TR-DPO's sync interval tau as a fraction of the run's optimizer steps
# (-> ref_model_sync_steps), so that a short world run syncs as often, relative to its length, as the
# paper's runs; null to give tau in steps (ref_model_sync_steps) as the paper does.
POBENCH_LOSS_ARGS = {"ref_model_sync_fraction": "ref_model_sync_steps"}


def total_steps(train_cfg, n_rows: int, batch_size: int | None = None) -> int:
    """The optimizer steps TRL's Trainer will take on ``n_rows`` training rows (one process)."""

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
    method = method_of(loss_cfg)
    cfg_cls = config_class(method.trl_trainer)
    check_train_fields(train_cfg)
    kwargs = common_args(train_cfg, Path(out_dir), seed, loss_cfg.lr, train_cfg.epochs, train_cfg.batch_size)
    origin = {k: "train" for k in kwargs}
    kwargs["max_length"] = train_cfg.max_length
    origin["max_length"] = "train.max_length"
    if method.trl_loss:  # po-bench functions: args are their hyperparameters
        largs, lorigin = loss_trl_args(loss_cfg, train_cfg, n_rows)
        kwargs.update(largs)
        origin.update(lorigin)
    kwargs["beta"] = loss_cfg.beta
    origin["beta"] = "loss.beta"
    if ordered:  # a curriculum (dataset.curriculum): batches in the dataset's order, transformers' documented
        # TrainingArguments.train_sampling_strategy="sequential" (a SequentialSampler instead of RandomSampler)
        kwargs["train_sampling_strategy"] = "sequential"
        origin["train_sampling_strategy"] = "dataset.curriculum"
    if method.kind is MethodKind.LISTWISE:
        if method.dynamic_anchor:  # ADPO's dynamic anchor: TRL's reference sync, anchor <- a*policy + (1-a)*anchor
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
        kwargs["precompute_ref_log_probs"] = not method.dynamic_anchor and not method.per_step
    elif method.kind is MethodKind.PAIRWISE_TRL or method.pair_function:
        # reference-free po-bench losses take the "precomputed" path with nothing to precompute,
        # so that TRL neither builds nor runs a reference model; a fused reference is computed on that path
        kwargs["precompute_ref_log_probs"] = (
            precompute_ref or (method.pair_function and method.reference_free) or method.needs_source_models
        )
    elif method.kind is MethodKind.UNPAIRED_TRL:  # KTO: its rows' reference log-probs through the store
        kwargs["precompute_ref_log_probs"] = precompute_ref
    if method.kind is MethodKind.UNPAIRED_CUSTOM:  # TRL's KTO trainer without its KL rows (the loss is replaced)
        kwargs["loss_type"] = "apo_zero_unpaired"
        origin["loss_type"] = f"loss.function={loss_cfg.function}"
    return make_config(cfg_cls, kwargs, origin)


def peft_config(model_cfg):
    """peft's LoraConfig for ``model.lora.enabled``, else None."""
    lora = getattr(model_cfg, "lora", None) if model_cfg is not None else None
    if not lora or not lora.enabled:
        return None
    from peft import LoraConfig  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.9 s)

    tm = lora.target_modules
    return LoraConfig(
        r=int(lora.r),
        lora_alpha=int(lora.alpha),
        lora_dropout=float(lora.dropout),
        target_modules=tm if isinstance(tm, str) else list(tm),
        task_type="CAUSAL_LM",
    )

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
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _backend_classes(backend: str):
    if backend in ("dpo", "pobench"):
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


BACKENDS = ("dpo", "cpo", "orpo", "kto", "pobench", "sft")


def backend_fields(backend: str) -> set[str]:
    cfg_cls, _ = _backend_classes(backend)
    return {f.name for f in dataclasses.fields(cfg_cls)}


def validate_backend_args(backend: str, args: dict[str, Any], function: str = "") -> None:
    """Raise ValueError naming the first argument the backend does not have."""
    if backend == "pobench":
        from po_bench.training.losses import check_hparams

        check_hparams(function, args)
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
    return {} if backend == "pobench" else {k: args[k] for k in REF_LOGP_ARGS if k in args}


class _MetricsLog:
    """Collects the trainer's logged dicts (loss curve, rewards) for the run record."""

    def __init__(self):
        from transformers import TrainerCallback

        history: list[dict] = []

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kw):
                if logs:
                    history.append({"step": state.global_step, **{k: float(v) for k, v in logs.items()
                                                                  if isinstance(v, (int, float))}})

        self.history = history
        self.callback = _CB()

    def final_loss(self) -> float | None:
        losses = [h["loss"] for h in self.history if "loss" in h]
        if losses:
            return losses[-1]
        tl = [h["train_loss"] for h in self.history if "train_loss" in h]
        return tl[-1] if tl else None


def _common_args(train_cfg, out_dir: Path, seed: int, lr: float, epochs: float, batch_size: int) -> dict:
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
        report_to="wandb" if os.environ.get("PO_BENCH_WANDB_RUN_DIR") else "none",  # results.tracking.live_run_env
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        **precision_args(precision_of(train_cfg)),
        disable_tqdm=not train_cfg.progress,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )


# Every po-bench training field and the TRL (transformers TrainingArguments) field it sets; a field
# that is not here stops the run (:func:`check_train_fields`), so nothing set in a config is dropped.
# (SFT-stage fields on the left of "|" set the same TRL fields in the SFT stage.)
TRAIN_FIELD_MAP = {
    "sft_lr": "learning_rate", "sft_epochs": "num_train_epochs", "sft_batch_size": "per_device_train_batch_size",
    "lr": "learning_rate", "epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "max_steps": "max_steps",  # 0 -> -1 (no cap)
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",  # the ratio as a float in [0, 1) (transformers 5 has no warmup_ratio)
    "max_length": "max_length",
    "precision": "bf16",  # bf16-mixed -> bf16=True (autocast, fp32 weights); fp32 / bf16-pure -> False
    "logging_steps": "logging_steps", "save_steps": "save_steps", "progress": "disable_tqdm",  # run options
    # the launch (po_bench/training/launch.py): the process group's TrainingArguments (fsdp, deepspeed,
    # ddp_backend); world size and strategy are facts of the launch the trainer reads from its process
    # group, recorded in the spec; keep_checkpoints is applied by the stage after training
    "launch": "fsdp/fsdp_config/deepspeed/ddp_backend", "world_size": "(the process group)",
    "strategy": "(the process group)", "keep_checkpoints": "(the stage)",
    "global_batch_size": "gradient_accumulation_steps",  # grad_accum derived from it and the world size (specs.py)
}
PRECISIONS = ("fp32", "bf16-mixed", "bf16-pure")


def check_train_fields(train_cfg) -> None:
    """Raise ValueError naming a training field that no TRL field receives."""
    keys = train_cfg.keys() if hasattr(train_cfg, "keys") else vars(train_cfg).keys()
    for k in keys:
        if k not in TRAIN_FIELD_MAP:
            raise ValueError(f"train.{k} is not a training option po-bench passes to TRL "
                             f"(options: {', '.join(sorted(TRAIN_FIELD_MAP))})")


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
            raise ValueError(f"{where} has no field in TRL's {cfg_cls.__name__} (TRL field {k!r}); "
                             "po-bench refuses to drop it silently")
    return cfg_cls(**kwargs)


def build_sft_config(train_cfg, out_dir, seed: int, conversational: bool = False):
    """The TRL SFTConfig of the SFT stage (what was asked, field by field)."""
    cfg_cls, _ = _backend_classes("sft")
    check_train_fields(train_cfg)
    kwargs = _common_args(train_cfg, Path(out_dir), seed, train_cfg.sft_lr, train_cfg.sft_epochs,
                          train_cfg.sft_batch_size)
    # prompt/completion data: loss on completions only; conversations ("messages"): TRL's default
    kwargs.update(max_length=train_cfg.max_length, packing=False, dataset_num_proc=None,
                  completion_only_loss=None if conversational else True)
    return _make_config(cfg_cls, kwargs)


def train_sft(model, tokenizer, examples: list[dict], train_cfg, out_dir: Path, seed: int, save_dir=None) -> dict:
    """Supervised fine-tuning on prompt/completion examples (loss on completions only).  With
    ``save_dir`` (a process group) the trainer saves the consolidated model there itself."""
    from datasets import Dataset

    _, trainer_cls = _backend_classes("sft")
    args = build_sft_config(train_cfg, out_dir, seed, conversational="messages" in examples[0])
    cast_for_precision(model, precision_of(train_cfg))
    mlog = _MetricsLog()
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(examples),
                          processing_class=tokenizer, callbacks=[mlog.callback])
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    res = {"train_loss_final": mlog.final_loss(), "history": mlog.history, "steps": trainer.state.global_step,
           **batch_facts(trainer)}
    if save_dir is not None:
        save_distributed(trainer, tokenizer, save_dir)
    return res


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
    return {"world_size": a.world_size, "per_device_batch": a.per_device_train_batch_size,
            "grad_accum": a.gradient_accumulation_steps,
            "global_batch": a.per_device_train_batch_size * a.gradient_accumulation_steps * a.world_size}


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
    ckpts = sorted((p for p in d.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
                   key=lambda p: int(p.name.split("-")[1]), reverse=True)
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
                raise ValueError("loss.args: set ref_model_sync_fraction or ref_model_sync_steps, not both "
                                 "(ref_model_sync_fraction=null to give tau in steps)")
            if n_rows is None and train_cfg.max_steps <= 0:
                raise ValueError("loss.args.ref_model_sync_fraction needs the run's length (the number of rows)")
            steps = total_steps(train_cfg, n_rows or 0)
            out["ref_model_sync_steps"] = max(1, round(float(v) * steps))
            origin["ref_model_sync_steps"] = f"loss.args.{k}"
            continue
        out[k], origin[k] = v, f"loss.args.{k}"
    return out, origin


def build_trl_config(loss_cfg, train_cfg, out_dir, seed: int, precompute_ref: bool = False,
                     n_rows: int | None = None, ordered: bool = False):
    """The TRL config object a loss maps onto: training hyperparameters + the loss's beta and args.

    Every field is passed by name (:data:`TRAIN_FIELD_MAP`); a training field or loss argument with
    no TRL field raises ValueError naming it.  ``n_rows`` (training rows) sizes fractions of the run."""
    cfg_cls, _ = _backend_classes(loss_cfg.backend)
    check_train_fields(train_cfg)
    kwargs = _common_args(train_cfg, Path(out_dir), seed, loss_cfg.lr, train_cfg.epochs, train_cfg.batch_size)
    origin = {k: "train" for k in kwargs}
    kwargs["max_length"] = train_cfg.max_length
    origin["max_length"] = "train.max_length"
    if loss_cfg.backend != "pobench":  # pobench: args are the loss function's hyperparameters
        largs, lorigin = loss_trl_args(loss_cfg, train_cfg, n_rows)
        kwargs.update(largs)
        origin.update(lorigin)
    kwargs["beta"] = loss_cfg.beta
    origin["beta"] = "loss.beta"
    if ordered:  # a curriculum (dataset.curriculum): batches in the dataset's order, transformers' documented
        # TrainingArguments.train_sampling_strategy="sequential" (a SequentialSampler instead of RandomSampler)
        kwargs["train_sampling_strategy"] = "sequential"
        origin["train_sampling_strategy"] = "dataset.curriculum"
    if loss_cfg.backend in ("dpo", "pobench"):
        # reference-free po-bench losses take the "precomputed" path with nothing to precompute,
        # so that TRL neither builds nor runs a reference model
        kwargs["precompute_ref_log_probs"] = precompute_ref or (
            loss_cfg.backend == "pobench" and loss_cfg.reference_free)
    return _make_config(cfg_cls, kwargs, origin)


def peft_config(model_cfg):
    """peft's LoraConfig for ``model.lora.enabled``, else None."""
    lora = getattr(model_cfg, "lora", None) if model_cfg is not None else None
    if not lora or not lora.enabled:
        return None
    from peft import LoraConfig

    tm = lora.target_modules
    return LoraConfig(r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout),
                      target_modules=tm if isinstance(tm, str) else list(tm), task_type="CAUSAL_LM")


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
) -> dict:
    """Run the loss's TRL trainer on preference pairs; returns the logged history and final loss.

    ``ref_logps_cache`` is a (load, save) pair used by the DPO backend to read/write the reference
    log-probs of the training set through po-bench's artifact store instead of recomputing them.
    ``ordered``: train on the pairs in their order (a curriculum), not shuffled.
    """
    from datasets import Dataset

    backend = loss_cfg.backend
    cfg_cls, trainer_cls = _backend_classes(backend)
    needs_ref = not loss_cfg.reference_free
    if dict(loss_cfg.args).get("sync_ref_model"):  # TR-DPO: the reference moves, nothing to cache
        ref_logps_cache = None
    kto_rows = None
    if ordered and backend == "kto":
        raise ValueError(f"loss={loss_cfg.name}: KTO reorders its unpaired rows; a curriculum order needs a paired loss")
    if backend == "kto":
        kto_rows = kto_order(pairs if "label" in pairs[0] else unpaired_view(pairs), int(train_cfg.batch_size), seed)
    args = build_trl_config(loss_cfg, train_cfg, out_dir, seed,
                            precompute_ref=ref_logps_cache is not None and needs_ref,
                            n_rows=len(kto_rows) if kto_rows is not None else len(pairs), ordered=ordered)
    cast_for_precision(policy, precision_of(train_cfg))
    peft = peft_config(model_cfg)
    extra = {"peft_config": peft} if peft is not None else {}
    if peft is not None and backend in ("dpo", "pobench", "kto"):
        ref_model = None  # with LoRA the reference is the base model with adapters disabled
    mlog = _MetricsLog()
    rows = ([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
            if "chosen" in pairs[0] else None)
    if rows is None and backend != "kto":
        raise ValueError(f"loss={loss_cfg.name} needs paired data (prompt/chosen/rejected); got unpaired rows")

    if backend in ("dpo", "pobench"):
        trainer_cls = _cached_dpo_trainer(trainer_cls, ref_logps_cache if needs_ref else None)
        if backend == "pobench":
            trainer_cls = _pobench_trainer(trainer_cls, loss_cfg.function, dict(loss_cfg.args), needs_ref)
        trainer = trainer_cls(model=policy, ref_model=ref_model, args=args, train_dataset=shared_dataset(args, rows, out_dir),
                              processing_class=tokenizer, callbacks=[mlog.callback], **extra)
    elif backend in ("cpo", "orpo"):
        trainer = trainer_cls(model=policy, args=args, train_dataset=shared_dataset(args, rows, out_dir),
                              processing_class=tokenizer, callbacks=[mlog.callback], **extra)
    elif backend == "kto":
        trainer = trainer_cls(model=policy, ref_model=ref_model, args=args, train_dataset=shared_dataset(args, kto_rows, out_dir),
                              processing_class=tokenizer, callbacks=[mlog.callback], **extra)
        kto_matched = kl_matched_rows(trainer.train_dataset, int(train_cfg.batch_size))
        if kto_matched:
            log.warning("KTO: %d of %d KL rows pair a completion with its own prompt (too few distinct prompts "
                        "for fully mismatched KL pairs)", kto_matched, len(trainer.train_dataset))
    else:
        raise ValueError(f"backend {backend!r} has no preference stage")
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    if peft is not None:
        policy = trainer.model
    if save_dir is not None:
        save_distributed(trainer, tokenizer, save_dir)
    return {"model": policy, "train_loss_final": mlog.final_loss(), "history": mlog.history,
            "steps": trainer.state.global_step, **batch_facts(trainer), "precision": precision_of(train_cfg),
            **({"kto_kl_matched_rows": kto_matched} if backend == "kto" else {}),
            "resumed": bool(mlog.history and mlog.history[0].get("step", 0) > train_cfg.logging_steps)}


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
                        "ref_rejected_logps", cached["ref_rejected_logps"])
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            if name == "train" and self.is_world_process_zero():  # one writer under a process group
                save({"ref_chosen_logps": [float(x) for x in out["ref_chosen_logps"]],
                      "ref_rejected_logps": [float(x) for x in out["ref_rejected_logps"]]})
            return out

    return CachedRefDPOTrainer


def _pobench_trainer(base_cls, function: str, hparams: dict, needs_ref: bool):
    """DPOTrainer whose loss is one of po-bench's pure functions (po_bench.training.losses).

    TRL's data pipeline (tokenisation, collation, reference precompute, logging) is reused; only
    the loss is replaced: per-sequence statistics are computed here and handed to the function.
    """
    from po_bench.training.losses import LOSSES, PairStats, running_mean_update

    spec = LOSSES[function]

    class PoBenchLossTrainer(base_cls):
        if not needs_ref:
            def _precompute_ref_logps(self, dataset, name, batch_size):
                return dataset  # reference-free: no reference log-probs at all

        def _sequence_logps(self, model, inputs):
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
            tok = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            mask = inputs["completion_mask"][:, 1:].to(tok.dtype)
            return (tok * mask).sum(1), mask.sum(1)

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
                    self.beta * torch.cat([stats.chosen_logratio, stats.rejected_logratio]).detach())
                if mode == "train":
                    self._pob_delta = running_mean_update(*getattr(self, "_pob_delta", (0.0, 0)), rewards)
                state["delta"] = getattr(self, "_pob_delta", (0.0, 0))[0]
                m["bco/delta"].append(state["delta"])
            if spec.init_state is not None:  # a loss with running state (beta-DPO): held here, pure in losses.py
                if getattr(self, "_pob_state", None) is None:
                    self._pob_state = spec.init_state(self.args.seed)
                state.update(self._pob_state)
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

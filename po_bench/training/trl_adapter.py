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
        warmup_ratio=train_cfg.warmup_ratio,
        weight_decay=0.0,
        logging_steps=train_cfg.logging_steps,
        save_strategy="steps" if getattr(train_cfg, "save_steps", 0) > 0 else "no",
        save_steps=max(1, getattr(train_cfg, "save_steps", 0)),
        save_total_limit=2,
        report_to="none",
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        fp16=False,
        disable_tqdm=not train_cfg.progress,
        dataloader_num_workers=0,
        remove_unused_columns=True,
    )


def _filter_kwargs(cfg_cls, kwargs: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    return {k: v for k, v in kwargs.items() if k in names}


def train_sft(model, tokenizer, examples: list[dict], train_cfg, out_dir: Path, seed: int) -> dict:
    """Supervised fine-tuning on prompt/completion examples (loss on completions only)."""
    from datasets import Dataset

    cfg_cls, trainer_cls = _backend_classes("sft")
    kwargs = _common_args(train_cfg, out_dir, seed, train_cfg.sft_lr, train_cfg.sft_epochs, train_cfg.sft_batch_size)
    # prompt/completion data: loss on completions only; conversations ("messages"): TRL's default
    kwargs.update(max_length=train_cfg.max_length, packing=False, dataset_num_proc=None,
                  completion_only_loss=None if "messages" in examples[0] else True)
    args = cfg_cls(**_filter_kwargs(cfg_cls, kwargs))
    mlog = _MetricsLog()
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(examples),
                          processing_class=tokenizer, callbacks=[mlog.callback])
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    return {"train_loss_final": mlog.final_loss(), "history": mlog.history, "steps": trainer.state.global_step}


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


def build_trl_config(loss_cfg, train_cfg, out_dir, seed: int, precompute_ref: bool = False):
    """The TRL config object a loss maps onto: training hyperparameters + the loss's beta and args."""
    cfg_cls, _ = _backend_classes(loss_cfg.backend)
    kwargs = _common_args(train_cfg, Path(out_dir), seed, loss_cfg.lr, train_cfg.epochs, train_cfg.batch_size)
    kwargs["max_length"] = train_cfg.max_length
    if loss_cfg.backend != "pobench":  # pobench: args are the loss function's hyperparameters
        kwargs.update(dict(loss_cfg.args))
    kwargs["beta"] = loss_cfg.beta
    if loss_cfg.backend in ("dpo", "pobench"):
        # reference-free po-bench losses take the "precomputed" path with nothing to precompute,
        # so that TRL neither builds nor runs a reference model
        kwargs["precompute_ref_log_probs"] = precompute_ref or (
            loss_cfg.backend == "pobench" and loss_cfg.reference_free)
    return cfg_cls(**_filter_kwargs(cfg_cls, kwargs))


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
) -> dict:
    """Run the loss's TRL trainer on preference pairs; returns the logged history and final loss.

    ``ref_logps_cache`` is a (load, save) pair used by the DPO backend to read/write the reference
    log-probs of the training set through po-bench's artifact store instead of recomputing them.
    """
    from datasets import Dataset

    backend = loss_cfg.backend
    cfg_cls, trainer_cls = _backend_classes(backend)
    needs_ref = not loss_cfg.reference_free
    if dict(loss_cfg.args).get("sync_ref_model"):  # TR-DPO: the reference moves, nothing to cache
        ref_logps_cache = None
    args = build_trl_config(loss_cfg, train_cfg, out_dir, seed,
                            precompute_ref=ref_logps_cache is not None and needs_ref)
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
        trainer = trainer_cls(model=policy, ref_model=ref_model, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer, callbacks=[mlog.callback], **extra)
    elif backend in ("cpo", "orpo"):
        trainer = trainer_cls(model=policy, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tokenizer, callbacks=[mlog.callback], **extra)
    elif backend == "kto":
        trainer = trainer_cls(model=policy, ref_model=ref_model, args=args,
                              train_dataset=Dataset.from_list(pairs if "label" in pairs[0] else unpaired_view(pairs)),
                              processing_class=tokenizer, callbacks=[mlog.callback], **extra)
    else:
        raise ValueError(f"backend {backend!r} has no preference stage")
    trainer.train(resume_from_checkpoint=last_checkpoint(out_dir))
    if peft is not None:
        policy = trainer.model
    return {"model": policy, "train_loss_final": mlog.final_loss(), "history": mlog.history,
            "steps": trainer.state.global_step, "resumed": bool(mlog.history and mlog.history[0].get("step", 0) > train_cfg.logging_steps)}


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
            if name == "train":
                save({"ref_chosen_logps": [float(x) for x in out["ref_chosen_logps"]],
                      "ref_rejected_logps": [float(x) for x in out["ref_rejected_logps"]]})
            return out

    return CachedRefDPOTrainer


def _pobench_trainer(base_cls, function: str, hparams: dict, needs_ref: bool):
    """DPOTrainer whose loss is one of po-bench's pure functions (po_bench.training.losses).

    TRL's data pipeline (tokenisation, collation, reference precompute, logging) is reused; only
    the loss is replaced: per-sequence statistics are computed here and handed to the function.
    """
    from po_bench.training.losses import LOSSES, PairStats

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
            out = spec.fn(PairStats(c, r, nc, nr, rc, rr), beta=self.beta, **hparams)
            loss = out.losses.mean()
            m = self._metrics[mode]
            m["rewards/chosen"].append(out.chosen_rewards.mean().item())
            m["rewards/rejected"].append(out.rejected_rewards.mean().item())
            m["rewards/margins"].append((out.chosen_rewards - out.rejected_rewards).mean().item())
            m["rewards/accuracies"].append((out.chosen_rewards > out.rejected_rewards).float().mean().item())
            m["logps/chosen"].append(c.detach().mean().item())
            m["logps/rejected"].append(r.detach().mean().item())
            return (loss, None) if return_outputs else loss

    return PoBenchLossTrainer

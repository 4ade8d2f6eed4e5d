"""The preference stage: a loss config's Method -> its trainer family -> one TRL Trainer run.

Each :class:`po_bench.training.methods.MethodKind` has its trainer, a named class of its family's module
(:mod:`.dpo`, :mod:`.cpo`, :mod:`.unpaired`, :mod:`.listwise`); :func:`train_preference` checks what the
Method needs (pair scores, source models, a guide), builds TRL's config (:mod:`.args`), shapes the rows and
runs the trainer (:mod:`.fit`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from po_bench.training.methods import DataShape, Method, MethodKind, method_of
from po_bench.training.trl import cpo, dpo, listwise, unpaired
from po_bench.training.trl.args import build_trl_config, peft_config, precision_of
from po_bench.training.trl.fit import (
    MetricsLog,
    batch_facts,
    cast_for_precision,
    param_facts,
    release_reference,
    run,
    save_distributed,
    shared_dataset,
)

log = logging.getLogger(__name__)


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
    callbacks: list | None = None,
) -> dict:
    """Run the loss's TRL trainer on preference pairs; returns the logged history and final loss.

    ``ref_logps_cache`` is a (load, save) pair used by the DPO and listwise trainers to read/write the
    reference log-probs of the training set through po-bench's artifact store instead of recomputing them.
    ``ordered``: train on the pairs in their order (a curriculum), not shuffled.
    ``guide_model``: a guided loss's guide policy (TGDPO: a trained DPO policy), scored per token.
    ``pair_scores``: one score per pair (po_bench.training.pair_scores) for a loss with per-pair weights;
    it travels with its pair through TRL's data pipeline as the ``pair_score`` column.
    ``source_models``: InfiFPO's source models (loss.args.sources), fused into its reference.
    ``callbacks``: TrainerCallbacks run before the Trainer's own and the reporters (what they add to a logged
    dict reaches wandb and the history: the diagnostics' probe, training/trl/probe.py).
    """
    method = method_of(loss_cfg)
    kind = method.kind
    per_pair = method.needs_pair_scores
    if per_pair and (pair_scores is None or len(pair_scores) != len(pairs)):
        raise ValueError(
            f"loss={loss_cfg.name} weights each pair: needs one pair score per pair "
            f"(got {'none' if pair_scores is None else len(pair_scores)} for {len(pairs)} pairs)"
        )
    needs_ref = method.needs_reference_model
    if kind is MethodKind.UNPAIRED_CUSTOM:
        # BCO: unpaired rows, the reference scored each step (the store's reference artifact is per pair)
        ref_logps_cache = None
    if method.needs_source_models and not source_models:
        raise ValueError(f"loss={loss_cfg.name} needs its source models (loss.args.sources)")
    if method.args.get("sync_ref_model"):  # TR-DPO: the reference moves, nothing to cache
        ref_logps_cache = None
    if kind is MethodKind.TOKEN_LEVEL:  # per-token reference log-probs each step (TRL precomputes only sums)
        ref_logps_cache = None
        if method.needs_guide and guide_model is None:
            raise ValueError(
                f"loss={loss_cfg.name} needs its guide policy (loss.guide={getattr(loss_cfg, 'guide', '')})"
            )
    kto_rows = None
    if ordered and method.unordered_rows:
        raise ValueError(
            f"loss={loss_cfg.name}: KTO reorders its unpaired rows; a curriculum order needs a paired loss"
        )
    if kind is MethodKind.UNPAIRED_CUSTOM:
        kto_rows = pairs if "label" in pairs[0] else unpaired.unpaired_view(pairs)
    elif method.kl_rows:
        kto_rows = unpaired.kto_order(
            pairs if "label" in pairs[0] else unpaired.unpaired_view(pairs), int(train_cfg.batch_size), seed
        )
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
    if peft is not None and method.takes_reference_model:
        ref_model = None  # with LoRA the reference is the base model with adapters disabled
    mlog = MetricsLog()
    rows = (
        [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
        if "chosen" in pairs[0]
        else None
    )
    if kind is MethodKind.LISTWISE:
        rows = listwise.list_view(pairs)
    if rows is None and method.data_shape is not DataShape.UNPAIRED_ROWS:
        raise ValueError(f"loss={loss_cfg.name} needs paired data (prompt/chosen/rejected); got unpaired rows")
    if per_pair:
        rows = [{**r, dpo.PAIR_SCORE: float(v)} for r, v in zip(rows, pair_scores)]

    trainer_cls = trainer_class(method)
    data = kto_rows if method.data_shape is DataShape.UNPAIRED_ROWS else rows
    trainer = trainer_cls(
        model=policy,
        **({"ref_model": ref_model} if method.takes_reference_model else {}),
        args=args,
        train_dataset=shared_dataset(args, data, out_dir),
        processing_class=tokenizer,
        callbacks=[mlog.callback],
        **extra,
        **family_args(
            method,
            tokenizer=tokenizer,
            max_length=args.max_length,
            ref_logps_cache=ref_logps_cache,
            open_completions="step" in pairs[0],  # Step-DPO's one-step completions: the response goes on after them
            guide_model=guide_model,
            source_models=source_models,
        ),
    )
    trainer.callback_handler.callbacks[0:0] = list(callbacks or [])
    ref_model = None  # the trainer holds it while it needs it
    if release_reference(trainer):
        log.info("reference model released: its log-probs are precomputed")
    kto_matched = None
    if method.kl_rows:
        kto_matched = unpaired.kl_matched_rows(trainer.train_dataset, int(train_cfg.batch_size))
        if kto_matched:
            log.warning(
                "KTO: %d of %d KL rows pair a completion with its own prompt (too few distinct prompts "
                "for fully mismatched KL pairs)",
                kto_matched,
                len(trainer.train_dataset),
            )
    run(trainer, out_dir)
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
        **({"kto_kl_matched_rows": kto_matched} if method.kl_rows else {}),
        "resumed": bool(mlog.history and mlog.history[0].get("step", 0) > train_cfg.logging_steps),
    }


# Each kind's trainer: a named class of its family's module (TRL's own where po-bench changes nothing)
TRAINERS = {
    MethodKind.PAIRWISE_TRL: dpo.StoreReferenceDPOTrainer,
    MethodKind.PAIRWISE_CUSTOM: dpo.PureLossDPOTrainer,
    MethodKind.FUSED_REFERENCE: dpo.FusedReferenceDPOTrainer,
    MethodKind.TOKEN_LEVEL: dpo.TokenLossDPOTrainer,
    MethodKind.UNPAIRED_TRL: unpaired.StoreReferenceKTOTrainer,
    MethodKind.UNPAIRED_CUSTOM: unpaired.PureLossKTOTrainer,
    MethodKind.LISTWISE: listwise.ListwiseTrainer,
}


def trainer_class(method: Method) -> type:
    """The trainer class a Method runs on (ValueError for a method without a preference stage)."""
    if method.kind is MethodKind.REFERENCE_FREE_TRL:
        return cpo.TRAINERS[method.trl_trainer]
    if method.kind not in TRAINERS:
        raise ValueError(f"backend {method.backend!r} has no preference stage")
    return TRAINERS[method.kind]


def family_args(
    method: Method, *, tokenizer, max_length, ref_logps_cache, open_completions: bool, guide_model, source_models
) -> dict:
    """The arguments a kind's trainer takes besides TRL's (model, reference, config, rows, tokenizer)."""
    kind, needs_ref = method.kind, method.needs_reference_model
    if kind is MethodKind.UNPAIRED_CUSTOM:
        return {"spec": method.function_spec, "hparams": method.function_args}
    if kind is MethodKind.UNPAIRED_TRL:
        return {"ref_logps_cache": ref_logps_cache if needs_ref else None}
    if kind is MethodKind.LISTWISE:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return {
            "data_collator": listwise.ListCollator(pad, max_length),
            "spec": method.function_spec,
            "function": method.function,
            "fn_kwargs": method.function_args,
            "needs_ref": needs_ref,
            "ref_logps_cache": None if method.moving_reference else ref_logps_cache,
        }
    if kind not in (
        MethodKind.PAIRWISE_TRL,
        MethodKind.PAIRWISE_CUSTOM,
        MethodKind.FUSED_REFERENCE,
        MethodKind.TOKEN_LEVEL,
    ):
        return {}
    out = {"ref_logps_cache": ref_logps_cache if needs_ref else None, "open_completions": open_completions}
    if kind is MethodKind.PAIRWISE_TRL:
        return out
    out.update(spec=method.function_spec, hparams=method.function_args)
    if kind is MethodKind.TOKEN_LEVEL:
        return {**out, "guide": guide_model}
    out.update(needs_ref=needs_ref, pair_scores=method.needs_pair_scores)
    if kind is MethodKind.FUSED_REFERENCE:
        out["sources"] = source_models
    return out

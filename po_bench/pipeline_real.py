"""One run on real data (``dataset.kind=hf``): data -> optional SFT -> preference training ->
generation on held-out prompts -> judging -> metrics.

Artifacts go through the same store as the world pipeline, keyed by the fields that determine
them: the SFT checkpoint (base model, SFT dataset config, SFT hyperparameters, seed), the
trained policy (+ a fingerprint of the exact training data, loss, noise, training
hyperparameters), policy generations (+ generation config) and judgments (+ judge config).
There is no gold reward here: quality comes from the configured judge; every run also gets the
implicit-reward accuracy on the eval split and the KL / length of its samples.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from po_bench.generation import generate
from po_bench.judges import implicit as judge_mod
from po_bench.training import models
from po_bench.data import formats
from po_bench.data.noise import flip_labels
from po_bench.pipeline import _gen_fields, _load_model, _plain, _seed_everything, _timed, _write_jsonl, model_fields, train_fields, train_policy
from po_bench.store import Store, atomic_write_json, fingerprint

log = logging.getLogger("po_bench")


def run(cfg, out_dir: Path, store: Store, seconds: dict) -> dict:
    from transformers import AutoTokenizer

    from po_bench.training import trl_adapter

    seed = int(cfg.seed)
    d, loss = cfg.dataset, cfg.loss

    # ---- data ---------------------------------------------------------------------------
    with _timed(seconds, "data"):
        base_path = models.model_path(cfg.model)
        if loss.paired or d.format != "unpaired":
            pairs, report = formats.load_pairs(d)
        else:
            pairs, report = formats.load_unpaired(d)
        _apply_error_policy(d, report)
        eval_report = None
        if d.eval_split:
            eval_pairs, eval_report = formats.load_pairs(d, d.eval_split)
            _apply_error_policy(d, eval_report)
            eval_pairs = eval_pairs[: d.n_eval]
        else:  # no eval split: hold out the last n_eval pairs (never trained on)
            n_hold = min(d.n_eval, len(pairs) // 4)
            eval_pairs = pairs[len(pairs) - n_hold:] if "chosen" in pairs[0] and n_hold else []
            pairs = pairs[: len(pairs) - len(eval_pairs)]
        pairs, too_long = _drop_overlong_prompts(pairs, models_tokenizer(base_path), cfg.train.max_length)
        flipped: list[int] = []
        if cfg.noise.kind == "flip" and "chosen" in pairs[0]:
            pairs, flipped = flip_labels(pairs, cfg.noise.rate, seed)

    # ---- SFT (optional: instruct models start from themselves) --------------------------
    sft_fields = {"base": model_fields(cfg), "base_path": base_path, "seed": seed,
                  "sft_data": None, "sft": None}
    sft_dir: Path | str = base_path
    sft_metrics: dict = {}
    if d.sft and cfg.stages.sft:
        sft_cfg = dataset_config(d.sft)
        sft_fields.update(sft_data=_plain(sft_cfg), sft={k: cfg.train[k] for k in (
            "sft_lr", "sft_epochs", "sft_batch_size", "max_length", "lr_scheduler", "warmup_ratio")})

        def build_sft(out: Path) -> None:
            _seed_everything(seed)
            model, tok = models.load_pretrained(base_path, dtype=cfg.model.dtype)
            if cfg.model.chat_template:
                tok.chat_template = cfg.model.chat_template
            examples, rep = formats.load_sft(sft_cfg)
            res = trl_adapter.train_sft(model, tok, examples, cfg.train, out / "trainer", seed)
            model.save_pretrained(str(out))
            tok.save_pretrained(str(out))
            atomic_write_json(out / "train_metrics.json", {**res, "data": rep})

        with _timed(seconds, "sft"):
            sft_dir = store.get_or_build_dir("sft", sft_fields, build_sft)
            sft_metrics = json.loads((Path(sft_dir) / "train_metrics.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(sft_dir))
    if cfg.model.chat_template:
        tokenizer.chat_template = cfg.model.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    sft_model = _load_model(sft_dir, cfg.model)

    # ---- preference training --------------------------------------------------------------
    policy, policy_dir = sft_model, sft_dir
    train_metrics = {"train_loss_final": sft_metrics.get("train_loss_final")}
    policy_key: dict = {"sft": sft_fields}
    if loss.backend != "sft" and cfg.stages.train:
        policy_key = {"sft": sft_fields, "data": fingerprint(pairs), "dataset": _plain(d), "loss": _plain(loss),
                      "noise": _plain(cfg.noise), "seed": seed,
                      "train": train_fields(cfg)}
        policy, train_metrics, policy_dir = train_policy(cfg, store, seconds, sft_dir, sft_fields, tokenizer, pairs,
                                                         policy_key)

    tokens = formats.data_stats(pairs, tokenizer, cfg.train.max_length) if "chosen" in pairs[0] else {}
    train_prompts = [p["prompt"] for p in pairs]
    leak = {**formats.leakage(train_prompts, formats.eval_sets()),
            **formats.leakage(train_prompts, {"eval_split": [p["prompt"] for p in eval_pairs]})}
    if leak["eval_split"]["count"]:
        log.warning("%d of %d eval prompts also occur among the training prompts (data.leakage.eval_split)",
                    leak["eval_split"]["count"], leak["eval_split"]["n_eval"])
    metrics: dict = {
        "train_loss_final": train_metrics.get("train_loss_final"),
        "gold_reward": None, "gold_reward_sft": None, "win_rate_vs_sft": None,
        "implicit_reward_accuracy_ood": None,
        "data": {"conversion": report, "conversion_eval": eval_report, "skipped_prompt_over_max_length": too_long,
                 "noise_flipped_count": len(flipped), "noise_flipped_rows": flipped, "tokens": tokens, "leakage": leak,
                 "counts": data_counts(report, eval_report, too_long, tokens, leak)},
        "history": train_metrics.get("history", []),
    }

    # ---- generation + judging ---------------------------------------------------------------
    prompts = [p["prompt"] for p in eval_pairs]
    gen_fields = _gen_fields(cfg)
    if cfg.stages.generate:
        with _timed(seconds, "generate"):
            samples = store.get_or_build_json(
                "generations", {"policy": policy_key, "gen": gen_fields, "seed": seed, "prompts": fingerprint(prompts)},
                lambda: generate.generate(policy, tokenizer, prompts, cfg.generation, seed, "policy samples (eval)",
                                          policy_dir))
            sft_samples = samples if policy is sft_model else store.get_or_build_json(
                "generations", {"policy": {"sft": sft_fields}, "gen": gen_fields, "seed": seed,
                                "prompts": fingerprint(prompts)},
                lambda: generate.generate(sft_model, tokenizer, prompts, cfg.generation, seed, "sft samples (eval)",
                                          sft_dir))
        if cfg.stages.judge:
            with _timed(seconds, "judge"):
                metrics.update(judge_mod.kl_and_length(policy, sft_model, tokenizer, prompts, samples))
                kind = loss.implicit_reward if loss.backend != "sft" else "avg_logp"
                metrics["implicit_reward_accuracy"] = judge_mod.implicit_reward_accuracy(
                    policy, sft_model, tokenizer, eval_pairs, kind, float(loss.beta)) if eval_pairs else None
                metrics.update(_external_judge(cfg, store, policy, policy_dir, sft_model, sft_dir, tokenizer,
                                               prompts, samples, sft_samples, policy_key))
        _write_jsonl(out_dir / "samples.jsonl", [{"prompt": p, "policy": y, "sft": s}
                                                 for p, y, s in list(zip(prompts, samples, sft_samples))[:32]])
    return metrics


def data_counts(report: dict, eval_report: dict | None, too_long: int, tokens: dict, leak: dict) -> dict:
    """Everything left out, cut or flagged on the way from the files to training, by reason, in one
    place of run.json (``metrics.data.counts``): rows skipped by the converter (train and eval
    split), pairs dropped because the prompt alone fills ``train.max_length``, pairs kept but
    truncated by the trainer, kept rows with a note, and eval prompts that also occur in training."""
    return {
        "rows_read": report.get("rows"),
        "skipped": dict(report.get("skipped") or {}),
        "eval_skipped": dict((eval_report or {}).get("skipped") or {}),
        "dropped": {"prompt_over_max_length": too_long},
        "truncated": {"over_max_length": tokens.get("n_truncated", 0)},
        "kept_with_notes": dict(report.get("notes") or {}),
        "eval_prompts_in_train": leak["eval_split"]["count"],
    }


def _line_of(source: str, row: int) -> int | None:
    """The 1-based line of row ``row`` in a JSONL file (blank lines are not rows), else None."""
    import gzip

    p = Path(source)
    name = p.name.lower()
    if not name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")) or not p.is_file():
        return None
    n = -1
    with (gzip.open if name.endswith(".gz") else open)(p, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                n += 1
                if n == row:
                    return i
    return None


def _apply_error_policy(d, report: dict) -> None:
    """dataset.on_error=fail: the first bad row stops the run, naming the file and line (row)."""
    if d.on_error != "fail" or not report.get("n_skipped"):
        return
    reason, rows = min(report["skipped_examples"].items(), key=lambda kv: kv[1][0])
    line = _line_of(report["source"], rows[0])
    where = f"line {line} (row {rows[0]})" if line else f"row {rows[0]}"
    raise formats.DataError(f"{report['source']}: {where}: {reason} "
                             f"({report['n_skipped']} bad rows in all; dataset.on_error=skip skips and counts them)")


def models_tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _drop_overlong_prompts(pairs: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """Pairs whose prompt alone leaves no room for a completion within max_length cannot be trained
    on (the completion would be truncated to nothing); they are dropped and counted, never silently."""
    from po_bench.generation.logprobs import render_prompt

    keep = [p for p in pairs
            if len(tokenizer(render_prompt(tokenizer, p["prompt"]), add_special_tokens=False)["input_ids"]) < max_length - 1]
    if not keep:
        from po_bench.data.formats import DataError

        raise DataError(f"every prompt is longer than train.max_length={max_length} tokens: raise train.max_length")
    return keep, len(pairs) - len(keep)


def _external_judge(cfg, store, policy, policy_dir, sft_model, sft_dir, tokenizer, prompts, samples, sft_samples,
                    policy_key) -> dict:
    """The configured judge's metrics (``judge=none`` reports none)."""
    if cfg.judge.name == "none":
        return {}
    from po_bench.judges.runner import run_judge

    return run_judge(cfg, store=store, policy=policy, policy_dir=policy_dir, sft_model=sft_model, sft_dir=sft_dir,
                     tokenizer=tokenizer, prompts=prompts, samples=samples, sft_samples=sft_samples,
                     policy_key=policy_key)

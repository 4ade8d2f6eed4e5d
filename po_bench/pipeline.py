"""One run, for every kind of data: SFT -> preference pairs -> preference training -> generation
-> judging -> metrics.

The stage sequence is written once.  What differs between the embedded world and real
preference data is the *data source* (:mod:`po_bench.data.sources`): where SFT examples, pairs,
eval prompts and held-out pairs come from, and whether a gold scorer exists.  Every artifact is
built by a stage of :mod:`po_bench.stages` from its spec (:func:`po_bench.specs.plan`), through
the store: a sweep over losses and seeds trains one SFT model per seed, and re-running a finished
configuration recomputes nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from po_bench import stages
from po_bench.common import timed, write_jsonl
from po_bench.config import check_machine, validate
from po_bench.generation import generate
from po_bench.judges import implicit
from po_bench.results import tracking
from po_bench.results.scores import world_rows, write_scores
from po_bench.specs import plan, run_options
from po_bench.store import Store
from po_bench.training.methods import method_of


def run(cfg, out_dir: str | Path) -> dict:
    """Run every enabled stage for one configuration; returns the metrics dict."""
    validate(cfg)
    check_machine(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    store = Store(cfg.cache_dir)
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()
    p = plan(cfg)
    if cfg.launch.dry_run:  # the exact launch command lines of the training stages, then stop
        from po_bench.training.launch import dry_run

        dry_run(cfg.launch, store, {"sft": p.sft, "policy": p.policy})
    src, loss = p.source, cfg.loss
    opts = {**run_options(cfg), **{k: cfg.generation[k] for k in ("progress", "batch_size", "multiprocessing")}}
    train_opts = run_options(cfg)

    # ---- the starting checkpoint (SFT) ------------------------------------------------------------
    sft_metrics: dict = {}
    with timed(seconds, "sft"):
        if p.sft is not None:
            stages.get(store, "sft", p.sft, train_opts, launch=cfg.launch)
            sft_metrics = json.loads((Path(stages.checkpoint_dir(store, p.start)) / "train_metrics.json").read_text())
        start_dir = stages.checkpoint_dir(store, p.start)
        tokenizer = stages.load_tokenizer(start_dir, p.start.get("base") or p.sft["model"])
        sft_model = stages.load_model(start_dir, p.start.get("base") or p.sft["model"])
    loaded = {"model": sft_model, "tokenizer": tokenizer}

    def samples(role: str, desc: str, **objs):
        with timed(seconds, "generate"):
            return stages.get(store, "samples", p.samples[role], opts, desc=desc, **(objs or loaded))

    # ---- preference pairs -------------------------------------------------------------------------
    pairs_art: dict | None = None
    if p.pairs is not None:
        if "pref_samples" in p.samples:
            samples("pref_samples", "on-policy samples")
        with timed(seconds, "data"):
            pairs_art = stages.get(store, "pairs", p.pairs)
    pair_weights: dict = {}
    if p.pair_scores is not None:  # MADPO's reward model / Sem-DPO's embedding distances, before training
        with timed(seconds, "pair_scores"):
            pair_weights = pair_weights_report(cfg, stages.pair_score_values(store, p.pair_scores, train_opts))

    # ---- preference training ----------------------------------------------------------------------
    policy, train_metrics = sft_model, {"train_loss_final": sft_metrics.get("train_loss_final")}
    if p.policy is not None:
        with timed(seconds, "train"):
            generate.release()  # a vLLM engine from the sampling stages frees its memory first
            if cfg.launch.strategy != "local":  # the process group gets the devices to itself
                loaded.clear()
                sft_model = None
                free_accelerator_memory()
            # TRL streams the training curves to the run's wandb run while it trains (rank 0): the trainer
            # reports to wandb by the run option report_to (passed to a process group's ranks in --opts)
            with tracking.live_run_env(
                cfg.tracking, out_dir, *tracking.group_and_name(cfg, out_dir), init_here=cfg.launch.strategy == "local"
            ) as live_run:
                live_opts = {**train_opts, "report_to": "wandb" if live_run else "none"}
                if p.guide is not None:  # TGDPO: the guide policy (e.g. DPO on the same pairs) trains first
                    stages.get(store, "policy", p.guide, live_opts, launch=cfg.launch, tokenizer=tokenizer)
                policy_dir = stages.get(store, "policy", p.policy, live_opts, launch=cfg.launch, tokenizer=tokenizer)
            policy = stages.load_model(str(policy_dir), p.policy["model"])
            train_metrics = json.loads((policy_dir / "train_metrics.json").read_text())
            if sft_model is None:
                sft_model = stages.load_model(start_dir, p.start.get("base") or p.sft["model"])
                loaded.update(model=sft_model, tokenizer=tokenizer)
    policy_dir = stages.checkpoint_dir(store, p.policy_ref)

    metrics: dict = {
        "train_loss_final": train_metrics.get("train_loss_final"),
        "train": {
            k: train_metrics[k]
            for k in ("world_size", "per_device_batch", "grad_accum", "global_batch", "steps", "params")
            if k in train_metrics
        },
    }
    if src.gold is None:
        metrics.update(gold_reward=None, gold_reward_sft=None, win_rate_vs_sft=None, implicit_reward_accuracy_ood=None)
    metrics["data"] = data_report(cfg, p, pairs_art, tokenizer)
    if pair_weights:
        metrics["pair_weights"] = pair_weights

    # ---- generation -------------------------------------------------------------------------------
    if cfg.stages.generate:
        prompts = stages.resolve_prompts(store, p.eval_prompts)
        sft_samples = samples("sft_samples", "sft samples (eval)")
        out = (
            samples("generations", "policy samples (eval)", model=policy, tokenizer=tokenizer)
            if "generations" in p.samples
            else sft_samples
        )

        # ---- judging ------------------------------------------------------------------------------
        if cfg.stages.judge:
            with timed(seconds, "judge"):
                if src.gold is not None:
                    metrics.update(src.gold(prompts, out, sft_samples))
                metrics.update(implicit.kl_and_length(policy, sft_model, tokenizer, prompts, out))
            kind = loss.implicit_reward if method_of(loss).trains_preference else "avg_logp"
            sampled = {  # each held-out split's SFT sample pairs (the world's eval and OOD; real data: none)
                name: (
                    stages.resolve_prompts(store, p.samples[f"heldout_{split}"]["prompts"]),
                    samples(f"heldout_{split}", f"held-out pairs ({split})"),
                )
                for name, split in src.heldout_splits().items()
            }
            held = src.heldout_pairs(sampled, pairs_art)
            with timed(seconds, "judge"):
                for name, pairs in held.items():  # None: not measured (real data without eval pairs)
                    metrics[name] = (
                        implicit.implicit_reward_accuracy(policy, sft_model, tokenizer, pairs, kind, float(loss.beta))
                        if pairs is not None
                        else None
                    )
                from po_bench.judges.runner import run_judges

                metrics.update(  # every judge of the run the runner runs (gold and none: none)
                    run_judges(
                        cfg,
                        store=store,
                        policy=policy,
                        policy_dir=policy_dir,
                        sft_model=sft_model,
                        sft_dir=start_dir,
                        tokenizer=tokenizer,
                        prompts=prompts,
                        samples=out,
                        sft_samples=sft_samples,
                        policy_key=p.policy_ref,
                        sft_key=p.start,
                    )
                )
        rows = src.sample_rows(prompts, out, sft_samples)
        write_jsonl(out_dir / "samples.jsonl", rows[:32])
        if src.gold is not None and cfg.stages.judge:  # per-prompt scores: comparisons between runs pair on them
            write_scores(out_dir, world_rows(prompts, [r["gold_policy"] for r in rows], [r["gold_sft"] for r in rows]))

    seconds["total"] = round(time.perf_counter() - t_start, 3)
    metrics["seconds"] = seconds
    if torch.cuda.is_available():  # this process's peak (generation with hf, scoring; not a process group's)
        metrics["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    built = set(store.misses)  # read again later in the run: still built here, not reused
    metrics["artifacts"] = {
        "hits": sorted(set(store.hits) - built),
        "built": sorted(built),
        "quarantined": sorted(store.quarantined),
    }  # failed verification: moved aside, rebuilt
    metrics["history"] = train_metrics.get("history", [])
    return metrics


def pair_weights_report(cfg, scores: list[float]) -> dict:
    """``metrics.pair_weights`` of run.json: the distribution of the per-pair scores (MADPO: the reward
    model's margins; Sem-DPO: the embedding distances) and of the weights the loss gives them."""
    from po_bench.training.losses import pair_weights
    from po_bench.training.pair_scores import summary

    w = pair_weights(cfg.loss.function, dict(cfg.loss.args), scores).tolist()
    return {
        "kind": cfg.loss.pair_scores.kind,
        "score": summary(scores),
        "weight": summary(w),
        "score_positive": sum(x > 0 for x in scores) / max(1, len(scores)),
    }


def free_accelerator_memory() -> None:
    """Collect the models this process dropped and hand their accelerator memory back, before a
    process group trains."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def data_report(cfg, p, pairs_art: dict | None, tokenizer) -> dict:
    """``metrics.data`` of run.json: the pairs' statistics, label noise, leakage of eval prompts
    into training (and, for real data, against the public benchmarks) and every count of rows
    left out on the way (the source's :meth:`~po_bench.data.sources.DataSource.data_report`)."""
    if pairs_art is None:
        return {}
    return p.source.data_report(pairs_art, tokenizer, cfg.train.max_length)

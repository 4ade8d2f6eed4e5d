"""One run: data -> SFT -> preference training -> generation -> judging -> run record.

Each stage is a function of its own module; this file only wires them together and routes every
artifact through the :class:`~po_bench.store.Store`, keyed by the config fields that determine it:

=============  ==========================================================================
artifact       key fields
=============  ==========================================================================
sft            world spec, model config, SFT hyperparameters, seed
sft_samples    sft key, generation config, seed (SFT samples on eval/OOD prompts)
pref_samples   sft key, generation config, seed (two on-policy samples per pref prompt)
ref_logps      sft key, the exact training pairs, max_length (DPO-backend reference log-probs)
policy         everything above + loss, noise, annotator, training hyperparameters
generations    policy key, generation config, seed
judgments      generations key, judge
=============  ==========================================================================

So a sweep over losses and seeds trains one SFT model per seed, and re-running a finished
configuration recomputes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from po_bench.data import world_pairs as data, world
from po_bench.generation import generate
from po_bench.judges import implicit as judge
from po_bench.training import models
from po_bench.config import validate
from po_bench.store import Store, atomic_write_json, fingerprint

log = logging.getLogger("po_bench")


@contextmanager
def _timed(seconds: dict, stage: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - t0, 3)


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def model_fields(cfg) -> dict:
    """The model config fields that determine a checkpoint (reference_id only labels tables)."""
    return {k: v for k, v in _plain(cfg.model).items() if k != "reference_id"}


_VLLM_ENGINE_FIELDS = ("n", "dtype", "max_model_len", "gpu_memory_utilization", "kv_cache_memory_gib",
                       "enforce_eager", "max_num_seqs", "tensor_parallel_size", "multiprocessing", "engine_args")


def _gen_fields(cfg) -> dict:
    """Generation settings that determine samples (not speed knobs; hf ignores vLLM's engine options)."""
    g = _plain(cfg.generation)
    for k in ("progress", "batch_size", "multiprocessing"):
        g.pop(k, None)
    if g.get("backend") == "hf":
        for k in _VLLM_ENGINE_FIELDS:
            g.pop(k, None)
    return g


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _load_model(path: Path, model_cfg):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, model_cfg.dtype))


def run(cfg, out_dir: str | Path) -> dict:
    """Run every enabled stage for one configuration; returns the metrics dict."""
    from po_bench.training import trl_adapter

    validate(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    store = Store(cfg.cache_dir)
    seconds: dict[str, float] = {}
    seed = int(cfg.seed)
    t_start = time.perf_counter()

    if cfg.dataset.kind != "world":
        from po_bench import pipeline_real

        metrics = pipeline_real.run(cfg, out_dir, store, seconds)
        seconds["total"] = round(time.perf_counter() - t_start, 3)
        metrics["seconds"] = seconds
        metrics["artifacts"] = {"hits": sorted(set(store.hits)), "built": sorted(set(store.misses))}
        return metrics

    # ---- data ---------------------------------------------------------------------------
    with _timed(seconds, "data"):
        spec = data.world_spec(cfg.dataset)
        splits = {s: world.make_prompts(spec, s) for s in ("pref", "eval", "ood")}
        tokenizer = models.train_world_tokenizer() if cfg.model.kind == "tiny" else None

    # ---- SFT ----------------------------------------------------------------------------
    sft_fields = {
        "world": {k: v for k, v in data.spec_fields(spec).items()
                  if k not in ("n_pref", "n_eval", "n_ood", "ood_keywords")},  # what SFT data depends on
        "model": model_fields(cfg),
        "sft": {k: cfg.train[k] for k in ("sft_lr", "sft_epochs", "sft_batch_size", "max_length",
                                            "lr_scheduler", "warmup_ratio")},
        "seed": seed,
    }
    sft_info: dict = {}

    def build_sft(d: Path) -> None:
        _seed_everything(seed)
        model, tok = models.load_model_and_tokenizer(cfg.model, seed=seed)
        if cfg.stages.sft:
            res = trl_adapter.train_sft(model, tok, world.sft_examples(spec), cfg.train, d / "trainer", seed)
            sft_info.update(res)
        model.save_pretrained(str(d))
        tok.save_pretrained(str(d))
        atomic_write_json(d / "train_metrics.json", sft_info)

    with _timed(seconds, "sft"):
        sft_dir = store.get_or_build_dir("sft", sft_fields, build_sft)
        sft_model = _load_model(sft_dir, cfg.model)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(sft_dir), padding_side="left")
        sft_metrics = json.loads((sft_dir / "train_metrics.json").read_text())

    gen_fields = _gen_fields(cfg)

    # SFT samples on held-out prompts: one per eval prompt (the comparison for win rate and
    # gold_reward_sft) and two per eval/OOD prompt (held-out pairs for implicit-reward accuracy).
    def build_sft_samples() -> dict:
        g = cfg.generation
        return {
            "eval": generate.generate(sft_model, tokenizer, splits["eval"], g, seed, "sft samples (eval)", sft_dir),
            "pairs_eval": _two_samples(sft_model, tokenizer, splits["eval"], g, seed + 1000, sft_dir),
            "pairs_ood": _two_samples(sft_model, tokenizer, splits["ood"], g, seed + 2000, sft_dir),
        }

    with _timed(seconds, "generate"):
        sft_samples = store.get_or_build_json(
            "sft_samples", {"sft": sft_fields, "gen": gen_fields, "seed": seed}, build_sft_samples)

    # ---- preference training --------------------------------------------------------------
    loss = cfg.loss
    data_stats: dict = {}
    train_metrics: dict = {"train_loss_final": sft_metrics.get("train_loss_final")}
    policy_key: dict = {"sft": sft_fields}
    policy, policy_dir = sft_model, sft_dir
    if loss.backend != "sft" and cfg.stages.train:
        with _timed(seconds, "data"):
            pref = store.get_or_build_json(
                "pref_samples", {"sft": sft_fields, "gen": gen_fields, "seed": seed},
                lambda: _two_samples(sft_model, tokenizer, splits["pref"], cfg.generation, seed + 3000, sft_dir))
            pairs, data_stats = data.label_and_noise(splits["pref"], pref, cfg.dataset, cfg.noise, seed)
            from po_bench.data.formats import leakage

            data_stats["leakage"] = leakage(splits["pref"], {"world_eval": splits["eval"], "world_ood": splits["ood"]})
        if not pairs:
            raise RuntimeError("no preference pairs left after labelling (every sample pair was identical)")
        policy_key = {
            "sft": sft_fields, "gen": gen_fields, "loss": _plain(loss), "noise": _plain(cfg.noise),
            "annotator": {"temperature": cfg.dataset.annotator_temperature,
                          "length_bias": cfg.dataset.annotator_length_bias},
            "train": train_fields(cfg),
            "seed": seed,
        }
        policy, train_metrics, policy_dir = train_policy(cfg, store, seconds, sft_dir, sft_fields, tokenizer, pairs,
                                                         policy_key)

    metrics: dict = {"train_loss_final": train_metrics.get("train_loss_final")}

    # ---- generation -----------------------------------------------------------------------
    if cfg.stages.generate:
        with _timed(seconds, "generate"):
            if policy is sft_model:
                samples = sft_samples["eval"]
            else:
                samples = store.get_or_build_json(
                    "generations", {"policy": policy_key, "gen": gen_fields, "seed": seed},
                    lambda: generate.generate(policy, tokenizer, splits["eval"], cfg.generation, seed,
                                              "policy samples (eval)", policy_dir))

        # ---- judging ----------------------------------------------------------------------
        if cfg.stages.judge:
            with _timed(seconds, "judge"):
                metrics.update(judge.gold_metrics(splits["eval"], samples, sft_samples["eval"], spec.weights))
                metrics.update(judge.kl_and_length(policy, sft_model, tokenizer, splits["eval"], samples))
                kind = loss.implicit_reward if loss.backend != "sft" else "avg_logp"
                for name, key, prompts in (("implicit_reward_accuracy", "pairs_eval", splits["eval"]),
                                           ("implicit_reward_accuracy_ood", "pairs_ood", splits["ood"])):
                    held = world.gold_pairs(prompts, sft_samples[key], spec.weights)
                    metrics[name] = judge.implicit_reward_accuracy(policy, sft_model, tokenizer, held, kind,
                                                                   float(loss.beta))
        _write_samples(out_dir / "samples.jsonl", splits["eval"], samples, sft_samples["eval"], spec)

    seconds["total"] = round(time.perf_counter() - t_start, 3)
    metrics["seconds"] = seconds
    metrics["data"] = data_stats
    metrics["artifacts"] = {"hits": sorted(set(store.hits)), "built": sorted(set(store.misses))}
    metrics["history"] = train_metrics.get("history", [])
    return metrics


def train_fields(cfg) -> dict:
    """Training hyperparameters that determine the trained policy (not logging or checkpointing)."""
    return {k: v for k, v in _plain(cfg.train).items() if k not in ("progress", "logging_steps", "save_steps")}


def train_policy(cfg, store: Store, seconds: dict, sft_dir, sft_fields: dict, tokenizer, pairs: list[dict],
                 policy_key: dict):
    """Preference stage (both pipelines): the policy artifact for ``policy_key``, trained from the
    SFT checkpoint on ``pairs`` unless the store has it; DPO-backend reference log-probs go through
    the store too.  Returns (policy model, training metrics)."""
    from po_bench.training import trl_adapter

    loss, seed = cfg.loss, int(cfg.seed)
    ref_fields = {"sft": sft_fields, "pairs": fingerprint(pairs), "max_length": cfg.train.max_length}
    ref_cache = (lambda: store.load_json("ref_logps", ref_fields),
                 lambda obj: store.save_json("ref_logps", ref_fields, obj))

    def build_policy(out: Path) -> None:
        _seed_everything(seed)
        pol = _load_model(sft_dir, cfg.model)
        ref = None if loss.reference_free else _load_model(sft_dir, cfg.model)
        res = trl_adapter.train_preference(pol, ref, tokenizer, pairs, loss, cfg.train, out / "trainer", seed,
                                           ref_logps_cache=ref_cache if loss.backend in ("dpo", "pobench") else None,
                                           model_cfg=cfg.model)
        pol = trl_adapter.merged(res.pop("model"))  # LoRA adapters merged: a plain checkpoint
        pol.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        atomic_write_json(out / "train_metrics.json", res)

    with _timed(seconds, "train"):
        policy_dir = store.get_or_build_dir("policy", policy_key, build_policy)
        generate.release()  # a vLLM engine from the sampling stages frees its memory first
        return (_load_model(policy_dir, cfg.model), json.loads((policy_dir / "train_metrics.json").read_text()),
                policy_dir)


def _two_samples(model, tokenizer, prompts, gen_cfg, seed: int, model_path=None) -> list[list[str]]:
    a = generate.generate(model, tokenizer, prompts, gen_cfg, seed, "on-policy samples (1/2)", model_path)
    b = generate.generate(model, tokenizer, prompts, gen_cfg, seed + 1, "on-policy samples (2/2)", model_path)
    return [[x, y] for x, y in zip(a, b)]


def _write_samples(path: Path, prompts, samples, sft_samples, spec, n: int = 32) -> None:
    _write_jsonl(path, [{"prompt": p, "policy": y, "sft": s,
                         "gold_policy": world.gold_reward(p, y, spec.weights),
                         "gold_sft": world.gold_reward(p, s, spec.weights)}
                        for p, y, s in list(zip(prompts, samples, sft_samples))[:n]])


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    from po_bench.store import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))

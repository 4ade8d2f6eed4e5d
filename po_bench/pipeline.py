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

import gc
import json
import sys
import time
from pathlib import Path

from po_bench import reward_models, stages
from po_bench.common import cpu_only_torch, timed, write_jsonl
from po_bench.config import check_machine, validate
from po_bench.generation import generate
from po_bench.judges import implicit, r_to_q
from po_bench.judges.api import Reads, judge_class
from po_bench.judges.runner import run_judges, runner_judges
from po_bench.results import tracking
from po_bench.results.ches import run_ches_report
from po_bench.results.scores import world_rows, write_scores
from po_bench.specs import implicit_spec, plan, run_options, spec_key
from po_bench.store import Store
from po_bench.training import probe_set
from po_bench.training.labellers import labeller_options
from po_bench.training.launch import dry_run
from po_bench.training.losses import pair_weights
from po_bench.training.methods import method_of
from po_bench.training.pair_scores import summary


def run(cfg, out_dir: str | Path) -> dict:
    """Run every enabled stage for one configuration; returns the metrics dict.

    What the run reads from the store it does not compute again, and a model is loaded only to compute
    (:class:`Checkpoints`): a run whose artifacts all come from the store imports no torch."""
    validate(cfg)
    check_machine(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = Store(cfg.cache_dir)
    store.before_build = lambda: torch_threads(cfg)
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()
    p = plan(cfg)
    if cfg.launch.dry_run:  # the exact launch command lines of the training stages, then stop
        dry_run(cfg.launch, store, {"sft": p.sft, "policy": p.policy})
    src, loss = p.source, cfg.loss
    opts = {**run_options(cfg), **{k: cfg.generation[k] for k in ("progress", "batch_size", "multiprocessing")}}
    train_opts = run_options(cfg)
    ckpt = Checkpoints(cfg, store, p)

    # ---- the starting checkpoint (SFT) ------------------------------------------------------------
    sft_metrics: dict = {}
    with timed(seconds, "sft"):
        if p.sft is not None:
            stages.get(store, "sft", p.sft, train_opts, launch=cfg.launch)
            sft_metrics = json.loads((Path(stages.checkpoint_dir(store, p.start)) / "train_metrics.json").read_text())
        start_dir = ckpt.start_dir

    def samples(role: str, desc: str, policy: bool = False):
        spec = p.samples[role]
        with timed(seconds, "generate"):
            # the loaded model and tokenizer save loading them again to build (never change the result); a cached
            # run reads the samples without them
            objs = {}
            if not store.exists("samples", spec):
                objs = {"model": ckpt.policy if policy else ckpt.sft, "tokenizer": ckpt.tokenizer}
            return stages.get(store, "samples", spec, opts, desc=desc, **objs)

    # ---- an iterative method's rounds (sample -> label -> train, each from the store when there) ----------
    rounds_report: list[dict] = []
    if p.rounds:
        with tracking.live_run_env(
            cfg.tracking,
            out_dir,
            *tracking.group_and_name(cfg, out_dir),
            init_here=cfg.launch.strategy == "local" and not store.exists("policy", p.policy),
        ) as live_run:
            live_opts = {**train_opts, "report_to": "wandb" if live_run else "none"}
            rounds_report = run_rounds(cfg, store, p, ckpt, opts, live_opts, seconds)

    # ---- preference pairs -------------------------------------------------------------------------
    pairs_art: dict | None = None
    ches: dict | None = None
    if p.pairs is not None:
        if "pref_samples" in p.samples:
            samples("pref_samples", "on-policy samples")
        if p.ches is not None:  # CHES of the training pairs at the start (diagnostics.ches; dataset.filter reads it)
            with timed(seconds, "ches"):
                objs = {} if store.exists("ches", p.ches) else {"model": ckpt.sft, "tokenizer": ckpt.tokenizer}
                ches = stages.get(store, "ches", p.ches, **objs)
        with timed(seconds, "data"):
            pairs_art = stages.get(store, "pairs", p.pairs)
    pair_weights: dict = {}
    if p.pair_scores is not None:  # MADPO's reward model / Sem-DPO's embedding distances, before training
        with timed(seconds, "pair_scores"):
            pair_weights = pair_weights_report(cfg, stages.pair_score_values(store, p.pair_scores, train_opts))

    # ---- preference training ----------------------------------------------------------------------
    train_metrics = {"train_loss_final": sft_metrics.get("train_loss_final")}
    if p.policy is not None:
        with timed(seconds, "train"):
            generate.release()  # a vLLM engine from the sampling stages frees its memory first
            if cfg.launch.strategy != "local":  # the process group gets the devices to itself
                ckpt.release_sft()
                free_accelerator_memory()
            # TRL streams the training curves to the run's wandb run while it trains (rank 0): the trainer
            # reports to wandb by the run option report_to (passed to a process group's ranks in --opts); the
            # run is opened here only when this process trains (a policy from the store logs at the end)
            trains = any(s is not None and not store.exists("policy", s) for s in (p.guide, p.policy))
            with tracking.live_run_env(
                cfg.tracking,
                out_dir,
                *tracking.group_and_name(cfg, out_dir),
                init_here=cfg.launch.strategy == "local" and trains,
            ) as live_run:
                live_opts = {**train_opts, "report_to": "wandb" if live_run else "none"}
                if "online" in p.policy:  # the preference source's run-time options (a judge's endpoint: no key)
                    live_opts["labeller"] = labeller_options(method_of(cfg.loss).args, cfg.cache_dir)
                if p.guide is not None:  # TGDPO: the guide policy (e.g. DPO on the same pairs) trains first
                    stages.get(
                        store, "policy", p.guide, live_opts, launch=cfg.launch, **ckpt.to_build("policy", p.guide)
                    )
                policy_dir = stages.get(
                    store, "policy", p.policy, live_opts, launch=cfg.launch, **ckpt.to_build("policy", p.policy)
                )
            train_metrics = json.loads((policy_dir / "train_metrics.json").read_text())
    policy_dir = stages.checkpoint_dir(store, p.policy_ref)

    metrics: dict = {
        "train_loss_final": train_metrics.get("train_loss_final"),
        "train": {
            k: train_metrics[k]
            for k in ("world_size", "per_device_batch", "grad_accum", "global_batch", "steps", "params")
            if k in train_metrics
        },
    }
    if "online" in train_metrics:  # an online method: samples, labels, judge calls and tokens, time per phase
        metrics["online"] = train_metrics["online"]
        inputs = p.policy["online"]["labeller"].get("inputs") or {}
        if inputs:  # the stored artifacts its preference source read (the explicit source's reward model)
            metrics["online"]["labeller_inputs"] = {n: spec_key(r["stage"], r["spec"]) for n, r in inputs.items()}
            rms = [r["spec"] for r in inputs.values() if r["stage"] == "reward_model"]
            if rms:  # the pairs its reward model learnt from (labels spent before the loop: iterative DPO's field)
                metrics["online"]["reward_model_pairs"] = sum(
                    len(stages.get(store, "pairs", rm["pairs"], opts)["train"]) for rm in rms
                )
        if p.guide is not None:  # RTO: its DPO guide policy's labels (the offline pairs it was trained on)
            metrics["online"]["guide"] = {
                "policy": spec_key("policy", p.guide),
                "pairs": len(stages.get(store, "pairs", p.guide["pairs"])["train"]),
            }
    if src.gold is None:
        metrics.update(gold_reward=None, gold_reward_sft=None, win_rate_vs_sft=None, implicit_reward_accuracy_ood=None)
    metrics["data"] = data_report(cfg, p, pairs_art, Deferred(lambda: ckpt.tokenizer))
    if pair_weights:
        metrics["pair_weights"] = pair_weights
    if p.rounds:  # samples generated, labels requested, judge calls and tokens, wall time per phase, per round
        metrics["online"] = online_report(cfg, rounds_report)
    if cfg.diagnostics.ches:
        trained = train_metrics if p.policy is not None else None
        metrics.setdefault("diagnostics", {})["ches"] = run_ches_report(ches, pairs_art, trained)
    probe = probe_set.run_report(cfg, p.policy, train_metrics, src)
    if probe is not None:  # the probe's trajectory (diagnostics.probe), from the policy artifact
        metrics.setdefault("diagnostics", {})["probe"] = probe

    # ---- generation -------------------------------------------------------------------------------
    if cfg.stages.generate:
        prompts = stages.resolve_prompts(store, p.eval_prompts)
        sft_samples = samples("sft_samples", "sft samples (eval)")
        out = (
            samples("generations", "policy samples (eval)", policy=True) if "generations" in p.samples else sft_samples
        )

        # ---- judging ------------------------------------------------------------------------------
        if cfg.stages.judge:
            with timed(seconds, "judge"):
                if src.gold is not None:
                    metrics.update(src.gold(prompts, out, sft_samples))
            sampled = {  # each held-out split's SFT sample pairs (the world's eval and OOD; real data: none)
                name: (
                    stages.resolve_prompts(store, p.samples[f"heldout_{split}"]["prompts"]),
                    samples(f"heldout_{split}", f"held-out pairs ({split})"),
                )
                for name, split in src.heldout_splits().items()
            }
            held = src.heldout_pairs(sampled, pairs_art)
            with timed(seconds, "judge"):
                kind = loss.implicit_reward if method_of(loss).trains_preference else "avg_logp"
                metrics.update(implicit_judges(store, implicit_spec(cfg, p), ckpt, prompts, out, held, kind, loss.beta))
                judges = runner_judges(cfg)  # every judge of the run the runner runs (gold and none: none)
                if any(judge_class(j.name).reads is Reads.SAMPLES for j in judges):
                    torch_threads(cfg)  # it may score the samples here (a reward model), outside the store
                if judges:  # the models load only to answer (answers from the store need none)
                    metrics.update(
                        run_judges(
                            cfg,
                            store=store,
                            policy=Deferred(lambda: ckpt.policy),
                            policy_dir=policy_dir,
                            sft_model=Deferred(lambda: ckpt.sft),
                            sft_dir=start_dir,
                            tokenizer=Deferred(lambda: ckpt.tokenizer),
                            prompts=prompts,
                            samples=out,
                            sft_samples=sft_samples,
                            policy_key=p.policy_ref,
                            sft_key=p.start,
                        )
                    )
            if cfg.diagnostics.beams or cfg.diagnostics.token_credit:  # From r to Q*: judges/r_to_q.py
                with timed(seconds, "diagnostics"):
                    loaded = lambda: {"policy": ckpt.policy, "reference": ckpt.sft, "tokenizer": ckpt.tokenizer}
                    gold = None if src.gold is None else lambda ys: src.gold(prompts, ys, sft_samples)["gold_reward"]
                    metrics.setdefault("diagnostics", {}).update(r_to_q.report(cfg, store, p, opts, loaded, gold))
            if cfg.diagnostics.reward_models:  # DPORM vs EXRM in distribution and under shifts (Lin et al.)
                with timed(seconds, "diagnostics"):
                    rm = reward_models.diagnostic(cfg, store, p, ckpt, opts)
                if rm is not None:
                    metrics.setdefault("diagnostics", {})["reward_models"] = rm
        rows = src.sample_rows(prompts, out, sft_samples)
        write_jsonl(out_dir / "samples.jsonl", rows[:32])
        if src.gold is not None and cfg.stages.judge:  # per-prompt scores: comparisons between runs pair on them
            write_scores(out_dir, world_rows(prompts, [r["gold_policy"] for r in rows], [r["gold_sft"] for r in rows]))

    seconds["total"] = round(time.perf_counter() - t_start, 3)
    metrics["seconds"] = seconds
    torch = imported_torch()
    if torch is not None and torch.cuda.is_available():  # this process's peak (generation with hf, scoring)
        metrics["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    built = set(store.misses)  # read again later in the run: still built here, not reused
    metrics["artifacts"] = {
        "hits": sorted(set(store.hits) - built),
        "built": sorted(built),
        "quarantined": sorted(store.quarantined),
    }  # failed verification: moved aside, rebuilt
    metrics["history"] = train_metrics.get("history", [])
    return metrics


def run_rounds(cfg, store: Store, p, ckpt, opts: dict, train_opts: dict, seconds: dict) -> list[dict]:
    """Build an iterative method's rounds in order (specs.iterative_rounds): each round's samples (generate: k per
    pref prompt from the last round's policy), pairs (label: the labeller's scores, its reward model first) and
    policy (train: the inner loss from the last round's policy), each read from the store when there.  Returns per
    round what run.json's ``online`` reports: counts, the gold reward of the round's samples (the world), seconds
    per phase and what came from the store."""
    out = []
    for r, rnd in enumerate(p.rounds, 1):
        phase: dict[str, float] = {}
        cached = {role: store.exists(s["stage"], s) for role, s in rnd.items() if s is not None}
        with timed(phase, "generate"):
            objs = {}  # round 1 samples the start: the loaded SFT model saves loading it again
            if r == 1 and not cached["samples"]:
                objs = {"model": ckpt.sft, "tokenizer": ckpt.tokenizer}
            samples = stages.get(store, "samples", rnd["samples"], opts, desc=f"round {r}: samples", **objs)
        rm_pairs = None
        with timed(phase, "label"):
            if rnd["reward_model"] is not None:
                stages.get(
                    store,
                    "reward_model",
                    rnd["reward_model"],
                    train_opts,
                    **ckpt.to_build("reward_model", rnd["reward_model"]),
                )
                # the reward model's own labels: the start's annotator pairs it was trained on
                rm_pairs = len(stages.get(store, "pairs", rnd["reward_model"]["pairs"], opts)["train"])
            pairs_art = stages.get(store, "pairs", rnd["pairs"], opts)
        with timed(phase, "train"):
            generate.release()  # a vLLM engine from the sampling stage frees its memory first
            stages.get(
                store, "policy", rnd["policy"], train_opts, launch=cfg.launch, **ckpt.to_build("policy", rnd["policy"])
            )
        for k, v in phase.items():
            seconds[k] = round(seconds.get(k, 0.0) + v, 3)
        prompts = stages.resolve_prompts(store, rnd["samples"]["prompts"])
        flat_p = [x for x, ys in zip(prompts, samples) for _ in ys]
        flat_y = [y for ys in samples for y in ys]
        stats = pairs_art["stats"]
        out.append(
            {
                "round": r,
                "samples_generated": len(flat_y),
                "labels_requested": stats.get("labels_requested", len(flat_y)),
                "labeller": stats.get("labeller", "annotator"),
                "judge_calls": 0,  # every labeller here is local (the world, a reward model, the policy)
                "judge_tokens": 0,
                "pairs": len(pairs_art["train"]),
                "reward_model_pairs": rm_pairs,  # labeller=explicit, round 1: the pairs its reward model learnt from
                "labeller_gold_agreement": stats.get("labeller_gold_agreement", stats.get("annotator_gold_agreement")),
                "gold_reward_samples": (
                    p.source.gold(flat_p, flat_y, flat_y)["gold_reward"] if p.source.gold is not None else None
                ),
                "seconds": phase,
                "from_store": cached,
            }
        )
    return out


def online_report(cfg, rounds: list[dict]) -> dict:
    """``metrics.online`` of run.json for an iterative method: its settings, each round's report and the totals."""
    a = cfg.loss.args
    return {
        "method": cfg.loss.name,
        "rounds": len(rounds),
        "inner": str(a.get("inner", "dpo")),
        "labeller": str(a.get("labeller", "gold")),
        "ref_update": str(a.get("ref_update", "fixed")),
        "per_round": rounds,
        "samples_generated": sum(x["samples_generated"] for x in rounds),
        "labels_requested": sum(x["labels_requested"] for x in rounds),
        "reward_model_pairs": sum(x["reward_model_pairs"] or 0 for x in rounds),
        "judge_calls": 0,
        "judge_tokens": 0,
        "seconds": {k: round(sum(x["seconds"].get(k, 0.0) for x in rounds), 3) for k in ("generate", "label", "train")},
    }


def torch_threads(cfg) -> None:
    """torch's threads (``threads``; 0: torch's default, every core), set before this process computes with
    torch: a stage builds, a model loads, a judge scores.  A run that only reads the store imports no torch."""
    if cfg.threads:
        import torch  # lazy: torch (~1 s): only for a run that computes

        torch.set_num_threads(int(cfg.threads))


def imported_torch():
    """torch when this process may have used a GPU through it, else None: torch as imported, or imported now
    where it may see a GPU (a CPU-only build is known without importing it)."""
    if "torch" in sys.modules or not cpu_only_torch():
        import torch  # lazy: torch (~1 s): a CPU-only build never reports GPU memory

        return torch
    return None


class Checkpoints:
    """The run's tokenizer, SFT model (the start: the reference of the implicit judges) and policy, each
    loaded on first use and kept: a run whose artifacts all come from the store loads none of them (no torch,
    no transformers)."""

    def __init__(self, cfg, store: Store, p):
        self.cfg, self.store, self.p = cfg, store, p
        self.model = p.start.get("base") or p.sft["model"]
        self.loaded: dict = {}

    @property
    def start_dir(self) -> str:
        return stages.checkpoint_dir(self.store, self.p.start)

    def _get(self, what: str, load):
        if what not in self.loaded:
            torch_threads(self.cfg)
            self.loaded[what] = load()
        return self.loaded[what]

    @property
    def tokenizer(self):
        return self._get("tokenizer", lambda: stages.load_tokenizer(self.start_dir, self.model))

    @property
    def sft(self):
        return self._get("sft", lambda: stages.load_model(self.start_dir, self.model))

    @property
    def policy(self):
        """The trained policy (the SFT model itself for a run without a preference stage)."""
        if self.p.policy is None:
            return self.sft
        path = stages.checkpoint_dir(self.store, self.p.policy_ref)
        return self._get("policy", lambda: stages.load_model(path, self.p.policy["model"]))

    def release_sft(self) -> None:
        """Drop the loaded SFT model (a process group is about to train); it is loaded again when needed."""
        self.loaded.pop("sft", None)

    def to_build(self, stage: str, spec: dict) -> dict:
        """The tokenizer for a training stage to build with (it saves loading it again, never changes the
        result); nothing when the artifact is in the store."""
        return {} if self.store.exists(stage, spec) else {"tokenizer": self.tokenizer}


class Deferred:
    """An object (a model, a tokenizer) loaded when first used: a report that never reads the tokenizer (the
    world's data report), or a judge whose answers all come from the store, costs no load."""

    def __init__(self, load):
        object.__setattr__(self, "_load", load)

    def __getattr__(self, name: str):
        return getattr(self._load(), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._load(), name, value)

    def __call__(self, *args, **kwargs):
        return self._load()(*args, **kwargs)


def implicit_judges(store: Store, spec: dict, ckpt: Checkpoints, prompts, samples, held: dict, kind: str, beta) -> dict:
    """The implicit judges' numbers (:mod:`po_bench.judges.implicit`) from the store (``implicit`` artifact,
    :func:`po_bench.specs.implicit_spec`), computed first when absent: kl_to_ref and mean_length of the policy's
    eval samples against the reference, then the implicit-reward accuracy on each held-out set (None: not
    measured)."""

    def build() -> dict:
        out = implicit.kl_and_length(ckpt.policy, ckpt.sft, ckpt.tokenizer, prompts, samples)
        for name, pairs in held.items():
            out[name] = (
                implicit.implicit_reward_accuracy(ckpt.policy, ckpt.sft, ckpt.tokenizer, pairs, kind, float(beta))
                if pairs is not None
                else None
            )
        return out

    return store.get_or_build_json("implicit", spec, build)


def pair_weights_report(cfg, scores: list[float]) -> dict:
    """``metrics.pair_weights`` of run.json: the distribution of the per-pair scores (MADPO: the reward
    model's margins; Sem-DPO: the embedding distances) and of the weights the loss gives them."""

    torch_threads(cfg)  # the weights are computed with torch
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

    gc.collect()
    torch = sys.modules.get("torch")  # not imported: this process holds no accelerator memory
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def data_report(cfg, p, pairs_art: dict | None, tokenizer) -> dict:
    """``metrics.data`` of run.json: the pairs' statistics, label noise, leakage of eval prompts
    into training (and, for real data, against the public benchmarks) and every count of rows
    left out on the way (the source's :meth:`~po_bench.data.sources.DataSource.data_report`)."""
    if pairs_art is None:
        return {}
    return p.source.data_report(pairs_art, tokenizer, cfg.train.max_length)

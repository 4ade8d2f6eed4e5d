"""The stages: each a function from a spec (:mod:`po_bench.specs`) to an artifact in the store.

A stage reads its spec and the artifacts its spec names, nothing else; so it can run in any
process that has the store: ``python -m po_bench.stages <stage> <spec.json> --store DIR`` builds
one artifact (what a distributed launcher starts on every rank).  In the pipeline's process the
same functions run in-process and may be handed objects already loaded (the SFT model, the
tokenizer): those save time and never change the result.

Run options that do not determine an artifact (logging steps, progress bars, checkpoint
frequency) come separately as ``opts``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from po_bench.common import seed_everything
from po_bench.data import world
from po_bench.data.noise import flip_labels
from po_bench.data.sources import prompts as spec_prompts
from po_bench.data.sources import source_class
from po_bench.specs import ref_logps_spec
from po_bench.store import Store, atomic_write_json
from po_bench.training import launch as launcher
from po_bench.training import models, probe_set
from po_bench.training.labellers import gold_scorer, gold_step_gains, labeller_for
from po_bench.training.launch import is_main
from po_bench.training.methods import method_of
from po_bench.training.models import load_checkpoint, model_path
from po_bench.training.online_losses import ONLINE_LOSSES, loop_function
from po_bench.training.pair_scores import semantic_distances

log = logging.getLogger("po_bench")

# training run options; report_to: "wandb" while the run's wandb run takes live curves (results.tracking.live_run_env)
DEFAULT_OPTS = {"logging_steps": 5, "save_steps": 0, "progress": False, "report_to": "none"}
GEN_OPTS = {"progress": False, "batch_size": 128, "multiprocessing": True}  # generation speed knobs


def train_opts(opts: dict | None) -> dict:
    return {**DEFAULT_OPTS, **{k: v for k, v in (opts or {}).items() if k in DEFAULT_OPTS}}


def checkpoint_dir(store: Store, ckpt: dict) -> str:
    """The folder of a checkpoint reference: a stored artifact (``{"stage", "spec"}``) or the base
    model of a model spec (``{"base": model fields}``: a Hub id, a local folder, or SmolLM2)."""
    if "base" in ckpt:
        return model_path(OmegaConf.create(ckpt["base"]))
    d = store.path(ckpt["stage"], ckpt["spec"])
    if not store.exists(ckpt["stage"], ckpt["spec"]):
        raise FileNotFoundError(
            f"artifact {store.key(ckpt['stage'], ckpt['spec'])} is not in the store {store.root} "
            "(build the stages it depends on first)"
        )
    return str(d)


def load_tokenizer(path: str, model: dict):

    return models.load_tokenizer(path, chat_template=model.get("chat_template"))


def load_model(path: str, model: dict):

    return load_checkpoint(path, model["dtype"])


# ---------------------------------------------------------------------------------------------
# sft
# ---------------------------------------------------------------------------------------------


def _distributed(launch: dict | None) -> bool:
    return bool(launch) and launch.get("strategy", "local") != "local"


def build_sft(spec: dict, out: Path, store: Store, opts: dict | None = None, launch: dict | None = None) -> None:
    from po_bench.training.trl.sft import train_sft  # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~5.9 s)

    seed = int(spec["seed"])
    seed_everything(seed)
    mcfg = OmegaConf.create(spec["model"])
    model, tok = models.load_model_and_tokenizer(mcfg, seed=seed)
    if mcfg.chat_template:
        tok.chat_template = mcfg.chat_template
    info: dict = {}
    if spec["train"] is not None:
        src = source_class(spec["data"])
        examples = src.sft_examples(spec["data"])
        report = None
        if isinstance(examples, tuple):
            examples, report = examples
        train = OmegaConf.create({**spec["train"], **train_opts(opts), "launch": launch or {}})
        info = train_sft(
            model, tok, examples, train, out / "trainer", seed, save_dir=out if _distributed(launch) else None
        )
        if report is not None:
            info["data"] = report
    publish(out, model, tok, info, opts, saved_by_trainer=_distributed(launch) and spec["train"] is not None)


# ---------------------------------------------------------------------------------------------
# samples
# ---------------------------------------------------------------------------------------------


def resolve_prompts(store: Store, pspec: dict) -> list:
    if pspec["kind"] == "pairs":
        return spec_prompts(pspec, get(store, "pairs", pspec["pairs"]))
    return spec_prompts(pspec)


def build_samples(
    spec: dict, store: Store, opts: dict | None = None, *, model=None, tokenizer=None, desc: str = "samples"
) -> list:
    """``n`` samples per prompt (n = 2: on-policy / held-out pairs, the second with seed + 1)."""
    from po_bench.generation import generate  # lazy: its module (~0.0 s)

    path = checkpoint_dir(store, spec["model"])
    if tokenizer is None:
        tokenizer = load_tokenizer(path, spec["model_fields"])
    if model is None and spec["gen"]["backend"] == "hf":
        model = load_model(path, spec["model_fields"])
    prompts_ = resolve_prompts(store, spec["prompts"])
    gen = OmegaConf.create({**spec["gen"], **GEN_OPTS, **{k: v for k, v in (opts or {}).items() if k in GEN_OPTS}})
    seed = int(spec["seed"])
    if spec["n"] == 1:
        return generate.generate(model, tokenizer, prompts_, gen, seed, desc, path)
    outs = [
        generate.generate(model, tokenizer, prompts_, gen, seed + i, f"{desc} ({i + 1}/{spec['n']})", path)
        for i in range(spec["n"])
    ]
    return [list(x) for x in zip(*outs)]


# ---------------------------------------------------------------------------------------------
# pairs
# ---------------------------------------------------------------------------------------------


def other_samples(store: Store, spec: dict, opts: dict | None = None) -> list:
    """Samples of a policy named in a pairs spec (e.g. the stronger SFT model of multi-model pairs), its
    checkpoint built first when the store lacks it (from the checkpoint's own spec, in this process)."""
    if "stage" in spec["model"]:
        get(store, spec["model"]["stage"], spec["model"]["spec"], train_opts(opts))
    return get(store, "samples", spec, opts, desc="samples (other policy)")


class StorePairInputs:
    """What a pairs spec names, built or read through the store when the source's ``build_pairs`` asks
    for it (:class:`po_bench.data.sources.PairInputs`)."""

    def __init__(self, spec: dict, store: Store, opts: dict | None = None):
        self.spec, self.store, self.opts = spec, store, opts

    def samples(self) -> list:
        return get(self.store, "samples", self.spec["samples"])

    def extra_samples(self) -> dict[str, list]:
        return {role: other_samples(self.store, s, self.opts) for role, s in self.spec["extra_samples"].items()}

    def sampler(self):
        return continuation_sampler(self.spec["samples"], self.store, int(self.spec["seed"]))

    def tokenizer(self):
        tok_model = self.spec["tokenizer"]
        return load_tokenizer(checkpoint_dir(self.store, {"base": tok_model}), tok_model)


def build_pairs(spec: dict, store: Store, opts: dict | None = None) -> dict:
    """Labelled preference pairs (after noise), held-out eval pairs and their statistics; with a ``filter``
    (dataset.filter), the kept ones of those (:func:`filtered_pairs`)."""
    if "filter" in spec:
        return filtered_pairs(spec, store, opts)
    src = source_class(spec["source"])
    seed = int(spec["seed"])
    if "labeller" in spec:  # an iterative method's round: its samples scored by the round's labeller
        art = labelled_pairs(spec, store, opts)
    else:  # on-policy samples or files: the source's say
        art = src.build_pairs(spec, StorePairInputs(spec, store, opts))
    pairs = art["train"]
    flipped: list[int] = []
    if spec["noise"]["kind"] == "flip" and pairs and "chosen" in pairs[0]:
        pairs, flipped = flip_labels(pairs, spec["noise"]["rate"], seed)
    art["train"] = pairs
    art["stats"].update(noise_flipped_count=len(flipped), noise_flipped_rows=flipped)
    if not pairs:
        raise RuntimeError("no preference pairs left after labelling (every sample pair was identical)")
    return art


def labelled_pairs(spec: dict, store: Store, opts: dict | None = None) -> dict:
    """An iterative round's pairs (specs.iterative_rounds): the round's k samples per pref prompt, each scored by
    the labeller (``gold``: the world's r*; ``implicit``: the last policy's implicit reward against its reference;
    ``explicit``: the reward model's score), pairs by the pair strategy from that ranking
    (:func:`po_bench.data.world.label_scored`, ties dropped), and their statistics (labels requested: one score
    per sample; judge calls and tokens: none, every labeller is local)."""
    src, lab = spec["source"], spec["labeller"]
    prompts_ = resolve_prompts(store, src["prompts"])
    samples = get(store, "samples", spec["samples"], opts)
    flat_p = [p for p, ys in zip(prompts_, samples) for _ in ys]
    flat_y = [y for ys in samples for y in ys]
    if lab["kind"] == "gold":
        flat = [world.gold_reward(p, y) for p, y in zip(flat_p, flat_y)]
    elif lab["kind"] == "implicit":
        from po_bench.judges import implicit  # lazy: torch (~1 s)

        pol_dir = checkpoint_dir(store, lab["policy"])
        tokenizer = load_tokenizer(pol_dir, lab["model"])
        policy = load_model(pol_dir, lab["model"])
        reference = load_model(checkpoint_dir(store, lab["reference"]), lab["model"])
        rewards = implicit.implicit_rewards(
            policy, reference, tokenizer, flat_p, flat_y, lab["implicit_reward"], float(lab["beta"])
        )
        flat = [float(x) for x in rewards]
    elif lab["kind"] == "explicit":
        # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~5.7 s)
        from po_bench.training.trl.reward import score_pairs

        rm = lab["reward_model"]["spec"]
        rm_dir = get(store, "reward_model", rm, train_opts(opts))
        tokenizer = load_tokenizer(str(rm_dir), rm["model"])
        train = OmegaConf.create({**rm["train"], "grad_accum": 1, "max_steps": 0, **train_opts(opts)})
        # r(x, y) - r(x, y_1), y_1 the prompt's first sample: the scores up to a constant per prompt (the same
        # ranking and the same gaps), through the reward model's margins as the reward_models diagnostic reads them
        first = [ys[0] for ys in samples for _ in ys]
        rows = [{"prompt": p, "chosen": y, "rejected": y1} for p, y, y1 in zip(flat_p, flat_y, first)]
        with tempfile.TemporaryDirectory() as tmp:  # (the trainer's output folder: nothing is saved there)
            flat = score_pairs(rm_dir, tokenizer, {"samples": rows}, train, Path(tmp), int(rm["seed"]))["samples"]
    else:
        raise ValueError(f"unknown labeller {lab['kind']!r}; labellers: gold, implicit, explicit")
    scores, i = [], 0
    for ys in samples:
        scores.append(flat[i : i + len(ys)])
        i += len(ys)
    r = src["ranking"]
    pairs = world.label_scored(prompts_, samples, scores, r["pair_strategy"], r["curriculum"])
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
    return {
        "train": pairs,
        "eval": [],
        "ordered": r["curriculum"] != "none",
        "stats": {
            "n_pairs": len(pairs),
            "n_identical_skipped": len(prompts_) - len({q["row"] for q in pairs}),
            "labeller": lab["kind"],
            "labels_requested": len(flat),
            "labeller_gold_agreement": mean([q["gold_margin"] > 0 for q in pairs]),
            "k_samples": int(r["k_samples"]),
            "pair_strategy": r["pair_strategy"],
            "curriculum": r["curriculum"],
            "mean_rating_gap": mean([q["gap"] for q in pairs]),
        },
    }


def filtered_pairs(spec: dict, store: Store, opts: dict | None = None) -> dict:
    """The pairs artifact of the unfiltered spec (the spec without ``filter``) with only the training pairs
    the CHES filter keeps (:func:`po_bench.generation.hidden.ches_keep`: the ``keep`` share with the lowest
    score of ``kind``, in their order; an order to train in is kept), their indices among the unfiltered pairs
    (``ches_kept``) and the counts in ``stats.ches_filter`` (run.json's ``metrics.data``); the eval pairs as
    they were."""
    from po_bench.generation.hidden import ches_keep  # lazy: torch (~1 s): only to build

    flt = spec["filter"]
    unfiltered = {k: v for k, v in spec.items() if k != "filter"}
    if flt["ches"]["pairs"] != unfiltered:
        raise ValueError("a filtered pairs spec's CHES must be that of its own unfiltered pairs")
    art = get(store, "pairs", unfiltered, opts)
    scores = get(store, "ches", flt["ches"], opts)[flt["kind"]]
    kept = ches_keep(scores, float(flt["keep"]))
    n = len(art["train"])
    counts = {"kind": flt["kind"], "keep": flt["keep"], "n_before": n, "kept": len(kept), "dropped": n - len(kept)}
    counts["max_kept_score"] = max(scores[i] for i in kept)  # the threshold: every dropped pair scores >= it
    return {
        **art,
        "train": [art["train"][i] for i in kept],
        "ches_kept": kept,
        "stats": {**art["stats"], "ches_filter": counts},
    }


def continuation_sampler(sspec: dict, store: Store, seed: int):
    """(prompts, n) -> n samples per prompt from the policy and generation config of a samples spec, for
    prompts a pair builder makes from that policy's samples (Step-DPO: prompt + a shared prefix); the i-th
    sample of every prompt is drawn with seed + 4000 + i (the pairs spec holds the samples spec and the seed)."""

    def sample(prompts_: list, n: int) -> list[list[str]]:
        from po_bench.generation import generate  # lazy: its module (~0.0 s)

        path = checkpoint_dir(store, sspec["model"])
        tokenizer = load_tokenizer(path, sspec["model_fields"])
        model = load_model(path, sspec["model_fields"]) if sspec["gen"]["backend"] == "hf" else None
        gen = OmegaConf.create({**sspec["gen"], **GEN_OPTS})
        outs = [
            generate.generate(model, tokenizer, prompts_, gen, seed + 4000 + i, f"continuations ({i + 1}/{n})", path)
            for i in range(n)
        ]
        return [list(x) for x in zip(*outs)]

    return sample


# ---------------------------------------------------------------------------------------------
# policy (preference training; reference log-probs through the store)
# ---------------------------------------------------------------------------------------------


def build_policy(
    spec: dict, out: Path, store: Store, opts: dict | None = None, launch: dict | None = None, *, tokenizer=None
) -> None:
    if "online" in spec:  # an online method: po-bench's online loop samples and labels its own pairs
        build_online_policy(spec, out, store, opts, tokenizer=tokenizer)
        return
    from po_bench.training.trl.fit import merged  # lazy: torch (~1.1 s)

    # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~5.5 s)
    from po_bench.training.trl.preference import train_preference

    seed = int(spec["seed"])
    start = checkpoint_dir(store, spec["start"])
    # the reference: the start checkpoint, or an iterative round's own (``reference``: specs.iterative_rounds)
    reference = spec.get("reference", spec["start"])
    if tokenizer is None:
        tokenizer = load_tokenizer(start, spec["model"])
    pairs_art = get(store, "pairs", spec["pairs"])
    pairs = pairs_art["train"]
    loss = OmegaConf.create(spec["loss"])
    # KTO's policy spec holds no reference spec: it follows from the policy spec's fields
    ref_spec = spec["ref_logps"] or ref_logps_spec(loss, reference, spec["model"], spec["pairs"], spec["train"], seed)
    cache = None
    if ref_spec is not None:
        cache = (
            lambda: store.load_json("ref_logps", ref_spec),
            lambda obj: store.save_json("ref_logps", ref_spec, obj),
        )
    guide = None
    if spec.get("guide") is not None:  # TGDPO: the guide policy (built first when absent), its token rewards
        guide = load_model(str(get(store, "policy", spec["guide"]["spec"], opts)), spec["model"])
    # InfiFPO: the source models (SFT models of other seeds / sizes; built first when absent), fused into the reference
    sources = [
        load_model(str(get(store, "sft", s["spec"], opts)), s["spec"]["model"]) for s in spec.get("sources") or []
    ]
    probe = probe_callback(spec, pairs, start, tokenizer)  # (before the seed: it samples the unseen responses)
    seed_everything(seed)
    pol = load_model(start, spec["model"])
    needs_ref = method_of(loss).needs_reference_model
    train = OmegaConf.create({**spec["train"], **train_opts(opts), "launch": launch or {}})
    dist = _distributed(launch)
    res = train_preference(
        pol,
        # the reference, held by no name here: the trainer frees it once its log-probs are precomputed
        load_model(checkpoint_dir(store, reference), spec["model"]) if needs_ref else None,
        tokenizer,
        pairs,
        loss,
        train,
        out / "trainer",
        seed,
        ref_logps_cache=cache,
        model_cfg=OmegaConf.create(spec["model"]),
        save_dir=out if dist else None,
        ordered=bool(pairs_art.get("ordered")),
        guide_model=guide,
        pair_scores=pair_score_values(store, spec.get("pair_scores"), opts),
        source_models=sources or None,
        callbacks=probe.callbacks,
    )
    if probe.record is not None:
        res["probe"] = probe.result()
    pol = res.pop("model")
    publish(out, pol if dist else merged(pol), tokenizer, res, opts, saved_by_trainer=dist)


def build_online_policy(spec: dict, out: Path, store: Store, opts: dict | None = None, *, tokenizer=None) -> None:
    """An online method's policy (po_bench/training/online.py): from the start checkpoint, the reference fixed at
    it, the source's pref prompts sampled and labelled by the spec's preference source as it trains; the training
    facts, the loop's counts and phase times and its first and last step's samples in ``train_metrics.json``."""
    from po_bench.training import online  # lazy: torch, transformers (~2 s)

    seed = int(spec["seed"])
    start = checkpoint_dir(store, spec["start"])
    if tokenizer is None:
        tokenizer = load_tokenizer(start, spec["model"])
    o = spec["online"]
    prompts_ = spec_prompts(o["prompts"])
    loss = spec["loss"]
    train = OmegaConf.create({**spec["train"], **train_opts(opts)})
    gen = OmegaConf.create({**o["gen"], **GEN_OPTS, "progress": False})
    online.Group()  # under a launcher: the process group (each rank on its own GPU) before the models load
    seed_everything(seed)
    pol = load_model(start, spec["model"])
    side = tokenizer.padding_side  # (generation pads on the left; the saved tokenizer stays as it was)
    # the preference source: the stored artifacts it reads (the explicit source's reward model), built first when
    # absent, and its run-time options (a judge's endpoint, budget, cache: no key) from the run options
    inputs = {
        name: LABELLER_LOADERS[r["stage"]](get(store, r["stage"], r["spec"], train_opts(opts)), r["spec"])
        for name, r in o["labeller"].get("inputs", {}).items()
    }
    labeller = labeller_for(o["labeller"], inputs, (opts or {}).get("labeller"))
    # what the method's loop reads beyond the policy, by its OnlineSpec: a second copy of the start checkpoint (the
    # reference; OPRL's PRM), the guide policy (RTO's DPO policy, built first when absent), a vLLM engine on the
    # start checkpoint for the policy's samples (synced each step)
    method = ONLINE_LOSSES[loss["function"]]
    ref_model = load_model(start, spec["model"]) if method.reference else None
    guide = None
    if method.guided and spec.get("guide") is not None:
        guide = load_model(str(get(store, "policy", spec["guide"]["spec"], opts)), spec["model"])
    engine = None
    if method.engine and gen.backend == "vllm":
        from po_bench.generation.vllm_engine import PolicyEngine  # lazy: its module (vllm once built)

        engine = PolicyEngine(start, tokenizer, gen)
    inp = online.LoopInputs(
        policy=pol,
        tokenizer=tokenizer,
        prompts=prompts_,
        function=loss["function"],
        args=dict(loss.get("args") or {}),
        beta=float(loss["beta"]),
        lr=float(loss["lr"]),
        train=train,
        gen=gen,
        seed=seed,
        labeller=labeller,
        noise=o["noise"],
        prompts_spec=o["prompts"],
        gold=gold_scorer(o["prompts"]),
        step_gains=gold_step_gains(o["prompts"]),
        heldout=spec_prompts(o["heldout"]) if "heldout" in o else None,
        ref_model=ref_model,
        guide=guide,
        logging_steps=int(train.logging_steps),
        engine=engine,
    )
    res = loop_function(loss["function"])(inp)  # lazy: the loop's module (torch, transformers, peft, scipy)
    if engine is not None:
        from po_bench.generation.vllm_engine import close_engine  # lazy: its module

        close_engine()  # (the pipeline's own generation builds its engine on the trained policy)
    tokenizer.padding_side = side
    model = res.pop("model")  # (OFS-DPO: the base with the deployed module merged)
    res["params"] = sum(p.numel() for p in model.parameters())
    res["precision"] = spec["train"]["precision"]
    publish(out, model, tokenizer, res, opts, saved_by_trainer=False)


def reward_scorer(rm_dir: Path, rm: dict):
    """The stored reward model of spec ``rm`` loaded as a scorer (po_bench/training/trl/reward.py RewardScorer:
    tokenised and scored as :func:`labelled_pairs` and the reward_models diagnostic score it)."""
    # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~5.7 s)
    from po_bench.training.trl.reward import RewardScorer

    tokenizer = load_tokenizer(str(rm_dir), rm["model"])
    train = OmegaConf.create({**rm["train"], "grad_accum": 1, "max_steps": 0, **train_opts({})})
    return RewardScorer(rm_dir, tokenizer, train, int(rm["seed"]))


# A preference source's stored inputs (po_bench/training/labellers.py ``needs``), loaded by their stage
LABELLER_LOADERS = {"reward_model": reward_scorer}


class Probe:
    """The probe of a policy spec (``diagnostics.probe``): its callback (none when the spec has no probe) and
    the record stored in ``train_metrics.json`` (``probe``: the probe indices, the unseen responses, and once
    trained the callback's history and per-pair values; ``absent`` with the reason when the rows cannot be
    probed)."""

    def __init__(self, record: dict | None = None, callback=None):
        self.record, self.callback = record, callback

    @property
    def callbacks(self) -> list | None:
        return [self.callback] if self.callback is not None else None

    def result(self) -> dict:
        return {**self.record, **(self.callback.result() if self.callback is not None else {})}


def probe_callback(spec: dict, pairs: list, start: str, tokenizer) -> Probe:
    """The probe set of a policy spec (po_bench/training/probe_set.py) and its ProbeCallback: the probe pairs
    drawn by the seed, and the unseen responses, sampled from the start checkpoint (loaded for it: the policy's
    own copy is untouched) on the probe prompts and kept when they are in no training pair."""
    if spec.get("probe") is None:
        return Probe()
    from po_bench.generation.generate import generate_hf  # lazy: its module (~0.0 s)
    from po_bench.training.trl.probe import ProbeCallback  # lazy: transformers (~4 s)

    ps = spec["probe"]
    absent = probe_set.probe_absent(pairs)
    if absent is not None:
        return Probe({"absent": absent})
    seed = int(spec["seed"])
    indices, probe_pairs = probe_set.draw(pairs, ps["pairs"], seed)
    unseen: list[dict] = []
    if ps["unseen"]:
        prompts_ = probe_set.unseen_prompts(probe_pairs, ps["unseen"])
        gen = OmegaConf.create({**ps["gen"], "backend": "hf", "batch_size": GEN_OPTS["batch_size"], "progress": False})
        sampler = load_model(start, spec["model"])
        side = tokenizer.padding_side  # (generation pads on the left; training reads the tokenizer as it was)
        try:
            ys = generate_hf(sampler, tokenizer, prompts_, gen, seed + probe_set.UNSEEN_SEED_OFFSET, "probe: unseen")
        finally:
            tokenizer.padding_side = side
        del sampler
        unseen = probe_set.keep_unseen(prompts_, ys, pairs)
    callback = ProbeCallback(
        tokenizer, probe_pairs, unseen, max_length=int(spec["train"]["max_length"]), every=ps["every"]
    )
    return Probe({"indices": indices, "unseen": unseen}, callback)


# ---------------------------------------------------------------------------------------------
# per-pair scores (po_bench.training.pair_scores): MADPO's reward model, Sem-DPO's embedding distances
# ---------------------------------------------------------------------------------------------


def build_reward_model(
    spec: dict, out: Path, store: Store, opts: dict | None = None, launch: dict | None = None, *, tokenizer=None
) -> None:
    """A reward model trained on the training pairs (TRL's RewardTrainer, from the start checkpoint) and its
    margin r(x, y_w) - r(x, y_l) on every training pair (``margins.json``, in the pairs' order)."""
    # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~5.7 s)
    from po_bench.training.trl.reward import train_reward_model

    seed = int(spec["seed"])
    start = checkpoint_dir(store, spec["start"])
    if tokenizer is None:
        tokenizer = load_tokenizer(start, spec["model"])
    pairs = get(store, "pairs", spec["pairs"])["train"]
    seed_everything(seed)
    train = OmegaConf.create({**spec["train"], "grad_accum": 1, "max_steps": 0, **train_opts(opts)})
    model, info = train_reward_model(start, tokenizer, pairs, train, out / "trainer", seed)
    atomic_write_json(out / "margins.json", {"margins": info.pop("margins")})
    publish(out, model, tokenizer, info, opts, saved_by_trainer=False)


def build_semantic_distance(spec: dict, store: Store, opts: dict | None = None) -> dict:
    """Sem-DPO's d = 1 - cos(e(prompt), e(chosen)) for every training pair (in the pairs' order)."""

    pairs = get(store, "pairs", spec["pairs"])["train"]
    return {"embedder": spec["embedder"], "distance": semantic_distances(pairs, spec["embedder"])}


def build_reward_models(
    spec: dict, store: Store, opts: dict | None = None, *, policy=None, reference=None, tokenizer=None
) -> dict:
    """The reward_models diagnostic's scores (:mod:`po_bench.judges.reward_shift`): on every evaluation set of
    the spec, each pair's DPORM margin (the policy's implicit reward against the reference) and EXRM margin
    (the reward model of ``spec["exrm"]``, built first when absent), sequences cut to train.max_length, and
    the set's counts.  The loaded policy, reference and tokenizer save loading them (never change the result)."""
    from po_bench.judges import implicit, reward_shift  # lazy: torch through the scoring (~1 s)

    # lazy: accelerate, datasets, huggingface_hub, numpy, ... (~5.7 s)
    from po_bench.training.trl.reward import score_pairs

    ref_dir = checkpoint_dir(store, spec["reference"])
    if tokenizer is None:
        tokenizer = load_tokenizer(ref_dir, spec["model"])
    exrm = spec["exrm"]
    exrm_dir = get(store, "reward_model", exrm, train_opts(opts), tokenizer=tokenizer)
    sets = reward_shift.eval_sets(
        spec["sets"],
        lambda s: (resolve_prompts(store, s["prompts"]), get(store, "samples", s)),
        lambda s: get(store, "pairs", s),
    )
    if policy is None:
        policy = load_model(checkpoint_dir(store, spec["policy"]), spec["model"])
    if reference is None:
        reference = load_model(ref_dir, spec["model"])
    max_length = int(exrm["train"]["max_length"])
    train = OmegaConf.create({**exrm["train"], "grad_accum": 1, "max_steps": 0, **train_opts(opts)})
    with tempfile.TemporaryDirectory() as tmp:
        ex = score_pairs(exrm_dir, tokenizer, {n: pairs for n, (pairs, _) in sets.items()}, train, Path(tmp), 0)
    out = {}
    for name, (pairs, counts) in sets.items():
        dp = (
            implicit.implicit_margins(policy, reference, tokenizer, pairs, spec["kind"], spec["beta"], max_length)
            if pairs
            else []
        )
        out[name] = {**counts, "dporm_margin": [float(x) for x in dp], "exrm_margin": ex[name]}
    return {"sets": out}


# ---------------------------------------------------------------------------------------------
# ches (diagnostics.ches, dataset.filter): CHES of the training pairs at the start checkpoint
# ---------------------------------------------------------------------------------------------


def build_ches(spec: dict, store: Store, opts: dict | None = None, *, model=None, tokenizer=None) -> dict:
    """CHES and length-normalised CHES (:func:`po_bench.generation.hidden.ches_scores`) of every training pair
    of the pairs spec, in the pairs' order, under the start checkpoint (the reference the policy starts from),
    responses cut at ``max_length`` as in training; with the response lengths in tokens.  ``model`` /
    ``tokenizer``: that checkpoint already loaded (saves loading it, never changes the result)."""
    from po_bench.generation.hidden import ches_scores  # lazy: torch (~1 s)

    path = checkpoint_dir(store, spec["start"])
    if tokenizer is None:
        tokenizer = load_tokenizer(path, spec["model"])
    if model is None:
        model = load_model(path, spec["model"])
    pairs = get(store, "pairs", spec["pairs"], opts)["train"]
    return ches_scores(model, tokenizer, pairs, max_length=int(spec["max_length"]))


def pair_score_values(store: Store, spec: dict | None, opts: dict | None = None) -> list[float] | None:
    """The per-pair scores of a pair-scores spec (built first when absent), or None without one."""
    if spec is None:
        return None
    if spec["stage"] == "reward_model":
        return json.loads((get(store, "reward_model", spec, train_opts(opts)) / "margins.json").read_text())["margins"]
    return get(store, spec["stage"], spec, opts)["distance"]


# ---------------------------------------------------------------------------------------------
# diagnostics (issue 25): beam search on the policy; token credit against the world's token gains
# ---------------------------------------------------------------------------------------------


def judged_models(store: Store, spec: dict, policy=None, reference=None, tokenizer=None) -> tuple:
    """The policy, the reference and the tokenizer a diagnostic's spec names (``policy``, ``reference``: checkpoint
    references; ``model``: their model fields), loaded unless handed over already loaded."""
    if tokenizer is None:
        tokenizer = load_tokenizer(checkpoint_dir(store, spec["reference"]), spec["model"])
    if policy is None:
        policy = load_model(checkpoint_dir(store, spec["policy"]), spec["model"])
    if reference is None:
        reference = load_model(checkpoint_dir(store, spec["reference"]), spec["model"])
    return policy, reference, tokenizer


def build_beams(spec: dict, store: Store, opts: dict | None = None, *, policy=None, reference=None, tokenizer=None):
    """The policy's beam samples at one width (the samples artifact ``spec["samples"]``, built first when absent)
    scored against the reference as the implicit judges score the eval samples: kl_to_ref and mean_length
    (implicit.kl_and_length) and the mean implicit reward (beta * kl_to_ref for a reference-based reward, the
    same log-ratios; avg_logp: implicit.implicit_rewards).  po_bench/judges/r_to_q.py reports them."""
    from po_bench.judges import implicit  # lazy: its module (torch only when it computes)

    sspec = spec["samples"]
    width = sspec["gen"]["num_beams"]
    samples = get(store, "samples", sspec, opts, desc=f"beam search (width {width})", model=policy, tokenizer=tokenizer)
    policy, reference, tokenizer = judged_models(store, spec, policy, reference, tokenizer)
    prompts_ = resolve_prompts(store, sspec["prompts"])
    out = implicit.kl_and_length(policy, reference, tokenizer, prompts_, samples)
    beta, kind = float(spec["beta"]), spec["kind"]
    if kind == "avg_logp":
        rewards = implicit.implicit_rewards(policy, reference, tokenizer, prompts_, samples, kind, beta)
        out["implicit_reward"] = float(rewards.mean())
    else:
        out["implicit_reward"] = beta * out["kl_to_ref"]
    return out


def build_token_credit(
    spec: dict, store: Store, opts: dict | None = None, *, policy=None, reference=None, tokenizer=None
) -> dict:
    """po_bench/judges/credit.py's numbers on the held-out eval pairs (both responses of every pair the world's
    gold reward labels from the held-out SFT samples ``spec["samples"]``)."""
    from po_bench.judges import credit  # lazy: torch (~1 s)

    samples = get(store, "samples", spec["samples"], opts)
    policy, reference, tokenizer = judged_models(store, spec, policy, reference, tokenizer)
    prompts_, responses = credit.pair_responses(resolve_prompts(store, spec["samples"]["prompts"]), samples)
    return credit.token_credit(policy, reference, tokenizer, prompts_, responses, spec["beta"])


def publish(out: Path, model, tokenizer, info: dict, opts: dict | None, saved_by_trainer: bool) -> None:
    """Finish a training artifact, on rank 0 only (the one writer under a process group): the
    weights (unless the trainer saved consolidated ones itself), the training facts, and no
    leftover Trainer checkpoints."""

    if not is_main():
        return
    if not saved_by_trainer:
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    atomic_write_json(out / "train_metrics.json", info)
    cleanup_checkpoints(out / "trainer", (opts or {}).get("keep_checkpoints", False))


def cleanup_checkpoints(trainer_dir: Path, keep: bool) -> None:
    """Once an artifact is complete its Trainer checkpoints (weights + optimizer state, ~100 GB for an
    8B policy) are only needed to resume a build that is over: delete them unless asked to keep."""

    if keep or not trainer_dir.is_dir():
        return
    for ckpt in trainer_dir.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the registry: stage name -> (artifact kind, builder)
# ---------------------------------------------------------------------------------------------

DIR_STAGES = {"sft": build_sft, "policy": build_policy, "reward_model": build_reward_model}
JSON_STAGES = {
    "samples": build_samples,
    "pairs": build_pairs,
    "semantic_distance": build_semantic_distance,
    "ches": build_ches,
    "beams": build_beams,
    "token_credit": build_token_credit,
    "reward_models": build_reward_models,
}


def get(store: Store, stage: str, spec: dict, opts: dict | None = None, launch=None, **loaded: Any):
    """The artifact of ``spec`` from the store, built first when absent: a folder (sft, policy)
    or the JSON object (samples, pairs).  ``launch`` (the launch config): training stages run as
    their own process group (po_bench/training/launch.py) while this process holds the lock."""
    if stage in DIR_STAGES:
        if launch is not None and launch.strategy != "local":

            def build(d: Path) -> None:
                launcher.run_stage(stage, spec, d, store.root, opts or {}, launch)
                record_reads(store, d)

            return store.get_or_build_dir(stage, spec, build)
        return store.get_or_build_dir(stage, spec, lambda d: DIR_STAGES[stage](spec, d, store, opts, **loaded))
    if stage in JSON_STAGES:
        return store.get_or_build_json(stage, spec, lambda: JSON_STAGES[stage](spec, store, opts, **loaded))
    raise ValueError(f"unknown stage {stage!r}; stages: {', '.join([*DIR_STAGES, *JSON_STAGES])}")


# What a process group's rank 0 read from and built in the store while it built an artifact (e.g. the
# reference log-probs a policy stage computes): written into the work folder, then recorded by the launching
# process as its own reads (run.json's metrics.artifacts, what `po-bench cache gc --keep` keeps) and removed.
STORE_READS = "store_reads.json"


def record_reads(store: Store, d: Path) -> None:
    """Record the store reads a process group left in the work folder ``d`` as this process's, and remove the file."""
    f = d / STORE_READS
    if f.is_file():
        reads = json.loads(f.read_text())
        store.hits += reads["hits"]
        store.misses += reads["built"]
        f.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m po_bench.stages", description="Build one artifact from its spec (a JSON file) in the store."
    )
    ap.add_argument("stage", choices=[*DIR_STAGES, *JSON_STAGES])
    ap.add_argument("spec", help="the spec as a JSON file")
    ap.add_argument("--store", required=True, help="the artifact store's root (cache_dir)")
    ap.add_argument("--opts", default="{}", help="run options as JSON (logging_steps, save_steps, progress, report_to)")
    ap.add_argument(
        "--into",
        default=None,
        help="build a training stage straight into this folder (a rank of a process group; the "
        "launching process holds the store's lock and publishes the folder)",
    )
    ap.add_argument("--launch", default="{}", help="the launch config as JSON (strategy, trainer_args)")
    a = ap.parse_args(argv)
    store = Store(a.store)
    spec = json.loads(Path(a.spec).read_text())
    opts = json.loads(a.opts)
    if a.into:
        if a.stage not in DIR_STAGES:
            ap.error("--into builds training stages (sft, policy) only")
        DIR_STAGES[a.stage](spec, Path(a.into), store, opts, json.loads(a.launch))

        if is_main():  # the launching process records them (record_reads)
            atomic_write_json(Path(a.into) / STORE_READS, {"hits": store.hits, "built": store.misses})
        return 0
    out = get(store, a.stage, spec, opts)
    print(out if isinstance(out, Path) else store.path(a.stage, spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

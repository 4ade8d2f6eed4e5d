"""Data sources: what the one pipeline asks of a dataset, and nothing more.

The contract is :class:`DataSource` (below: every member, when the pipeline calls it and what it
feeds); this module also holds its implementations, :class:`WorldSource` (the embedded world:
on-policy pairs sampled from the SFT policy, labelled by the world's annotator, a gold scorer) and
:class:`FileSource` (real preference data from files and the Hub), and the registry :data:`SOURCES`.

A source is a class registered in :data:`SOURCES` under its ``kind`` and built from a plain *spec*,
the dataset fields that determine its data: ``cls(cls.spec_of(dataset config))`` (:func:`source_for`).
Three places call it, at three times:

* :func:`po_bench.specs.plan` (before any compute): the specs of the SFT data, the prompt
  splits, the pairs and the held-out samples; what they return becomes store keys, so they are
  pure (at most a checksum of the data files).
* :mod:`po_bench.stages` (building an artifact, in any process, from its spec alone): the
  *static* builders ``sft_examples`` and ``build_pairs``, called on the class
  (:func:`source_class`), never on an instance.
* :func:`po_bench.pipeline.run` (after training): the gold scorer, the held-out pairs, the rows of
  ``samples.jsonl`` and run.json's ``metrics.data``.

The pipeline uses exactly the members of :class:`DataSource` (``tests/test_sources_protocol.py``
checks every registered source has each of them and that ``pipeline.py``, ``stages.py`` and
``specs.py`` use no other); what differs between sources (on-policy pairs sampled from the SFT
policy, pairs read from files) is decided inside the source, not by the pipeline.  Adding a data
source = a class with the members of ``DataSource``, registered with :func:`register_source` (a plug-in:
from a module of the ``po_bench.sources`` entry-point group, CONTRIBUTING.md); the pipeline does not
change.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from po_bench import plugins
from po_bench.choices import OnError
from po_bench.data import world
from po_bench.data.formats import base as formats
from po_bench.data.formats.base import DataError
from po_bench.data.formats.leakage import eval_sets, leakage, prompt_key
from po_bench.data.formats.paired import load_pairs, load_sft
from po_bench.data.formats.ranked import best_worst_pair, load_lists
from po_bench.data.formats.stats import data_stats
from po_bench.data.formats.unpaired import load_unpaired
from po_bench.data.schema import CONF_DATASET_DIR, dataset_config
from po_bench.generation.logprobs import render_prompt

log = logging.getLogger("po_bench")


class DatasetConfigError(ValueError):
    """A dataset config a source refuses (:meth:`DataSource.validate`): reported as one config error line."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise DatasetConfigError(msg)


def check_pair_fields(d) -> None:
    """dataset.pair_source / ugc_noise / pair_models: values of their sets, whatever the source."""
    check(
        d.pair_source in world.PAIR_SOURCES,
        f"dataset.pair_source={d.pair_source!r}: allowed {', '.join(world.PAIR_SOURCES)}",
    )
    check(
        d.pair_models in world.PAIR_MODELS,
        f"dataset.pair_models={d.pair_models!r}: allowed {', '.join(world.PAIR_MODELS)}",
    )
    check(
        0.0 <= d.ugc_noise <= 1.0,
        f"dataset.ugc_noise={d.ugc_noise:g}: allowed [0, 1] (the chance the UGC "
        "drops each keyword; 2 x it off-topic words are added on average)",
    )
    check(
        d.pair_source == "pugc" or d.ugc_noise == world.DEFAULT_UGC_NOISE,
        f"dataset.ugc_noise={d.ugc_noise:g} is set but dataset.pair_source={d.pair_source}: "
        "use dataset.pair_source=pugc",
    )


# ---------------------------------------------------------------------------------------------
# the contract
# ---------------------------------------------------------------------------------------------

# (prompts, n) -> n continuations per prompt from the pairs' policy (Step-DPO's step-wise pairs)
Sampler = Callable[[list, int], list[list[str]]]


class PairInputs(Protocol):
    """What the pairs stage can hand a source's :meth:`DataSource.build_pairs`, each built (or read
    from the store) only when the source asks for it."""

    def samples(self) -> list[list[str]]:
        """The policy samples the pairs spec names (``spec["samples"]``): k per pref prompt."""
        ...

    def extra_samples(self) -> dict[str, list[list[str]]]:
        """Role -> the samples of another SFT policy the pairs spec names (``spec["extra_samples"]``),
        that policy's checkpoint built first when the store lacks it."""
        ...

    def sampler(self) -> Sampler:
        """Continuations from the policy and generation config of ``spec["samples"]``."""
        ...

    def tokenizer(self) -> Any:
        """The tokenizer (and chat template) the run trains with (``spec["tokenizer"]``: model fields),
        so prompt lengths are counted as trained."""
        ...


class DataSource(Protocol):
    """A data source, as the pipeline sees it.  Every member is documented with when it is called
    and what it feeds; the table of artifacts and their specs is in :mod:`po_bench.specs`."""

    # ---- the registry (source_for / source_class) --------------------------------------

    kind: str
    """The registry name (``dataset.kind``: ``world``, ``hf``) and the ``"kind"`` of the specs it
    makes, by which :func:`source_class` finds the class again in another process."""

    world: bool
    """True for the embedded world's data: prompts in the tiny model's word-level vocabulary (the judges
    of real models refuse them, ``judge=gold`` needs them).  A plug-in source of real text: False."""

    @classmethod
    def validate(cls, dcfg, model_cfg) -> None:
        """Check the dataset config's own fields (and that the model can read the data) before any
        compute, raising :class:`DatasetConfigError` with one line naming the key and what is allowed.
        What a loss needs of the data is checked by the loss's config (:mod:`po_bench.config`).  Called
        by :func:`validate_dataset` once ``dataset.kind`` names this source."""
        ...

    @staticmethod
    def spec_of(dcfg) -> dict:
        """The dataset config's fields that determine the data (files by their checksum): the
        source's spec, which every spec below is cut from.  Called once per run by ``source_for``."""
        ...

    @staticmethod
    def prompts(pspec: dict) -> list:
        """The prompts of a prompt spec this source made (:meth:`prompt_spec`), in any process (prompt
        specs of ``kind: pairs``, a pairs artifact's held-out pairs, are read by :func:`prompts`)."""
        ...

    # ---- the plan (specs.plan): spec dicts that become store keys --------------------------------

    always_sft: bool
    """True: the run always starts from the SFT stage's checkpoint, an untrained one when
    ``stages.sft`` is off (the world's model is built from the model config); False: the SFT stage
    runs only when :meth:`sft_spec` is not None and ``stages.sft`` is on, else the base model is the
    start.  Decides ``Plan.sft`` and ``Plan.start``."""

    def sft_spec(self) -> dict | None:
        """The fields the SFT data depends on (the ``sft`` spec's ``data``), or None: no SFT data (the
        base model is the starting point, as for instruct models)."""
        ...

    def prompt_spec(self, split: str) -> dict:
        """The spec of a prompt split the source draws itself: ``pref`` (the on-policy samples'
        prompts) and each split of :meth:`heldout_splits`; the prompts are
        ``sources.prompts(spec)``, in any process.  Feeds the ``samples`` specs."""
        ...

    def eval_prompt_spec(self, pairs: dict) -> dict:
        """The spec of the prompts the run is evaluated on (the SFT and policy generations, every
        judge): the world's ``eval`` split, or the held-out pairs of the pairs artifact whose spec is
        ``pairs`` (real data; that artifact is then built even without training)."""
        ...

    def pref_samples_n(self) -> int:
        """Samples per pref prompt the pairs are labelled from, drawn from the SFT policy (the
        ``pref_samples`` spec's ``n``, and ``k_samples`` of ``metrics.data``); 0: the pairs read no
        policy samples (they come from files, and the pairs spec records the tokenizer, the
        max_length and the paired/unpaired view they are read with instead)."""
        ...

    def pairs_spec(self) -> dict:
        """The source's fields of the ``pairs`` spec (its ``source``): the pref prompts and the
        annotator, or the files' fields and checksums."""
        ...

    def extra_policies(self) -> dict[str, dict]:
        """Other SFT policies whose pref-prompt samples the pairs also read (role -> SFT data spec;
        the pairs spec's ``extra_samples``, ``Plan.extra_sft``), usually none."""
        ...

    def heldout_splits(self) -> dict[str, str]:
        """Metric name -> prompt split whose SFT sample pairs (two samples per prompt) measure
        implicit-reward accuracy (the ``heldout_<split>`` samples specs; the world: eval and OOD;
        real data: none, the eval split's own pairs are used, see :meth:`heldout_pairs`)."""
        ...

    # ---- the stages (any process, from the spec alone): static builders --------------------------

    @staticmethod
    def sft_examples(spec: dict) -> list[dict] | tuple[list[dict], dict]:
        """SFT examples (prompt/completion or messages) of an :meth:`sft_spec`, optionally with the
        conversion report (files), recorded in the SFT checkpoint's ``train_metrics.json``."""
        ...

    @staticmethod
    def build_pairs(spec: dict, inputs: PairInputs) -> dict:
        """The pairs artifact of a ``pairs`` spec, before label noise: ``train`` (the pairs or rated
        lists trained on), ``eval`` (held-out pairs), ``stats`` (conversion and labelling statistics,
        run.json's ``metrics.data``) and optionally ``ordered`` (train in this order).  Asks
        ``inputs`` for what it reads (policy samples, other policies' samples, a sampler, the
        tokenizer)."""
        ...

    # ---- the run (pipeline.run): metrics and reports ----------------------------------------------

    gold: Callable[[list, list[str], list[str]], dict] | None
    """The gold scorer ``gold(prompts, policy_samples, sft_samples) -> metrics`` (the world's r*:
    gold_reward, win rate against SFT, ...), or None (real data: those metrics are None, quality
    comes from the configured judges, and no per-prompt scores file is written)."""

    def heldout_pairs(self, sampled: dict[str, tuple[list, list[list[str]]]], pairs_art: dict | None) -> dict:
        """Metric name -> the held-out pairs implicit-reward accuracy is measured on, or None when it
        is not measured (the metric is None).  ``sampled``: name -> (prompts, two SFT samples per
        prompt) for each of :meth:`heldout_splits`; ``pairs_art``: the pairs artifact (None without
        one).  The world labels the sample pairs with the gold reward (no pair left: NaN); real data
        uses the pairs artifact's eval pairs."""
        ...

    def sample_rows(self, prompts: list, samples: list[str], sft_samples: list[str]) -> list[dict]:
        """The rows of ``samples.jsonl`` (prompt, policy and SFT answers; the world adds their gold
        rewards, which the per-prompt scores file is written from)."""
        ...

    def data_report(self, pairs_art: dict, tokenizer, max_length: int) -> dict:
        """run.json's ``metrics.data``: the pairs' statistics, pairs per prompt, leakage of eval
        prompts into training (real data: also against the public benchmarks, with the counts of
        every row left out on the way)."""
        ...


# ---------------------------------------------------------------------------------------------
# the embedded world
# ---------------------------------------------------------------------------------------------

TRUNCATION_WARN = 0.05  # a console warning when more than this share of training pairs is truncated

WORLD_FIELDS = (
    "seed",
    "n_sft",
    "n_pref",
    "n_eval",
    "n_ood",
    "min_keywords",
    "max_keywords",
    "ood_min_keywords",
    "ood_max_keywords",
    "annotator_temperature",
    "annotator_length_bias",
    "k_samples",
    "pair_strategy",
    "curriculum",
    "steps",
    "step_candidates",
)
# k samples per pref prompt, how pairs are built from their ranking, and their order: at these defaults
# the world draws two samples and labels one pair per prompt (world.label_pairs), keys as before
RANKING_DEFAULTS = {"k_samples": 2, "curriculum": "none"}
# who rates the samples (annotator | pugc: a judge given user-generated content as the reference, at
# ugc_noise) and which models they come from (single | multi | strong_chosen: a stronger SFT model's too)
PAIR_DATA_FIELDS = ("pair_source", "ugc_noise", "pair_models")
WORLD_FIELDS = WORLD_FIELDS + PAIR_DATA_FIELDS
_SPLIT_FIELDS = {  # the world fields each prompt split is drawn from (world.make_prompts)
    "sft": ("seed", "n_sft", "min_keywords", "max_keywords"),
    "pref": ("seed", "n_pref", "min_keywords", "max_keywords"),
    "eval": ("seed", "n_eval", "min_keywords", "max_keywords"),
    "ood": ("seed", "n_ood", "ood_min_keywords", "ood_max_keywords"),
}


def _world_spec(fields: dict) -> world.WorldSpec:
    """A WorldSpec from (a subset of) the world's fields; absent ones keep their defaults, which
    the split being drawn does not read."""
    kw: dict[str, Any] = {
        k: fields[k]
        for k in ("seed", "n_sft", "n_pref", "n_eval", "n_ood", "min_keywords", "max_keywords")
        if k in fields
    }
    if "ood_min_keywords" in fields:
        kw["ood_keywords"] = (fields["ood_min_keywords"], fields["ood_max_keywords"])
    return world.WorldSpec(**kw)


class WorldSource(DataSource):
    """The embedded world: SFT demonstrations, on-policy pairs labelled by a Bradley-Terry annotator
    on the gold reward r*, held-out eval and OOD prompts, and r* itself as the gold judge."""

    kind = "world"
    always_sft = True  # the world's model is built (and trained) by the SFT stage
    world = True

    @classmethod
    def validate(cls, d, model_cfg) -> None:
        """The world's own fields: the tiny model (the world's tokenizer), the prompt splits, the annotator,
        k ranked samples and how pairs are built from them (PUGC, multi-model pairs, Step-DPO, lists)."""
        check(model_cfg.kind == "tiny", "dataset=world needs model=tiny (the world has its own word-level tokenizer)")
        check_pair_fields(d)
        if d.pair_source != "annotator" or d.pair_models != "single":
            check(
                d.pair_source == "annotator" or d.pair_models == "single",
                f"dataset.pair_source={d.pair_source} with dataset.pair_models={d.pair_models}: one recipe at a "
                "time (PUGC rates the policy's own samples)",
            )
            check(
                not d.steps,
                "dataset.steps=true builds step-wise pairs (Step-DPO): set "
                "dataset.pair_source=annotator and dataset.pair_models=single",
            )
            check(
                d.pair_strategy != world.LIST_STRATEGY,
                "dataset.pair_strategy=list rates the policy's own k samples with the annotator: it does not combine "
                "with dataset.pair_source=pugc or dataset.pair_models",
            )
            check(
                d.pair_models != "strong_chosen" or (d.k_samples == 2 and d.curriculum == "none"),
                "dataset.pair_models=strong_chosen pairs one strong sample (chosen) with one own sample (rejected): "
                f"dataset.k_samples must be 2 and dataset.curriculum none (got {d.k_samples}, {d.curriculum})",
            )
        check(1 <= d.min_keywords <= d.max_keywords, "dataset.min_keywords must be >= 1 and <= dataset.max_keywords")
        check(d.ood_min_keywords <= d.ood_max_keywords, "dataset.ood_min_keywords must be <= dataset.ood_max_keywords")
        check(d.annotator_temperature >= 0, "dataset.annotator_temperature must be >= 0")
        check(d.k_samples >= 2, f"dataset.k_samples={d.k_samples}: must be >= 2 (samples ranked per prompt)")
        check(
            d.pair_strategy in world.PAIR_STRATEGIES,
            f"dataset.pair_strategy={d.pair_strategy!r}: allowed {', '.join(world.PAIR_STRATEGIES)}",
        )
        check(
            d.curriculum in world.CURRICULA,
            f"dataset.curriculum={d.curriculum!r}: allowed {', '.join(world.CURRICULA)}",
        )
        check(
            d.step_candidates >= 1,
            f"dataset.step_candidates={d.step_candidates}: must be >= 1 (continuations sampled per shared prefix)",
        )
        check(
            not d.steps or d.curriculum == "none",
            f"dataset.steps=true builds step-wise pairs (Step-DPO); dataset.curriculum={d.curriculum} orders ranked "
            "pairs: set dataset.curriculum=none",
        )
        for k in ("n_sft", "n_pref", "n_eval", "n_ood"):
            check(getattr(d, k) > 0, f"dataset.{k} must be > 0")

    def __init__(self, spec: dict):
        self.spec = {k: spec[k] for k in WORLD_FIELDS}
        self.weights = world.RewardWeights()

    @staticmethod
    def spec_of(dcfg) -> dict:
        return {"kind": "world", **{k: getattr(dcfg, k) for k in WORLD_FIELDS}}

    def sft_spec(self) -> dict:
        return {"kind": "world", **{k: self.spec[k] for k in _SPLIT_FIELDS["sft"]}}

    @staticmethod
    def sft_examples(spec: dict) -> list[dict]:
        if spec.get("demonstrator") == "strong":  # the stronger model of multi-model pairs (More is Less)
            return world.strong_sft_examples(_world_spec(spec))
        return world.sft_examples(_world_spec(spec))

    def extra_policies(self) -> dict[str, dict]:
        """Other SFT policies whose pref-prompt samples the pairs read (role -> SFT data spec): the stronger
        model of multi-model pairs (``dataset.pair_models`` multi | strong_chosen), else none."""
        if self.spec["pair_models"] == "single":
            return {}
        return {"strong": {**self.sft_spec(), "demonstrator": "strong"}}

    def prompt_spec(self, split: str) -> dict:
        return {"kind": "world", "split": split, **{k: self.spec[k] for k in _SPLIT_FIELDS[split]}}

    @staticmethod
    def prompts(pspec: dict) -> list:
        return world.make_prompts(_world_spec(pspec), pspec["split"])

    def eval_prompt_spec(self, pairs: dict) -> dict:
        """The world's eval split (the pairs do not enter it)."""
        return self.prompt_spec("eval")

    def ranked(self) -> bool:
        """k samples ranked by the annotator (k > 2, or a curriculum order, or rated lists), else today's one
        pair of two."""
        return (
            any(self.spec[k] != v for k, v in RANKING_DEFAULTS.items())
            or self.spec["pair_strategy"] == world.LIST_STRATEGY
        )

    def pref_samples_n(self) -> int:
        """On-policy samples drawn per pref prompt."""
        return int(self.spec["k_samples"])

    def pairs_spec(self) -> dict:
        """What labelling reads besides the samples: the pref prompts and the annotator (and, for k ranked
        samples, the pair strategy and the curriculum order)."""
        out = {
            "kind": "world",
            "prompts": self.prompt_spec("pref"),
            "annotator": {
                "temperature": self.spec["annotator_temperature"],
                "length_bias": self.spec["annotator_length_bias"],
            },
        }
        lists = self.spec["pair_strategy"] == world.LIST_STRATEGY
        if (
            self.spec["steps"] and not lists
        ):  # Step-DPO's step-wise pairs (world.step_pairs): continuations of the SFT policy
            out["steps"] = {"candidates": int(self.spec["step_candidates"])}
            out.pop("annotator")  # the per-step gold signal labels the steps, not the annotator
        elif self.ranked():
            out["ranking"] = {k: self.spec[k] for k in ("k_samples", "pair_strategy", "curriculum")}
            if self.spec["steps"]:  # rated lists with every response's step spans (TPO: world.step_ends)
                out["ranking"]["steps"] = True
        if self.spec["pair_source"] != "annotator":  # PUGC: the judge rates against user-generated content
            out["pugc"] = {"ugc_noise": float(self.spec["ugc_noise"])}
        if self.spec["pair_models"] != "single":  # the other model's samples: the pairs spec's extra_samples
            out["models"] = self.spec["pair_models"]
        return out

    @staticmethod
    def build_pairs(spec: dict, inputs: PairInputs) -> dict:
        """On-policy pairs: the SFT policy's samples on the pref prompts (``spec["samples"]``), labelled by
        :meth:`make_pairs`; step-wise pairs also sample continuations, multi-model pairs read the other
        policies' samples (their checkpoints built first)."""
        kw: dict[str, Any] = {"sampler": inputs.sampler()} if "steps" in spec["source"] else {}
        if spec.get("extra_samples"):  # other SFT policies' samples (multi-model pairs): their checkpoints first
            kw["extra"] = inputs.extra_samples()
        return WorldSource.make_pairs(spec["source"], inputs.samples(), int(spec["seed"]), **kw)

    @staticmethod
    def make_pairs(
        spec: dict, samples: list[list[str]] | None, seed: int, store=None, sampler=None, extra: dict | None = None
    ) -> dict:
        """Label two on-policy samples per pref prompt with the annotator (identical pairs skipped); with
        ``ranking``: rank k samples per prompt and build pairs from the ranking (world.label_ranked); with
        ``steps``: Step-DPO's step-wise pairs (world.step_pairs), the chosen step sampled by ``sampler``
        (prompts, n) -> n continuations per prompt from the samples' policy."""
        prompts_ = prompts(spec["prompts"])
        if "steps" in spec:
            if sampler is None:
                raise ValueError("step-wise pairs (dataset.steps) need a sampler of the policy's continuations")
            pairs, stats = world.step_pairs(
                prompts_, samples, sampler, int(spec["steps"]["candidates"]), world.RewardWeights()
            )
            return {"train": pairs, "eval": [], "stats": stats}
        ann = world.Annotator(
            temperature=spec["annotator"]["temperature"], length_bias=spec["annotator"]["length_bias"]
        )
        if "pugc" in spec:
            return WorldSource._pugc_pairs(spec, prompts_, samples, ann, seed)
        if "models" in spec:
            return WorldSource._multi_model_pairs(spec, prompts_, samples, (extra or {})["strong"], ann, seed)
        if "ranking" in spec:
            return WorldSource._ranked_pairs(spec["ranking"], prompts_, samples, ann, seed)
        pairs = world.label_pairs(prompts_, samples, ann, seed, world.RewardWeights())
        agree = float(np.mean([p["gold_margin"] > 0 for p in pairs])) if pairs else float("nan")
        return {
            "train": pairs,
            "eval": [],
            "stats": {
                "n_pairs": len(pairs),
                "n_identical_skipped": len(prompts_) - len(pairs),
                "annotator_gold_agreement": agree,
            },
        }

    @staticmethod
    def _ranked_pairs(r: dict, prompts_: list, samples, ann, seed: int) -> dict:
        if r["pair_strategy"] == world.LIST_STRATEGY:  # one rated list per prompt (listwise losses)
            rows = world.label_lists(prompts_, samples, ann, seed, world.RewardWeights(), steps=bool(r.get("steps")))
            return {
                "train": rows,
                "eval": [],
                "stats": {
                    **list_stats(rows),
                    "n_identical_skipped": len(prompts_) - len(rows),
                    "k_samples": int(r["k_samples"]),
                    "pair_strategy": r["pair_strategy"],
                    "curriculum": r["curriculum"],
                },
            }
        pairs = world.label_ranked(
            prompts_, samples, ann, seed, r["pair_strategy"], r["curriculum"], world.RewardWeights()
        )
        agree = float(np.mean([p["gold_margin"] > 0 for p in pairs])) if pairs else float("nan")
        n_prompts = len({p["row"] for p in pairs})
        return {
            "train": pairs,
            "eval": [],
            "ordered": r["curriculum"] != "none",
            "stats": {
                "n_pairs": len(pairs),
                "n_identical_skipped": len(prompts_) - n_prompts,
                "annotator_gold_agreement": agree,
                "k_samples": int(r["k_samples"]),
                "pair_strategy": r["pair_strategy"],
                "curriculum": r["curriculum"],
                "mean_rating_gap": float(np.mean([p["gap"] for p in pairs])) if pairs else float("nan"),
            },
        }

    @staticmethod
    def _pugc_pairs(spec: dict, prompts_: list, samples, ann, seed: int) -> dict:
        """PUGC (Tan et al. 2025): one user-generated text per prompt (world.user_contents, at ugc_noise) is the
        judge's reference for rating the k on-policy samples (world.label_pugc); chosen / rejected by the
        ranking (the paper: best vs worst; at k = 2 the one pair)."""
        r = spec.get("ranking") or {"k_samples": 2, "pair_strategy": "best_worst", "curriculum": "none"}
        noise = float(spec["pugc"]["ugc_noise"])
        refs = world.user_contents(prompts_, noise, int(spec["prompts"]["seed"]))
        pairs = world.label_pugc(
            prompts_, samples, refs, ann, seed, r["pair_strategy"], r["curriculum"], world.RewardWeights()
        )
        kws = [set(world.parse_prompt(p)) for p in prompts_]
        ugc_words = [[t for t in u.split() if t in world.CONTENT_WORDS] for u in refs]
        mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")
        return {
            "train": pairs,
            "eval": [],
            "ordered": r["curriculum"] != "none",
            "stats": {
                "n_pairs": len(pairs),
                "n_identical_skipped": len(prompts_) - len({p["row"] for p in pairs}),
                "pair_source": "pugc",
                "ugc_noise": noise,
                "k_samples": int(r["k_samples"]),
                "pair_strategy": r["pair_strategy"],
                "curriculum": r["curriculum"],
                "annotator_gold_agreement": mean([p["gold_margin"] > 0 for p in pairs]),
                "mean_gold_margin": mean([p["gold_margin"] for p in pairs]),
                "chosen_reference_closer": mean([p["reference_margin"] > 0 for p in pairs]),
                "ugc_keyword_recall": mean([len(k & set(u)) / len(k) for k, u in zip(kws, ugc_words)]),
                "ugc_offtopic_words": mean([sum(t not in k for t in u) for k, u in zip(kws, ugc_words)]),
                "ugc_examples": refs[:3],
            },
        }

    @staticmethod
    def _multi_model_pairs(spec: dict, prompts_: list, own, strong, ann, seed: int) -> dict:
        """More is Less (Wang et al. 2025): pairs from the target SFT policy's samples and a stronger SFT
        model's (world.label_multi_model), with what shows the shortcut: where chosen and rejected come from
        and how well a superficial feature (the source model, its opening style word, length) separates them."""
        pairs = world.label_multi_model(
            prompts_, own, strong, ann, seed, spec["models"], world.RewardWeights(), spec.get("ranking")
        )
        mean = lambda xs: float(np.mean(xs)) if len(xs) else float("nan")
        w = world.RewardWeights()
        # the source model as the feature: +1 strong chosen over own, 0 same model, -1 own chosen over strong
        by_source = [(p["chosen_model"] == "strong") - (p["rejected_model"] == "strong") for p in pairs]
        return {
            "train": pairs,
            "eval": [],
            "ordered": (spec.get("ranking") or {}).get("curriculum", "none") != "none",
            "stats": {
                "n_pairs": len(pairs),
                "n_identical_skipped": len(prompts_) - len({p["row"] for p in pairs}),
                "pair_models": spec["models"],
                "annotator_gold_agreement": mean([p["gold_margin"] > 0 for p in pairs]),
                "chosen_from_strong": mean([p["chosen_model"] == "strong" for p in pairs]),
                "rejected_from_strong": mean([p["rejected_model"] == "strong" for p in pairs]),
                "cross_model_pairs": mean([p["chosen_model"] != p["rejected_model"] for p in pairs]),
                # 0.5: the feature alone says nothing about which side was chosen; 1.0: it decides it
                "source_separability": mean(by_source) / 2 + 0.5 if pairs else float("nan"),
                "gold_reward_own": mean([world.gold_reward(p, y[0], w) for p, y in zip(prompts_, own)]),
                "gold_reward_strong": mean([world.gold_reward(p, y[0], w) for p, y in zip(prompts_, strong)]),
                "style_rate_own": mean([world.starts_with_style(y[0]) for y in own]),
                "style_rate_strong": mean([world.starts_with_style(y[0]) for y in strong]),
            },
        }

    @staticmethod
    def heldout_splits() -> dict[str, str]:
        return {"implicit_reward_accuracy": "eval", "implicit_reward_accuracy_ood": "ood"}

    def heldout_pairs(self, sampled: dict[str, tuple[list, list[list[str]]]], pairs_art: dict | None) -> dict:
        """The SFT sample pairs of each held-out split, labelled by r* (none left: the metric is NaN)."""
        return {
            name: world.gold_pairs(prompts_, samples, self.weights) for name, (prompts_, samples) in sampled.items()
        }

    def gold(self, prompts_: list, policy_samples: list[str], sft_samples: list[str]) -> dict:
        out = world.gold_metrics(prompts_, policy_samples, sft_samples, self.weights)
        # the strong model's style cue in the answers (More is Less: a shortcut learned from multi-model pairs)
        out["style_word_rate"] = float(np.mean([world.starts_with_style(y) for y in policy_samples]))
        out["style_word_rate_sft"] = float(np.mean([world.starts_with_style(y) for y in sft_samples]))
        return out

    def sample_rows(self, prompts_, samples, sft_samples) -> list[dict]:
        return [
            {
                "prompt": p,
                "policy": y,
                "sft": s,
                "gold_policy": world.gold_reward(p, y, self.weights),
                "gold_sft": world.gold_reward(p, s, self.weights),
            }
            for p, y, s in zip(prompts_, samples, sft_samples)
        ]

    def data_report(self, pairs_art: dict, tokenizer, max_length: int) -> dict:
        """The pairs' statistics, k samples per prompt, and the leakage of every prompt the pairs were
        sampled for into the held-out splits."""
        pairs = pairs_art["train"]
        stats = {**pairs_art["stats"], **self.describe(pairs, tokenizer, max_length)}
        stats.setdefault("k_samples", self.pref_samples_n())
        stats["pairs_per_prompt"] = pairs_per_prompt(pairs)
        evals = {f"world_{s}": prompts(self.prompt_spec(s)) for s in ("eval", "ood")}
        stats["leakage"] = leakage(prompts(self.prompt_spec("pref")), evals)
        return stats

    @staticmethod
    def describe(pairs: list[dict], tokenizer, max_length: int) -> dict:
        if pairs and "responses" in pairs[0]:  # rated lists (dataset.pair_strategy=list)
            return list_stats(pairs)
        len_c = [len(p["chosen"].split()) for p in pairs]
        len_r = [len(p["rejected"].split()) for p in pairs]
        return {
            "chosen_minus_rejected_length": float(np.mean(np.array(len_c) - np.array(len_r))) if pairs else 0.0,
            # how well a superficial feature alone tells chosen from rejected (0.5: not at all; 1: it decides
            # every pair): length, and the strong model's opening style word (More is Less)
            "feature_separability": {
                "length": world.pair_feature_accuracy(pairs, lambda y: len(y.split())),
                "style_word": world.pair_feature_accuracy(pairs, world.starts_with_style),
            },
        }


def pairs_per_prompt(pairs: list[dict]) -> float:
    """Training rows per distinct prompt (several from k ranked samples, Curry-DPO; conversational prompts
    are message lists)."""
    n_prompts = len({prompt_key(x["prompt"]) for x in pairs})
    return len(pairs) / n_prompts if n_prompts else 0.0


def list_stats(rows: list[dict]) -> dict:
    """Statistics of rated lists (one prompt, k responses, their scores): rows, list sizes, the score spread
    and, where the rows carry gold rewards (the world), how often the scores order a pair as r* does."""
    sizes = [len(r["responses"]) for r in rows]
    out = {
        "n_rows": len(rows),
        "k_mean": float(np.mean(sizes)) if rows else 0.0,
        "k_min": min(sizes, default=0),
        "k_max": max(sizes, default=0),
        "mean_score_spread": float(np.mean([max(r["scores"]) - min(r["scores"]) for r in rows]))
        if rows
        else float("nan"),
    }
    if rows and "gold" in rows[0]:
        agree = [
            (si > sj) == (gi > gj)
            for r in rows
            for a, (si, gi) in enumerate(zip(r["scores"], r["gold"]))
            for sj, gj in zip(r["scores"][a + 1 :], r["gold"][a + 1 :])
            if gi != gj and si != sj
        ]
        out["annotator_gold_agreement"] = float(np.mean(agree)) if agree else float("nan")
        out["best_is_gold_best"] = float(np.mean([r["gold"][0] == max(r["gold"]) for r in rows]))
    return out


# ---------------------------------------------------------------------------------------------
# real preference data (files and Hub datasets)
# ---------------------------------------------------------------------------------------------

REAL_FIELDS = (
    "name",
    "hub_id",
    "path",
    "split",
    "eval_split",
    "format",
    "columns",
    "max_rows",
    "on_error",
    "sft",
    "n_eval",
)


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a local file's bytes (its content determines the data, not its name or time)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _content(dcfg_fields: dict) -> dict:
    """What identifies the bytes a real-data config reads: each local file's checksum (train and
    eval split), or the Hub id (whose revision the user pins in ``hub_id``: ``repo@rev``)."""
    out: dict[str, Any] = {}
    if dcfg_fields.get("path"):
        for split in dict.fromkeys([dcfg_fields.get("split"), dcfg_fields.get("eval_split")]):
            if split is None:
                continue
            p = Path(str(dcfg_fields["path"]).replace("{split}", str(split))).expanduser()
            if p.is_file():
                out[str(split)] = file_fingerprint(p)
            elif p.is_dir():  # a saved datasets folder: every file in it
                out[str(split)] = {
                    str(f.relative_to(p)): file_fingerprint(f) for f in sorted(p.rglob("*")) if f.is_file()
                }
    return out


class FileSource(DataSource):
    """Real preference data from a local file or the Hub (``dataset.kind=hf``): pairs from the
    files, held-out pairs from the eval split (or the last ``n_eval`` pairs), an optional separate
    SFT dataset, no gold reward (quality comes from the configured judge)."""

    kind = "hf"
    always_sft = False  # SFT only with an SFT dataset; else the base model is the start
    world = False
    gold = None

    @classmethod
    def validate(cls, d, model_cfg) -> None:
        """The files' fields (a path or a Hub id, a known format and its columns, the error policy, the SFT
        dataset's config), a real model, and none of the world's on-policy fields: real data brings its own
        pairs."""

        check(
            model_cfg.kind != "tiny",
            f"dataset.kind={d.kind} needs a real model (model=smollm2_135m or a Hub model); "
            "the tiny model's tokenizer only knows the world",
        )
        check(bool(d.path or d.hub_id), f"dataset={d.name}: set dataset.path (a local file) or dataset.hub_id")
        check(d.format in formats.FORMATS, f"dataset.format={d.format!r}: allowed {', '.join(formats.FORMATS)}")
        check(d.max_rows >= 0, "dataset.max_rows must be >= 0")
        check(OnError.allows(d.on_error), f"dataset.on_error={d.on_error!r}: allowed {OnError.listed()}")
        check(
            not d.steps,
            "dataset.steps: step-wise pairs are sampled on the world (dataset=world); real data brings its own pairs",
        )
        check(
            d.k_samples == 2 and d.curriculum == "none",
            "dataset.k_samples / dataset.curriculum: k ranked on-policy samples per prompt are the world's "
            "(dataset=world); real data brings its own pairs",
        )
        try:
            formats.columns_for(d.format, dict(d.columns or {}))
        except formats.DataError as e:
            raise DatasetConfigError(str(e)) from None
        if d.sft:
            check(
                (CONF_DATASET_DIR / f"{d.sft}.yaml").exists(),
                f"dataset.sft={d.sft!r}: no such dataset config in conf/dataset",
            )
        if d.path:
            for split in {d.split, d.eval_split} - {None}:
                p = Path(str(d.path).replace("{split}", str(split))).expanduser()
                check(p.exists(), f"dataset.path={p}: no such file")
        check_pair_fields(d)
        check(
            d.pair_source == "annotator" and d.pair_models == "single",
            "dataset.pair_source / dataset.pair_models build pairs from on-policy samples of the "
            "world (dataset=world); real data brings its own pairs",
        )
        check(
            d.pair_strategy != world.LIST_STRATEGY or d.format == "ranked",
            f"dataset.pair_strategy=list reads rated lists from format ranked "
            f"(prompt, responses, scores), not dataset.format={d.format}",
        )

    def __init__(self, spec: dict):
        self.spec = spec

    @staticmethod
    def spec_of(dcfg) -> dict:
        from po_bench.common import plain  # lazy: omegaconf (~0.0 s)

        fields = {k: v for k, v in plain(dcfg).items() if k in REAL_FIELDS}
        if dcfg.get("pair_strategy") == world.LIST_STRATEGY:  # ranked rows kept as lists (listwise losses)
            fields["pair_strategy"] = world.LIST_STRATEGY
        return {"kind": "hf", **fields, "content": _content(fields)}

    def sft_spec(self) -> dict | None:
        if not self.spec.get("sft"):
            return None
        from po_bench.common import plain  # lazy: omegaconf (~0.0 s)

        sft = plain(dataset_config(self.spec["sft"]))
        fields = {k: v for k, v in sft.items() if k in REAL_FIELDS}
        return {"kind": "hf", **fields, "content": _content(fields)}

    @staticmethod
    def sft_examples(spec: dict) -> tuple[list[dict], dict]:
        from omegaconf import OmegaConf  # lazy: omegaconf (~0.0 s)

        examples, report = load_sft(OmegaConf.create({k: v for k, v in spec.items() if k != "content"}))
        return examples, report

    def prompt_spec(self, split: str) -> dict:
        return {"kind": "pairs", "split": split}  # completed with the pairs artifact's spec (eval_prompt_spec)

    @staticmethod
    def prompts(pspec: dict) -> list:
        """None of its own: its prompt specs are ``kind: pairs`` (a pairs artifact's pairs, :func:`prompts`)."""
        raise ValueError(f"dataset.kind=hf draws no prompts of its own (prompt spec {pspec!r})")

    def eval_prompt_spec(self, pairs: dict) -> dict:
        """The prompts of the pairs artifact's held-out pairs (so that artifact is built even without training)."""
        return {**self.prompt_spec("eval"), "pairs": pairs}

    @staticmethod
    def pref_samples_n() -> int:
        """0: the pairs read no policy samples (they come from the files)."""
        return 0

    def pairs_spec(self) -> dict:
        return dict(self.spec)

    @staticmethod
    def extra_policies() -> dict:
        return {}

    @staticmethod
    def build_pairs(spec: dict, inputs: PairInputs) -> dict:
        """Pairs read from the files, in the view the loss trains on (paired or unpaired rows), prompts too
        long for ``max_length`` in the run's tokenizer dropped and counted."""
        return FileSource.make_pairs(
            spec["source"],
            None,
            int(spec["seed"]),
            paired=spec["view"] == "pairs",
            tokenizer=inputs.tokenizer(),
            max_length=int(spec["max_length"]),
        )

    @staticmethod
    def make_pairs(
        spec: dict, samples, seed: int, store=None, *, paired: bool = True, tokenizer=None, max_length: int = 0
    ) -> dict:
        from omegaconf import OmegaConf  # lazy: omegaconf (~0.0 s)

        d = OmegaConf.create({k: v for k, v in spec.items() if k != "content"})
        if d.get("pair_strategy") == world.LIST_STRATEGY:
            return FileSource._lists(d, tokenizer, max_length)
        load = load_pairs if paired or d.format != "unpaired" else load_unpaired
        pairs, eval_pairs, report, eval_report = FileSource._split(
            d, load, load_pairs, holdout=lambda rows: "chosen" in rows[0]
        )
        pairs, too_long = drop_overlong_prompts(pairs, tokenizer, max_length)
        return {
            "train": pairs,
            "eval": eval_pairs,
            "stats": {"conversion": report, "conversion_eval": eval_report, "skipped_prompt_over_max_length": too_long},
        }

    @staticmethod
    def _split(d, load, load_eval, holdout=lambda rows: True) -> tuple[list, list, dict, dict | None]:
        """(train rows, eval rows, conversion reports): the eval split's first n_eval rows, or, with no
        eval split, the last n_eval rows (at most a quarter) held out and never trained on."""
        rows, report = load(d)
        apply_error_policy(d, report)
        if d.eval_split:
            held, eval_report = load_eval(d, d.eval_split)
            apply_error_policy(d, eval_report)
            return rows, held[: d.n_eval], report, eval_report
        n_hold = min(d.n_eval, len(rows) // 4)
        held = rows[len(rows) - n_hold :] if n_hold and holdout(rows) else []
        return rows[: len(rows) - len(held)], held, report, None

    @staticmethod
    def _lists(d, tokenizer, max_length: int) -> dict:
        """``format: ranked`` rows as rated lists (dataset.pair_strategy=list); the held-out pairs that
        measure implicit-reward accuracy are best vs worst of the eval split's lists (or of the last
        n_eval lists, never trained on)."""
        rows, held, report, eval_report = FileSource._split(d, load_lists, load_lists)
        rows, too_long = drop_overlong_prompts(rows, tokenizer, max_length)
        return {
            "train": rows,
            "eval": [best_worst_pair(r) for r in held],
            "stats": {"conversion": report, "conversion_eval": eval_report, "skipped_prompt_over_max_length": too_long},
        }

    @staticmethod
    def heldout_splits() -> dict[str, str]:
        return {}

    @staticmethod
    def heldout_pairs(sampled: dict, pairs_art: dict | None) -> dict:
        """The eval split's pairs (or the held-out last rows); none: not measured (None)."""
        return {"implicit_reward_accuracy": pairs_art["eval"] or None}

    def data_report(self, pairs_art: dict, tokenizer, max_length: int) -> dict:
        """The pairs' statistics and token lengths, leakage of eval prompts into training (the eval split
        and the public benchmarks; a warning when the eval split's prompts are trained on) and every
        count of rows left out on the way (``counts``)."""
        pairs = pairs_art["train"]
        stats = {**pairs_art["stats"], **self.describe(pairs, tokenizer, max_length)}
        stats["pairs_per_prompt"] = pairs_per_prompt(pairs)
        train_prompts = [x["prompt"] for x in pairs]
        leak = {
            **leakage(train_prompts, eval_sets()),
            **leakage(train_prompts, {"eval_split": [x["prompt"] for x in pairs_art["eval"]]}),
        }
        if leak["eval_split"]["count"]:
            log.warning(
                "%d of %d eval prompts also occur among the training prompts (data.leakage.eval_split)",
                leak["eval_split"]["count"],
                leak["eval_split"]["n_eval"],
            )
        stats["leakage"] = leak
        stats["counts"] = data_counts(
            stats["conversion"],
            stats["conversion_eval"],
            stats["skipped_prompt_over_max_length"],
            stats["tokens"],
            leak,
        )
        return stats

    @staticmethod
    def describe(pairs: list[dict], tokenizer, max_length: int) -> dict:
        if "responses" in pairs[0]:  # rated lists
            return {"tokens": {}, "lists": list_stats(pairs)}
        tokens = data_stats(pairs, tokenizer, max_length) if "chosen" in pairs[0] else {}
        if tokens.get("truncated_fraction", 0.0) > TRUNCATION_WARN:  # not only a count in run.json
            log.warning(
                "%d of %d training pairs (%.0f%%) exceed train.max_length=%d and are truncated by the trainer "
                "(p90 prompt + response: %d tokens); raise train.max_length or model.max_length",
                tokens["n_truncated"],
                tokens["n_pairs"],
                100 * tokens["truncated_fraction"],
                max_length,
                int(tokens["prompt_tokens"]["p90"] + tokens["response_tokens"]["p90"]),
            )
        return {"tokens": tokens}

    @staticmethod
    def sample_rows(prompts_, samples, sft_samples) -> list[dict]:
        return [{"prompt": p, "policy": y, "sft": s} for p, y, s in zip(prompts_, samples, sft_samples)]


SOURCES: dict[str, type[DataSource]] = {}  # dataset.kind -> its source: read it through sources()
ENTRY_POINT_GROUP = "po_bench.sources"
LOADED: list[bool] = []  # [True] once the plug-in sources were loaded in this process


def register_source(cls: type[DataSource]) -> type[DataSource]:
    """Register a source class as ``dataset.kind=<cls.kind>`` (a class decorator; a kind is owned once)."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"@register_source: {cls!r} has no kind (the dataset.kind it answers to)")
    old = SOURCES.get(kind)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(
            f"@register_source: dataset.kind={kind!r} is registered by {old.__module__}.{old.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__}"
        )
    SOURCES[kind] = cls
    return cls


register_source(WorldSource)
register_source(FileSource)


def sources() -> dict[str, type[DataSource]]:
    """Every registered source by kind: po-bench's, then the plug-ins of the ``po_bench.sources`` entry-point
    group (loaded once per process; one that fails to import is refused by config validation, po_bench.plugins)."""
    if not LOADED:
        LOADED.append(True)

        plugins.load(ENTRY_POINT_GROUP)
    return SOURCES


def source_class(spec: dict) -> type[DataSource]:
    """The source class of a (full or partial) data spec (``spec["kind"]``): what stages call the
    static builders (``sft_examples``, ``build_pairs``) of."""
    known = sources()
    try:
        return known[spec["kind"]]
    except KeyError:
        raise ValueError(f"dataset.kind={spec.get('kind')!r}: allowed {', '.join(known)}") from None


def source_for(dcfg) -> DataSource:
    """The source for a dataset config node."""
    cls = source_class({"kind": dcfg.kind})
    return cls(cls.spec_of(dcfg))


def validate_dataset(dcfg, model_cfg) -> None:
    """The ``dataset`` section's checks: a registered ``dataset.kind``, then that source's own
    (:meth:`DataSource.validate`); :class:`DatasetConfigError` with one line."""
    known = sources()
    check(dcfg.kind in known, f"dataset.kind={dcfg.kind!r}: allowed {', '.join(known)}")
    known[dcfg.kind].validate(dcfg, model_cfg)


def prompts(pspec: dict, pairs_artifact: dict | None = None) -> list:
    """The prompts of a prompt spec: the held-out (or training) pairs of a pairs artifact (``kind: pairs``),
    else what the source that made the spec draws (:meth:`DataSource.prompts`)."""
    if pspec["kind"] == "pairs":
        if pairs_artifact is None:
            raise ValueError("prompts of a pairs artifact need the artifact")
        return [p["prompt"] for p in pairs_artifact["eval" if pspec["split"] == "eval" else "train"]]
    return source_class(pspec).prompts(pspec)


# ---------------------------------------------------------------------------------------------
# helpers of real-data conversion
# ---------------------------------------------------------------------------------------------


def _line_of(source: str, row: int) -> int | None:
    """The 1-based line of row ``row`` in a JSONL file (blank lines are not rows), else None."""

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


def apply_error_policy(d, report: dict) -> None:
    """dataset.on_error=fail: the first bad row stops the run, naming the file and line (row)."""
    if d.on_error != "fail" or not report.get("n_skipped"):
        return
    reason, rows = min(report["skipped_examples"].items(), key=lambda kv: kv[1][0])
    line = _line_of(report["source"], rows[0])
    where = f"line {line} (row {rows[0]})" if line else f"row {rows[0]}"
    raise DataError(
        f"{report['source']}: {where}: {reason} "
        f"({report['n_skipped']} bad rows in all; dataset.on_error=skip skips and counts them)"
    )


def drop_overlong_prompts(pairs: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """Pairs whose prompt alone leaves no room for a completion within max_length cannot be trained
    on (the completion would be truncated to nothing); they are dropped and counted, never silently."""

    keep = [
        p
        for p in pairs
        if len(tokenizer(render_prompt(tokenizer, p["prompt"]), add_special_tokens=False)["input_ids"]) < max_length - 1
    ]
    if not keep:
        raise DataError(f"every prompt is longer than train.max_length={max_length} tokens: raise train.max_length")
    return keep, len(pairs) - len(keep)


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

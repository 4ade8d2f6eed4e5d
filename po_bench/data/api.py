"""The data-source contract: what the one pipeline asks of a dataset, and nothing more.

A source (:mod:`po_bench.data.sources`: the embedded world, files and Hub datasets) is a class
registered in ``sources.SOURCES`` under its ``kind`` and built from a plain *spec*, the dataset
fields that determine its data: ``cls(cls.spec_of(dataset config))`` (``sources.source_for``).
Three places call it, at three times:

* :func:`po_bench.specs.plan` (before any compute): the specs of the SFT data, the prompt
  splits, the pairs and the held-out samples; what they return becomes store keys, so they are
  pure (at most a checksum of the data files).
* :mod:`po_bench.stages` (building an artifact, in any process, from its spec alone): the
  *static* builders ``sft_examples`` and ``build_pairs``, called on the class
  (``sources.source_class(spec)``), never on an instance.
* :func:`po_bench.pipeline.run` (after training): the gold scorer, the held-out pairs, the rows of
  ``samples.jsonl`` and run.json's ``metrics.data``.

The pipeline uses exactly the members of :class:`DataSource` (``tests/test_sources_protocol.py``
checks every registered source has each of them and that ``pipeline.py``, ``stages.py`` and
``specs.py`` use no other); what differs between sources (on-policy pairs sampled from the SFT
policy, pairs read from files) is decided inside the source, not by the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

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

    # ---- the registry (sources.source_for / source_class) --------------------------------------

    kind: str
    """The registry name (``dataset.kind``: ``world``, ``hf``) and the ``"kind"`` of the specs it
    makes, by which ``sources.source_class(spec)`` finds the class again in another process."""

    @staticmethod
    def spec_of(dcfg) -> dict:
        """The dataset config's fields that determine the data (files by their checksum): the
        source's spec, which every spec below is cut from.  Called once per run by ``source_for``."""
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

"""The ``dataset`` section of the config: its schema (Hydra checks ``dataset.*`` keys and types against
:class:`DatasetConfig` while composing) and the dataset configs of ``conf/dataset/``.  What its values
may be is checked by the data source that ``dataset.kind`` names (:func:`po_bench.data.sources.validate_dataset`:
each source validates its own fields).  Lives in the data layer so that sources read it without importing
the config of the whole run (:mod:`po_bench.config`, which composes every section)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from po_bench.data.formats.base import DataError
from po_bench.data.world import DEFAULT_UGC_NOISE


@dataclass
class FilterConfig:
    """``dataset.filter``: train on the ``keep`` share of the pairs with the lowest score of ``kind`` (ches |
    ches_ln: CHES at the start checkpoint, Razin et al. 2025, whose filter keeps the lowest length-normalised
    CHES; 0.95: the 5% removal of their refusal experiment) or on every pair (kind none, or keep 1.0).  The
    filtered pairs are their own pairs artifact (specs.plan), so everything trained on them is keyed by it."""

    kind: str = "none"  # none | ches | ches_ln
    keep: float = 0.95  # the share kept, in (0, 1]


@dataclass
class DatasetConfig:
    name: str = "world"
    kind: str = "world"
    seed: int = 0  # the world's own seed: fixed across run seeds, so seeds vary training, not the task
    n_sft: int = 3000
    n_pref: int = 1600
    n_eval: int = 512
    n_ood: int = 256
    min_keywords: int = 1
    max_keywords: int = 3
    ood_min_keywords: int = 4
    ood_max_keywords: int = 5
    annotator_temperature: float = 0.5
    annotator_length_bias: float = 0.03
    # k on-policy samples per pref prompt ranked by the annotator, pairs built from the ranking
    # (best_vs_rest | adjacent | best_worst | all) and their order (none: shuffled by the trainer;
    # easy_to_hard: Curry-DPO's curriculum, largest rating gap first, trained in that order).  World only.
    k_samples: int = 2
    pair_strategy: str = "best_vs_rest"
    curriculum: str = "none"
    # Step-DPO's step-wise pairs (world only): a shared correct prefix, the first erroneous step of a sampled
    # response (by the per-step gold gain) rejected, a correct next step chosen from step_candidates
    # continuations of the SFT policy (po_bench/data/world.py step_pairs)
    steps: bool = False
    step_candidates: int = 4
    # Who rates the on-policy samples: annotator (r*, Bradley-Terry) | pugc (PUGC, Tan et al. 2025: the judge
    # rates against a user-generated text per prompt, its keywords dropped / off-topic words added at ugc_noise).
    # Which models they come from: single (the SFT policy) | multi (a pool with a stronger SFT model's samples,
    # annotator-labelled) | strong_chosen (the strong model's sample chosen, the own one rejected; More is Less,
    # Wang et al. 2025).  World only.
    pair_source: str = "annotator"
    ugc_noise: float = DEFAULT_UGC_NOISE
    pair_models: str = "single"
    # Real data (kind: hf / file; see conf/dataset/*.yaml).  Unused by kind=world.
    hub_id: str | None = None  # Hub dataset id (users with the Hub)
    path: str | None = None  # local JSONL / JSON / Parquet file (wins over hub_id when set)
    split: str = "train"
    eval_split: str | None = None
    format: str = "pairs"  # pairs | conversational | hh | ranked | unpaired
    columns: dict[str, str] = field(default_factory=dict)  # internal name -> column name in the source
    max_rows: int = 0  # >0: keep the first N rows
    on_error: str = "skip"  # skip: bad rows are skipped and counted in run.json | fail: stop at the first bad row
    sft: str | None = None  # name of a separate SFT dataset config (e.g. ultrachat)
    # the training pairs kept by a per-pair score before preference training (any source)
    filter: FilterConfig = field(default_factory=FilterConfig)


CONF_DATASET_DIR = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def dataset_config(name: str, **overrides):
    """A dataset config from ``conf/dataset/<name>.yaml`` merged onto the structured schema (used
    to resolve ``dataset.sft: ultrachat`` to the SFT dataset's own config)."""
    from omegaconf import OmegaConf  # lazy: omegaconf (~0.1 s)

    path = CONF_DATASET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONF_DATASET_DIR.glob("*.yaml"))
        raise DataError(f"no dataset config {name!r} in {CONF_DATASET_DIR} (known: {', '.join(known)})")
    cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(path))
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v, merge=False)
    return cfg

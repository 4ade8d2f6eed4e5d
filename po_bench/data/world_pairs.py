"""Data stage: the embedded world's splits, and its on-policy preference pairs.

On-policy pairs follow SimPO's instruct recipe on the world: two samples per prompt from the SFT
policy, labelled by the configured annotator (Bradley-Terry on the gold reward with a temperature
and a length bias), then label flips from the ``noise`` group.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from po_bench.data import world
from po_bench.data.noise import flip_labels


def world_spec(dcfg) -> world.WorldSpec:
    return world.WorldSpec(
        seed=dcfg.seed, n_sft=dcfg.n_sft, n_pref=dcfg.n_pref, n_eval=dcfg.n_eval, n_ood=dcfg.n_ood,
        min_keywords=dcfg.min_keywords, max_keywords=dcfg.max_keywords,
        ood_keywords=(dcfg.ood_min_keywords, dcfg.ood_max_keywords),
    )


def spec_fields(spec: world.WorldSpec) -> dict:
    return asdict(spec)


def annotator(dcfg) -> world.Annotator:
    return world.Annotator(temperature=dcfg.annotator_temperature, length_bias=dcfg.annotator_length_bias)


def label_and_noise(prompts, samples, dcfg, ncfg, seed: int) -> tuple[list[dict], dict]:
    """Labelled pairs (after noise) and the data statistics for the run record."""
    spec = world_spec(dcfg)
    pairs = world.label_pairs(prompts, samples, annotator(dcfg), seed, spec.weights)
    n_ties = len(prompts) - len(pairs)
    agree = float(np.mean([p["gold_margin"] > 0 for p in pairs])) if pairs else float("nan")
    flipped: list[int] = []
    if ncfg.kind == "flip":
        pairs, flipped = flip_labels(pairs, ncfg.rate, seed)
    len_c = [len(p["chosen"].split()) for p in pairs]
    len_r = [len(p["rejected"].split()) for p in pairs]
    stats = {
        "n_pairs": len(pairs),
        "n_identical_skipped": n_ties,
        "annotator_gold_agreement": agree,
        "noise_flipped_count": len(flipped),
        "noise_flipped_rows": flipped,
        "chosen_minus_rejected_length": float(np.mean(np.array(len_c) - np.array(len_r))) if pairs else 0.0,
    }
    return pairs, stats

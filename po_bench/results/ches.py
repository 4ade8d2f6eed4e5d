"""run.json's ``metrics.diagnostics.ches``: CHES of the training pairs and how well it predicts likelihood
displacement (Razin et al., "Unintentional Unalignment: Likelihood Displacement in Direct Preference
Optimization", ICLR 2025).

From the ``ches`` artifact (po_bench/generation/hidden.py: CHES and length-normalised CHES of every pair,
at the start checkpoint) and, when the probe ran, the policy's ``train_metrics.json``:

* ``ches`` / ``ches_ln``: summary statistics of each variant over the scored pairs (``n_pairs``);
* ``filter``: what ``dataset.filter`` kept and dropped (None without a filter);
* ``probe_pairs`` (when the probe ran): the probe pairs' indices among the scored pairs, their ``ches`` and
  ``ches_ln`` and their ``delta_chosen`` (the CHES-vs-displacement scatter of po-bench-diagnostics);
* ``correlation``: per variant, Spearman's rank correlation (scipy; ties averaged) of the score with each
  probe pair's final change of summed log pi(y+) from the start (``probe.per_pair.delta_chosen``, the probe
  pairs being ``probe.indices`` into the pairs the policy trained on), with ``n`` and the two-sided p-value.
  The paper's finding is a negative one: the higher a pair's CHES, the more its chosen response's
  likelihood falls.  Without the probe's numbers the correlation is ``{"absent": <why>}``, never left out.
"""

from __future__ import annotations

import math

from po_bench.choices import FilterKind
from po_bench.training.pair_scores import summary

VARIANTS = tuple(str(k) for k in FilterKind if k != FilterKind.NONE)  # ches, ches_ln: the artifact's scores


def rank_correlation(scores: list[float], deltas: list[float]) -> dict:
    """Spearman's rho of ``scores`` with ``deltas`` (same length), its two-sided p-value and n; rho and p are
    None (with ``why``) when there are fewer than three pairs or one side is constant."""
    if len(scores) != len(deltas):
        raise ValueError(f"{len(scores)} scores for {len(deltas)} changes of log pi(y+)")
    n = len(scores)
    if n < 3 or len(set(scores)) < 2 or len(set(deltas)) < 2:
        why = "fewer than 3 pairs" if n < 3 else "a constant side"
        return {"n": n, "spearman": None, "p_value": None, "why": why}
    from scipy.stats import spearmanr  # lazy: scipy (~0.3 s): only for this diagnostic

    res = spearmanr(scores, deltas)
    rho, p = float(res.statistic), float(res.pvalue)
    return {"n": n, "spearman": None if math.isnan(rho) else rho, "p_value": None if math.isnan(p) else p}


def probe_pairs(ches: dict, kept: list[int] | None, train_metrics: dict | None) -> dict:
    """The probe pairs' scores beside their change of log pi(y+) (the CHES-vs-displacement scatter):
    ``indices`` among the scored pairs, each variant's scores, ``delta_chosen``; ``kept``: the indices of the
    pairs trained on among the scored ones (the filter's; None: every scored pair, in order).  ``{"absent": why}``
    when the policy's training facts hold no probe (``probe.indices``, ``probe.per_pair.delta_chosen``)."""
    if train_metrics is None:
        return {"absent": "no preference training in this run (no policy to probe)"}
    probe = train_metrics.get("probe")
    if not isinstance(probe, dict):
        return {
            "absent": "the policy's train_metrics.json holds no probe (diagnostics.probe off, or a policy built before it)"
        }
    idx = probe.get("indices")
    delta = (probe.get("per_pair") or {}).get("delta_chosen")
    if idx is None or delta is None:
        return {"absent": "the probe holds no indices or per_pair.delta_chosen"}
    if len(idx) != len(delta):
        raise ValueError(f"the probe's {len(idx)} indices and {len(delta)} delta_chosen differ in length")
    rows = [kept[i] for i in idx] if kept is not None else list(idx)
    return {"indices": rows, **{v: [ches[v][i] for i in rows] for v in VARIANTS}, "delta_chosen": list(delta)}


def probe_correlation(ches: dict, kept: list[int] | None, train_metrics: dict | None) -> dict:
    """Per variant, :func:`rank_correlation` over the probe pairs (:func:`probe_pairs`), or its ``absent``."""
    pp = probe_pairs(ches, kept, train_metrics)
    if "absent" in pp:
        return pp
    return {v: rank_correlation(pp[v], pp["delta_chosen"]) for v in VARIANTS}


def ches_report(ches: dict, filter_stats: dict | None, kept: list[int] | None, train_metrics: dict | None) -> dict:
    """``metrics.diagnostics.ches`` (module docstring) from the ches artifact, the filter's counts and kept
    indices (the filtered pairs artifact's ``stats.ches_filter`` and ``ches_kept``; None without a filter) and
    the policy's training facts (None without preference training)."""
    out = {
        "n_pairs": len(ches["ches"]),
        **{v: summary(ches[v]) for v in VARIANTS},
        "filter": filter_stats,
        "correlation": probe_correlation(ches, kept, train_metrics),
    }
    pp = probe_pairs(ches, kept, train_metrics)
    if "absent" not in pp:  # the probe pairs' scores and changes (the figure's scatter)
        out["probe_pairs"] = pp
    return out


def run_ches_report(ches: dict | None, pairs_art: dict | None, train_metrics: dict | None) -> dict:
    """:func:`ches_report` for a run (pipeline.run): the ches artifact (None: the run scored no pairs), the
    pairs artifact it trained on (the filtered one under dataset.filter), the policy's training facts."""
    if ches is None:
        return {
            "absent": "no training pairs scored: the run trains on no pairs (rated lists, unpaired rows, no training)"
        }
    art = pairs_art or {}
    return ches_report(ches, art.get("stats", {}).get("ches_filter"), art.get("ches_kept"), train_metrics)

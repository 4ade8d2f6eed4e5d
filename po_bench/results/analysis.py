"""The comparative analysis behind a table: per-cell intervals, deltas over the same-seed SFT and the
baseline method, paired tests with Holm correction, a wins / ties / losses matrix, rank intervals,
Spearman with an interval, and the power.

Two questions, named apart.  A *method* claim (the default: does method A train better policies than
B on this task?) has the training seed as its unit: the method-level model of
:func:`po_bench.results.stats.fit_methods` over the run means, its seed variance pooled over the
setting's rows, t references.  A *policy* claim (do these trained checkpoints differ on these
prompts?) resamples and flips the prompts within the shared seeds: a run's item scores come from
``scores.jsonl`` (:mod:`po_bench.results.scores`); without them the unit is the seed and the run-level
metric its value.  Each comparison keeps the other level beside it.  Rows are compared within a
*setting* (the same model, dataset, noise rate: the non-tuned columns), never across settings.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from po_bench.judges.api import interval_prefixes, metric_prefixes
from po_bench.results import scores as item_scores
from po_bench.results import stats

ALPHA = 0.05
TUNED_PREFIXES = ("loss.", "train.")
RUN_KEY = ("run",)  # the item key of a run-level value


def headline(rows: list[dict], ours: list[str] | None, metrics: list[str]) -> str | None:
    """The metric the comparisons are about: the preset's first, else gold reward, else the first
    judge score, else the first metric."""
    for m in list(ours or []) + ["gold_reward"]:
        if m in metrics and any(finite(r.get(f"{m}_mean")) for r in rows):
            return m
    for m in metrics:
        if m.startswith(metric_prefixes()) and any(finite(r.get(f"{m}_mean")) for r in rows):
            return m
    return next((m for m in metrics if any(finite(r.get(f"{m}_mean")) for r in rows)), None)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _seed(run: dict) -> str:
    return json.dumps((run.get("config") or {}).get("seed"))


def units_of(row: dict, metric: str) -> dict[str, dict]:
    """``{seed: {item: score}}`` of one row's metric (its runs: ``row['_runs']``)."""
    out: dict[str, dict] = {}
    for run in row.get("_runs") or []:
        v = (run.get("metrics") or {}).get(metric)
        if not finite(v):
            continue
        items = item_scores.item_scores(run, metric)
        out[_seed(run)] = items if items else {RUN_KEY: float(v)}
    return out


def gain_over_own_sft(row: dict) -> dict[str, dict]:
    """Per seed, gold reward minus the same run's SFT gold reward (item-wise when items exist)."""
    out: dict[str, dict] = {}
    for run in row.get("_runs") or []:
        m = run.get("metrics") or {}
        if not (finite(m.get("gold_reward")) and finite(m.get("gold_reward_sft"))):
            continue
        a, b = item_scores.item_scores(run, "gold_reward"), item_scores.item_scores(run, "gold_reward_sft")
        if a and b and set(a) == set(b):
            out[_seed(run)] = {k: a[k] - b[k] for k in a}
        else:
            out[_seed(run)] = {RUN_KEY: float(m["gold_reward"]) - float(m["gold_reward_sft"])}
    return out


def _arrays(u: dict[str, dict]) -> list[np.ndarray]:
    return [np.array([v[k] for k in sorted(v, key=str)], dtype=float) for _, v in sorted(u.items())]


def judge_interval(row: dict, metric: str) -> tuple[float, float] | None:
    """A judge's own 95% interval of a one-run cell: Arena-Hard's bootstrap interval, AlpacaEval's
    standard error (x 1.96)."""
    runs = [r for r in row.get("_runs") or [] if finite((r.get("metrics") or {}).get(metric))]
    if len(runs) != 1:
        return None
    m = runs[0]["metrics"]
    v = float(m[metric])
    prefix = next((p for p in interval_prefixes() if metric.startswith(p)), None)
    if prefix is None:
        return None
    lo, hi = m.get(f"{prefix}ci_low"), m.get(f"{prefix}ci_high")
    if metric == f"{prefix}score" and finite(lo) and finite(hi):
        return float(lo), float(hi)
    se_keys = [f"{metric}_standard_error", f"{metric}_se"]
    if metric == f"{prefix}win_rate":
        se_keys.append(f"{prefix}standard_error")
    if metric == f"{prefix}length_controlled_win_rate":
        se_keys.append(f"{prefix}lc_standard_error")
    for k in se_keys:
        if finite(m.get(k)):
            return v - 1.96 * float(m[k]), v + 1.96 * float(m[k])
    return None


@dataclass
class Delta:
    """A difference (a - b, or a row minus SFT / the baseline / its noise-rate-0 row): estimate, 95%
    interval, per-seed differences, the test's p (and Holm's), the test's unit (``"method"``: seeds are
    the unit, the method-level model; ``"item"`` / ``"seed"``: the policy-level sign-flip test), and at
    the method level the basis (``paired`` / ``unpaired`` / ``own``: a flagged row's own variance /
    ``none``: one seed, no claim) with the t reference's degrees of freedom.  ``policy``: the
    policy-level comparison of the same runs (these checkpoints on these prompts), kept beside it."""

    mean: float
    lo: float
    hi: float
    per_seed: list[float]
    p: float = float("nan")
    p_holm: float = float("nan")
    unit: str = ""
    basis: str = ""
    df: float = float("nan")
    policy: Delta | None = None

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return ""
        s = f"{self.mean:+.{digits}f}"
        if not math.isnan(self.lo):
            s += f" [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"
        if 1 < len(self.per_seed) <= 5:
            s += " (" + " / ".join(f"{x:+.{digits}f}" for x in self.per_seed) + ")"
        return s

    def negated(self) -> Delta:
        """b - a of the same comparison."""
        return Delta(
            -self.mean,
            -self.hi,
            -self.lo,
            [-x for x in self.per_seed],
            self.p,
            self.p_holm,
            self.unit,
            self.basis,
            self.df,
            self.policy.negated() if self.policy is not None else None,
        )


def delta_of(diffs: list[np.ndarray], seed: int = 0, test: bool = False) -> Delta:
    """The policy-level difference: a bootstrap over the prompts within the shared seeds (and the seeds
    once there are enough of them), the sign-flip test on the same unit."""
    est = stats.paired_bootstrap(diffs, seed=seed)
    d = Delta(est.mean, est.lo, est.hi, [float(x.mean()) for x in diffs])
    if test and diffs:
        d.p, d.unit = stats.permutation_test(diffs, seed=seed)
    return d


def method_delta(fit: stats.MethodFit, a, b, policy: Delta | None = None) -> Delta:
    """The method-level difference of rows a and b of one fitted table (seeds the unit, t reference)."""
    e = stats.method_diff(fit, a, b)
    va, vb = fit.values.get(a) or {}, fit.values.get(b) or {}
    per_seed = [va[k] - vb[k] for k in sorted(va, key=str) if k in vb]
    return Delta(
        e.mean, e.lo, e.hi, per_seed, e.p, float("nan"), "method" if e.basis != "none" else "", e.basis, e.df, policy
    )


def seed_values(row: dict, metric: str) -> dict[str, float]:
    """``{seed: run-level value}`` of one row's metric."""
    out = {}
    for run in row.get("_runs") or []:
        v = (run.get("metrics") or {}).get(metric)
        if finite(v):
            out[_seed(run)] = float(v)
    return out


def own_sft_values(rows: list[dict]) -> dict[str, float]:
    """``{seed: gold_reward_sft}``: the SFT model each seed's runs start from (the same per seed)."""
    out: dict[str, float] = {}
    for r in rows:
        for run in r.get("_runs") or []:
            v = (run.get("metrics") or {}).get("gold_reward_sft")
            if finite(v):
                out.setdefault(_seed(run), float(v))
    return out


SFT_OWN = "SFT (each seed's own)"  # the virtual row of the SFT models the runs start from


def fit_rows(members: list[dict], metric: str, sft: dict | None = None) -> stats.MethodFit:
    """The method-level model of one setting's rows (row ids: their positions; ``sft``: the SFT
    models' values per seed, added as the row :data:`SFT_OWN`)."""
    vals: dict = {i: seed_values(r, metric) for i, r in enumerate(members)}
    if sft:
        vals[SFT_OWN] = dict(sft)
    return stats.fit_methods(vals)


CLAIMS = ("method", "policy")


@dataclass
class Analysis:
    metric: str | None
    baseline: str
    setting_cols: list[str]
    labels: list[str] = field(default_factory=list)  # one per row
    pairs: list[dict] = field(default_factory=list)  # every within-setting pair, both orders not kept
    matrix: OrderedDict[str, OrderedDict[str, list[int]]] = field(default_factory=OrderedDict)
    notes: list[str] = field(default_factory=list)
    mdd: dict = field(default_factory=dict)
    test_units: set = field(default_factory=set)
    claims: str = "method"
    effect: float = 0.05
    flagged: list[dict] = field(default_factory=list)  # rows with their own variance: label, setting, p
    max_seeds: int = 0


def setting_key(row: dict, setting_cols: list[str]) -> str:
    return ", ".join(f"{k}={row.get(k)}" for k in setting_cols)


def row_label(row: dict, rows_in_setting: list[dict], tuned_cols: list[str]) -> str:
    """The method, plus the tuned values that tell its rows apart within the setting."""
    same = [r for r in rows_in_setting if r["method"] == row["method"]]
    if len(same) < 2:
        return row["method"]
    vary = [k for k in tuned_cols if len({json.dumps(r.get(k), default=str) for r in same}) > 1]
    return row["method"] + " (" + ", ".join(f"{k.split('.')[-1]}={row.get(k)}" for k in vary) + ")"


def _cell_intervals(settings: OrderedDict[str, list[dict]], metrics: list[str], claims: str, seed: int) -> None:
    """``<metric>_lo`` / ``_hi`` of every cell: the method-level t interval over seeds (the seed
    variance pooled over the setting's rows), else (one seed, or ``claims="policy"``) the policy-level
    bootstrap over prompts, else a judge's own interval; ``<metric>_ci`` names which."""
    for members in settings.values():
        for m in metrics:
            fit = fit_rows(members, m) if claims == "method" else None
            for i, r in enumerate(members):
                u = units_of(r, m)
                est = stats.interval(_arrays(u), seed=seed) if u else None
                r[f"{m}_items"] = est.n_items if est else 0
                lo = hi = float("nan")
                basis = ""
                if fit is not None:
                    e = stats.method_mean(fit, i)
                    if e.has_interval:
                        lo, hi, basis = e.lo, e.hi, "method"
                if not basis and est is not None and est.has_interval:
                    lo, hi, basis = est.lo, est.hi, "policy"
                if not basis and (j := judge_interval(r, m)):
                    (lo, hi), basis = j, "judge"
                r[f"{m}_lo"], r[f"{m}_hi"], r[f"{m}_ci"] = lo, hi, basis


def analyse(
    rows: list[dict],
    hp_cols: list[str],
    metrics: list[str],
    ours: list[str] | None = None,
    baseline: str = "DPO",
    ref_cols: list[str] | None = None,
    seed: int = 0,
    method_cols: tuple = (),
    claims: str = "method",
    effect: float = 0.05,
) -> Analysis:
    """Fill each row with ``<metric>_lo`` / ``_hi`` and the deltas, ranks and test results (keys
    listed in :data:`ROW_KEYS`), and return the table-wide results.

    ``claims="method"`` (the default): seeds are the unit; every interval, test, mark and rank is the
    method-level one of :func:`po_bench.results.stats.fit_methods` (the training seed's variance
    included, pooled over the setting's rows).  ``claims="policy"``: the trained checkpoints are
    compared on the same prompts (a bootstrap and a sign-flip test over prompts within seeds), which
    says nothing about a new seed.  Each comparison carries the other level too (``Delta.policy``).

    Columns are settings (rows are compared within one setting) unless they are a method's own
    (``loss.*``, ``train.*``) or named in ``method_cols`` (a preset's ``method_columns``: e.g. the data
    shape a method is defined with, so that Curry-DPO's ranked pairs compare with DPO's single pairs
    on the same eval prompts)."""
    if claims not in CLAIMS:
        raise ValueError(f"claims={claims!r}: one of {', '.join(CLAIMS)}")
    tuned = TUNED_PREFIXES + tuple(method_cols)
    setting_cols = [k for k in hp_cols if not k.startswith(tuned) and k != "grid point"]
    tuned_cols = [k for k in hp_cols if k.startswith(tuned)]
    H = headline(rows, ours, metrics)
    an = Analysis(H, baseline, setting_cols, claims=claims, effect=effect)
    settings: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        settings.setdefault(setting_key(r, setting_cols), []).append(r)
    an.labels = [row_label(r, settings[setting_key(r, setting_cols)], tuned_cols) for r in rows]
    for r, lab in zip(rows, an.labels):
        r["_label"] = lab
    an.max_seeds = max((len(seed_values(r, H)) for r in rows), default=0) if H else 0

    # 1. intervals in every cell
    _cell_intervals(settings, metrics, claims, seed)
    if H is None:
        return an
    method = claims == "method"

    # 2. deltas over the same-seed SFT and the baseline, drop from noise rate 0
    fits: dict[str, stats.MethodFit] = {}
    base_tests = []
    for key, members in settings.items():
        sft_row = next((r for r in members if r["method"] == "SFT"), None)
        own_sft = own_sft_values(members) if H == "gold_reward" and sft_row is None else {}
        fit = fits[key] = fit_rows(members, H, own_sft)
        for i, r in enumerate(members):
            if i in fit.flags:
                r["_flag_p"] = fit.flags[i]
                an.flagged.append({"label": r["_label"], "setting": key, "p": fit.flags[i]})
        idx = {id(r): i for i, r in enumerate(members)}
        base = [r for r in members if r["method"] == baseline]
        base_row = max(base, key=lambda r: r.get(f"{H}_mean", -math.inf)) if base else None
        for i, r in enumerate(members):
            if r is not sft_row and (own_sft or sft_row is not None):
                if H == "gold_reward" and sft_row is None:
                    g = gain_over_own_sft(r)
                    pol = delta_of(_arrays(g), seed) if g else None
                    ref_id = SFT_OWN
                else:
                    diffs = stats.paired_differences(units_of(r, H), units_of(sft_row, H))
                    pol = delta_of(diffs, seed) if diffs else None
                    ref_id = idx[id(sft_row)]
                md = method_delta(fit, i, ref_id, pol)
                if md.per_seed or pol is not None:
                    r["delta_sft"] = md if method else pol
            if base_row is not None and r is not base_row:
                diffs = stats.paired_differences(units_of(r, H), units_of(base_row, H))
                pol = delta_of(diffs, seed, test=True) if diffs else None
                md = method_delta(fit, i, idx[id(base_row)], pol)
                d = md if method else pol
                if d is not None and not math.isnan(d.mean):
                    r["delta_base"] = d
                    base_tests.append(d)
            elif r is base_row:
                r["delta_base_ref"] = True
    for d, p in zip(base_tests, stats.holm([d.p for d in base_tests])):
        d.p_holm = p
        if d.unit:
            an.test_units.add(d.unit)
    if "noise.rate" in setting_cols:
        others = [k for k in setting_cols if k != "noise.rate"]
        groups: OrderedDict[str, list[dict]] = OrderedDict()
        for r in rows:
            groups.setdefault(setting_key(r, others), []).append(r)
        for members in groups.values():
            fit = fit_rows(members, H)  # every method at every rate of this setting: seeds the blocks
            zero = {
                r["_label"]: i for i, r in enumerate(members) if finite(r.get("noise.rate")) and r["noise.rate"] == 0
            }
            for i, r in enumerate(members):
                z = zero.get(r["_label"])
                if z is not None and z != i:
                    diffs = stats.paired_differences(units_of(r, H), units_of(members[z], H))
                    pol = delta_of(diffs, seed) if diffs else None
                    r["delta_rate0"] = method_delta(fit, i, z, pol) if method else pol
                    if r["delta_rate0"] is None:
                        del r["delta_rate0"]

    # 3. every pair within a setting: the test, Holm over the table, wins / ties / losses
    labels = list(dict.fromkeys(an.labels))
    an.matrix = OrderedDict((a, OrderedDict((b, [0, 0, 0]) for b in labels)) for a in labels)
    for key, members in settings.items():
        fit = fits[key]
        for i, a in enumerate(members):
            for j in range(i + 1, len(members)):
                b = members[j]
                diffs = stats.paired_differences(units_of(a, H), units_of(b, H))
                pol = delta_of(diffs, seed, test=True) if diffs else None
                md = method_delta(fit, i, j, pol)
                d = md if method else pol
                if d is None or math.isnan(d.mean):
                    continue
                if d.unit:
                    an.test_units.add(d.unit)
                an.pairs.append(
                    {
                        "setting": key,
                        "a": a["_label"],
                        "b": b["_label"],
                        "delta": d,
                        "var": stats.variance_components(diffs) if diffs else None,
                        "mdd": stats.method_mdd(fit),
                    }
                )
    for pr, p in zip(an.pairs, stats.holm([pr["delta"].p for pr in an.pairs])):
        d = pr["delta"]
        d.p_holm = p
        sig = not math.isnan(p) and p < ALPHA
        out = 0 if (sig and d.mean > 0) else (2 if (sig and d.mean < 0) else 1)
        an.matrix[pr["a"]][pr["b"]][out] += 1
        an.matrix[pr["b"]][pr["a"]][2 - out] += 1
    pols = [pr["delta"].policy for pr in an.pairs if pr["delta"].policy is not None]
    for d, p in zip(pols, stats.holm([d.p for d in pols])):
        d.p_holm = p

    # 4. ranks with intervals, per setting, from one joint set of replicates
    for key, members in settings.items():
        if method:
            fit = fits[key]
            ok = len(members) >= 2 and all(fit.n_seeds(i) >= 1 for i in range(len(members)))
            reps = stats.method_replicates(fit, list(range(len(members))), seed=seed) if ok else None
        else:
            reps = joint_replicates(members, H, seed)
        if reps is None:
            continue
        for r, (rk, lo, hi) in zip(members, stats.rank_intervals(reps)):
            r["rank"], r["rank_lo"], r["rank_hi"] = rk, lo, hi
        if ref_cols and len(settings) == 1 and len({r["method"] for r in members}) == len(members):
            for c in ref_cols:
                idx_ = [i for i, r in enumerate(members) if finite(r.get(c))]
                if len(idx_) >= 3:
                    rho, lo, hi = stats.spearman_interval(
                        reps[:, idx_], [members[i][c] for i in idx_], [members[i][f"{H}_mean"] for i in idx_]
                    )
                    if not math.isnan(lo):
                        an.notes.append(
                            f"`{H}` vs `{c}`: Spearman {rho:+.2f} over {len(idx_)} methods "
                            f"(95% {'method-level' if method else 'policy-level bootstrap'} "
                            f"interval {lo:+.2f} to {hi:+.2f})"
                        )

    # 5. how much is enough
    an.mdd = method_power(fits, effect) if method else power_summary(an.pairs, rows, H, seed)
    an.mdd["metric"] = H
    return an


def method_power(fits: dict, effect: float, alpha: float = ALPHA, power: float = 0.8) -> dict:
    """The method-level power of the table (median over its settings): the smallest difference a
    paired t test detects at the seeds run, and the seeds per method a difference of ``effect`` needs."""
    usable = [f for f in fits.values() if math.isfinite(f.resid_var) and f.n_rows - len(f.flags) >= 2]
    out: dict[str, Any] = {"level": "method", "effect": effect, "alpha": alpha, "power": power}
    if not usable:
        return out
    seeds = [max(f.n_seeds(r) for r in f.values) for f in usable]
    mdds = [stats.method_mdd(f, alpha=alpha, power=power) for f in usable]
    need = [stats.method_seeds_needed(f, effect, alpha, power) for f in usable]
    known = [n for n in need if n is not None]
    out.update(
        mdd=float(np.median(mdds)),
        seeds=int(np.median(seeds)),
        n_settings=len(usable),
        resid_sd=float(np.median([math.sqrt(f.resid_var) for f in usable])),
        rows=int(np.median([f.n_rows - len(f.flags) for f in usable])),
        seeds_needed=int(np.median(known)) if known else None,
    )
    return out


def joint_replicates(members: list[dict], metric: str, seed: int = 0, n_boot: int = 2000):
    """(n_boot, len(members)) joint bootstrap means over the seeds all rows share and, per seed,
    the items all of them have; None with fewer than two rows or nothing shared (policy level)."""
    if len(members) < 2:
        return None
    us = [units_of(r, metric) for r in members]
    shared = sorted(set.intersection(*(set(u) for u in us)))
    mats = []
    for s in shared:
        keys = sorted(set.intersection(*(set(u[s]) for u in us)), key=str)
        if keys:
            mats.append(np.array([[u[s][k] for k in keys] for u in us], dtype=float))
    if not mats or (len(mats) == 1 and mats[0].shape[1] == 1):  # one value each: nothing to resample
        return None
    return stats.joint_bootstrap(mats, n_boot=n_boot, seed=seed)


def power_summary(pairs: list[dict], rows: list[dict], metric: str, seed: int = 0) -> dict:
    """Policy level: the median over the table's pairs of the minimum detectable difference in
    ``metric`` from the pairs' variance components (prompts within seeds)."""
    out: dict[str, Any] = {"level": "policy", "metric": metric}
    vs = [p["var"] for p in pairs if p.get("var") is not None and p["var"].n_seeds]
    if vs:
        mdds = [stats.min_detectable_difference(v) for v in vs]
        mdds = [m for m in mdds if not math.isnan(m)]
        if mdds:
            out.update(
                mdd=float(np.median(mdds)),
                n_pairs=len(mdds),
                seeds=max(v.n_seeds for v in vs),
                items=int(np.median([v.n_items for v in vs])),
                between_known=all(not math.isnan(v.between) for v in vs),
            )
    return out


def fmt_cell(r: dict, m: str, digits: int = 3) -> str:
    mean = r.get(f"{m}_mean", float("nan"))
    if not finite(mean):
        return "nan"
    lo, hi = r.get(f"{m}_lo", float("nan")), r.get(f"{m}_hi", float("nan"))
    s = f"{mean:.{digits}f}"
    if finite(lo) and finite(hi):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def mark(r: dict) -> str:
    """▲ / ▼: significantly above / below the baseline (the table's level of claim, Holm); ◆ the
    baseline; ‡ a row with its own variance (its seed spread is far above the pool)."""
    flag = " ‡" if "_flag_p" in r else ""
    if r.get("delta_base_ref"):
        return " ◆" + flag
    d = r.get("delta_base")
    if d is None or math.isnan(d.p_holm) or d.p_holm >= ALPHA:
        return flag
    return (" ▲" if d.mean > 0 else " ▼") + flag


METHOD_FORMULA = (
    "MDD = (t(1-α/2, df) + t(power, df)) · sqrt(2 σ²ₑ / S), df = (M - 1)(S - 1), with σ²ₑ the "
    "seed-by-method variance pooled over the M methods of the setting and S seeds per method"
)


def summary_notes(an: Analysis, rows: list[dict]) -> list[str]:
    """The paragraphs under the table: what the marks mean, which differences are real, power."""
    if an.metric is None:
        return []
    H = an.metric
    out = []
    n_items = max((r.get(f"{H}_items", 0) for r in rows), default=0)
    if an.claims == "method":
        ci = {b for r in rows for b in [r.get(f"{H}_ci")] if b}
        cell = (
            "mean [95% method-level interval: t over the row's seeds, the seed-to-seed variance pooled "
            "over the setting's rows]"
        )
        if "policy" in ci:
            cell += (
                "; a row with one seed shows the policy-level interval over its prompts instead (that "
                "checkpoint, not the method)"
            )
        if "judge" in ci:
            cell += "; a judge's own interval where a cell is one run without item scores"
        out.append(
            f"Method-level claims (seeds are the unit: does the method train better policies, a new seed "
            f"included?). Cells: {cell}. Headline metric `{H}`: ▲ / ▼ = significantly above / below "
            f"{an.baseline} (◆): a paired t test over the shared seeds, its variance the seed-by-method "
            f"interaction pooled over the setting's methods (linear mixed model score ~ method + (1 | seed) "
            f"+ (1 | method:seed) on the run means; t reference with the pooled degrees of freedom), "
            f"Holm-corrected over the table at α = {ALPHA}. "
            f"Δ SFT: gain over the SFT model of the same seed; Δ {an.baseline}: difference from "
            f"{an.baseline} on the same seeds (per seed in parentheses), on the same basis as the test; "
            f"rank: 1 = best, with its 95% interval from the fitted model. "
            f"The policy-level comparison (these checkpoints on these prompts, what AlpacaEval and "
            f"Arena-Hard report) is in the pairs CSV (`policy_*` columns) and under `--claims policy`."
        )
        if an.max_seeds <= 1:
            out.append(
                "One seed per method: no method-level claim is possible (the seed-to-seed variance "
                "is unknown); no row is marked. Run at least 2 seeds (see the power line) or compare "
                "the checkpoints with `--claims policy`."
            )
        for f in an.flagged:
            where = f" ({f['setting']})" if f["setting"] else ""
            out.append(
                f"‡ {f['label']}{where}: own variance. Its seed spread is far above the pool of the "
                f"other rows (one-sided F test p = {f['p']:.3g} < {stats.FLAG_ALPHA}: a diverging "
                f"seed?), so its intervals and tests use its own spread (Welch-Satterthwaite df) and "
                f"the others keep the pooled one."
            )
    else:
        units = {
            "item": "the prompts within each seed (the two trained policies are exchangeable on every prompt)",
            "seed": "the seeds",
        }
        used = [units[u] for u in sorted(an.test_units) if u in units]
        unit_text = (
            "items (prompts) within seeds, then seeds"
            if n_items > 1
            else "seeds (run-level values: no per-item scores, `scores.jsonl`, in these runs)"
        )
        out.append(
            f"Policy-level claims (these trained checkpoints on these prompts; says nothing about a new "
            f"seed). Cells: mean [95% hierarchical bootstrap interval over {unit_text}; percentile "
            f"interval widened for few units; a judge's own interval where a cell is one run]. Headline "
            f"metric `{H}`: ▲ / ▼ = significantly above / below {an.baseline} (◆) in a paired sign-flip "
            f"permutation test on the same seeds and prompts, Holm-corrected over the table at α = {ALPHA}"
            + (f"; the flipped unit: {'; '.join(used)}" if used else "")
            + ". "
            f"Δ SFT / Δ {an.baseline}: on the same seeds and prompts, the intervals resampling the test's "
            f"unit; rank: 1 = best, with its 95% bootstrap interval."
        )
    level = "method-level" if an.claims == "method" else "policy-level"
    if an.pairs:
        sig = [p for p in an.pairs if not math.isnan(p["delta"].p_holm) and p["delta"].p_holm < ALPHA]
        tested = [p for p in an.pairs if not math.isnan(p["delta"].p)]
        if sig:
            lines = []
            for p in sig:
                d = p["delta"]
                a, b = (p["a"], p["b"]) if d.mean > 0 else (p["b"], p["a"])
                lo, hi = (d.lo, d.hi) if d.mean > 0 else (-d.hi, -d.lo)
                where = f" ({p['setting']})" if p["setting"] else ""
                lines.append(f"{a} > {b}{where}: {abs(d.mean):+.3f} [{lo:+.3f}, {hi:+.3f}], Holm p = {d.p_holm:.3g}")
            out.append(
                f"Differences in `{H}` that are real ({level}, Holm α = {ALPHA}; {len(sig)} of "
                f"{len(tested)} pairs): "
                + "; ".join(lines[:30])
                + (" ..." if len(lines) > 30 else "")
                + f". The other {len(tested) - len(sig)} pairs are within noise."
            )
        elif tested:
            out.append(
                f"No difference in `{H}` between any two rows survives the {level} test with Holm "
                f"correction ({len(tested)} pairs): at this size the differences are within noise."
            )
    md = an.mdd
    if md.get("level") == "method" and md.get("mdd") is not None:
        need = md.get("seeds_needed")
        out.append(
            f"Power (method level, 80%, two-sided α = {md['alpha']}, before Holm): with {md['seeds']} seeds per "
            f"method the smallest difference in `{H}` the paired test detects is {md['mdd']:.3f} (σₑ = "
            f"{md['resid_sd']:.3f} pooled over {md['rows']} rows"
            + (f", median over {md['n_settings']} settings" if md["n_settings"] > 1 else "")
            + "); "
            + (
                f"a difference of {md['effect']:g} needs {need} seeds per method"
                if need
                else f"a difference of {md['effect']:g} needs more than 1,000 seeds per method"
            )
            + f". {METHOD_FORMULA}."
        )
    elif md.get("level") == "method":
        out.append("Power: unknown (fewer than two seeds per method, or fewer than two rows with a variance).")
    elif md.get("mdd") is not None:
        s = (
            f"How much is enough (policy level): with {md['seeds']} seed(s)"
            + (f" x {md['items']} prompts" if md["items"] > 1 else "")
            + f", the minimum detectable difference in `{H}` (80% power, two-sided α = 0.05, before Holm) "
            f"is {md['mdd']:.3f} (median over {md['n_pairs']} pairs)"
        )
        if not md.get("between_known"):
            s += "; one seed: the seed-to-seed variance is unknown and not included"
        out.append(s + ".")
    return out


ROW_KEYS = ("rank", "rank_lo", "rank_hi", "delta_sft", "delta_base", "delta_rate0")

"""The comparative analysis behind a table: per-cell intervals, deltas over the same-seed SFT and the
baseline method, paired tests with Holm correction, a wins / ties / losses matrix, rank intervals,
Spearman with an interval, and the minimum detectable difference.

Everything pairs on the same seed and the same items: a run's item scores come from
``scores.jsonl`` (:mod:`po_bench.results.scores`); without them the unit is the seed and the
run-level metric its value.  Rows are compared within a *setting* (the same model, dataset, noise
rate: the non-tuned columns), never across settings.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
        if m.startswith(("alpaca_eval_", "mt_bench_", "arena_hard_", "rm_", "openllm_")) and \
                any(finite(r.get(f"{m}_mean")) for r in rows):
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
    prefix = next((p for p in ("alpaca_eval_", "arena_hard_", "mt_bench_") if metric.startswith(p)), None)
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
    mean: float
    lo: float
    hi: float
    per_seed: list[float]
    p: float = float("nan")
    p_holm: float = float("nan")
    unit: str = ""

    def fmt(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return ""
        s = f"{self.mean:+.{digits}f}"
        if not math.isnan(self.lo):
            s += f" [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"
        if 1 < len(self.per_seed) <= 5:
            s += " (" + " / ".join(f"{x:+.{digits}f}" for x in self.per_seed) + ")"
        return s


def delta_of(diffs: list[np.ndarray], seed: int = 0, test: bool = False) -> Delta:
    est = stats.paired_bootstrap(diffs, seed=seed)
    d = Delta(est.mean, est.lo, est.hi, [float(x.mean()) for x in diffs])
    if test and diffs:
        d.p, d.unit = stats.permutation_test(diffs, seed=seed)
    return d


@dataclass
class Analysis:
    metric: str | None
    baseline: str
    setting_cols: list[str]
    labels: list[str] = field(default_factory=list)  # one per row
    pairs: list[dict] = field(default_factory=list)  # every within-setting pair, both orders not kept
    matrix: "OrderedDict[str, OrderedDict[str, list[int]]]" = field(default_factory=OrderedDict)
    notes: list[str] = field(default_factory=list)
    mdd: dict = field(default_factory=dict)
    test_units: set = field(default_factory=set)


def setting_key(row: dict, setting_cols: list[str]) -> str:
    return ", ".join(f"{k}={row.get(k)}" for k in setting_cols)


def row_label(row: dict, rows_in_setting: list[dict], tuned_cols: list[str]) -> str:
    """The method, plus the tuned values that tell its rows apart within the setting."""
    same = [r for r in rows_in_setting if r["method"] == row["method"]]
    if len(same) < 2:
        return row["method"]
    vary = [k for k in tuned_cols if len({json.dumps(r.get(k), default=str) for r in same}) > 1]
    return row["method"] + " (" + ", ".join(f"{k.split('.')[-1]}={row.get(k)}" for k in vary) + ")"


def analyse(rows: list[dict], hp_cols: list[str], metrics: list[str], ours: list[str] | None = None,
            baseline: str = "DPO", ref_cols: list[str] | None = None, seed: int = 0,
            method_cols: tuple = ()) -> Analysis:
    """Fill each row with ``<metric>_lo`` / ``_hi`` and the deltas, ranks and test results (keys
    listed in :data:`ROW_KEYS`), and return the table-wide results.

    Columns are settings (rows are compared within one setting) unless they are a method's own
    (``loss.*``, ``train.*``) or named in ``method_cols`` (a preset's ``method_columns``: e.g. the data
    shape a method is defined with, so that Curry-DPO's ranked pairs compare with DPO's single pairs
    on the same eval prompts)."""
    tuned = TUNED_PREFIXES + tuple(method_cols)
    setting_cols = [k for k in hp_cols if not k.startswith(tuned) and k != "grid point"]
    tuned_cols = [k for k in hp_cols if k.startswith(tuned)]
    H = headline(rows, ours, metrics)
    an = Analysis(H, baseline, setting_cols)
    settings: "OrderedDict[str, list[dict]]" = OrderedDict()
    for r in rows:
        settings.setdefault(setting_key(r, setting_cols), []).append(r)
    an.labels = [row_label(r, settings[setting_key(r, setting_cols)], tuned_cols) for r in rows]
    for r, lab in zip(rows, an.labels):
        r["_label"] = lab

    # 1. intervals in every cell
    for r in rows:
        for m in metrics:
            u = units_of(r, m)
            est = stats.interval(_arrays(u), seed=seed) if u else None
            lo, hi = (est.lo, est.hi) if est else (float("nan"), float("nan"))
            if (est is None or not est.has_interval) and (j := judge_interval(r, m)):
                lo, hi = j
            r[f"{m}_lo"], r[f"{m}_hi"] = lo, hi
            r[f"{m}_items"] = est.n_items if est else 0
    if H is None:
        return an

    # 2. deltas over the same-seed SFT and the baseline, drop from noise rate 0
    base_tests = []
    for key, members in settings.items():
        sft_row = next((r for r in members if r["method"] == "SFT"), None)
        base = [r for r in members if r["method"] == baseline]
        base_row = max(base, key=lambda r: r.get(f"{H}_mean", -math.inf)) if base else None
        for r in members:
            if H == "gold_reward" and r["method"] != "SFT":
                g = gain_over_own_sft(r)
                if g:
                    r["delta_sft"] = delta_of(_arrays(g), seed)
            elif sft_row is not None and r is not sft_row:
                r["delta_sft"] = delta_of(stats.paired_differences(units_of(r, H), units_of(sft_row, H)), seed)
            if base_row is not None and r is not base_row:
                diffs = stats.paired_differences(units_of(r, H), units_of(base_row, H))
                if diffs:
                    r["delta_base"] = delta_of(diffs, seed, test=True)
                    base_tests.append(r["delta_base"])
            elif r is base_row:
                r["delta_base_ref"] = True
    for d, p in zip(base_tests, stats.holm([d.p for d in base_tests])):
        d.p_holm = p
        an.test_units.add(d.unit)
    if "noise.rate" in setting_cols:
        others = [k for k in setting_cols if k != "noise.rate"]
        zero = {(r["_label"], setting_key(r, others)): r for r in rows if finite(r.get("noise.rate")) and r["noise.rate"] == 0}
        for r in rows:
            z = zero.get((r["_label"], setting_key(r, others)))
            if z is not None and z is not r:
                r["delta_rate0"] = delta_of(stats.paired_differences(units_of(r, H), units_of(z, H)), seed)

    # 3. every pair within a setting: paired test, Holm over the table, wins / ties / losses
    labels = list(dict.fromkeys(an.labels))
    an.matrix = OrderedDict((a, OrderedDict((b, [0, 0, 0]) for b in labels)) for a in labels)
    for key, members in settings.items():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                diffs = stats.paired_differences(units_of(a, H), units_of(b, H))
                if not diffs:
                    continue
                d = delta_of(diffs, seed, test=True)
                an.test_units.add(d.unit)
                an.pairs.append({"setting": key, "a": a["_label"], "b": b["_label"], "delta": d,
                                 "var": stats.variance_components(diffs)})
    for pr, p in zip(an.pairs, stats.holm([pr["delta"].p for pr in an.pairs])):
        d = pr["delta"]
        d.p_holm = p
        sig = not math.isnan(p) and p < ALPHA
        out = 0 if (sig and d.mean > 0) else (2 if (sig and d.mean < 0) else 1)
        an.matrix[pr["a"]][pr["b"]][out] += 1
        an.matrix[pr["b"]][pr["a"]][2 - out] += 1

    # 4. ranks with intervals, per setting, from one joint resample
    for key, members in settings.items():
        reps = joint_replicates(members, H, seed)
        if reps is None:
            continue
        for r, (rk, lo, hi) in zip(members, stats.rank_intervals(reps)):
            r["rank"], r["rank_lo"], r["rank_hi"] = rk, lo, hi
        if ref_cols and len(settings) == 1 and len({r["method"] for r in members}) == len(members):
            for c in ref_cols:
                idx = [i for i, r in enumerate(members) if finite(r.get(c))]
                if len(idx) >= 3:
                    rho, lo, hi = stats.spearman_interval(reps[:, idx], [members[i][c] for i in idx],
                                                          [members[i][f"{H}_mean"] for i in idx])
                    if not math.isnan(lo):
                        an.notes.append(f"`{H}` vs `{c}`: Spearman {rho:+.2f} over {len(idx)} methods "
                                        f"(95% bootstrap interval {lo:+.2f} to {hi:+.2f})")

    # 5. how much is enough
    an.mdd = power_summary(an.pairs, rows, H, seed)
    return an


def joint_replicates(members: list[dict], metric: str, seed: int = 0, n_boot: int = 2000):
    """(n_boot, len(members)) joint bootstrap means over the seeds all rows share and, per seed,
    the items all of them have; None with fewer than two rows or nothing shared."""
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
    """Median over the table's pairs of the minimum detectable difference in ``metric``, and the
    seeds a 0.02 win-rate difference needs (from the win-rate pairs, when the runs have it)."""
    out: dict[str, Any] = {"metric": metric}
    vs = [p["var"] for p in pairs if p["var"].n_seeds]
    if vs:
        mdds = [stats.min_detectable_difference(v) for v in vs]
        mdds = [m for m in mdds if not math.isnan(m)]
        if mdds:
            out.update(mdd=float(np.median(mdds)), n_pairs=len(mdds), seeds=max(v.n_seeds for v in vs),
                       items=int(np.median([v.n_items for v in vs])),
                       between_known=all(not math.isnan(v.between) for v in vs))
    if any(finite(r.get("win_rate_vs_sft_mean")) for r in rows):
        needs, items = [], []
        by_setting: dict[str, list[dict]] = {}
        for r in rows:
            by_setting.setdefault(json.dumps({k: r.get(k) for k in r if k in ("model.name", "dataset.name", "noise.rate")}, default=str), []).append(r)
        for members in by_setting.values():
            for i, a in enumerate(members):
                for b in members[i + 1:]:
                    diffs = stats.paired_differences(units_of(a, "win_rate_vs_sft"), units_of(b, "win_rate_vs_sft"))
                    if diffs:
                        v = stats.variance_components(diffs)
                        items.append(v.n_items)
                        needs.append(stats.seeds_needed(v, 0.02))
        known = [n for n in needs if n is not None]
        if needs:
            out["win_rate_seeds_for_0.02"] = int(np.median(known)) if known else None
            out["win_rate_items"] = int(np.median(items))
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
    """▲ / ▼: significantly above / below the baseline (paired test, Holm); ◆ the baseline."""
    if r.get("delta_base_ref"):
        return " ◆"
    d = r.get("delta_base")
    if d is None or math.isnan(d.p_holm) or d.p_holm >= ALPHA:
        return ""
    return " ▲" if d.mean > 0 else " ▼"


def summary_notes(an: Analysis, rows: list[dict]) -> list[str]:
    """The paragraphs under the table: what the marks mean, which differences are real, power."""
    if an.metric is None:
        return []
    H = an.metric
    out = []
    units = {"item": "the prompts within each seed (policy-level null: the two trained policies are "
                     "exchangeable on every prompt; seeds are too few for a seed-level test)",
             "seed": "the seeds (method-level null: the training randomness is part of it)"}
    used = [units[u] for u in sorted(an.test_units) if u in units]
    n_items = max((r.get(f"{H}_items", 0) for r in rows), default=0)
    unit_text = ("items (prompts) within seeds, then seeds" if n_items > 1 else
                 "seeds (run-level values: no per-item scores, `scores.jsonl`, in these runs)")
    out.append(
        f"Cells: mean [95% hierarchical bootstrap interval over {unit_text}; percentile interval widened "
        f"for few units; a judge's own interval where a cell is one run]. Headline metric `{H}`: "
        f"▲ / ▼ = significantly above / below {an.baseline} (◆) in a paired sign-flip permutation test on "
        f"the same seeds and prompts, Holm-corrected over the table at α = {ALPHA}"
        + (f"; the flipped unit: {'; '.join(used)}" if used else "") + ". "
        "Δ SFT: gain over the SFT model of the same seed (per seed in parentheses); "
        f"Δ {an.baseline}: difference from {an.baseline} on the same seeds and prompts; the Δ intervals "
        "resample the same unit as the test (so an interval excluding 0 and a significant test agree, "
        "before Holm); "
        "rank: 1 = best, with its 95% bootstrap interval.")
    if an.pairs:
        sig = [p for p in an.pairs if not math.isnan(p["delta"].p_holm) and p["delta"].p_holm < ALPHA]
        if sig:
            lines = []
            for p in sig:
                d = p["delta"]
                a, b = (p["a"], p["b"]) if d.mean > 0 else (p["b"], p["a"])
                lo, hi = (d.lo, d.hi) if d.mean > 0 else (-d.hi, -d.lo)
                where = f" ({p['setting']})" if p["setting"] else ""
                lines.append(f"{a} > {b}{where}: {abs(d.mean):+.3f} [{lo:+.3f}, {hi:+.3f}], Holm p = {d.p_holm:.3g}")
            out.append(f"Differences in `{H}` that are real (paired, Holm α = {ALPHA}; {len(sig)} of "
                       f"{len(an.pairs)} pairs): " + "; ".join(lines[:30]) + (" ..." if len(lines) > 30 else "")
                       + f". The other {len(an.pairs) - len(sig)} pairs are within noise.")
        else:
            out.append(f"No difference in `{H}` between any two rows survives the paired test with Holm "
                       f"correction ({len(an.pairs)} pairs): at this size the differences are within noise.")
    md = an.mdd
    if md.get("mdd") is not None:
        s = (f"How much is enough: with {md['seeds']} seed(s)" + (f" x {md['items']} prompts" if md["items"] > 1 else "")
             + f", the minimum detectable difference in `{H}` (80% power, two-sided α = 0.05, before Holm) "
             f"is {md['mdd']:.3f} (median over {md['n_pairs']} pairs)")
        if not md.get("between_known"):
            s += "; one seed: the seed-to-seed variance is unknown and not included"
        out.append(s + ".")
    if "win_rate_seeds_for_0.02" in md:
        n = md["win_rate_seeds_for_0.02"]
        out.append(f"A 0.02 difference in win_rate_vs_sft needs about {n} seeds x {md['win_rate_items']} prompts "
                   f"(median over pairs)." if n else
                   "How many seeds a 0.02 win-rate difference needs: unknown (one seed and no item scores), or "
                   "more than 10,000.")
    return out


ROW_KEYS = ("rank", "rank_lo", "rank_hi", "delta_sft", "delta_base", "delta_rate0")

"""Statistics for comparing methods: intervals, paired tests, multiple-testing correction, ranks.

The data of one table cell is a list of *units*, one per seed, each an array of item scores (the
eval prompts of that seed's run), or an array of one value when only the run-level metric is known.
A cell's estimate weighs seeds equally: the mean over seeds of each seed's item mean (what the
table's mean over runs is when items reproduce the run metric).

- :func:`bootstrap_means` / :func:`interval`: hierarchical bootstrap (resample seeds, then items
  within each drawn seed), percentile interval widened for few top-level units (Hesterberg's
  "expanded percentile": alpha' = 2 Phi(-sqrt(n/(n-1)) t_{1-alpha/2,n-1})), since a plain
  percentile bootstrap over 5 seeds covers ~85%, not 95%.
- :func:`paired_bootstrap`: the same on paired differences (same seed, same item), an interval for
  the difference between two methods or a method's gain over a same-seed baseline.
- :func:`permutation_test`: paired sign-flip test of a zero mean difference (exact enumeration
  when the flips are few); the unit flipped is the seed when there are at least
  :data:`MIN_SEEDS_FOR_SEED_TEST` seeds (the training randomness is part of the null), otherwise
  the item within each seed (the policy-level null: these trained policies are exchangeable on
  each prompt, as AlpacaEval / Arena-Hard compare single models).
- :func:`holm`: Holm's step-down adjusted p-values.
- :func:`joint_bootstrap` / :func:`rank_intervals` / :func:`spearman_interval`: one resample of
  seeds and items shared by all methods (they are paired), ranks and rank agreement per resample.
- :func:`min_detectable_difference` / :func:`seeds_needed`: power from the variance components.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sst

MIN_SEEDS_FOR_SEED_TEST = 6  # 2^6 sign patterns: the smallest two-sided p is 2/64 < 0.05
Units = Sequence[np.ndarray]


def _units(units: Units) -> list[np.ndarray]:
    out = [np.asarray(u, dtype=float).ravel() for u in units]
    out = [u[~np.isnan(u)] for u in out]
    return [u for u in out if u.size]


def point(units: Units) -> float:
    """Mean over seeds of the per-seed item means."""
    us = _units(units)
    return float(np.mean([u.mean() for u in us])) if us else float("nan")


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _item_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """n_boot bootstrap means of the rows of x over its items: x (m, n) -> (n_boot, m), via
    multinomial counts (one matrix product instead of n_boot x n gathers)."""
    n = x.shape[1]
    if n == 1:
        return np.repeat(x.T, n_boot, axis=0)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    return w @ x.T / n


def joint_bootstrap(units: Sequence[np.ndarray], n_boot: int = 2000, seed=0,
                    resample_seeds: bool = True) -> np.ndarray:
    """Hierarchical bootstrap of several aligned series at once.  ``units``: one (m, n_s) array per
    seed (m series -- methods -- scored on the same n_s items of that seed).  Returns (n_boot, m):
    per replicate, the mean over drawn seeds of each series' mean over the drawn items.  With one
    seed only the items are resampled; with one item per seed only the seeds."""
    rng = _rng(seed)
    mats = [np.atleast_2d(np.asarray(u, dtype=float)) for u in units]
    S = len(mats)
    if S == 0:
        raise ValueError("no data")
    tables = [_item_means(x, n_boot, rng) for x in mats]  # S x (n_boot, m)
    if S == 1 or not resample_seeds:
        return np.mean(tables, axis=0)
    pick = rng.integers(0, S, size=(n_boot, S))  # the seeds drawn in each replicate's S slots
    stack = np.stack(tables)  # (S, n_boot, m)
    out = np.zeros((n_boot, mats[0].shape[0]))
    for j in range(S):  # slot j reads its seed's item resample from an independent row order
        rows = rng.permutation(n_boot)
        out += stack[pick[:, j], rows]
    return out / S


def bootstrap_means(units: Units, n_boot: int = 2000, seed=0, resample_seeds: bool = True) -> np.ndarray:
    """Hierarchical bootstrap replicates of :func:`point` for one cell (``resample_seeds=False``:
    items within each seed only, the seeds held fixed -- a stratified bootstrap)."""
    us = _units(units)
    return joint_bootstrap([u[None, :] for u in us], n_boot, seed, resample_seeds)[:, 0]


def _expanded_alpha(alpha: float, n: int) -> float:
    if n < 2:
        return alpha
    return float(2 * sst.norm.cdf(-math.sqrt(n / (n - 1)) * sst.t.ppf(1 - alpha / 2, n - 1)))


def top_level_n(units: Units) -> int:
    """The number of independent top-level units: seeds, or the items of a single seed."""
    us = _units(units)
    return len(us) if len(us) > 1 else (us[0].size if us else 0)


def percentile_interval(reps: np.ndarray, n: int, level: float = 0.95) -> tuple[float, float]:
    a = _expanded_alpha(1 - level, n)
    lo, hi = np.quantile(reps, [a / 2, 1 - a / 2])
    return float(lo), float(hi)


@dataclass
class Estimate:
    mean: float
    lo: float
    hi: float
    n_seeds: int
    n_items: int  # items per seed (the smallest), 1 when only run-level values are known

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


def interval(units: Units, level: float = 0.95, n_boot: int = 2000, seed=0,
             resample_seeds: bool = True) -> Estimate:
    """The cell's mean and its bootstrap interval (nan bounds when there is nothing to resample:
    one seed with one value)."""
    us = _units(units)
    if not us:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    m = point(us)
    n_items = min(u.size for u in us)
    if len(us) == 1 and us[0].size == 1:
        return Estimate(m, float("nan"), float("nan"), 1, 1)
    if not resample_seeds and n_items > 1:
        reps, n = bootstrap_means(us, n_boot, seed, False), sum(u.size for u in us)
    else:
        reps, n = bootstrap_means(us, n_boot, seed), top_level_n(us)
    lo, hi = percentile_interval(reps, n, level)
    return Estimate(m, lo, hi, len(us), n_items)


def test_unit(units: Units) -> str:
    """"seed" with at least :data:`MIN_SEEDS_FOR_SEED_TEST` seeds or without item scores, else
    "item" (see :func:`permutation_test`)."""
    us = _units(units)
    return "seed" if len(us) >= MIN_SEEDS_FOR_SEED_TEST or all(u.size == 1 for u in us) else "item"


def paired_differences(a: dict, b: dict) -> list[np.ndarray]:
    """Per shared seed, the item-wise differences a - b over the items both have.  ``a``, ``b``:
    ``{seed: {item key: score}}``.  Seeds or items only one side has are left out."""
    out = []
    for s in sorted(set(a) & set(b), key=str):
        keys = sorted(set(a[s]) & set(b[s]), key=str)
        if keys:
            out.append(np.array([a[s][k] - b[s][k] for k in keys], dtype=float))
    return out


def paired_bootstrap(diffs: Units, level: float = 0.95, n_boot: int = 2000, seed=0,
                     unit: str = "auto") -> Estimate:
    """Interval of the mean paired difference, on the same unit as :func:`permutation_test` (so an
    interval that excludes 0 and a significant test agree): "seed" resamples seeds then items
    (hierarchical), "item" resamples the items within each seed, the seeds held fixed."""
    if unit == "auto":
        unit = test_unit(diffs)
    return interval(diffs, level, n_boot, seed, resample_seeds=(unit == "seed"))


def bootstrap_p(diffs: Units, n_boot: int = 4000, seed=0) -> float:
    """Two-sided bootstrap p-value of a zero mean difference: the replicates shifted to the null
    (mean 0), the share at least as far from 0 as the observed mean."""
    us = _units(diffs)
    if not us:
        return float("nan")
    m = point(us)
    reps = bootstrap_means(us, n_boot, seed) - m
    return float((1 + np.sum(np.abs(reps) >= abs(m) - 1e-12)) / (n_boot + 1))


def permutation_test(diffs: Units, n_perm: int = 4000, seed=0,
                     unit: str = "auto") -> tuple[float, str]:
    """Paired sign-flip permutation test of a zero mean difference.  Returns (two-sided p, unit):
    ``unit`` "seed" flips the sign of each seed's whole difference (needs several seeds), "item"
    flips each item's difference within its seed; "auto": seeds when there are at least
    :data:`MIN_SEEDS_FOR_SEED_TEST` of them or items are unknown, else items.  Exact when the
    sign patterns are at most ``n_perm``; otherwise Monte Carlo with the (1 + k) / (1 + n) rule."""
    us = _units(diffs)
    if not us:
        return float("nan"), "none"
    if unit == "auto":
        unit = test_unit(us)
    S = len(us)
    if unit == "seed":
        x = np.array([u.mean() for u in us])[None, :]  # one unit per seed
        weights = np.full(S, 1.0 / S)
    else:
        x = np.concatenate(us)[None, :]
        weights = np.concatenate([np.full(u.size, 1.0 / (S * u.size)) for u in us])
    n = x.shape[1]
    obs = float((x * weights).sum())
    if abs(obs) < 1e-15 and np.allclose(x, 0):
        return 1.0, unit
    rng = _rng(seed)
    if 2 ** n <= n_perm:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        stat = (signs * x * weights).sum(axis=1)
        return float(np.mean(np.abs(stat) >= abs(obs) - 1e-12)), unit
    signs = rng.choice((1.0, -1.0), size=(n_perm, n))
    stat = (signs * x * weights).sum(axis=1)
    return float((1 + np.sum(np.abs(stat) >= abs(obs) - 1e-12)) / (n_perm + 1)), unit


def holm(pvals: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; nan stays nan, not counted)."""
    p = np.asarray(pvals, dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    out = np.full(p.shape, np.nan)
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out.tolist()


def rank_intervals(reps: np.ndarray, higher_is_better: bool = True,
                   level: float = 0.95) -> list[tuple[float, int, int]]:
    """From joint bootstrap replicates (n_boot, m): per series (its rank at the mean replicate,
    the lower and upper rank of its interval); rank 1 is the best, ties share the best rank."""
    sign = -1.0 if higher_is_better else 1.0
    ranks = sst.rankdata(sign * reps, method="min", axis=1)
    base = sst.rankdata(sign * reps.mean(axis=0), method="min")
    a = (1 - level) / 2
    lo = np.floor(np.quantile(ranks, a, axis=0, method="lower"))
    hi = np.ceil(np.quantile(ranks, 1 - a, axis=0, method="higher"))
    return [(float(b), int(l), int(h)) for b, l, h in zip(base, lo, hi)]


def spearman_interval(reps: np.ndarray, reference: Sequence[float], ours: Sequence[float],
                      level: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rho between our means and a paper's numbers, with the percentile interval of rho
    over the joint bootstrap replicates of our means (the paper's numbers held fixed)."""
    ref = np.asarray(reference, dtype=float)
    rho = float(sst.spearmanr(ours, ref).statistic)
    vals = []
    for row in reps:
        if np.ptp(row) == 0:
            continue
        r = sst.spearmanr(row, ref).statistic
        if not np.isnan(r):
            vals.append(r)
    if not vals:
        return rho, float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(vals, [a, 1 - a])
    return rho, float(lo), float(hi)


@dataclass
class Variance:
    """Variance components of a paired difference: between seeds (training randomness, beyond what
    the items explain) and within a seed across items."""
    between: float  # nan with one seed
    within: float  # nan without item scores
    n_seeds: int
    n_items: int

    def var_of_mean(self, seeds: int, items: int) -> float:
        b = 0.0 if math.isnan(self.between) else self.between
        w = 0.0 if math.isnan(self.within) else self.within
        if self.n_items <= 1:  # run-level values: their spread already holds the item noise
            return b / seeds
        return b / seeds + w / (seeds * items)


def variance_components(diffs: Units) -> Variance:
    us = _units(diffs)
    S = len(us)
    n_items = min((u.size for u in us), default=0)
    within = float(np.mean([u.var(ddof=1) for u in us])) if n_items > 1 else float("nan")
    if S >= 2:
        var_means = float(np.var([u.mean() for u in us], ddof=1))
        between = var_means if n_items <= 1 else max(0.0, var_means - within / n_items)
    else:
        between = float("nan")
    return Variance(between, within, S, n_items)


def min_detectable_difference(var: Variance, seeds: int | None = None, items: int | None = None,
                              alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided level-alpha test detects with the given power
    (normal approximation: (z_{1-alpha/2} + z_power) x the standard error of the mean difference)."""
    s = seeds or var.n_seeds
    n = items or var.n_items
    if not s or (var.n_items <= 1 and math.isnan(var.between)):  # one run-level value: no variance known
        return float("nan")
    z = sst.norm.ppf(1 - alpha / 2) + sst.norm.ppf(power)
    return float(z * math.sqrt(var.var_of_mean(s, max(n, 1))))


def seeds_needed(var: Variance, delta: float, items: int | None = None, alpha: float = 0.05,
                 power: float = 0.8, max_seeds: int = 10_000) -> int | None:
    """The number of seeds (at ``items`` items each) for :func:`min_detectable_difference` to reach
    ``delta``; None when no number of seeds does (or the between-seed variance is unknown)."""
    if math.isnan(var.between) and var.n_items <= 1:
        return None
    for s in itertools.chain(range(1, 101), range(110, max_seeds + 1, 10)):
        if min_detectable_difference(var, s, items, alpha, power) <= delta:
            return s
    return None

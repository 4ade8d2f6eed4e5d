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
from collections.abc import Sequence
from dataclasses import dataclass, field

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


def joint_bootstrap(units: Sequence[np.ndarray], n_boot: int = 2000, seed=0, resample_seeds: bool = True) -> np.ndarray:
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


def interval(units: Units, level: float = 0.95, n_boot: int = 2000, seed=0, resample_seeds: bool = True) -> Estimate:
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
    """ "seed" with at least :data:`MIN_SEEDS_FOR_SEED_TEST` seeds or without item scores, else
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


def paired_bootstrap(diffs: Units, level: float = 0.95, n_boot: int = 2000, seed=0, unit: str = "auto") -> Estimate:
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


def permutation_test(diffs: Units, n_perm: int = 4000, seed=0, unit: str = "auto") -> tuple[float, str]:
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
    if 2**n <= n_perm:
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


def rank_intervals(
    reps: np.ndarray, higher_is_better: bool = True, level: float = 0.95
) -> list[tuple[float, int, int]]:
    """From joint bootstrap replicates (n_boot, m): per series (its rank at the mean replicate,
    the lower and upper rank of its interval); rank 1 is the best, ties share the best rank."""
    sign = -1.0 if higher_is_better else 1.0
    ranks = sst.rankdata(sign * reps, method="min", axis=1)
    base = sst.rankdata(sign * reps.mean(axis=0), method="min")
    a = (1 - level) / 2
    lo = np.floor(np.quantile(ranks, a, axis=0, method="lower"))
    hi = np.ceil(np.quantile(ranks, 1 - a, axis=0, method="higher"))
    return [(float(b), int(l), int(h)) for b, l, h in zip(base, lo, hi)]


def spearman_interval(
    reps: np.ndarray, reference: Sequence[float], ours: Sequence[float], level: float = 0.95
) -> tuple[float, float, float]:
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


def min_detectable_difference(
    var: Variance, seeds: int | None = None, items: int | None = None, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest true mean difference a two-sided level-alpha test detects with the given power
    (normal approximation: (z_{1-alpha/2} + z_power) x the standard error of the mean difference)."""
    s = seeds or var.n_seeds
    n = items or var.n_items
    if not s or (var.n_items <= 1 and math.isnan(var.between)):  # one run-level value: no variance known
        return float("nan")
    z = sst.norm.ppf(1 - alpha / 2) + sst.norm.ppf(power)
    return float(z * math.sqrt(var.var_of_mean(s, max(n, 1))))


def seeds_needed(
    var: Variance,
    delta: float,
    items: int | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    max_seeds: int = 10_000,
) -> int | None:
    """The number of seeds (at ``items`` items each) for :func:`min_detectable_difference` to reach
    ``delta``; None when no number of seeds does (or the between-seed variance is unknown)."""
    if math.isnan(var.between) and var.n_items <= 1:
        return None
    for s in itertools.chain(range(1, 101), range(110, max_seeds + 1, 10)):
        if min_detectable_difference(var, s, items, alpha, power) <= delta:
            return s
    return None


# ---------------------------------------------------------------------------------------------------
# Method-level inference: seeds are the unit.
#
# A *method* claim ("A trains better policies than B on this task") must carry the training seed's
# variance; a *policy* claim ("these checkpoints differ on these prompts") need not (the item-level
# functions above answer that one).  With the few seeds a table has, the seed-to-seed variance of one
# pair's difference is estimated badly (1 degree of freedom at 2 seeds), so the table's methods lend each
# other strength: a randomised-block model over the table,
#
#     y[m, b] = mu[m] + beta[b] + e[m, b],    e[m, b] ~ N(0, sigma2_e)  (sigma2_m for a flagged method)
#
# where y[m, b] is method m's run-level value (its mean over prompts) at block b (a training seed, within
# a setting), beta[b] the seed's shared effect (the SFT model and data a seed draws) and e the
# method-by-seed interaction (everything a seed does to one method and not to the others, prompt noise
# included).  It is the linear mixed model score ~ method + (1 | seed) + (1 | method:seed) on the per-run
# means.  A paired difference a - b over n shared seeds has variance 2 sigma2_e / n, with sigma2_e pooled
# over every method of the table: (M - 1)(S - 1) degrees of freedom for M methods x S seeds, and a t
# reference.  A method whose own spread is far from the pool (a diverging seed) is flagged by an F test
# against the pool of the others and keeps its own variance (Welch-Satterthwaite degrees of freedom).
# Cell means and differences between methods that share no seed also carry the seed effect:
# Var(cell, one seed) = sigma2_u + sigma2_e, pooled within methods.  With one seed per method nothing is
# estimable: no method-level interval or claim.
# ---------------------------------------------------------------------------------------------------

# Two one-sided levels of the heterogeneity test (a row's seed spread against the pool of the others).
# Below FLAG_ALPHA a row is flagged and its own comparisons use its own variance (Welch-Satterthwaite
# df): at 2-3 seeds the test is weak, and a wide row left on the pooled variance makes its pairs
# anti-conservative.  Below POOL_ALPHA it also leaves the pool, so that a diverging seed does not inflate
# the others' intervals (IPO's -1.07 at one of 5 seeds on the world: p = 0.0004).  The pool level is strict
# on purpose: leaving out every row flagged at 0.05 drops the widest row of an equal-variance table from
# its own pool and biases the pool low.  Simulated (tests/test_results_stats.py's world: 5 methods, 1,500 tables
# per case), false-positive rate at 2 / 3 / 5 / 10 seeds with these levels: equal variances 0.049 / 0.050
# / 0.046 / 0.044, unequal 0.052 / 0.052 / 0.048 / 0.043, a diverging method 0.063 / 0.063 / 0.052 /
# 0.047; with the flag at 0.001 for both, diverging 0.071 / 0.069 / 0.065 / 0.058 (3,000 tables); with
# both at 0.05, equal 0.093 at 2 seeds (250 tables).
FLAG_ALPHA = 0.05
POOL_ALPHA = 0.001


@dataclass
class MethodFit:
    """The fitted block model of one table (one metric).  ``values``: ``{row id: {block: value}}``."""

    values: dict
    resid_var: float  # sigma2_e, pooled over the rows not flagged at pool_alpha (nan: not estimable)
    resid_df: float
    total_var: float  # sigma2_u + sigma2_e: the variance of one run's value around its method's mean
    total_df: float
    seed_var: float  # sigma2_u (>= 0; nan when not separable from sigma2_e)
    n_blocks: int
    flags: dict = field(default_factory=dict)  # row id -> p of the heterogeneity test (flagged rows only)
    own: dict = field(default_factory=dict)  # flagged row id -> (interaction var, df, total var, df)
    n_rows: int = 0

    def n_seeds(self, rid) -> int:
        return len(self.values.get(rid, {}))


@dataclass
class MethodEstimate:
    """A method-level mean or difference: estimate, interval, t test against 0."""

    mean: float
    lo: float
    hi: float
    se: float
    df: float
    p: float
    n_seeds: int
    basis: str  # "paired" (shared seeds, pooled interaction variance), "unpaired", "own" (a flagged row), "none"

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))


def _none_estimate(mean: float = float("nan"), n: int = 0) -> MethodEstimate:
    nan = float("nan")
    return MethodEstimate(mean, nan, nan, nan, nan, nan, n, "none")


def _additive(values: dict) -> tuple[dict, float, dict, dict]:
    """Least-squares fit of y = mu[row] + beta[block] on the observed cells: (residual per (row, block),
    residual df, mu, beta)."""
    rows = [r for r in values if values[r]]
    blocks = sorted({b for r in rows for b in values[r]}, key=str)
    cells = [(r, b, values[r][b]) for r in rows for b in values[r]]
    n = len(cells)
    if n == 0:
        return {}, 0.0, {}, {}
    ri = {r: i for i, r in enumerate(rows)}
    bi = {b: i for i, b in enumerate(blocks)}
    X = np.zeros((n, len(rows) + len(blocks)))
    y = np.empty(n)
    for k, (r, b, v) in enumerate(cells):
        X[k, ri[r]] = 1.0
        X[k, len(rows) + bi[b]] = 1.0
        y[k] = v
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    rank = np.linalg.matrix_rank(X)
    res = y - X @ coef
    resid = {(r, b): float(res[k]) for k, (r, b, _) in enumerate(cells)}
    mu = {r: float(coef[ri[r]]) for r in rows}
    beta = {b: float(coef[len(rows) + bi[b]]) for b in blocks}
    return resid, float(n - rank), mu, beta


def _pooled(values: dict) -> tuple[float, float, float, float, float]:
    """(sigma2_e, df_e, total var, df_total, sigma2_u) of the rows in ``values`` (each with its seeds)."""
    rows = {r: v for r, v in values.items() if v}
    resid, df_e, _, _ = _additive(rows)
    ss = sum(x * x for x in resid.values())
    s2e = ss / df_e if df_e > 0 else float("nan")
    within = [np.asarray(list(v.values()), dtype=float) for v in rows.values()]
    df_w = float(sum(w.size - 1 for w in within))
    total = float(sum(((w - w.mean()) ** 2).sum() for w in within) / df_w) if df_w > 0 else float("nan")
    n_blocks = len({b for v in rows.values() for b in v})
    if df_e > 0 and df_w > 0 and n_blocks > 1:
        s2u = max(total - s2e, 0.0)
        # Satterthwaite: total = s2u + s2e, s2u known on (blocks - 1) df, s2e on df_e
        denom = s2u**2 / (n_blocks - 1) + s2e**2 / df_e
        df_t = min(df_w, total**2 / denom) if denom > 0 else df_w
    else:
        s2u, df_t = float("nan"), df_w
    return s2e, float(df_e), total, float(df_t), s2u


def _deviations(values: dict, rid) -> np.ndarray:
    """Row ``rid``'s values minus the block effects fitted on the other rows (its seeds the others
    cover); its spread estimates sigma2_rid + sigma2_e / M'."""
    others = {r: v for r, v in values.items() if r != rid and v}
    _, _, _, beta = _additive(others)
    return np.array([y - beta[b] for b, y in values[rid].items() if b in beta], dtype=float)


def fit_methods(values: dict, flag_alpha: float = FLAG_ALPHA, pool_alpha: float = POOL_ALPHA) -> MethodFit:
    """Fit the block model to ``{row id: {block: value}}`` (non-finite values dropped).  Each row with
    at least two seeds is tested against the pool of the other rows (an F test on its spread around the
    others' block effects, or on its own seed spread when the others share none of its seeds); a row
    whose p is below ``flag_alpha`` is flagged and keeps its own variance, and one below ``pool_alpha``
    also leaves the pool (the pool is refit without it)."""
    vals = {
        r: {b: float(y) for b, y in v.items() if y is not None and math.isfinite(float(y))} for r, v in values.items()
    }
    vals = {r: v for r, v in vals.items() if v}
    flags, own = {}, {}
    if len(vals) >= 2:
        for r, v in vals.items():
            if len(v) < 2:
                continue
            others = {k: w for k, w in vals.items() if k != r}
            s2e, df_e, tot, df_t, _ = _pooled(others)
            d = _deviations(vals, r)
            y_own = np.asarray(list(v.values()), dtype=float)
            own_tot = float(y_own.var(ddof=1))
            if d.size >= 2 and df_e > 0 and s2e > 0:
                m_other = np.mean(
                    [sum(1 for k in others if b in others[k]) for b in v if any(b in w for w in others.values())]
                )
                ratio = float(d.var(ddof=1)) / (s2e * (1 + 1 / max(m_other, 1)))
                df1, df2 = d.size - 1, df_e
            elif df_t > 0 and tot > 0:
                ratio, df1, df2 = own_tot / tot, y_own.size - 1, df_t
            else:
                continue
            p = float(sst.f.sf(ratio, df1, df2))  # one-sided: a pooled variance only understates a wide row
            if p < flag_alpha:
                flags[r] = p
                own_int = float(d.var(ddof=1)) if d.size >= 2 else own_tot
                own[r] = (own_int, float((d.size if d.size >= 2 else y_own.size) - 1), own_tot, float(y_own.size - 1))
    # the pool leaves out the rows flagged at pool_alpha (a diverging row does not inflate the others);
    # all rows when too few are left to estimate it
    pool = {r: v for r, v in vals.items() if not (r in flags and flags[r] < pool_alpha)}
    s2e, df_e, tot, df_t, s2u = _pooled(pool)
    if not (df_e > 0 and df_t > 0):
        s2e, df_e, tot, df_t, s2u = _pooled(vals)
    return MethodFit(vals, s2e, df_e, tot, df_t, s2u, len({b for v in vals.values() for b in v}), flags, own, len(vals))


def _t_estimate(mean: float, var: float, df: float, n: int, level: float, basis: str) -> MethodEstimate:
    if not (math.isfinite(var) and var >= 0 and math.isfinite(df) and df > 0):
        return _none_estimate(mean, n)
    se = math.sqrt(var)
    q = float(sst.t.ppf(0.5 + level / 2, df))
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * sst.t.sf(abs(mean) / se, df))
    return MethodEstimate(mean, mean - q * se, mean + q * se, se, df, p, n, basis)


def _satterthwaite(v1: float, df1: float, v2: float, df2: float) -> float:
    den = (v1**2 / df1 if df1 > 0 else math.inf) + (v2**2 / df2 if df2 > 0 else math.inf)
    return (v1 + v2) ** 2 / den if den > 0 and math.isfinite(den) else float("nan")


def method_mean(fit: MethodFit, rid, level: float = 0.95) -> MethodEstimate:
    """A row's mean over its seeds with the method-level interval (the seed variance included)."""
    v = fit.values.get(rid) or {}
    if not v:
        return _none_estimate()
    y = np.asarray(list(v.values()), dtype=float)
    m, n = float(y.mean()), y.size
    if n >= 2 and float(np.ptp(y)) == 0.0:  # the same value at every seed (an SFT row's KL to itself)
        return MethodEstimate(m, m, m, 0.0, float(n - 1), float("nan"), n, "own")
    if rid in fit.own:
        _, _, tot, df = fit.own[rid]
        return _t_estimate(m, tot / n, df, n, level, "own")
    return _t_estimate(m, fit.total_var / n, fit.total_df, n, level, "pooled")


def _row_var(fit: MethodFit, rid, kind: str) -> tuple[float, float]:
    if rid in fit.own:
        ie, idf, tot, tdf = fit.own[rid]
        return (ie, idf) if kind == "interaction" else (tot, tdf)
    return (fit.resid_var, fit.resid_df) if kind == "interaction" else (fit.total_var, fit.total_df)


def method_diff(fit: MethodFit, a, b, level: float = 0.95) -> MethodEstimate:
    """Row a minus row b at the method level: paired over their shared seeds (pooled interaction
    variance, or a flagged row's own), else unpaired (each row's seed spread, the seed effect included)."""
    va, vb = fit.values.get(a) or {}, fit.values.get(b) or {}
    if not va or not vb:
        return _none_estimate()
    shared = [k for k in va if k in vb]
    flagged = a in fit.own or b in fit.own
    if shared:
        d = float(np.mean([va[k] - vb[k] for k in shared]))
        n = len(shared)
        (x, dx), (y, dy) = _row_var(fit, a, "interaction"), _row_var(fit, b, "interaction")
        df = _satterthwaite(x, dx, y, dy) if flagged else dx
        return _t_estimate(d, (x + y) / n, df, n, level, "own" if flagged else "paired")
    ya, yb = np.asarray(list(va.values())), np.asarray(list(vb.values()))
    d = float(ya.mean() - yb.mean())
    (x, dx), (y, dy) = _row_var(fit, a, "total"), _row_var(fit, b, "total")
    var = x / ya.size + y / yb.size
    df = _satterthwaite(x / ya.size, dx, y / yb.size, dy) if flagged else dx
    return _t_estimate(d, var, df, min(ya.size, yb.size), level, "own" if flagged else "unpaired")


def method_replicates(fit: MethodFit, rids: Sequence, n_boot: int = 2000, seed=0) -> np.ndarray | None:
    """(n_boot, len(rids)) parametric replicates of the rows' means from the fitted model (a variance
    drawn from its scaled chi-square per replicate, the seed effect shared within a block): for rank
    intervals and the rank agreement with a paper.  None when the model has no variance."""
    if not (math.isfinite(fit.resid_var) or math.isfinite(fit.total_var)):
        return None
    rng = _rng(seed)
    s2e = fit.resid_var if math.isfinite(fit.resid_var) else fit.total_var
    df_e = fit.resid_df if math.isfinite(fit.resid_var) else fit.total_df
    if not (df_e > 0):
        return None
    s2u = fit.seed_var if math.isfinite(fit.seed_var) else 0.0
    blocks = sorted({b for r in rids for b in fit.values.get(r, {})}, key=str)
    bi = {b: i for i, b in enumerate(blocks)}
    u = rng.normal(0.0, 1.0, size=(n_boot, len(blocks))) * math.sqrt(s2u)
    scale_e = np.sqrt(s2e * df_e / rng.chisquare(df_e, size=n_boot))
    out = np.empty((n_boot, len(rids)))
    for j, r in enumerate(rids):
        v = fit.values.get(r) or {}
        y = np.asarray(list(v.values()), dtype=float)
        idx = [bi[b] for b in v]
        if r in fit.own:
            ie, idf, _, _ = fit.own[r]
            sc = np.sqrt(ie * max(idf, 1) / rng.chisquare(max(idf, 1), size=n_boot))
        else:
            sc = scale_e
        e = rng.normal(0.0, 1.0, size=(n_boot, y.size)) * sc[:, None]
        out[:, j] = y.mean() + (e + u[:, idx]).mean(axis=1) if y.size else np.nan
    return out


def method_mdd(
    fit: MethodFit, seeds: int | None = None, alpha: float = 0.05, power: float = 0.8, n_rows: int | None = None
) -> float:
    """The smallest true difference between two methods of the table that a two-sided level-alpha
    paired t test detects with the given power at ``seeds`` seeds each:
    (t_{1-alpha/2, df} + t_{power, df}) sqrt(2 sigma2_e / seeds), df = (M - 1)(seeds - 1)."""
    M = n_rows or max(fit.n_rows - len(fit.flags), 2)
    S = seeds or max((fit.n_seeds(r) for r in fit.values), default=0)
    if not math.isfinite(fit.resid_var) or S < 2:
        return float("nan")
    df = (M - 1) * (S - 1)
    q = sst.t.ppf(1 - alpha / 2, df) + sst.t.ppf(power, df)
    return float(q * math.sqrt(2 * fit.resid_var / S))


def method_seeds_needed(
    fit: MethodFit, delta: float, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 1000
) -> int | None:
    """The fewest seeds per method at which :func:`method_mdd` reaches ``delta`` (None: unknown, or
    more than ``max_seeds``)."""
    if not math.isfinite(fit.resid_var) or not delta > 0:
        return None
    for s in range(2, max_seeds + 1):
        if method_mdd(fit, s, alpha, power) <= delta:
            return s
    return None

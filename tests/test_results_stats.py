"""po_bench.results.stats on synthetic data with a known truth.

The method level (seeds the unit, :func:`stats.fit_methods`): simulated nulls with the world's measured
variance components at 2, 3, 5 and 10 seeds hold the false-positive rate within [0.03, 0.07] and the
coverage of 95% intervals (means and differences) within [0.93, 0.97]; the same check rejects the
estimators that drop the seed component, use a normal reference or label a 99% interval 95%
(mutants, run here); the power formula against simulated power; Holm through ``analyse``.
The policy level (prompts within seeds): the bootstrap interval and the sign-flip tests on their own
null, Holm against a hand-computed case, rank intervals and the item-level power numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats as sst

from po_bench.results import stats

REPS = 400  # repetitions per coverage / false-positive estimate: binomial sd ~1.1 points at 95%


def _hier(rng, seeds, items, mu=0.3, sd_seed=0.2, sd_item=1.0):
    return [mu + rng.normal(0, sd_seed) + rng.normal(0, sd_item, items) for _ in range(seeds)]


def test_policy_level_interval_of_one_checkpoint_covers_its_mean_about_95_percent():
    """One seed (one trained policy): the prompts are the unit and the interval is about that policy
    only.  A 99% interval labelled 95% (0.99) fails the upper bound."""
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(REPS):
        est = stats.interval(_hier(rng, 1, 60, sd_seed=0.0), n_boot=600, seed=i)
        hits += est.lo <= 0.3 <= est.hi
    cover = hits / REPS
    print(f"policy-level coverage, one seed x 60 prompts: {cover:.3f}")
    assert 0.92 <= cover <= 0.975


def test_paired_tests_false_positive_rate_under_the_null_is_about_5_percent():
    rng = np.random.default_rng(2)
    rej_item = rej_seed = rej_boot = 0
    for i in range(REPS):
        shared = [rng.normal(0, 0.5, 50) for _ in range(2)]  # seed x prompt effects both methods share
        a = [s + rng.normal(0, 1, 50) for s in shared]
        b = [s + rng.normal(0, 1, 50) for s in shared]
        diffs = [x - y for x, y in zip(a, b)]
        p, unit = stats.permutation_test(diffs, n_perm=500, seed=i)
        assert unit == "item"
        rej_item += p < 0.05
        rej_boot += stats.bootstrap_p(diffs, n_boot=500, seed=i) < 0.05
        seeds8 = [rng.normal(0, 1, 1) for _ in range(8)]  # run-level only, 8 seeds: exact 256 flips
        p8, unit8 = stats.permutation_test(seeds8, n_perm=500, seed=i)
        assert unit8 == "seed"
        rej_seed += p8 < 0.05
    rates = rej_item / REPS, rej_seed / REPS, rej_boot / REPS
    print("false-positive rates (item permutation, seed permutation, bootstrap): {:.3f} {:.3f} {:.3f}".format(*rates))
    assert 0.025 <= rates[0] <= 0.08 and 0.02 <= rates[1] <= 0.08 and 0.025 <= rates[2] <= 0.09


def test_paired_test_finds_a_real_difference_the_marginal_spread_hides():
    rng = np.random.default_rng(3)
    seed_level = [rng.normal(0, 1.0) for _ in range(2)]  # large shared seed effect
    a = [s + 0.15 + rng.normal(0, 0.3, 200) for s in seed_level]
    b = [s + rng.normal(0, 0.3, 200) for s in seed_level]
    ia, ib = stats.interval(a), stats.interval(b)
    assert ia.lo < ib.hi and ib.lo < ia.hi  # the marginal intervals overlap
    d = stats.paired_bootstrap([x - y for x, y in zip(a, b)])
    p, _ = stats.permutation_test([x - y for x, y in zip(a, b)])
    assert d.lo > 0 and p < 0.001


def test_holm_against_a_hand_computed_case():
    # sorted p: .005 (x4 = .02), .01 (x3 = .03), .03 (x2 = .06), .04 (x1 = .04 -> monotone .06)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = stats.holm([0.01, float("nan"), 0.02])  # nan is not a test
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_exact_sign_flip_p_value_with_few_units():
    # 3 seeds all positive: of 8 sign patterns, 2 are as extreme (all + / all -): p = 0.25
    p, unit = stats.permutation_test([np.array([0.1]), np.array([0.2]), np.array([0.3])])
    assert unit == "seed" and p == pytest.approx(0.25)


def test_rank_intervals_and_spearman_interval():
    rng = np.random.default_rng(4)
    means = np.array([0.0, 0.05, 1.0])  # two close methods, one far ahead
    units = [means[:, None] + rng.normal(0, 0.5, (3, 100)) for _ in range(3)]
    reps = stats.joint_bootstrap(units, n_boot=1000, seed=0)
    ranks = stats.rank_intervals(reps)
    assert ranks[2] == (1.0, 1, 1)  # clearly first
    assert ranks[0][1] == 2 and ranks[0][2] == 3 and ranks[1][1] == 2 and ranks[1][2] == 3
    rho, lo, hi = stats.spearman_interval(reps, [1, 2, 3], reps.mean(axis=0))
    assert rho == pytest.approx(1.0) and lo == pytest.approx(0.5) and hi == pytest.approx(1.0)


def test_minimum_detectable_difference_and_seeds_needed():
    rng = np.random.default_rng(5)
    diffs = _hier(rng, 20, 400, mu=0.0, sd_seed=0.05, sd_item=0.5)
    v = stats.variance_components(diffs)
    assert v.within == pytest.approx(0.25, rel=0.1) and v.between == pytest.approx(0.0025, rel=0.8)
    mdd = stats.min_detectable_difference(v)
    assert mdd == pytest.approx(2.8016 * np.sqrt(v.between / 20 + v.within / 8000), rel=1e-3)
    need = stats.seeds_needed(v, 0.02)
    assert stats.min_detectable_difference(v, need) <= 0.02 < stats.min_detectable_difference(v, need - 1)
    assert stats.seeds_needed(stats.variance_components([np.array([0.1])]), 0.02) is None


# ---------------------------------------------------------------------------------------------------
# Method level: calibration with the world's variance components
# ---------------------------------------------------------------------------------------------------
# Measured on the world (gold_reward, default recipe, 5 methods x 5 seeds: `make demo`'s sweep, fitted
# with stats.fit_methods): the seed-by-method interaction sd 0.123 (IPO flagged and left out), the SFT
# models' spread across seeds 0.045 (the effect a seed shares across methods); the item standard error
# at 512 eval prompts about 0.04 (issue 21).  Diverging: a seed drops by 0.5 with probability 0.25
# (KTO's seed 0 at -0.32 from DPO, IPO's seed 3 at -1.07), centred so that the true mean stays the same.
SEED_SD, INTER_SD, ITEM_SE = 0.045, 0.123, 0.04
METHODS = 5
TABLES = 600  # simulated tables per case (x 10 pairs, 5 means)
SCENARIOS = ("equal", "unequal", "diverging")


def _world_table(rng, seeds, scenario, shift=0.0, items=0):
    """One simulated table under the null (plus ``shift`` on method 0): ``{method: {seed: value}}``,
    and with ``items`` the per-prompt scores ``{method: [array per seed]}`` whose means are the values."""
    u = rng.normal(0, SEED_SD, seeds)
    sds = INTER_SD * (np.linspace(0.6, 1.4, METHODS) if scenario == "unequal" else np.ones(METHODS))
    vals, item_rows = {}, {}
    for m in range(METHODS):
        e = rng.normal(0, sds[m], seeds)
        if scenario == "diverging" and m == METHODS - 1:
            e = e + np.where(rng.random(seeds) < 0.25, -0.5, 0.0) + 0.125
        cell = u + e + (shift if m == 0 else 0.0)
        if items:
            arr = [c + rng.normal(0, ITEM_SE * np.sqrt(items), items) for c in cell]
            item_rows[m] = arr
            vals[m] = {s: float(a.mean()) for s, a in enumerate(arr)}
        else:
            vals[m] = {s: float(c + rng.normal(0, ITEM_SE)) for s, c in enumerate(cell)}
    return vals, item_rows


def method_level(vals, items=None, level=0.95):
    """The project's estimator: [(diff, lo, hi, p)] over every pair and [(mean, lo, hi)] per method."""
    fit = stats.fit_methods(vals)
    diffs = [
        (e.mean, e.lo, e.hi, e.p)
        for a, b in itertools.combinations(sorted(vals), 2)
        for e in [stats.method_diff(fit, a, b, level)]
        if e.has_interval
    ]
    means = [(e.mean, e.lo, e.hi) for m in sorted(vals) for e in [stats.method_mean(fit, m, level)] if e.has_interval]
    return diffs, means


def mutant_99_labelled_95(vals, items=None):
    """A 99% interval reported as 95%."""
    return method_level(vals, level=0.99)


def mutant_normal_reference(vals, items=None):
    """The same variances with a normal reference instead of t."""
    fit = stats.fit_methods(vals)
    out = []
    for a, b in itertools.combinations(sorted(vals), 2):
        e = stats.method_diff(fit, a, b)
        if e.has_interval:
            p = float(2 * sst.norm.sf(abs(e.mean) / e.se)) if e.se > 0 else 1.0
            out.append((e.mean, e.mean - 1.96 * e.se, e.mean + 1.96 * e.se, p))
    return out, method_level(vals)[1]


def mutant_seed_component_dropped(vals, items):
    """The policy-level item test applied to a method claim: prompts within the shared seeds resampled
    and flipped (what every table did before issue 21); cell means from the item bootstrap."""
    out, means = [], []
    for a, b in itertools.combinations(sorted(items), 2):
        d = [x - y for x, y in zip(items[a], items[b])]
        est = stats.paired_bootstrap(d, n_boot=200, seed=0)
        p, _ = stats.permutation_test(d, n_perm=200, seed=0)
        out.append((est.mean, est.lo, est.hi, p))
    for m in sorted(items):
        est = stats.interval(items[m], n_boot=200, seed=0)
        means.append((est.mean, est.lo, est.hi))
    return out, means


def calibrate(estimator, scenario, seeds, tables=TABLES, seed=0, items=0):
    """False-positive rate at 0.05 and 95% coverage of differences and means under the null."""
    rng = np.random.default_rng([seed, seeds, SCENARIOS.index(scenario)])
    rej = cov = n = cov_m = n_m = 0
    for _ in range(tables):
        vals, item_rows = _world_table(rng, seeds, scenario, items=items)
        diffs, means = estimator(vals, item_rows)
        for _d, lo, hi, p in diffs:
            n += 1
            rej += p < 0.05
            cov += lo <= 0.0 <= hi
        for _m, lo, hi in means:
            n_m += 1
            cov_m += lo <= 0.0 <= hi
    return {"fpr": rej / n, "cover_diff": cov / n, "cover_mean": cov_m / n_m}


def calibrated(r) -> bool:
    return 0.03 <= r["fpr"] <= 0.07 and 0.93 <= r["cover_diff"] <= 0.97 and 0.93 <= r["cover_mean"] <= 0.97


@pytest.mark.slow  # ~40 s: 12 cases x 600 simulated tables
@pytest.mark.parametrize("seeds", [2, 3, 5, 10])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_method_level_null_is_calibrated(scenario, seeds):
    r = calibrate(method_level, scenario, seeds)
    print(
        f"method level, {scenario}, {seeds} seeds x {METHODS} methods: false-positive rate {r['fpr']:.3f}, "
        f"coverage of differences {r['cover_diff']:.3f}, of means {r['cover_mean']:.3f}"
    )
    assert calibrated(r), r


@pytest.mark.slow
@pytest.mark.parametrize(
    "mutant, seeds, items, tables",
    [
        (mutant_seed_component_dropped, 2, 128, 40),
        (mutant_seed_component_dropped, 5, 128, 40),
        (mutant_99_labelled_95, 5, 0, 300),
        (mutant_normal_reference, 2, 0, 300),
    ],
)
def test_the_calibration_check_rejects_a_broken_estimator(mutant, seeds, items, tables):
    """The check above can fail: an estimator without the seed component, with the level mislabelled or
    with a normal reference at few seeds is outside the bounds."""
    r = calibrate(mutant, "equal", seeds, tables=tables, items=items)
    print(
        f"{mutant.__name__}, {seeds} seeds: false-positive rate {r['fpr']:.3f}, coverage of differences "
        f"{r['cover_diff']:.3f}, of means {r['cover_mean']:.3f}"
    )
    assert not calibrated(r), r


@pytest.mark.slow
def test_method_level_power_matches_the_formula_the_table_prints():
    """The minimum detectable difference the table prints (80% power) is the shift the simulated test
    detects about 80% of the time (a few points less: the flag gives about 5% of rows their own
    variance, with fewer degrees of freedom); power at a stated effect printed per seed count."""
    rng = np.random.default_rng(9)
    sigma2_e = INTER_SD**2 + ITEM_SE**2
    for seeds in (2, 3, 5, 10):
        fit = stats.fit_methods({m: {s: 0.0 for s in range(seeds)} for m in range(METHODS)})
        fit.resid_var = sigma2_e  # the true interaction variance: the formula alone
        mdd = stats.method_mdd(fit)
        hits = {0.2: 0, mdd: 0}
        for _ in range(400):
            for delta in hits:
                vals, _ = _world_table(rng, seeds, "equal", shift=delta)
                e = stats.method_diff(stats.fit_methods(vals), 0, 1)
                hits[delta] += e.p < 0.05
        power_mdd, power_02 = hits[mdd] / 400, hits[0.2] / 400
        print(
            f"{seeds} seeds x {METHODS} methods: MDD {mdd:.3f} detected {power_mdd:.2f} of the time; "
            f"power at a difference of 0.2: {power_02:.2f}; seeds for 0.05: "
            f"{stats.method_seeds_needed(fit, 0.05)}"
        )
        assert 0.68 <= power_mdd <= 0.88
    assert stats.method_mdd(fit, seeds=stats.method_seeds_needed(fit, 0.05)) <= 0.05


def test_the_block_model_agrees_with_statsmodels():
    """The pooled interaction variance is the residual mean square of OLS y ~ C(method) + C(seed)
    (statsmodels), on a complete and on an unbalanced table."""
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(11)
    for drop in ((), ((4, 0), (3, 2))):
        vals, _ = _world_table(rng, 4, "equal")
        for m, s in drop:
            del vals[m][s]
        fit = stats.fit_methods(vals)
        df = pd.DataFrame([(m, s, y) for m, v in vals.items() for s, y in v.items()], columns=["m", "s", "y"])
        ols = smf.ols("y ~ C(m) + C(s)", df).fit()
        assert fit.resid_var == pytest.approx(ols.mse_resid, rel=1e-9) and fit.resid_df == ols.df_resid
        e = stats.method_diff(fit, 0, 1)
        if not drop:  # balanced: the paired difference is the OLS contrast
            t = ols.t_test("C(m)[T.1] = 0")
            assert -e.mean == pytest.approx(float(t.effect[0])) and e.p == pytest.approx(float(t.pvalue), rel=1e-6)


def test_a_diverging_method_is_flagged_and_does_not_widen_the_others():
    vals = {m: {s: 0.5 + 0.1 * np.sin(3 * m + s) for s in range(5)} for m in range(4)}
    vals[4] = {s: 0.5 + (-1.0 if s == 3 else 0.05 * s) for s in range(5)}  # IPO's seed 3 on the world
    fit = stats.fit_methods(vals)
    assert list(fit.flags) == [4] and fit.flags[4] < stats.POOL_ALPHA
    clean = stats.fit_methods({m: v for m, v in vals.items() if m != 4})
    assert fit.resid_var == pytest.approx(clean.resid_var)  # the pool is the other rows'
    kept = stats.fit_methods(vals, pool_alpha=0.0)  # flagged (own variance) but kept in the pool: wider
    assert list(kept.flags) == [4] and kept.resid_var > 2 * fit.resid_var
    assert stats.method_diff(fit, 0, 1).basis == "paired" and stats.method_diff(fit, 0, 4).basis == "own"
    assert stats.method_diff(fit, 0, 4).hi - stats.method_diff(fit, 0, 4).lo > 3 * (
        stats.method_diff(fit, 0, 1).hi - stats.method_diff(fit, 0, 1).lo
    )


def test_one_seed_makes_no_method_claim():
    fit = stats.fit_methods({m: {0: 0.1 * m} for m in range(4)})
    assert not stats.method_diff(fit, 0, 3).has_interval and np.isnan(stats.method_diff(fit, 0, 3).p)
    assert not stats.method_mean(fit, 0).has_interval and np.isnan(stats.method_mdd(fit))
    # different seeds, no shared one: unpaired, the seed effect included
    fit = stats.fit_methods({"a": {0: 0.5, 1: 0.6, 2: 0.4}, "b": {3: 0.5, 4: 0.45, 5: 0.55}})
    assert stats.method_diff(fit, "a", "b").basis == "unpaired"


def _runs_row(method, values):
    return {
        "method": method,
        "n_seeds": len(values),
        "gold_reward_mean": float(np.mean(values)),
        "_runs": [
            {"config": {"seed": s}, "metrics": {"gold_reward": v, "gold_reward_sft": 0.3}} for s, v in enumerate(values)
        ],
    }


def test_holm_decides_the_marks_of_the_table():
    """Through analyse(): the baseline tests are Holm-corrected over the table and ▲ / ▼ follow the
    corrected p; a row whose raw p is below 0.05 and whose Holm p is not gets no mark."""
    from po_bench.results import analysis

    base = [0.50, 0.62, 0.45, 0.58, 0.55, 0.40]
    noise = [0.03, -0.05, 0.06, -0.02, 0.01, -0.03]
    rows = [
        _runs_row("DPO", base),
        _runs_row("Big", [b + 0.30 + n for b, n in zip(base, noise)]),
        _runs_row("Small", [b + 0.065 - n for b, n in zip(base, noise)]),
        _runs_row("Same", [b + n for b, n in zip(base, noise[::-1])]),
    ]
    an = analysis.analyse(rows, [], ["gold_reward"], ["gold_reward"])
    tested = [r for r in rows if "delta_base" in r]
    ps = [r["delta_base"].p for r in tested]
    assert [r["delta_base"].p_holm for r in tested] == pytest.approx(stats.holm(ps))
    marks = {r["method"]: analysis.mark(r).strip() for r in rows}
    assert marks == {"DPO": "◆", "Big": "▲", "Small": "", "Same": ""}
    small = rows[2]["delta_base"]
    assert small.p < 0.05 <= small.p_holm, (small.p, small.p_holm)  # the correction is what removed the mark
    assert all(d.unit == "method" for d in (r["delta_base"] for r in tested))
    # beside each method-level pair, the policy-level one (run-level values here: the seeds are flipped)
    assert all(pr["delta"].policy is not None and pr["delta"].policy.unit == "seed" for pr in an.pairs)
    notes = " ".join(analysis.summary_notes(an, rows))
    assert "Method-level claims" in notes and "Big > DPO" in notes and "Power (method level" in notes

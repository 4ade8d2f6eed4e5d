"""po_bench.results.stats on synthetic data with a known truth: the bootstrap interval covers the
mean ~95% of the time, the paired tests reject a true null ~5% of the time, Holm against a
hand-computed case, rank intervals and the power numbers."""

from __future__ import annotations

import numpy as np
import pytest

from po_bench.results import stats

REPS = 400  # repetitions per coverage / false-positive estimate: binomial sd ~1.1 points at 95%


def _hier(rng, seeds, items, mu=0.3, sd_seed=0.2, sd_item=1.0):
    return [mu + rng.normal(0, sd_seed) + rng.normal(0, sd_item, items) for _ in range(seeds)]


@pytest.mark.parametrize("seeds, items, sd_seed, lo, hi", [
    (1, 60, 0.0, 0.92, 0.975),   # one seed (one policy): the items are the unit
    (8, 40, 0.2, 0.92, 0.99),    # hierarchical: seeds, then items (a little conservative by design)
    (3, 40, 0.2, 0.90, 0.995),   # few seeds: the expanded percentile keeps it near 95%
])
def test_bootstrap_interval_covers_the_true_mean_about_95_percent(seeds, items, sd_seed, lo, hi):
    rng = np.random.default_rng(1)
    hits = 0
    for i in range(REPS):
        est = stats.interval(_hier(rng, seeds, items, sd_seed=sd_seed), n_boot=600, seed=i)
        hits += est.lo <= 0.3 <= est.hi
    cover = hits / REPS
    print(f"coverage seeds={seeds} items={items}: {cover:.3f}")
    assert lo <= cover <= hi


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
    print("false-positive rates (item permutation, seed permutation, bootstrap): %.3f %.3f %.3f" % rates)
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

"""Label-flip noise: exact count, determinism, nothing lost or duplicated."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from po_bench.data.noise import flip_labels


def _pairs(n):
    return [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 500), rate=st.floats(0.0, 0.4999), seed=st.integers(0, 2**31 - 1))
def test_flip_count_exact_and_nothing_lost(n, rate, seed):
    pairs = _pairs(n)
    out, idx = flip_labels(pairs, rate, seed)
    assert len(idx) == round(rate * n) == len(set(idx))
    assert len(out) == n
    for i, (a, b) in enumerate(zip(pairs, out)):
        assert a["prompt"] == b["prompt"]
        if i in set(idx):
            assert (b["chosen"], b["rejected"]) == (a["rejected"], a["chosen"]) and b["flipped"]
        else:
            assert (b["chosen"], b["rejected"]) == (a["chosen"], a["rejected"])
    assert flip_labels(pairs, rate, seed) == (out, idx)


def test_seed_chooses_the_rows():
    pairs = _pairs(100)
    assert flip_labels(pairs, 0.2, 0)[1] != flip_labels(pairs, 0.2, 1)[1]


@pytest.mark.parametrize("rate", [-0.1, 0.5, 0.7])
def test_rates_outside_range_rejected(rate):
    with pytest.raises(ValueError):
        flip_labels(_pairs(10), rate, 0)

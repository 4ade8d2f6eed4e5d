"""Property tests (hypothesis): the data loaders and the table builder never lose or invent rows."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from po_bench.data.formats.base import DataError
from po_bench.data.formats.paired import to_pairs
from po_bench.results.table import build_table
from po_bench.results.writers import to_csv, to_markdown

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
row = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.one_of(text, st.integers(), st.none()),
        "chosen": st.one_of(text, st.none(), st.lists(text, max_size=2)),
        "rejected": st.one_of(text, st.none()),
    },
)

good_row = st.fixed_dictionaries({"prompt": text, "chosen": text, "rejected": text})  # usable unless blank / equal


def _usable(r):
    """A pairs row the loader must keep: three texts, a non-blank prompt, two different answers."""
    p, c, j = r.get("prompt"), r.get("chosen"), r.get("rejected")
    return all(isinstance(x, str) for x in (p, c, j)) and bool(p.strip()) and c.strip() != j.strip()


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.one_of(row, good_row), min_size=1, max_size=30))
def test_pairs_loader_accounts_for_every_row(rows):
    kept = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows if _usable(r)]
    if not kept:  # nothing usable: a clear error naming the source, never an empty result
        with pytest.raises(DataError, match="fuzz.jsonl"):
            to_pairs(rows, "pairs", {}, "fuzz.jsonl")
        return
    pairs, rep = to_pairs(rows, "pairs", {}, "fuzz.jsonl")
    assert pairs == kept  # exactly the usable rows, in order, unchanged
    assert rep["rows"] == len(rows)
    assert len(pairs) + rep["n_skipped"] == len(rows)  # every row kept or counted, none duplicated


metric = st.one_of(st.floats(-5, 5, allow_nan=False), st.none())
run = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["done", "done", "failed"]),
        "loss": st.sampled_from(["dpo", "ipo", "simpo"]),
        "beta": st.sampled_from([0.1, 0.5]),
        "seed": st.integers(0, 3),
        "gold": metric,
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.lists(run, min_size=1, max_size=12))
def test_table_groups_every_done_run_once(runs):
    recs = [
        {
            "status": r["status"],
            "error": None if r["status"] == "done" else "boom",
            "config": {"loss": {"name": r["loss"], "label": r["loss"].upper(), "beta": r["beta"]}, "seed": r["seed"]},
            "metrics": {"gold_reward": r["gold"]},
            "_path": f"/x/{i}",
        }
        for i, r in enumerate(runs)
    ]
    hp, rows, failed = build_table(recs)
    assert sum(r["n_runs"] for r in rows) == sum(r["status"] == "done" for r in runs)
    assert all(1 <= r["n_seeds"] <= r["n_runs"] for r in rows)
    assert len(failed) == sum(r["status"] != "done" for r in runs)
    for row in rows:
        members = [
            r
            for r in runs
            if r["status"] == "done"
            and r["loss"].upper() == row["method"]
            and ("loss.beta" not in hp or r["beta"] == row["loss.beta"])
        ]
        vals = [r["gold"] for r in members if r["gold"] is not None]
        if vals:
            assert math.isclose(row["gold_reward_mean"], sum(vals) / len(vals), abs_tol=1e-9)
        else:
            assert math.isnan(row["gold_reward_mean"])
    csv = to_csv(hp, rows)
    assert len(csv.strip().splitlines()) == 1 + len(rows)
    md = to_markdown(hp, rows, failed)
    assert md.count("\n| ") == len(rows)  # one table line per row (the header starts the text)
    assert (f"Failed runs ({len(failed)})" in md) == bool(failed)

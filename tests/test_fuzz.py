"""Property tests (hypothesis): the data loaders and the table builder never lose or invent rows."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from po_bench.data import formats
from po_bench.results.table import build_table, to_csv, to_markdown

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
row = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.one_of(text, st.integers(), st.none()),
        "chosen": st.one_of(text, st.none(), st.lists(text, max_size=2)),
        "rejected": st.one_of(text, st.none()),
    },
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(row, min_size=1, max_size=30))
def test_pairs_loader_accounts_for_every_row(rows):
    try:
        pairs, rep = formats.to_pairs(rows, "pairs", {}, "fuzz.jsonl")
    except formats.DataError as e:  # nothing usable: a clear error naming the source
        assert "fuzz.jsonl" in str(e)
        return
    assert rep["rows"] == len(rows)
    assert len(pairs) + rep["n_skipped"] == len(rows)  # every row kept or counted, none duplicated
    for p in pairs:
        assert isinstance(p["chosen"], str) and isinstance(p["rejected"], str)
        assert p["chosen"].strip() != p["rejected"].strip()


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
    assert md.count("\n| ") >= len(rows) and (not failed or f"Failed runs ({len(failed)})" in md)

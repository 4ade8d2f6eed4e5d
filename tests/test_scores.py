"""po_bench.results.scores: per-item scores (scores.jsonl) written next to run.json, read back, and the
per-item values that reproduce a run's metric (the unit of the table's paired intervals)."""

from __future__ import annotations

from po_bench.results import scores


def test_scores_round_trip_and_item_scores_reproduce_the_run_metric(tmp_path):
    rows = scores.world_rows(["a", "b", "c"], [0.5, 0.2, 0.1], [0.1, 0.2, 0.3])
    path = scores.write_scores(tmp_path, rows)
    assert path.name == "scores.jsonl" and scores.read_scores(tmp_path) == rows
    assert [r["win"] for r in rows] == [1.0, 0.5, 0.0]
    run = {"_path": str(tmp_path), "metrics": {"gold_reward": 0.8 / 3, "win_rate_vs_sft": 0.5}}
    assert sorted(scores.item_scores(run, "gold_reward").values()) == [0.1, 0.2, 0.5]
    run = {"_path": str(tmp_path), "metrics": {"gold_reward": 0.9}}  # items do not reproduce it
    assert scores.item_scores(run, "gold_reward") is None
    scores.write_scores(tmp_path, [{"judge": "mt_bench", "item": i, "score": s} for i, s in enumerate([7, 9])])
    assert scores.item_scores({"_path": str(tmp_path), "metrics": {"mt_bench_score": 8.0}}, "mt_bench_score") == {
        ("mt_bench", 0): 7.0,
        ("mt_bench", 1): 9.0,
    }
    assert scores.read_scores(tmp_path / "nowhere") is None

"""po_bench/results/writers.py: the CSV / Markdown / pairs / matrix files po-bench-table writes from a sweep."""

from __future__ import annotations

import csv
import json

import pytest

from po_bench.results import writers


def test_table_cells_carry_intervals_deltas_and_the_matrix(sweep, tmp_path):
    paths = writers.write_tables(sweep, tmp_path / "out", "w", make_plot=True)
    rows = {r["method"]: r for r in csv.DictReader(open(paths["csv"]))}
    for r in rows.values():
        assert float(r["gold_reward_lo"]) <= float(r["gold_reward_mean"]) <= float(r["gold_reward_hi"])
    # DPO's gain over the same-seed SFT, per seed, is the run's own gold minus its SFT gold
    runs = [json.loads(p.read_text()) for p in sweep.glob("*dpo*/run.json")]
    gains = sorted(r["metrics"]["gold_reward"] - r["metrics"]["gold_reward_sft"] for r in runs)
    assert sorted(float(x) for x in rows["DPO"]["delta_sft_per_seed"].split()) == pytest.approx(gains, abs=1e-5)
    assert rows["DPO"]["delta_dpo"] == "" and rows["IPO"]["p_holm_vs_dpo"] != ""
    assert {"pairs", "matrix", "matrix_png"} <= set(paths) and paths["matrix_png"].stat().st_size > 5000
    m = list(csv.reader(open(paths["matrix"])))
    assert m[0][1:] == ["SFT", "DPO", "IPO", "SimPO"] and len(m) == 5
    md = paths["md"].read_text()
    assert "◆" in md and "Power (method level" in md and "Failed runs (1)" in md
    # without item scores the unit is the seed and the table still builds
    for p in sweep.rglob("scores.jsonl"):
        p.unlink()
    for p in sweep.rglob("samples.jsonl"):
        p.unlink()
    md2 = writers.write_tables(sweep, tmp_path / "out2", "w")["md"].read_text()
    assert "Method-level claims" in md2  # the method level never needed the prompts
    md3 = writers.write_tables(sweep, tmp_path / "out3", "w", claims="policy")["md"].read_text()
    assert "Policy-level claims" in md3 and "run-level values" in md3

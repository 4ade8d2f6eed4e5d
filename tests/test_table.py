"""po-bench-table on hand-made run records: paper reference columns, best-of-grid selection, one row
per policy across judges, restating columns dropped, the footer, and the rank agreement; unreadable run.json
files named and counted, and no table (exit 2) when none is readable."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest

from po_bench.results import table, writers

from .conftest import ROOT


def _run(tmp, name, method, label, seed=0, model=None, judge="gold", metrics=None, **loss):
    cfg = {
        "loss": {
            "name": method,
            "label": label,
            "beta": loss.get("beta", 0.1),
            "lr": loss.get("lr", 2e-4),
            "args": loss.get("args", {}),
        },
        "model": model or {"name": "tiny", "name_or_path": None, "reference_id": None},
        "judge": {"name": judge},
        "seed": seed,
        "preset": {
            "name": "simpo_table",
            "scale": "paper" if model else "tiny",
            "title": "SimPO Table 4",
            "select_best": "win_rate_vs_sft",
            "ours": ["win_rate_vs_sft"],
            "reference": {
                "csv": "simpo_table4.csv",
                "columns": ["alpacaeval2_lc"],
                "models": ["mistral-7b-base", "llama-3-8b-instruct"],
                "citation": "SimPO",
            },
        },
    }
    d = tmp / name
    d.mkdir(parents=True)
    rec = {
        "status": "done",
        "config": cfg,
        "metrics": {"seconds": {"total": 10.0}, **(metrics or {})},
        "versions": {"torch": "2.13.0+cpu", "trl": "1.16.0"},
        "host": {"platform": "x", "cpu": "CPU-X", "cpus": 2},
    }
    (d / "run.json").write_text(json.dumps(rec))


def test_best_grid_point_per_method_and_paper_columns_at_tiny_scale(tmp_path):
    _run(tmp_path, "a", "dpo", "DPO", beta=0.05, metrics={"win_rate_vs_sft": 0.4})
    _run(tmp_path, "b", "dpo", "DPO", beta=0.1, metrics={"win_rate_vs_sft": 0.6})
    _run(tmp_path, "c", "simpo", "SimPO", beta=2.0, metrics={"win_rate_vs_sft": 0.7})
    _run(tmp_path, "d", "sft", "SFT", beta=1.0, metrics={"win_rate_vs_sft": 0.5})
    paths = writers.write_tables(tmp_path, tmp_path / "out", "t", make_plot=True, wall_seconds=99)
    assert paths["png"].stat().st_size > 10_000 and paths["vs_paper"].stat().st_size > 10_000
    rows = {r["method"]: r for r in csv.DictReader(open(paths["csv"]))}
    assert float(rows["DPO"]["win_rate_vs_sft_mean"]) == 0.6 and rows["DPO"]["grid_points"] == "2"
    assert float(rows["DPO"]["loss.beta"]) == 0.1
    assert float(rows["SimPO"]["paper llama-3-8b-instruct alpacaeval2_lc"]) == 44.7
    assert float(rows["SFT"]["paper mistral-7b-base alpacaeval2_lc"]) == 8.4
    md = paths["md"].read_text()
    assert "SimPO Table 4 (scale=tiny)" in md and "sweep wall time 99 s" in md and "CPU-X, 2 cores" in md
    assert "torch 2.13.0+cpu" in md and "compare the methods' order, not the values" in md
    # our order SFT < DPO < SimPO (0.5 < 0.6 < 0.7); the paper's LC for mistral-7b-base: 8.4 < 15.1 < 21.5
    assert "`win_rate_vs_sft` vs `paper mistral-7b-base alpacaeval2_lc`: Spearman +1.00 over 3 methods" in md


def test_paper_scale_rows_match_their_models_reference_and_merge_judges(tmp_path):
    llama = {
        "name": "llama3_8b_instruct",
        "name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
        "reference_id": "llama-3-8b-instruct",
    }
    mistral = {
        "name": "zephyr_7b_sft",
        "name_or_path": "alignment-handbook/zephyr-7b-sft-full",
        "reference_id": "mistral-7b-base",
    }
    for i, (m, s_ae, s_mt) in enumerate([(llama, 40.0, 7.9), (mistral, 20.0, 7.1)]):
        _run(tmp_path, f"ae{i}", "simpo", "SimPO", model=m, judge="alpaca_eval", metrics={"alpaca_eval_win_rate": s_ae})
        _run(tmp_path, f"mt{i}", "simpo", "SimPO", model=m, judge="mt_bench", metrics={"mt_bench_score": s_mt})
    hp, rows, failed = table.build_table(table.load_runs(tmp_path))
    assert hp == ["model.name"]  # name_or_path and reference_id restate it; judge never splits rows
    assert len(rows) == 2 and all(r["n_seeds"] == 1 for r in rows)
    by_model = {r["model.name"]: r for r in rows}
    assert by_model["llama3_8b_instruct"]["alpaca_eval_win_rate_mean"] == 40.0
    assert by_model["llama3_8b_instruct"]["mt_bench_score_mean"] == 7.9
    preset = table._preset(table.load_runs(tmp_path))
    cols = table.add_reference(rows, table.load_runs(tmp_path), preset)
    assert cols == ["paper alpacaeval2_lc"]
    assert by_model["llama3_8b_instruct"]["paper alpacaeval2_lc"] == 44.7
    assert by_model["zephyr_7b_sft"]["paper alpacaeval2_lc"] == 21.5


def test_a_method_missing_from_the_paper_gets_an_empty_reference_cell(tmp_path):
    _run(tmp_path, "a", "adpo", "ADPO", metrics={"win_rate_vs_sft": 0.4})
    paths = writers.write_tables(tmp_path, tmp_path / "out", "t")
    row = next(csv.DictReader(open(paths["csv"])))
    assert math.isnan(float(row["paper mistral-7b-base alpacaeval2_lc"]))
    assert "| ADPO |" in paths["md"].read_text()


@pytest.mark.parametrize(
    "xs, ys, rho",
    [
        ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
        ([1, 2, 3, 4], [40, 30, 20, 10], -1.0),
        ([1, 2, 3], [1, 1, 2], 0.8660254),  # ties: average ranks
    ],
)
def test_spearman(xs, ys, rho):
    assert table.spearman(xs, ys) == pytest.approx(rho, abs=1e-6)


def test_spread_across_a_methods_grid(tmp_path):
    for i, (beta, w, kl) in enumerate([(0.1, 0.6, 1.0), (0.3, 0.5, 0.5), (1.0, 0.4, 0.25)]):
        _run(tmp_path, f"r{i}", "dpo", "DPO", beta=beta, metrics={"win_rate_vs_sft": w, "kl_to_ref": kl})
    _run(tmp_path, "s", "sft", "SFT", beta=1.0, metrics={"win_rate_vs_sft": 0.5, "kl_to_ref": 0.0})
    hp, rows, _ = table.build_table(table.load_runs(tmp_path))
    lines = table.spread(rows, ["win_rate_vs_sft", "kl_to_ref"])
    assert lines == ["- DPO over 3 rows: win_rate_vs_sft 0.400..0.600 (sd 0.100); kl_to_ref 0.250..1.000 (sd 0.382)"]


def _table_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "po_bench.cli.table", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


TRUNCATED = '{"status": "done", "config": {"loss": {"na'  # a run.json cut off mid-write
try:
    json.loads(TRUNCATED)
except json.JSONDecodeError as e:
    TRUNCATED_WHY = str(e)  # json's own reason (Unterminated string ...)


def _truncated(tmp, name):
    d = tmp / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(TRUNCATED)
    return d / "run.json"


def test_a_sweep_whose_only_run_json_is_truncated_exits_2_naming_the_file(tmp_path):
    bad = _truncated(tmp_path / "sweep", "0_loss=dpo_s0")
    r = _table_cli(tmp_path / "sweep")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.splitlines() == [
        f"po-bench-table: no readable run.json under {tmp_path / 'sweep'}: 1 unreadable: {bad}: {TRUNCATED_WHY}"
    ]
    assert r.stdout == "" and sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["0_loss=dpo_s0"]


def test_unreadable_run_json_files_are_named_and_counted_beside_the_table(tmp_path):
    sweep = tmp_path / "sweep"
    _run(sweep, "0_loss=dpo_s0", "dpo", "DPO", metrics={"win_rate_vs_sft": 0.6})
    bad = _truncated(sweep, "1_loss=ipo_s0")
    (sweep / "2_loss=kto_s0").mkdir()
    (sweep / "2_loss=kto_s0" / "run.json").write_text("[]")  # JSON, but no record
    r = _table_cli(sweep)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.splitlines() == [
        f"po-bench-table: 2 of 3 run.json unreadable (counted as failed): {bad}: {TRUNCATED_WHY}; "
        f"{sweep / '2_loss=kto_s0' / 'run.json'}: not a JSON object but list"
    ]
    md = (sweep / "results.md").read_text()
    assert r.stdout.startswith(md) and "| DPO |" in md
    assert "Runs: 1 done, 2 failed (2 of them an unreadable run.json, named below)" in md
    assert f"- `1_loss=ipo_s0`: unreadable {bad}: {TRUNCATED_WHY}" in md
    assert f"- `2_loss=kto_s0`: unreadable {sweep / '2_loss=kto_s0' / 'run.json'}: not a JSON object" in md
    assert [row["method"] for row in csv.DictReader(open(sweep / "results.csv"))] == ["DPO"]

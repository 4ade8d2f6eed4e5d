"""po-bench-diagnostics: the command line over po_bench/results/diagnostics.py (a missing folder is one line
and exit 2; a sweep folder gives the three files)."""

from __future__ import annotations

import json

from po_bench.cli.diagnostics import main


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"po-bench-diagnostics: {tmp_path / 'nope'}: no such folder"]


def test_a_folder_without_runs_is_one_line_and_exit_2(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("po-bench-diagnostics: no run.json under")


def test_a_sweep_gives_csv_md_and_png(tmp_path, capsys):
    for s in (0, 1):
        d = tmp_path / "sweep" / str(s)
        d.mkdir(parents=True)
        rec = {
            "status": "done",
            "config": {"loss": {"name": "dpo"}, "seed": s},
            "metrics": {"diagnostics": {"probe": {"delta_chosen": -1.0 - s, "history": []}}},
        }
        (d / "run.json").write_text(json.dumps(rec))
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "o"), "--name", "d"]) == 0
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"d.csv", "d.md", "d.png"}
    assert "| dpo | -1.5 |" in (tmp_path / "o" / "d.md").read_text()

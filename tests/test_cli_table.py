"""`po-bench-table` (po_bench/cli/table.py): a sweep's unreadable run.json files are named and counted
beside the table, and a sweep whose only run.json is truncated exits 2 naming the file."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

from .conftest import ROOT
from .helpers import write_run as _run


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

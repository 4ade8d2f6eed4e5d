"""The benchmark harness runs and writes its report (numbers are never asserted: scripts/bench/ measures)."""

import json
import subprocess
import sys

from .conftest import ROOT


def test_a_benchmark_runs_both_sides_and_writes_its_report(tmp_path):
    env = {"PO_BENCH_BENCH_OUT": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    args = ["judging", "--requests", "4", "--latency", "0.01", "--repeats", "2"]
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "run.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    md = (tmp_path / "judging.md").read_text()
    data = json.loads((tmp_path / "judging.json").read_text())
    # both sides ran as often as asked, alternated, and the report carries its conditions
    assert [len(v) for v in data["raw"]["times"].values()] == [2, 2]
    assert data["raw"]["cached"] == {"requests": 0, "cache_hits": 4}
    assert "| concurrency 1 | 4 |" in md and "| concurrency 8 | 4 |" in md
    assert "Hardware:" in md and "Versions:" in md and "load average" in md
    assert {t["what"] for t in data["targets"]} == {
        "speed-up at concurrency 8 over 1",
        "requests sent by a cached rerun",
    }


def test_unknown_benchmark_is_one_line_exit_2():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "run.py"), "nope"], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown benchmark(s) nope" in r.stderr

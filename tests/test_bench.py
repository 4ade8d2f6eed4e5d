"""The benchmark harness runs and writes its report (numbers are never asserted: scripts/bench/ measures)."""

import json
import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.slow  # the benchmark harness end to end (a loopback server, two processes)
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


def _bench(tmp_path, args: list[str]) -> subprocess.CompletedProcess:
    import os

    env = {"PO_BENCH_BENCH_OUT": str(tmp_path), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    env.update({k: os.environ[k] for k in ("PO_BENCH_SMOLLM2_DIR", "XDG_CACHE_HOME") if k in os.environ})
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "run.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
    )


@pytest.mark.slow  # trains (two processes, the world's tiny model)
def test_the_memory_benchmark_measures_both_cases_each_in_its_own_process(tmp_path):
    r = _bench(
        tmp_path, ["memory", "--model", "tiny", "--pairs", "8", "--steps", "1", "--repeats", "1", "--threads", "1"]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((tmp_path / "memory.json").read_text())
    runs = data["raw"]["runs"]
    assert sorted(runs) == ["reference freed", "reference resident"]
    for case, (run,) in runs.items():
        assert run["case"] == ("freed" if case == "reference freed" else "resident") and run["steps"] == 1
        assert run["peak_rss"] >= run["rss_loaded"] > 0
    assert data["raw"]["reference_bytes"] > 0
    assert "| saved by releasing the reference |" in (tmp_path / "memory.md").read_text()
    assert [t["what"] for t in data["targets"]] == ["peak RSS saved / the reference model's size"]


@pytest.mark.slow  # trains (a world run, then the policy stage and the bare TRL script)
def test_the_overhead_benchmark_trains_the_same_policy_as_a_bare_trl_script(tmp_path):
    small = ["dataset.n_sft=200", "dataset.n_pref=32", "train.sft_epochs=1", "train.batch_size=8"]
    r = _bench(tmp_path, ["overhead", "--repeats", "1", "--overrides", *small])
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((tmp_path / "overhead.json").read_text())
    runs = data["raw"]["runs"]
    assert sorted(runs) == ["bare TRL script", "po-bench policy stage"]
    (po,), (bare,) = runs["po-bench policy stage"], runs["bare TRL script"]
    # the bare script's arguments come from po-bench's mapping; trained on them, the policies are bit-identical
    assert po["weights"] == bare["weights"] and po["steps"] == bare["steps"] > 0
    assert data["raw"]["arguments"]["beta"] == 0.1 and data["raw"]["arguments"]["precompute_ref_log_probs"] is True
    assert {k for k in data["raw"]["differ"]} <= {"save_steps", "save_total_limit"}  # no checkpoints are saved
    targets = {t["what"]: t for t in data["targets"]}
    assert targets["same policy weights (sha256) on every run of both sides"]["met"] is True


def test_unknown_benchmark_is_one_line_exit_2():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench" / "run.py"), "nope"], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown benchmark(s) nope" in r.stderr

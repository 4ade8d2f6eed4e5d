"""po_bench.results.record: run.json (status, error, config, metrics, package versions, host) written
atomically into the run's folder.  A complete record of a real run: tests/test_pipeline_e2e.py."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform

from po_bench.results import record


def test_run_record_holds_the_run_and_what_ran_it(tmp_path):
    path = record.write_run_record(
        tmp_path, status="failed", config={"seed": 3}, error="RuntimeError: x", extra={"history": [{"loss": 1.0}]}
    )
    assert path == tmp_path / "run.json"
    rec = json.loads(path.read_text())
    assert {k: rec[k] for k in ("status", "error", "config", "metrics", "history")} == {
        "status": "failed",
        "error": "RuntimeError: x",
        "config": {"seed": 3},
        "metrics": {},  # none given: an empty dict, not null
        "history": [{"loss": 1.0}],
    }
    assert rec["versions"] == record.package_versions() and rec["host"]["cpus"] == os.cpu_count()
    assert rec["finished_at"][:2] == "20" and "T" in rec["finished_at"]
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left behind

    record.write_run_record(tmp_path, status="done", config={"seed": 3}, metrics={"gold_reward": 0.5})
    rec = json.loads(path.read_text())  # replaced whole
    assert rec["status"] == "done" and rec["error"] is None and rec["metrics"] == {"gold_reward": 0.5}
    assert "history" not in rec


def test_package_versions_name_the_installed_packages_and_python():
    v = record.package_versions()
    assert v["python"] == platform.python_version()
    assert v["torch"] == importlib.metadata.version("torch") and v["trl"] == importlib.metadata.version("trl")
    assert set(v) <= set(record.PACKAGES) | {"python"}


def test_hardware_reads_the_cpu_and_memory():
    hw = record.hardware()
    assert hw["cpus"] == os.cpu_count() and hw["machine"] == platform.machine()
    if os.path.exists("/proc/meminfo"):
        assert hw["memory_gib"] > 0

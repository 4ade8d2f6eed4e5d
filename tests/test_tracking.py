"""wandb offline tracking read back from the files; sweep resume; no planted secret in any file."""

import subprocess
import sys

import pytest

from po_bench.results.tracking import read_offline_run
from po_bench.results.writers import write_tables

from .conftest import ROOT, SMALL, read_runs, run_cli

pytestmark = pytest.mark.slow
SECRET = "sk-po-bench-PLANTED-3f9a1c7e"


def test_wandb_offline_sweep_resume_and_no_secret(tmp_path):
    sweep = tmp_path / "sweep"
    small = [a for a in SMALL if a != "tracking=none"]
    env = {"OPENAI_API_KEY": SECRET, "WANDB_API_KEY": "", "PO_BENCH_JUDGE_KEY": SECRET}
    args = ["-m", *small, "loss=dpo,simpo", "seed=0", f"cache_dir={tmp_path}/cache", f"hydra.sweep.dir={sweep}"]
    r = run_cli(args, ROOT, env_extra=env)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = read_runs(sweep)
    assert [x["status"] for x in runs] == ["done", "done"]

    wb = sorted(sweep.glob("*/wandb/offline-run-*"))
    assert len(wb) == 2
    read = [read_offline_run(d) for d in wb]
    assert read[0]["group"] == read[1]["group"] == f"{sweep.parent.name}/{sweep.name}"
    for rd, rec in zip(read, runs):
        assert rd["config"]["loss"]["name"] == rec["config"]["loss"]["name"]
        assert rd["summary"]["gold_reward"] == pytest.approx(rec["metrics"]["gold_reward"])
        assert rd["summary"]["status"] == "done"
        assert any("train/loss" in h for h in rd["history"])
        table = rd["tables"]["samples"]
        assert table["columns"][:3] == ["prompt", "policy", "sft"] and len(table["data"]) > 0

    # the sweep's results table as a wandb Table
    t = subprocess.run(
        [sys.executable, "-m", "po_bench.cli.table", str(sweep), "--wandb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "WANDB_API_KEY": ""},
    )
    assert t.returncode == 0, t.stderr[-2000:]
    res_dir = next(sweep.glob("wandb/offline-run-*"))
    rt = read_offline_run(res_dir)
    assert rt["group"] == read[0]["group"]
    assert {row[0] for row in rt["tables"]["results"]["data"]} == {"DPO", "SimPO"}

    # relaunching the same sweep skips the finished runs
    before = [
        (d / "run.json").stat().st_mtime_ns for d in sorted(p for p in sweep.iterdir() if (p / "run.json").exists())
    ]
    r2 = run_cli(args, ROOT, env_extra=env)
    assert r2.returncode == 0
    assert (r2.stdout + r2.stderr).count("already done, skipped") == 2
    after = [
        (d / "run.json").stat().st_mtime_ns for d in sorted(p for p in sweep.iterdir() if (p / "run.json").exists())
    ]
    assert before == after

    # the planted key appears in no file of the output tree (configs, logs, run.json, wandb files)
    hits = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert hits == []


def test_table_merges_folders_without_double_counting(tmp_path):
    for name, loss in (("a", "sft"), ("b", "sft")):
        r = run_cli(
            [
                *SMALL,
                f"loss={loss}",
                "stages.train=false",
                f"cache_dir={tmp_path}/cache",
                f"hydra.run.dir={tmp_path}/{name}/run",
            ],
            ROOT,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    paths = write_tables([tmp_path / "a", tmp_path / "b"], out_dir=tmp_path, name="merged")
    lines = paths["csv"].read_text().strip().splitlines()
    assert len(lines) == 2 and ",1," in lines[1]  # one SFT row, one seed: the duplicate counted once

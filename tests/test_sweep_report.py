"""Sweeps that report: one summary at the end of every sweep (done / failed / skipped / reused, wall
time, where the runs are, the po-bench-table command), exit code 1 when a job failed, with the basic,
joblib and submitit launchers; config errors leave no run folder; metrics that are None print n/a.

The fast tests run the real app, Hydra, launchers and callback around a planted pipeline (a
``sitecustomize`` on PYTHONPATH replaces ``po_bench.pipeline`` in every process, the launchers'
workers included): seed 13 fails at run time, judge=reward_model is a config error, judge=none has
no gold reward.  The slow tests run the real pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import ROOT, SHARED, SMALL, read_runs, run_cli
from .helpers import FAKE_PIPELINE

BASE = ["tracking=none", "generation.progress=false", "train.progress=false", "threads=1"]


@pytest.fixture
def fake(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_PIPELINE)
    return {"PO_BENCH_FAKE_PIPELINE": "1", "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}


def _jobs(sweep: Path) -> list[str]:
    return sorted(p.name for p in sweep.iterdir() if p.is_dir())


@pytest.mark.slow  # a multirun sweep through the app and its launcher, end to end (planted pipeline)
def test_sweep_summary_and_exit_code_basic_launcher(tmp_path, fake):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *BASE,
        "seed=0,13",
        "judge=gold,reward_model",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    r = run_cli(args, tmp_path, env_extra=fake, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]
    assert "po-bench sweep: 4 jobs in " in r.stdout
    assert "1 done (1 entirely reused from the artifact store), 3 failed (2 config errors), 0 skipped" in r.stdout
    assert "failed  1: config error: judge=reward_model: planted config error" in r.stdout
    assert "failed  2: RuntimeError: planted failure at run time" in r.stdout
    assert f"next:   po-bench-table {sweep}" in r.stdout
    assert "reused from the artifact store: policy, sft (nothing was rebuilt)" in out
    # the config errors left no folder; the runtime failure is recorded
    assert _jobs(sweep) == ["0", "2"]
    assert [x["status"] for x in read_runs(sweep)] == ["done", "failed"]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert len(summary["failed"]) == 3 and len(summary["done"]) == 1

    # relaunched at once: the done run is skipped, the failures run again (and fail again); the jobs
    # of a launch are known by its launch id, not by file times (a relaunch within a second counts right)
    r2 = run_cli(args, tmp_path, env_extra=fake, timeout=300)
    assert r2.returncode == 1
    assert "0 done, 3 failed (2 config errors), 1 skipped (already done by an earlier launch)" in r2.stdout

    # a sweep in which every job is done exits 0, and says what was rebuilt
    ok = tmp_path / "ok"
    r3 = run_cli(["-m", *BASE, "seed=0,1", f"hydra.sweep.dir={ok}"], tmp_path, env_extra=fake, timeout=300)
    assert r3.returncode == 0, (r3.stdout + r3.stderr)[-3000:]
    assert "2 jobs in" in r3.stdout and "2 done (1 entirely reused from the artifact store), 0 failed" in r3.stdout
    assert "reused from the artifact store: policy, sft; built: policy" in r3.stdout + r3.stderr


@pytest.mark.slow  # a multirun sweep through the app and its launcher, end to end (planted pipeline)
def test_relaunch_with_a_changed_config_runs_again(tmp_path, fake):
    """Relaunching into the same job folders with a changed config (loss.beta) runs every job again: a
    finished run.json is skipped only when its config is the one asked for now."""
    sweep = tmp_path / "sweep"
    args = ["-m", *BASE, "seed=0,1", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}"]
    r1 = run_cli([*args, "loss.beta=0.1"], tmp_path, env_extra=fake, timeout=300)
    assert r1.returncode == 0, (r1.stdout + r1.stderr)[-3000:]
    assert [x["config"]["loss"]["beta"] for x in read_runs(sweep)] == [0.1, 0.1]

    r2 = run_cli([*args, "loss.beta=0.2"], tmp_path, env_extra=fake, timeout=300)
    out = r2.stdout + r2.stderr
    assert r2.returncode == 0, out[-3000:]
    assert "2 done (1 entirely reused from the artifact store), 0 failed, 0 skipped" in r2.stdout, r2.stdout[-2000:]
    assert "already done, skipped" not in out
    assert _jobs(sweep) == ["0", "1"]  # the same folders, their records replaced
    assert [(x["status"], x["config"]["loss"]["beta"]) for x in read_runs(sweep)] == [("done", 0.2), ("done", 0.2)]

    # and the same config again: both skipped
    r3 = run_cli([*args, "loss.beta=0.2"], tmp_path, env_extra=fake, timeout=300)
    assert r3.returncode == 0 and "0 done, 0 failed, 2 skipped" in r3.stdout, (r3.stdout + r3.stderr)[-3000:]


@pytest.mark.slow  # sweeps through the joblib and submitit launchers, end to end (planted pipeline)
@pytest.mark.parametrize(
    "launcher",
    [
        ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
        ["hydra/launcher=local", "hydra.launcher.timeout_min=5"],
    ],
    ids=["joblib", "submitit"],
)
def test_exit_code_with_other_launchers(tmp_path, fake, launcher):
    sweep = tmp_path / "sweep"
    r = run_cli(
        ["-m", *launcher, *BASE, "seed=0,13", f"hydra.sweep.dir={sweep}"], tmp_path, env_extra=fake, timeout=300
    )
    assert r.returncode == 1, (r.stdout + r.stderr)[-3000:]
    assert "2 jobs in" in r.stdout and "1 done" in r.stdout and "1 failed" in r.stdout, r.stdout[-2000:]
    assert "RuntimeError: planted failure at run time" in r.stdout


def test_single_run_config_error_leaves_no_folder(tmp_path, fake):
    run = tmp_path / "run"
    r = run_cli([*BASE, "judge=reward_model", f"hydra.run.dir={run}"], tmp_path, env_extra=fake, timeout=300)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("po-bench: config error: judge=reward_model: planted config error")
    assert last.endswith(f"its folder {run} was removed")
    assert not run.exists()


def test_metrics_that_are_none_print_na(tmp_path, fake):
    r = run_cli([*BASE, "judge=none", f"hydra.run.dir={tmp_path}/run"], tmp_path, env_extra=fake, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "gold_reward=n/a (sft n/a) win_rate_vs_sft=n/a kl=1.50" in out
    assert "Logging error" not in out and "TypeError" not in out


# ---- the real pipeline (slow) -------------------------------------------------------------------


@pytest.mark.slow
def test_real_sweep_with_a_failing_job_exits_1(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli(
        [
            "-m",
            *SMALL,
            "threads=1",
            "loss=ipo",
            "loss.args.loss_type=[ipo],[no_such_loss]",
            f"cache_dir={tmp_path}/cache",
            f"hydra.sweep.dir={sweep}",
        ],
        ROOT,
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "2 jobs in" in r.stdout and "1 done" in r.stdout and "1 failed" in r.stdout, r.stdout[-3000:]
    assert "no_such_loss" in r.stdout and f"po-bench-table {sweep}" in r.stdout


@pytest.mark.slow
def test_readme_real_data_judge_none_prints_no_traceback(tiny_chat_model, tmp_path):
    hh = SHARED / "data" / "hh_rlhf" / "harmless-base_test.jsonl.gz"
    if not hh.exists():
        pytest.skip(f"{hh} is absent (../shared/data is provided to developers and CI only)")
    # the README's command, with a one-layer model in place of SmolLM2 and tiny sizes
    r = run_cli(
        [
            "model.kind=hub",
            f"model.name_or_path={tiny_chat_model}",
            "model.name=tiny-chat",
            "dataset=hh_rlhf",
            f"dataset.path={hh}",
            "dataset.eval_split=null",
            "dataset.max_rows=24",
            "dataset.n_eval=4",
            "judge=none",
            "loss=dpo",
            "train.max_steps=1",
            "train.batch_size=4",
            "train.max_length=192",
            "generation.max_new_tokens=4",
            "generation.progress=false",
            "train.progress=false",
            "tracking=none",
            "threads=1",
            f"cache_dir={tmp_path}/cache",
            f"hydra.run.dir={tmp_path}/run",
        ],
        ROOT,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "gold_reward=n/a" in out
    assert "Traceback" not in out and "Logging error" not in out


def test_help_describes_each_group_and_the_recipes(tmp_path):
    r = run_cli(["--help"], tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for line in (
        "== Recipes ==",
        "po-bench -m loss=dpo,ipo,simpo seed=0,1",
        "po-bench-table multirun/",
        "  loss         the preference method",
        "  judge        how generations are scored",
        "loss: adpo, adpo_list, alphapo",
    ):
        assert line in r.stdout, line

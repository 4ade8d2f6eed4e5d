"""Live tracking: inside ``live_run_env`` TRL streams per-step training metrics into the run's
offline wandb files while the run is still going (before ``log_run`` and before the wandb run is
finished); ``log_run`` then appends to that same run: one offline folder, one run id.  A real po-bench run's
offline files, polled while its process trains, already hold a training point."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from types import SimpleNamespace as NS

import pytest

from po_bench.results.tracking import live_run_env, log_run, read_offline_run


def _history_so_far(out_dir):
    """The offline run's history as the files hold it now (the last record may be half written)."""
    found = sorted(out_dir.glob("wandb/offline-run-*"))
    if not found:
        return []
    try:
        return read_offline_run(found[0])["history"]
    except Exception:  # noqa: BLE001 - a record being written
        return []


def _read_when_written(folder, ready, timeout=20.0):
    """The offline run once ``ready(run)`` (wandb's service writes the file a moment after finish())."""
    deadline = time.time() + timeout
    while True:
        try:
            rd = read_offline_run(folder)
            if ready(rd) or time.time() > deadline:
                return rd
        except Exception:  # noqa: BLE001 - a record being written
            if time.time() > deadline:
                raise
        time.sleep(0.3)


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_training_curves_stream_live_and_log_run_appends_to_the_same_run(tokenizer, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from po_bench.cli.app import CONF_DIR
    from po_bench.data import world
    from po_bench.training import models
    from po_bench.training.trl.args import TRAIN_FIELD_MAP
    from po_bench.training.trl.preference import train_preference

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for k in ("WANDB_DIR", "WANDB_MODE", "WANDB_RUN_ID", "WANDB_NAME", "WANDB_RUN_GROUP"):
        monkeypatch.delenv(k, raising=False)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["loss=dpo"])
    spec = world.WorldSpec(n_pref=24)
    prompts = world.make_prompts(spec, "pref")
    rng = __import__("numpy").random.default_rng(0)
    pairs = world.label_pairs(
        prompts,
        [[" " + world.demonstrate(spec, p, rng), " " + world.demonstrate(spec, p, rng)] for p in prompts],
        world.Annotator(),
        seed=0,
    )[:16]
    model = models.build_tiny_model(tokenizer, hidden_size=32, num_layers=1, intermediate_size=64)
    known = TRAIN_FIELD_MAP  # the training options passed on to TRL
    train = NS(
        **{
            **{k: v for k, v in cfg.train.items() if k in known},
            "max_steps": 4,
            "batch_size": 4,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
            "report_to": "wandb",  # the run option the pipeline passes while live_run_env gives a run id
        }
    )
    loss = NS(**{**cfg.loss, "args": dict(cfg.loss.args)})
    out = tmp_path / "run"
    out.mkdir()

    with live_run_env(cfg.tracking, out, "sweepgroup", "0_dpo_s0") as run_id:
        assert run_id and os.environ["WANDB_RUN_ID"] == run_id and os.environ["WANDB_DIR"] == str(out.absolute())
        res = train_preference(model, copy.deepcopy(model), tokenizer, pairs, loss, train, out / "trainer", 0)
    assert "WANDB_RUN_ID" not in os.environ and "WANDB_DIR" not in os.environ  # restored
    assert res["steps"] == 4

    # the run has not finished (no log_run yet), and the files already hold every training step
    deadline = time.time() + 30
    while time.time() < deadline:
        live = [h for h in _history_so_far(out) if "train/loss" in h]
        if len(live) >= 4:
            break
        time.sleep(0.5)
    assert len(live) == 4, _history_so_far(out)
    assert [h["train/global_step"] for h in live] == [1, 2, 3, 4]
    assert not (out / "run.json").exists()

    # after the run: the same wandb run (one folder, same id) gets the metrics, no second run
    where = log_run(
        cfg.tracking,
        out,
        "sweepgroup",
        "0_dpo_s0",
        {"loss": {"name": "dpo"}, "seed": 0},
        "done",
        {"gold_reward": 1.25, "seconds": {"total": 3.0}},
        res["history"],
        None,
    )
    folders = sorted(out.glob("wandb/offline-run-*"))
    assert len(folders) == 1 and str(folders[0]) == where and folders[0].name.endswith(run_id)
    rd = _read_when_written(folders[0], lambda rd: "status" in rd["summary"])
    assert rd["group"] == "sweepgroup" and rd["name"] == "0_dpo_s0"
    assert rd["summary"]["gold_reward"] == 1.25 and rd["summary"]["status"] == "done"
    assert rd["config"]["loss"] == {"name": "dpo"}
    assert len([h for h in rd["history"] if "train/loss" in h]) == 4  # not replayed a second time


def test_log_run_without_live_training_replays_history(tmp_path, monkeypatch):
    """A run whose policy came from the store (no training, no live run): history is logged by log_run."""
    from omegaconf import OmegaConf

    from po_bench.config import TrackingConfig

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    tcfg = OmegaConf.structured(TrackingConfig)
    hist = [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6}]
    where = log_run(tcfg, tmp_path, "g", "n", {"seed": 0}, "done", {"gold_reward": 0.5}, hist, None)
    rd = _read_when_written(where, lambda rd: any("train/loss" in h for h in rd["history"]))
    assert [h["train/loss"] for h in rd["history"] if "train/loss" in h] == [0.7, 0.6]


def test_live_run_env_is_a_no_op_when_tracking_is_off(tmp_path):
    with live_run_env(NS(backend="none", mode="auto"), tmp_path, "g", "n") as run_id:
        assert run_id is None and "WANDB_RUN_ID" not in os.environ
    assert not (tmp_path / "wandb").exists()


@pytest.mark.slow
def test_a_sweep_of_training_runs_streams_each_run_offline_without_a_key(tmp_path):
    """Several training runs in one process (the basic launcher): each opens its own offline run
    with per-step training metrics; no run asks for an API key (a settings singleton fixed by the
    first run must not make a later run online)."""
    from .conftest import SMALL, read_runs, run_cli

    args = [
        "-m",
        "loss=dpo,ipo",
        "seed=0",
        *[a for a in SMALL if a != "tracking=none"],
        "tracking=wandb",
        "train.max_steps=4",
        "train.logging_steps=1",
        f"cache_dir={tmp_path}/cache",
        f"hydra.sweep.dir={tmp_path}/s",
    ]
    r = run_cli(args, tmp_path, timeout=900)  # no WANDB_API_KEY here: offline
    assert r.returncode == 0, r.stderr[-3000:]
    runs = read_runs(tmp_path / "s")
    assert [x["status"] for x in runs] == ["done", "done"], [x.get("error") for x in runs]
    for run in runs:
        (folder,) = sorted(run["_dir"].glob("wandb/offline-run-*"))
        hist = _read_when_written(folder, lambda rd: any("train/loss" in h for h in rd["history"]))["history"]
        assert [h["train/global_step"] for h in hist if "train/loss" in h][:4] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_training_point_is_in_the_files_while_the_run_is_still_training(tmp_path):
    """A real po-bench run in its own process, tracking offline: the test polls the run's wandb files while the
    process runs, and a preference-training point (train/loss) is there before training ends (the policy is not
    yet in the store, the process still running, the step below train.max_steps)."""
    from .conftest import ROOT, SMALL

    run, cache, steps = tmp_path / "run", tmp_path / "cache", 60
    args = [a for a in SMALL if a != "tracking=none" and not a.startswith("threads=")]
    args += ["threads=1", "tracking=wandb", "loss=dpo", f"train.max_steps={steps}", "train.logging_steps=1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "PO_BENCH_CACHE"}
    env.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), WANDB_API_KEY="")
    with open(tmp_path / "log", "w") as log:  # a file, not a pipe: nothing blocks the run while it is polled
        proc = subprocess.Popen(
            [sys.executable, "-m", "po_bench", *args, f"cache_dir={cache}", f"hydra.run.dir={run}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        seen = None
        try:
            deadline = time.monotonic() + 600
            while seen is None and proc.poll() is None and time.monotonic() < deadline:
                live = [h for h in _history_so_far(run) if "train/loss" in h]
                if live:
                    published = sorted((cache / "v2" / "policy").glob("*/train_metrics.json"))
                    seen = (live[0].get("train/global_step", live[0].get("_step")), published, proc.poll() is None)
                time.sleep(0.2)
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = (tmp_path / "log").read_text()
    assert seen is not None, "no training point in the offline run's files before the run ended\n" + out[-3000:]
    step, published, running = seen
    assert running and published == [] and 1 <= step < steps, seen
    print(f"\nfirst training point read from the files at step {step} of {steps}, while the run trained")
    assert rc == 0, out[-3000:]
    # the finished run: every step once, in the same offline run
    (folder,) = sorted(run.glob("wandb/offline-run-*"))
    rd = _read_when_written(folder, lambda rd: "status" in rd["summary"])
    assert [h["train/global_step"] for h in rd["history"] if "train/loss" in h] == list(range(1, steps + 1))

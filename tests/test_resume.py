"""A run killed with SIGKILL mid-training resumes from its last checkpoint on relaunch and reaches
the same final metrics as an uninterrupted run (same seed, CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import ROOT, SMALL, run_cli

pytestmark = pytest.mark.slow
ARGS = [*SMALL, "train.epochs=6", "train.save_steps=4", "loss=dpo"]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    ref = run_cli([*ARGS, f"cache_dir={tmp_path}/ref_cache", f"hydra.run.dir={tmp_path}/ref"], ROOT)
    assert ref.returncode == 0, ref.stderr[-2000:]
    expected = json.loads((tmp_path / "ref" / "run.json").read_text())["metrics"]

    cache = tmp_path / "cache"
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "po_bench", *ARGS, f"cache_dir={cache}", f"hydra.run.dir={tmp_path}/killed"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = sorted(cache.glob("v2/policy/.*.work/trainer/checkpoint-*"))
        if any(p.name == "checkpoint-8" for p in found):
            ckpt = found
            break
        time.sleep(0.2)
    assert ckpt, "the preference stage never wrote checkpoint-8"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (
        not (tmp_path / "killed" / "run.json").exists()
        or json.loads((tmp_path / "killed" / "run.json").read_text())["status"] != "done"
    )

    again = run_cli([*ARGS, f"cache_dir={cache}", f"hydra.run.dir={tmp_path}/resumed"], ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stdout + again.stderr
    got = json.loads((tmp_path / "resumed" / "run.json").read_text())["metrics"]
    for k in ("gold_reward", "win_rate_vs_sft", "kl_to_ref", "implicit_reward_accuracy", "train_loss_final"):
        assert got[k] == pytest.approx(expected[k], abs=1e-6), k

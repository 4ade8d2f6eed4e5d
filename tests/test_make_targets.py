"""Make targets that never clobber: an overridden run (SWEEP_ARGS) or a named one (NAME=) writes
results/<its name>.* and sweeps into results/.runs/<its name>; the committed results/<name>.* and an
earlier sweep folder are left alone unless FRESH=1."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import ROOT
from .helpers import FAKE_PIPELINE

TARGETS = {
    "demo": "demo",
    "table-noise": "noise",
    "table-survey": "survey",
    "table-simpo": "simpo",
    "table-hitchhiker": "hitchhiker",
    "figure-frontier": "frontier",
    "table-beyond-pairs": "beyond-pairs",
}


def _dry(*args: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # VENV: an existing stamp newer than pyproject.toml, so the dry run shows only the target's commands
    r = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _install_stamp_fresh() -> None:
    stamps = sorted((ROOT / ".venv").glob(".po-bench-installed-*"))  # one per EXTRA (Makefile)
    stamp = stamps[0] if stamps else ROOT / ".venv" / ".po-bench-installed-cpu"
    if not stamp.exists() or stamp.stat().st_mtime < max(
        (ROOT / f).stat().st_mtime for f in ("pyproject.toml", "requirements-cpu.lock")
    ):
        pytest.skip("the venv's install stamp is older than pyproject.toml: make would reinstall")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_override_never_touches_the_committed_table(target):
    _install_stamp_fresh()
    name = TARGETS[target]
    out = _dry(target, "SWEEP_ARGS=loss=dpo seed=0")
    assert f"results/{name}." not in out and f"results/.runs/{name} " not in out, out
    assert f"--name {name}-custom-" in out and f"hydra.sweep.dir=results/.runs/{name}-custom-" in out
    assert "rm -rf" not in out
    # a different override gets a different name; the same one, the same name (it resumes)
    other = _dry(target, "SWEEP_ARGS=loss=ipo seed=0")
    assert other != out and _dry(target, "SWEEP_ARGS=loss=dpo seed=0") == out
    # NAME= chooses it; FRESH=1 is the only way to delete the sweep folder first
    named = _dry(target, "NAME=mine", "SWEEP_ARGS=loss=dpo")
    assert "--name mine " in named and "hydra.sweep.dir=results/.runs/mine " in named and "rm -rf" not in named
    assert "rm -rf results/.runs/mine\n" in _dry(target, "NAME=mine", "FRESH=1")
    # the plain target is the committed table, and keeps its sweep folder (done runs are skipped)
    plain = _dry(target)
    assert f"--name {name} " in plain and f"hydra.sweep.dir=results/.runs/{name} " in plain and "rm -rf" not in plain
    assert _dry(target, "RESUME=1") == plain


def test_paper_scale_name():
    _install_stamp_fresh()
    out = _dry("table-simpo", "SCALE=paper", "SWEEP_ARGS=hydra/launcher=slurm")
    assert "--name simpo-paper-custom-" in out and "results/simpo-paper." not in out


@pytest.mark.slow  # a real make run of the app, end to end (planted pipeline)
def test_make_demo_with_an_override_runs_and_keeps_the_committed_table(tmp_path):
    """A real make run (the planted pipeline of test_sweep_report: seconds, not minutes): the table
    lands under the override's own name, a failed job makes make fail after the table is written, a
    rerun resumes the kept folder, FRESH=1 starts over."""
    _install_stamp_fresh()
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    for f in ("Makefile", "pyproject.toml", "requirements-cpu.lock"):
        (work / f).symlink_to(ROOT / f)
    committed = work / "results" / "demo.md"
    committed.write_text("the committed demo table\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_PIPELINE)
    env = dict(os.environ, PO_BENCH_FAKE_PIPELINE="1", PYTHONPATH=f"{site}{os.pathsep}{ROOT}", HF_HUB_OFFLINE="1")
    args = ["make", "demo", f"VENV={ROOT / '.venv'}", "SWEEP_ARGS=loss=dpo seed=0,13 tracking=none threads=1"]

    r = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0, r.stdout[-3000:]  # seed 13 fails: make fails, after writing the table
    tables = sorted((work / "results").glob("demo-custom-*.md"))
    assert len(tables) == 1 and "Failed runs (1)" in tables[0].read_text()
    assert committed.read_text() == "the committed demo table\n"
    assert "po-bench sweep: 2 jobs" in r.stdout and "1 done" in r.stdout
    sweep = work / "results" / ".runs" / tables[0].stem
    assert len(list(sweep.glob("*/run.json"))) == 2

    r2 = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert "1 skipped (already done by an earlier launch)" in r2.stdout, r2.stdout[-3000:]
    marker = sweep / "kept"
    marker.write_text("")
    subprocess.run(args + ["FRESH=1"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert not marker.exists() and len(list(sweep.glob("*/run.json"))) == 2

"""The end-of-sweep report: one summary of what a multirun did, and its exit code.

:class:`SweepReport` is a Hydra callback (``hydra.callbacks.sweep_report`` in conf/config.yaml).
At the end of every sweep it reads each job's ``run.json`` and prints how many jobs were done (and
how many of those only reused the artifact store), failed, or were skipped because an earlier
launch of the same sweep folder had done them; the wall time; where the run folders are; and the
``po-bench-table`` command to run next.  ``on_multirun_end`` runs in the submitting process with
every launcher (basic, joblib, submitit), after all jobs returned, so the files are the common
ground: the report reads them rather than the launcher's return values.

Which folders belong to this launch: at the start the callback writes a fresh launch id into
``<sweep dir>/.po_bench_launch``; every job (po_bench/cli/app.py, in whatever process or node the
launcher put it) writes ``<job>/.po_bench_job.json`` with that id and whether it ran or was skipped
(already done by an earlier launch).  No clock is compared, so a relaunch a second after the first
launch, or on nodes whose clocks differ, is counted right.  A job that failed its config validation
leaves no folder (po_bench/cli/app.py removes it) and appends one line, with the launch id, to
``<sweep dir>/config_errors.jsonl`` instead, which the report counts as failed.  Folders without a
marker (a job killed before it started, sweeps from older versions) fall back to file times.

``po-bench`` (po_bench.cli.app.cli) exits 1 when :data:`LAST` says a job failed.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from po_bench.store import atomic_write_json

CONFIG_ERRORS = "config_errors.jsonl"
LAUNCH_FILE = ".po_bench_launch"
JOB_MARKER = ".po_bench_job.json"
SUMMARY = "sweep_summary.json"
SLACK_S = 2.0  # file times vs the sweep's start: filesystems round mtimes; submitit nodes' clocks differ a bit

LAST: dict | None = None  # the last report of this process (po_bench.cli.app.cli reads it for the exit code)


def start_launch(sweep_dir: str | Path) -> str:
    """A fresh id for this launch of the sweep, in ``<sweep dir>/.po_bench_launch`` for its jobs."""
    launch = uuid.uuid4().hex
    path = Path(sweep_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / LAUNCH_FILE).write_text(launch + "\n")
    return launch


def current_launch(sweep_dir: str | Path) -> str | None:
    try:
        return (Path(sweep_dir) / LAUNCH_FILE).read_text().strip() or None
    except OSError:
        return None


def mark_job(sweep_dir: str | Path, out_dir: str | Path, skipped: bool) -> None:
    """A job of the current launch says so (and whether it only found its earlier result)."""
    launch = current_launch(sweep_dir)
    if launch is None:  # no callback (hydra.callbacks overridden): the report falls back to file times
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / JOB_MARKER).write_text(json.dumps({"launch": launch, "skipped": skipped}) + "\n")


def _marker(job_dir: Path) -> dict | None:
    try:
        return json.loads((job_dir / JOB_MARKER).read_text())
    except (OSError, ValueError):
        return None


def record_config_error(sweep_dir: str | Path, job: str, error: str) -> None:
    """One line per job that failed config validation (its folder is removed)."""
    line = json.dumps({"job": job, "error": error, "time": time.time(), "launch": current_launch(sweep_dir)}) + "\n"
    path = Path(sweep_dir)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / CONFIG_ERRORS, "a") as f:  # O_APPEND: concurrent jobs' lines do not interleave
        f.write(line)


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"status": "failed", "error": f"unreadable run.json: {e}"}


def _natural(name: str) -> list:  # job folders "0_...", "1_...", "10_..." in job order
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def collect(sweep_dir: str | Path, since: float, launch: str | None = None) -> dict[str, Any]:
    """What this launch of the sweep did: the jobs marked with ``launch`` (see the module text); with
    no launch id, the jobs started at or after ``since`` (a Unix time)."""
    sweep_dir = Path(sweep_dir)
    t0 = since - SLACK_S
    rep: dict[str, Any] = {
        "sweep_dir": str(sweep_dir),
        "done": [],
        "reused": [],
        "failed": [],
        "skipped": [],
        "config_errors": [],
    }
    marked: dict[Path, bool] = {}  # job folder -> skipped, for this launch's marked jobs
    if launch is not None:
        for p in sweep_dir.rglob(JOB_MARKER):
            m = _marker(p.parent)
            if m is not None and m.get("launch") == launch:
                marked[p.parent] = bool(m.get("skipped"))
    # folders of this launch without a marker: jobs killed before they started (Hydra wrote .hydra/)
    started = {
        p.parent.parent
        for p in sweep_dir.rglob(".hydra/config.yaml")
        if p.stat().st_mtime >= t0 and (launch is None or _marker(p.parent.parent) is None)
    }
    job_dirs = sorted(set(marked) | started)
    if not job_dirs:  # hydra.output_subdir=null: no .hydra folders; every run.json written since the start
        job_dirs = sorted({p.parent for p in sweep_dir.rglob("run.json") if p.stat().st_mtime >= t0})
    rep["wandb_offline"] = sum(len(list(d.glob("wandb/offline-run-*"))) for d in job_dirs)
    for d in job_dirs:
        path = d / "run.json"
        name = str(d.relative_to(sweep_dir))
        if not path.is_file():
            rep["failed"].append(
                {"job": name, "error": "no run.json (the job was killed or crashed outside Python; see its log)"}
            )
            continue
        rec = _load(path)
        if rec.get("status") == "done":
            skipped = marked[d] if d in marked else path.stat().st_mtime < t0
            if skipped:
                rep["skipped"].append({"job": name})
                continue
            arts = (rec.get("metrics") or {}).get("artifacts") or {}
            item = {"job": name, "hits": len(arts.get("hits") or []), "built": len(arts.get("built") or [])}
            rep["done"].append(item)
            if item["hits"] and not item["built"]:
                rep["reused"].append(item)
        else:
            rep["failed"].append({"job": name, "error": rec.get("error") or "no error message"})
    errors = sweep_dir / CONFIG_ERRORS
    if errors.is_file():
        for line in errors.read_text().splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            ours = e.get("launch") == launch if launch is not None and e.get("launch") else e.get("time", 0) >= t0
            if ours:
                rep["config_errors"].append(e)
                rep["failed"].append({"job": e.get("job", "?"), "error": f"config error: {e.get('error')}"})
    for k in ("done", "failed", "skipped"):
        rep[k].sort(key=lambda item: _natural(item["job"]))
    rep["n_jobs"] = len(rep["done"]) + len(rep["failed"]) + len(rep["skipped"])
    return rep


def format_report(rep: dict, wall_seconds: float) -> str:
    sweep = rep["sweep_dir"]
    n_done, n_failed, n_skipped, n_reused = (len(rep[k]) for k in ("done", "failed", "skipped", "reused"))
    parts = [
        f"{n_done} done" + (f" ({n_reused} entirely reused from the artifact store)" if n_reused else ""),
        f"{n_failed} failed" + (f" ({len(rep['config_errors'])} config errors)" if rep["config_errors"] else ""),
        f"{n_skipped} skipped (already done by an earlier launch)",
    ]
    lines = [f"po-bench sweep: {rep['n_jobs']} jobs in {wall_seconds:.0f} s wall time: " + ", ".join(parts)]
    for f in rep["failed"][:20]:
        err = " ".join(str(f["error"]).split())
        lines.append(f"  failed  {f['job']}: {err[:300]}")
    if n_failed > 20:
        lines.append(f"  ... and {n_failed - 20} more failed (see their run.json)")
    lines.append(f"  runs:   {sweep}/<job>/run.json (and .hydra/, the job log, wandb/ offline runs)")
    if n_done + n_skipped:
        lines.append(f"  next:   po-bench-table {sweep}    (writes results.csv and results.md into that folder)")
    else:
        lines.append("  next:   no run finished: nothing to tabulate")
    if rep.get("wandb_offline"):
        lines.append(
            f"  wandb:  {rep['wandb_offline']} offline runs; upload them all: wandb sync {sweep}/*/wandb/offline-run-*"
        )
    if n_failed:
        lines.append("  exit code 1: a job failed (po-bench-table still tabulates the others and lists the failures)")
    return "\n".join(lines)


class SweepReport(Callback):
    """Hydra callback: prints the sweep's summary and keeps it in :data:`LAST`."""

    def __init__(self, write_json: bool = True) -> None:
        self.write_json = write_json
        self.start: float | None = None
        self.launch: str | None = None

    def on_multirun_start(self, config, **kwargs: Any) -> None:
        global LAST
        LAST = None
        self.start = time.time()
        try:
            self.launch = start_launch(str(config.hydra.sweep.dir))
        except OSError as e:  # the report falls back to file times
            print(f"po-bench sweep: could not write the launch id into {config.hydra.sweep.dir}: {e}", flush=True)
            self.launch = None

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        global LAST
        start = self.start if self.start is not None else time.time()
        wall = time.time() - start
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            rep = collect(sweep_dir, start, self.launch)
        except OSError as e:  # never let the report fail a finished sweep
            print(f"po-bench sweep: could not read {sweep_dir} for the summary: {e}", flush=True)
            return
        rep["wall_seconds"] = round(wall, 1)
        LAST = rep
        print("\n" + format_report(rep, wall), flush=True)
        if self.write_json and sweep_dir.is_dir():
            atomic_write_json(sweep_dir / SUMMARY, rep)

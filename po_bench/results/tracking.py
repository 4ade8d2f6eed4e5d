"""Experiment tracking: every run logs its resolved config, training curves, eval metrics and a
table of sample generations to Weights & Biases; a sweep is a wandb group; ``po-bench-table
--wandb`` logs the sweep's results table as a wandb Table in that group.

Live curves: :func:`live_run_env` wraps training.  It sets the run's wandb environment (folder,
mode, project, group, name and a fresh run id: wandb's own ``WANDB_*`` variables, which TRL's wandb
callback reads, in this process or on rank 0 of a process group) and yields the run id; the pipeline
then trains with the run option ``report_to="wandb"``, so TRL's own wandb callback streams the loss,
rewards and learning rate on rank 0 while the run trains.  :func:`log_run`, after the run, appends the metrics, stage timings, data
statistics and samples to that same run (same id; one ``offline-run-*`` folder) instead of starting
a second one; a run whose policy came from the store (no training) gets its history replayed there.

With no ``WANDB_API_KEY`` the mode is offline: files under the run's output folder
(``<run>/wandb/offline-run-*``), ready for ``wandb sync`` (a whole sweep:
``wandb sync <sweep dir>/*/wandb/offline-run-*``).  ``tracking=none`` turns it off.
:func:`read_offline_run` reads such a run back (tests, and users without an account).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import struct
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("po_bench")

SECRET_MARKERS = ("api_key", "token", "secret", "password")


def _mode(tcfg) -> str:
    if tcfg.mode != "auto":
        return tcfg.mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def scrub(obj: Any) -> Any:
    """Drop values of keys that look like secrets (names such as api_key_env are kept: they hold
    an environment variable's name, not a key)."""
    if isinstance(obj, dict):
        return {
            k: ("<redacted>" if any(m in k.lower() for m in SECRET_MARKERS) and not k.endswith("_env") else scrub(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


RUN_ID_FILE = "po_bench_run_id"  # <run>/wandb/po_bench_run_id: the wandb run id live_run_env gave the run


def _off(tcfg) -> bool:
    return tcfg is None or tcfg.backend == "none" or _mode(tcfg) == "disabled"


def group_and_name(cfg, out_dir: Path) -> tuple[str, str]:
    """The run's wandb group (the sweep folder, or the run folder) and name, as po-bench names them."""
    from hydra.core.hydra_config import HydraConfig  # lazy: hydra, omegaconf (~0.1 s)
    from hydra.types import RunMode  # lazy: hydra, omegaconf (~0.1 s)

    seed, loss = cfg.seed, cfg.loss.name
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        sweep = Path(hc.sweep.dir)
        return f"{sweep.parent.name}/{sweep.name}", f"{hc.job.num}_{loss}_s{seed}"
    return Path(out_dir).name, f"{loss}_s{seed}"


@contextmanager
def live_run_env(tcfg, out_dir: str | Path, group: str, name: str, init_here: bool = True):
    """Wrap a run's training in this: TRL then streams its curves to the run's wandb run while it
    trains (offline files under ``<out_dir>/wandb/`` without ``WANDB_API_KEY``), and :func:`log_run`
    afterwards appends to the same run.  Yields the run id, or None when there are no live curves
    (tracking off, or the run could not be opened): train with ``report_to="wandb"`` only under a run
    id.  The environment is restored on exit; the wandb run stays open for :func:`log_run` to finish.
    ``init_here=False`` (training in a process group): the run is opened by rank 0 of the group,
    from the environment."""
    if _off(tcfg):
        yield None
        return

    out_dir = Path(out_dir).absolute()
    wb = sys.modules.get("wandb")
    if wb is not None and wb.run is not None:  # an earlier run of this process left its run open
        wb.run.finish()
    run_id = uuid.uuid4().hex[:12]
    (out_dir / "wandb").mkdir(parents=True, exist_ok=True)
    (out_dir / "wandb" / RUN_ID_FILE).write_text(run_id + "\n")
    env = {  # wandb's own settings, read by the wandb.init of TRL's callback (rank 0 of a process group too)
        "WANDB_DIR": str(out_dir),
        "WANDB_MODE": _mode(tcfg),
        "WANDB_PROJECT": tcfg.project,
        "WANDB_RUN_GROUP": tcfg.group or group,
        "WANDB_NAME": name,
        "WANDB_RUN_ID": run_id,
        "WANDB_RESUME": "allow",
        "WANDB_SILENT": "true",
        "WANDB_LOG_MODEL": "false",
        "WANDB_WATCH": "false",
    }
    if tcfg.entity:
        env["WANDB_ENTITY"] = tcfg.entity
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    live: str | None = run_id
    try:
        if init_here:  # the run is opened here with explicit settings; TRL's wandb callback reuses it
            # (left to the callback, wandb.init would take its mode from a settings singleton that an
            # earlier run of this process fixed, e.g. online without a key under a sweep's basic launcher)
            try:
                import wandb  # lazy: numpy, wandb (~0.4 s)

                wandb.init(
                    project=tcfg.project,
                    entity=tcfg.entity,
                    group=tcfg.group or group,
                    name=name,
                    id=run_id,
                    resume="allow",
                    mode=_mode(tcfg),
                    dir=str(out_dir),
                    reinit="finish_previous",
                )
            except Exception as e:  # noqa: BLE001  (tracking never fails a run: no live curves, said once)
                log.warning("wandb: live training curves are off for this run (%s: %s)", type(e).__name__, e)
                live = None
        yield live
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _live_run_id(out_dir: Path) -> str | None:
    try:
        return (Path(out_dir) / "wandb" / RUN_ID_FILE).read_text().strip() or None
    except OSError:
        return None


def log_run(
    tcfg,
    out_dir: Path,
    group: str,
    name: str,
    config: dict,
    status: str,
    metrics: dict,
    history: list[dict],
    samples_path: Path | None,
    error: str | None = None,
) -> str | None:
    """Log one finished (or failed) run; returns the wandb run directory, or None when off.  When
    :func:`live_run_env` gave the run an id, this appends to that run: the one still open in this
    process (its curves already streamed), else resumed by id."""
    if tcfg is None or tcfg.backend == "none":
        return None
    import wandb  # lazy: numpy, wandb (~0.4 s)

    os.environ.setdefault("WANDB_SILENT", "true")
    tags = [str(config.get("loss", {}).get("name", "")), f"seed{config.get('seed')}"]
    run_id = _live_run_id(out_dir)
    live = wandb.run if (run_id and wandb.run is not None and wandb.run.id == run_id) else None
    if live is not None:
        run = live
        run.config.update(scrub(config), allow_val_change=True)
        run.tags = tuple(dict.fromkeys([*run.tags, *[t for t in tags if t]]))
    else:
        run = wandb.init(
            project=tcfg.project,
            entity=tcfg.entity,
            group=tcfg.group or group,
            name=name,
            dir=str(out_dir),
            mode=_mode(tcfg),
            config=scrub(config),
            tags=[t for t in tags if t],
            reinit="finish_previous",
            **({"id": run_id, "resume": "allow"} if run_id else {}),
        )
    streamed = live is not None and run.summary.get("train/global_step") is not None
    try:
        for h in [] if streamed else history:  # streamed live: TRL logged every step already
            step = int(h.get("step", 0))
            run.log({f"train/{k}": v for k, v in h.items() if k != "step"}, step=step)
        flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
        flat.update({f"seconds/{k}": v for k, v in metrics.get("seconds", {}).items()})
        flat.update({f"data/{k}": v for k, v in metrics.get("data", {}).items() if isinstance(v, (int, float))})
        for k, v in flat.items():
            run.summary[k] = v
        run.summary["status"] = status
        if error:
            run.summary["error"] = error
        if samples_path is not None and samples_path.exists():
            rows = [json.loads(l) for l in samples_path.read_text().splitlines() if l.strip()][: tcfg.n_samples]
            if rows:
                cols = list(rows[0].keys())
                run.log({"samples": wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])})
        return str(Path(run.dir).parent)
    finally:
        run.finish()


def log_table(
    csv_path: Path, group: str, project: str = "po-bench", mode: str = "auto", out_dir: Path | None = None
) -> str:
    """Log a results CSV as a wandb Table in the sweep's group."""

    import wandb  # lazy: numpy, wandb (~0.4 s)

    os.environ.setdefault("WANDB_SILENT", "true")
    rows = list(csv.reader(csv_path.read_text().splitlines()))
    m = mode if mode != "auto" else ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    run = wandb.init(
        project=project,
        group=group,
        name="results",
        job_type="table",
        mode=m,
        dir=str(out_dir or csv_path.parent),
        reinit="finish_previous",
    )
    try:
        run.log({"results": wandb.Table(columns=rows[0], data=rows[1:])})
        return str(Path(run.dir).parent)
    finally:
        run.finish()


# --- reading offline runs back -------------------------------------------------------------

_BLOCK = 32768


def _records(path: Path):
    """Records of a .wandb file (a LevelDB-style log: 7-byte file header, 32 KiB blocks, 7-byte
    record headers crc32c/length/type with FULL=1, FIRST=2, MIDDLE=3, LAST=4)."""
    from wandb.proto import wandb_internal_pb2 as pb  # lazy: numpy, wandb (~0.4 s)

    b = path.read_bytes()
    pos, buf = 7, b""
    while pos + 7 <= len(b):
        if _BLOCK - pos % _BLOCK < 7:
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, ln, typ = struct.unpack("<IHB", b[pos : pos + 7])
        pos += 7
        if typ == 0 and ln == 0:
            break
        buf += b[pos : pos + ln]
        pos += ln
        if typ in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def read_offline_run(run_dir: str | Path) -> dict:
    """{group, name, config, summary, history, tables} of an offline wandb run folder."""
    run_dir = Path(run_dir)
    f = next(run_dir.glob("run-*.wandb"))
    out: dict = {"group": None, "name": None, "config": {}, "summary": {}, "history": [], "tables": {}}
    for rec in _records(f):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["name"] = rec.run.run_group, rec.run.display_name
            for item in rec.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                if item.key:
                    out["summary"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append(
                {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item}
            )
    for t in run_dir.glob("files/media/table/*.table.json"):
        out["tables"][t.name.split("_")[0]] = json.loads(t.read_text())
    out["config"] = {
        k: (v.get("value") if isinstance(v, dict) and "value" in v else v) for k, v in out["config"].items()
    }
    return out


def log_report(
    paths: dict[str, Path], group: str, project: str = "po-bench", mode: str = "auto", out_dir: Path | None = None
) -> str:
    """Log a report's tables (CSV files: ``csv``, ``pairs``, ``matrix``) as wandb Tables, its figures
    (``fig_*`` PNGs) as images and the page (``html``) as wandb Html, in the sweep's group."""

    import wandb  # lazy: numpy, wandb (~0.4 s)

    os.environ.setdefault("WANDB_SILENT", "true")
    m = mode if mode != "auto" else ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    run = wandb.init(
        project=project,
        group=group,
        name="report",
        job_type="report",
        mode=m,
        dir=str(out_dir or Path(paths["html"]).parent),
        reinit="finish_previous",
    )
    try:
        logged: dict[str, Any] = {}
        for k in ("csv", "pairs", "matrix"):
            if k in paths and Path(paths[k]).is_file():
                rows = list(csv.reader(Path(paths[k]).read_text().splitlines()))
                if rows:
                    logged["results" if k == "csv" else k] = wandb.Table(columns=rows[0], data=rows[1:])
        for k, p in paths.items():
            if k.startswith("fig_") and Path(p).is_file():
                logged[k[4:]] = wandb.Image(str(p))
        if "html" in paths:
            logged["report"] = wandb.Html(Path(paths["html"]).read_text(), inject=False)
        run.log(logged)
        return str(Path(run.dir).parent)
    finally:
        run.finish()

"""Experiment tracking: every run logs its resolved config, training curves, eval metrics and a
table of sample generations to Weights & Biases; a sweep is a wandb group; ``po-bench-table
--wandb`` logs the sweep's results table as a wandb Table in that group.

With no ``WANDB_API_KEY`` the mode is offline: files under the run's output folder
(``<run>/wandb/offline-run-*``), ready for ``wandb sync``.  ``tracking=none`` turns it off.
:func:`read_offline_run` reads such a run back (tests, and users without an account).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

SECRET_MARKERS = ("api_key", "token", "secret", "password")


def _mode(tcfg) -> str:
    if tcfg.mode != "auto":
        return tcfg.mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def scrub(obj: Any) -> Any:
    """Drop values of keys that look like secrets (names such as api_key_env are kept: they hold
    an environment variable's name, not a key)."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if any(m in k.lower() for m in SECRET_MARKERS) and not k.endswith("_env")
                    else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def log_run(tcfg, out_dir: Path, group: str, name: str, config: dict, status: str, metrics: dict,
            history: list[dict], samples_path: Path | None, error: str | None = None) -> str | None:
    """Log one finished (or failed) run; returns the wandb run directory, or None when off."""
    if tcfg is None or tcfg.backend == "none":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    tags = [str(config.get("loss", {}).get("name", "")), f"seed{config.get('seed')}"]
    run = wandb.init(project=tcfg.project, entity=tcfg.entity, group=tcfg.group or group, name=name,
                     dir=str(out_dir), mode=_mode(tcfg), config=scrub(config), tags=[t for t in tags if t],
                     reinit="finish_previous")
    try:
        for h in history:
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


def log_table(csv_path: Path, group: str, project: str = "po-bench", mode: str = "auto",
              out_dir: Path | None = None) -> str:
    """Log a results CSV as a wandb Table in the sweep's group."""
    import csv

    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    rows = list(csv.reader(csv_path.read_text().splitlines()))
    m = mode if mode != "auto" else ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    run = wandb.init(project=project, group=group, name="results", job_type="table", mode=m,
                     dir=str(out_dir or csv_path.parent), reinit="finish_previous")
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
    from wandb.proto import wandb_internal_pb2 as pb

    b = path.read_bytes()
    pos, buf = 7, b""
    while pos + 7 <= len(b):
        if _BLOCK - pos % _BLOCK < 7:
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, ln, typ = struct.unpack("<IHB", b[pos:pos + 7])
        pos += 7
        if typ == 0 and ln == 0:
            break
        buf += b[pos:pos + ln]
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
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    for t in run_dir.glob("files/media/table/*.table.json"):
        out["tables"][t.name.split("_")[0]] = json.loads(t.read_text())
    out["config"] = {k: (v.get("value") if isinstance(v, dict) and "value" in v else v)
                     for k, v in out["config"].items()}
    return out

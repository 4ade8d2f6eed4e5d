"""What every benchmark shares: A/B runs alternated on one machine, min/median/max, and a Markdown report
under results/bench/ with the hardware and versions (po_bench.results.record's, as run.json has them).

A benchmark is a module of this folder with ``NAME``, ``TITLE`` and ``main(args) -> Report``; ``run.py``
runs them (``make bench``, ``make bench BENCH=judging,process``).  Numbers, not assertions: each report
states its targets and whether the measurement meets them, and says what else ran on the machine."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(os.environ.get("PO_BENCH_BENCH_OUT") or ROOT / "results" / "bench")  # a test writes elsewhere
PY = sys.executable


@dataclass
class Target:
    what: str
    measured: float | None
    goal: str  # e.g. "<= 0.30"
    met: bool | None  # None: not measured here (say why in the notes)


@dataclass
class Report:
    name: str
    title: str
    command: str
    table: list[dict]  # rows: one per case/metric, values already formatted or numbers
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


def spread(values: list[float], digits: int = 2) -> str:
    """min / median / max of repeated measurements (one value: just it)."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f} / {max(values):.{digits}f}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def alternate(cases: dict, repeats: int) -> dict[str, list]:
    """Run each case ``repeats`` times, alternating (A B, B A, A B, ...) so that a drift in the machine's
    load falls on both sides; returns each case's results in order.  A case is a callable(repeat) -> value."""
    names = list(cases)
    out: dict[str, list] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else reversed(names):
            out[n].append(cases[n](r))
    return out


def env(**extra) -> dict:
    e = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def timed_run(cmd: list[str], check: bool = True, **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one process, start to exit."""
    kw.setdefault("env", env())
    kw.setdefault("cwd", ROOT)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {r.returncode}:\n{r.stderr[-3000:]}")
    return dt, r


def po_bench(args: list[str], check: bool = True, **kw) -> tuple[float, subprocess.CompletedProcess]:
    """One po-bench CLI process (the app as users start it)."""
    return timed_run([PY, "-m", "po_bench", *args], check=check, **kw)


# Packages whose import a light path (--help, a config error, a fully cached rerun) should not pay for
HEAVY = (
    "torch",
    "transformers",
    "trl",
    "vllm",
    "datasets",
    "peft",
    "accelerate",
    "sklearn",
    "scipy",
    "pandas",
    "matplotlib",
    "wandb",
    "tokenizers",
)


def heavy_imports(importtime_log: str) -> dict[str, float]:
    """The heavy packages a process imported and the seconds each took (its first import, children included),
    from its ``python -X importtime`` log (stderr)."""
    out: dict[str, float] = {}
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line.split("|")
        name = name.strip()
        if name in HEAVY and name not in out:
            out[name] = int(cumulative) / 1e6
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def imports_of(args: list[str], **kw) -> dict[str, float]:
    """What one po-bench CLI process with ``args`` imports of :data:`HEAVY` (run once, under -X importtime)."""
    _, r = timed_run([PY, "-X", "importtime", "-m", "po_bench", *args], check=False, **kw)
    return heavy_imports(r.stderr)


def fmt_imports(imports: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in imports.items()) or "none"


def run_records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(folder).rglob("run.json"))]


def machine_load() -> str:
    """The load average when the report is written: other work on the machine skews every number."""
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs when written"
    except OSError:
        return "load average unknown"


def write(report: Report) -> Path:
    from po_bench.results.record import hardware, package_versions

    OUT.mkdir(parents=True, exist_ok=True)
    hw, versions = hardware(), package_versions()
    cols = list(dict.fromkeys(k for row in report.table for k in row))
    lines = [f"# {report.title}", "", f"`{report.command}`", ""]
    if cols:
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(row.get(c, "")) for c in cols) + " |" for row in report.table]
        lines.append("")
    if report.targets:
        lines += ["| target | measured | goal | met |", "|---|---|---|---|"]
        for t in report.targets:
            met = "n/a" if t.met is None else ("yes" if t.met else "**no**")
            val = "n/a" if t.measured is None else f"{t.measured:.3g}"
            lines.append(f"| {t.what} | {val} | {t.goal} | {met} |")
        lines.append("")
    lines += [f"- {n}" for n in report.notes]
    gpus = ", ".join(hw.get("gpus", [])) or "no GPU"
    lines += [
        "",
        f"Hardware: {hw.get('cpu', '?')}, {hw.get('cpus')} CPUs, {hw.get('memory_gib')} GiB; {gpus}; "
        f"{machine_load()}.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".  ",
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `scripts/bench/{report.name}.py`.",
        "",
    ]
    path = OUT / f"{report.name}.md"
    path.write_text("\n".join(lines))
    (OUT / f"{report.name}.json").write_text(
        json.dumps(
            {"targets": [t.__dict__ for t in report.targets], "table": report.table, "raw": report.raw},
            indent=1,
            default=str,
        )
        + "\n"
    )
    return path

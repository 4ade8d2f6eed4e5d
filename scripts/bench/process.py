"""Process overhead: a fully cached default run end to end (process start to exit) against the time its
pipeline records (run.json ``metrics.seconds.total``), with ``tracking=none`` and with wandb offline;
``po-bench --help``; a config error Hydra finds while composing (an unknown option) and one po-bench's
validation finds (a value out of range).  The store is built once first (not timed); every timed run is a
fresh run folder whose artifacts all come from the store.  Each case is run once more under
``python -X importtime`` to list the heavy packages (torch, TRL, transformers, wandb, ...) it imports."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import Report, Target, alternate, fmt_imports, imports_of, median, po_bench, spread, write

NAME = "process"
TITLE = "Process overhead: a fully cached run, --help and a config error"


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--overrides", nargs="*", default=[], help="extra overrides for the run (default: the default run)")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="po-bench-bench-process-"))
    common = [
        *a.overrides,
        f"cache_dir={work / 'store'}",
        "threads=1",
        "generation.progress=false",
        "train.progress=false",
    ]
    build_s, _ = po_bench([*common, "tracking=none", f"hydra.run.dir={work / 'build'}"])
    wandb_dir = work / "wandb"

    def cached(tracking: str):
        extra = ["tracking=none"] if tracking == "none" else ["tracking=wandb", "tracking.mode=offline"]

        def go(r):
            run_dir = work / f"{tracking}-{r}"
            wall, _ = po_bench([*common, *extra, f"hydra.run.dir={run_dir}"], env=_env(wandb_dir))
            rec = json.loads((run_dir / "run.json").read_text())
            built = rec["metrics"]["artifacts"]["built"]
            assert rec["status"] == "done" and not built, built  # fully cached: nothing built
            return {"wall": wall, "pipeline": rec["metrics"]["seconds"]["total"], "stages": rec["metrics"]["seconds"]}

        return go

    runs = alternate({"tracking=none": cached("none"), "wandb offline": cached("wandb")}, a.repeats)
    small = alternate(
        {
            "po-bench --help": lambda r: po_bench(["--help"])[0],
            "config error (loss=nope)": lambda r: po_bench(["loss=nope"], check=False)[0],
            "config error in validation (loss.beta=-1)": lambda r: po_bench(["loss.beta=-1"], check=False)[0],
        },
        a.repeats,
    )
    imports = {
        "tracking=none": imports_of([*common, "tracking=none", f"hydra.run.dir={work / 'imports-none'}"]),
        "wandb offline": imports_of(
            [*common, "tracking=wandb", "tracking.mode=offline", f"hydra.run.dir={work / 'imports-wandb'}"],
            env=_env(wandb_dir),
        ),
        "po-bench --help": imports_of(["--help"]),
        "config error (loss=nope)": imports_of(["loss=nope"]),
        "config error in validation (loss.beta=-1)": imports_of(["loss.beta=-1"]),
    }
    table = []
    for name, rs in runs.items():
        walls, pipes = [x["wall"] for x in rs], [x["pipeline"] for x in rs]
        stage_med = {k: median([x["stages"].get(k, 0.0) for x in rs]) for k in rs[0]["stages"] if k != "total"}
        table.append(
            {
                "case": f"fully cached run, {name}",
                "end to end s (min / median / max)": spread(walls),
                "pipeline s (run.json)": spread(pipes),
                "outside the pipeline s (median)": f"{median(walls) - median(pipes):.2f}",
                "stages (median s)": ", ".join(f"{k} {v:.2f}" for k, v in stage_med.items()),
                "heavy imports (s)": fmt_imports(imports[name]),
            }
        )
    for name, v in small.items():
        table.append(
            {
                "case": name,
                "end to end s (min / median / max)": spread(v),
                "heavy imports (s)": fmt_imports(imports[name]),
            }
        )
    none_s, wandb_s = (
        median([x["wall"] for x in runs["tracking=none"]]),
        median([x["wall"] for x in runs["wandb offline"]]),
    )
    help_s, err_s = median(small["po-bench --help"]), median(small["config error (loss=nope)"])
    verr_s = median(small["config error in validation (loss.beta=-1)"])
    return Report(
        NAME,
        TITLE,
        "python scripts/bench/run.py process --repeats " + str(a.repeats),
        table,
        [
            Target("fully cached run, tracking=none (s)", none_s, "<= 3", none_s <= 3),
            Target("fully cached run, wandb offline (s)", wandb_s, "<= 3", wandb_s <= 3),
            Target("po-bench --help (s)", help_s, "<= 1.5", help_s <= 1.5),
            Target("a config error (s)", err_s, "<= 1.5", err_s <= 1.5),
            Target("a config error found by validation (s)", verr_s, "<= 1.5", verr_s <= 1.5),
        ],
        [
            f"The store was built once before timing ({build_s:.0f} s, not counted). Overrides: "
            + (" ".join(a.overrides) or "none (the default world run)"),
            "End to end = the `python -m po_bench` process from start to exit; pipeline = what the run records.",
            "Heavy imports: each case run once more under `python -X importtime` (not timed); the seconds are "
            "each package's first import, its own imports included.",
        ],
        {"runs": runs, "small": small, "imports": imports},
    )


def _env(wandb_dir: Path):
    from common import env

    return env(WANDB_DIR=wandb_dir, WANDB_MODE="offline", WANDB_SILENT="true")


if __name__ == "__main__":
    print(write(main()).read_text())

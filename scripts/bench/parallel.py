"""Parallel sweeps on one machine: a 4-run sweep (4 losses, one seed, the SFT model and pairs built first
and shared) run as 2 jobs x 1 thread (hydra/launcher=parallel, n_jobs=2) against 1 job x 2 threads (the
basic launcher, one run after another)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import Report, Target, alternate, median, po_bench, run_records, spread, write

NAME = "parallel"
TITLE = "Parallel sweeps: 2 jobs x 1 thread vs 1 job x 2 threads (4 runs)"
LOSSES = "dpo,ipo,simpo,kto"


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--losses", default=LOSSES)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--overrides", nargs="*", default=[])
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="po-bench-bench-parallel-"))
    base = ["seed=0", "tracking=none", "generation.progress=false", "train.progress=false", *a.overrides]
    po_bench(["loss=sft", *base, "threads=2", f"cache_dir={work / 'store'}", f"hydra.run.dir={work / 'build'}"])

    def case(extra: list[str]):
        def go(r):
            tag = "jobs" if "hydra/launcher=parallel" in extra else "threads"
            store, runs = work / f"store-{tag}-{r}", work / f"runs-{tag}-{r}"
            shutil.copytree(work / "store", store)
            t0 = time.perf_counter()
            po_bench(["-m", f"loss={a.losses}", *base, *extra, f"cache_dir={store}", f"hydra.sweep.dir={runs}"])
            wall = time.perf_counter() - t0
            recs = run_records(runs)
            assert len(recs) == len(a.losses.split(",")) and all(x["status"] == "done" for x in recs)
            return {"wall": wall, "gold": {x["config"]["loss"]["name"]: x["metrics"]["gold_reward"] for x in recs}}

        return go

    res = alternate(
        {
            "2 jobs x 1 thread": case(["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "threads=1"]),
            "1 job x 2 threads": case(["threads=2"]),
        },
        a.repeats,
    )
    table = [
        {
            "case": name,
            "runs": len(a.losses.split(",")),
            "sweep wall s (min / median / max)": spread([x["wall"] for x in rs], 1),
        }
        for name, rs in res.items()
    ]
    names = list(res)
    speedup = median([x["wall"] for x in res[names[1]]]) / median([x["wall"] for x in res[names[0]]])
    return Report(
        NAME,
        TITLE,
        f"python scripts/bench/run.py parallel --losses {a.losses} --repeats {a.repeats}",
        table,
        [Target("speed-up of 2 jobs x 1 thread over 1 job x 2 threads", speedup, ">= 1.5", speedup >= 1.5)],
        [
            "The SFT model and pairs were built before timing and copied into each side's store, so both sides "
            "train and evaluate the same 4 policies. Small models use a second thread poorly (short matrix "
            "products, Python overhead per step), so parallel jobs use the cores better."
        ],
        {"runs": res},
    )


if __name__ == "__main__":
    print(write(main()).read_text())

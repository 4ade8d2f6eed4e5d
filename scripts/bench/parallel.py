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
    n_runs = len(a.losses.split(","))
    wall_jobs, wall_threads = (median([x["wall"] for x in res[n]]) for n in names)
    speedup = wall_threads / wall_jobs
    per_run_1, per_run_2 = 2 * wall_jobs / n_runs, wall_threads / n_runs
    return Report(
        NAME,
        TITLE,
        f"python scripts/bench/run.py parallel --losses {a.losses} --repeats {a.repeats}",
        table,
        [Target("speed-up of 2 jobs x 1 thread over 1 job x 2 threads", speedup, ">= 1.5", speedup >= 1.5)],
        [
            "The SFT model and pairs were built before timing and copied into each side's store, so both sides "
            "train and evaluate the same 4 policies.",
            f"Per run: {per_run_1:.1f} s at 1 thread (2 jobs: each run takes a job's whole wall share) vs "
            f"{per_run_2:.1f} s at 2 threads (one run at a time): a second thread speeds one run up "
            f"{per_run_1 / per_run_2:.2f}x, and 2 jobs at once gain 2 / {per_run_1 / per_run_2:.2f} = "
            f"{2 * per_run_2 / per_run_1:.2f}x over it: the 1.5x goal needs a second thread worth less than 1.33x "
            "per run.  The parallel launcher's packing (one job per core, cores // n_jobs threads) pays most where "
            "a run scales poorly with threads (small steps, Python overhead per step).",
        ],
        {"runs": res},
    )


if __name__ == "__main__":
    print(write(main()).read_text())

"""Launch paths: the default world run's preference training under ``launch=local`` against ``launch=ddp``
with 2 processes on the same global batch (so the same optimizer steps: issue 22's rule), on a store whose
SFT model and pairs are already built (only the policy is trained and timed).  On a CPU machine the two
processes share the cores: this measures the process group's overhead, not a scaling; the GPU scaling
across devices is measured by scripts/gpu_check.sh where a GPU is lent."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import Report, Target, alternate, median, po_bench, spread, write

NAME = "launch"
TITLE = "Launch paths: launch=local vs launch=ddp (2 processes), same global batch"


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--overrides", nargs="*", default=[])
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="po-bench-bench-launch-"))
    base = ["loss=dpo", "tracking=none", "generation.progress=false", "train.progress=false", *a.overrides]
    po_bench([*base, "threads=2", f"cache_dir={work / 'store'}", f"hydra.run.dir={work / 'build'}"])

    def case(launch: list[str]):
        def go(r):
            tag = "-".join(x.replace("=", "") for x in launch) or "local"
            # the policy is keyed by its launch-independent recipe: a fresh store copy per timed run keeps the
            # SFT model and the pairs but not the policy
            store = work / f"store-{tag}-{r}"
            _copy_without_policy(work / "store", store)
            run_dir = work / f"{tag}-{r}"
            wall, _ = po_bench([*base, *launch, f"cache_dir={store}", f"hydra.run.dir={run_dir}"])
            rec = json.loads((run_dir / "run.json").read_text())
            m = rec["metrics"]
            return {
                "wall": wall,
                "train": m["seconds"]["train"],
                "steps": m["train"].get("steps"),
                "global_batch": m["train"].get("global_batch"),
                "gold": m["gold_reward"],
            }

        return go

    res = alternate(
        {
            "launch=local, threads=2": case(["threads=2"]),
            "launch=ddp, 2 processes x 1 thread": case(["launch=ddp", "launch.num_processes=2", "threads=1"]),
        },
        a.repeats,
    )
    table = []
    for name, rs in res.items():
        table.append(
            {
                "case": name,
                "train stage s (min / median / max)": spread([x["train"] for x in rs], 1),
                "steps": rs[0]["steps"],
                "global batch": rs[0]["global_batch"],
                "pairs/s (median)": f"{rs[0]['steps'] * rs[0]['global_batch'] / median([x['train'] for x in rs]):.1f}"
                if rs[0]["steps"] and rs[0]["global_batch"]
                else "",
                "gold reward": f"{rs[0]['gold']:.3f}",
            }
        )
    names = list(res)
    same = res[names[0]][0]["steps"] == res[names[1]][0]["steps"]
    return Report(
        NAME,
        TITLE,
        f"python scripts/bench/run.py launch --repeats {a.repeats}",
        table,
        [Target("same optimizer steps under both launches", float(same), "= 1 (yes)", same)],
        [
            "Two CPU processes share this machine's cores: the ddp row's time is the process group's overhead "
            "(start-up, gloo all-reduce), not a speed-up; its gold reward differs from the local row's only "
            "through the data order and the reduction order of the gradients."
        ],
        {"runs": res},
    )


def _copy_without_policy(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if Path(d).name == "policy"])


if __name__ == "__main__":
    print(write(main()).read_text())

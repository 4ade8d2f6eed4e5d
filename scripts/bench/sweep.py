"""Sweep economics: a K-loss sweep sharing one artifact store (the SFT model, the pairs, the reference
log-probs and the SFT samples built once) against the same K runs each with its own fresh store, as a
hand-written bash loop over TRL scripts would do.  Both sides run the same configs; the metrics must be
identical (same seeds, one thread), and the report counts artifacts built and reused."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import Report, Target, alternate, median, po_bench, run_records, spread, write

NAME = "sweep"
TITLE = "Sweep economics: one shared store vs a fresh store per run"
LOSSES = "dpo,ipo,cdpo,rso,simpo,orpo,slic_hf,kto"


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--losses", default=LOSSES)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--overrides", nargs="*", default=[])
    a = p.parse_args(argv)
    losses = a.losses.split(",")
    base = ["seed=0", "threads=1", "tracking=none", "generation.progress=false", "train.progress=false", *a.overrides]
    work = Path(tempfile.mkdtemp(prefix="po-bench-bench-sweep-"))

    def shared(r):
        d = work / f"shared-{r}"
        t0 = time.perf_counter()
        po_bench(["-m", f"loss={a.losses}", *base, f"cache_dir={d / 'store'}", f"hydra.sweep.dir={d / 'runs'}"])
        wall = time.perf_counter() - t0
        recs = run_records(d / "runs")
        shutil.rmtree(d / "store")
        return {"wall": wall, "records": recs}

    def independent(r):
        d = work / f"independent-{r}"
        t0 = time.perf_counter()
        for i, loss in enumerate(losses):
            po_bench([f"loss={loss}", *base, f"cache_dir={d / f'store{i}'}", f"hydra.run.dir={d / 'runs' / loss}"])
            shutil.rmtree(d / f"store{i}")
        return {"wall": time.perf_counter() - t0, "records": run_records(d / "runs")}

    res = alternate({"shared store (one sweep)": shared, "a fresh store per run": independent}, a.repeats)
    table, gold = [], {}
    for name, rs in res.items():
        recs = rs[-1]["records"]
        built = sum(len(x["metrics"]["artifacts"]["built"]) for x in recs)
        hits = sum(len(x["metrics"]["artifacts"]["hits"]) for x in recs)
        stage_sum = {}
        for x in recs:
            for k, v in x["metrics"]["seconds"].items():
                if k != "total":
                    stage_sum[k] = stage_sum.get(k, 0.0) + v
        gold[name] = {x["config"]["loss"]["name"]: x["metrics"]["gold_reward"] for x in recs}
        table.append(
            {
                "case": name,
                "runs": len(recs),
                "wall s (min / median / max)": spread([x["wall"] for x in rs], 1),
                "stage sums s": ", ".join(f"{k} {v:.1f}" for k, v in stage_sum.items()),
                "artifacts built / reused": f"{built} / {hits}",
            }
        )
    names = list(res)
    ratio = median([x["wall"] for x in res[names[0]]]) / median([x["wall"] for x in res[names[1]]])
    same = gold[names[0]] == gold[names[1]]
    return Report(
        NAME,
        TITLE,
        f"python scripts/bench/run.py sweep --losses {a.losses} --repeats {a.repeats}"
        + (" --overrides " + " ".join(a.overrides) if a.overrides else ""),
        table,
        [
            Target(f"wall ratio shared / independent ({len(losses)} losses, world)", ratio, "<= 0.30", ratio <= 0.30),
            Target(
                "runs whose gold reward differs between the two",
                sum(gold[names[0]].get(k) != v for k, v in gold[names[1]].items()),
                "= 0",
                same,
            ),
        ],
        [
            "Gold reward per loss (shared | independent): "
            + ", ".join(f"{k} {gold[names[0]].get(k):.4f} | {v:.4f}" for k, v in gold[names[1]].items())
        ],
        {"walls": {k: [x["wall"] for x in v] for k, v in res.items()}, "gold": gold},
    )


if __name__ == "__main__":
    print(write(main()).read_text())

"""``po-bench-report SWEEP_DIR... --out DIR``: one static, self-contained HTML file per sweep.

The page itself is built by :mod:`po_bench.results.report`; ``--wandb`` logs the same tables and
figures, and the page, to the sweep's wandb group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from po_bench.cli.table import add_claim_options
from po_bench.results.tracking import log_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="po-bench-report", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "sweep_dir", nargs="+", help="multirun folder(s), searched recursively for run.json; several are merged"
    )
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--name", default="report", help="file stem: OUT/NAME.html (default: report)")
    ap.add_argument("--title", default="")
    ap.add_argument("--baseline", default="DPO", help="the method every row is tested against (default DPO)")
    ap.add_argument("--best-by", default=None, help="per method keep the grid point with the best mean of this metric")
    ap.add_argument("--plot-x", default="kl_to_ref")
    ap.add_argument("--plot-y", default="gold_reward")
    ap.add_argument("--color-by", default=None)
    ap.add_argument("--wall-seconds", type=float, default=None)
    ap.add_argument(
        "--wandb", action="store_true", help="also log the tables, figures and page to the sweep's wandb group"
    )
    add_claim_options(ap)
    a = ap.parse_args(argv)
    for d in a.sweep_dir:
        if not Path(d).is_dir():
            print(f"po-bench-report: {d}: no such folder", file=sys.stderr)
            return 2
    from po_bench.results.report import write_report  # lazy: as in po-bench-table (scipy)

    try:
        paths = write_report(
            a.sweep_dir,
            a.out,
            a.name,
            a.title,
            a.baseline,
            a.best_by,
            a.plot_x,
            a.plot_y,
            a.color_by,
            a.wall_seconds,
            a.claims,
            a.effect,
        )
    except FileNotFoundError as e:
        print(f"po-bench-report: {e}", file=sys.stderr)
        return 2
    print(f"written: {paths['html']}")
    if a.wandb:
        sweep = Path(a.sweep_dir[0]).resolve()
        print("wandb:", log_report(paths, f"{sweep.parent.name}/{sweep.name}", out_dir=Path(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Table stage: ``po-bench-table SWEEP_DIR`` gathers every ``run.json`` under a sweep folder.

Rows are methods and the hyperparameters that vary across the sweep (seed excluded); columns are
metrics as mean and std over seeds.  Writes ``results.csv`` and ``results.md`` in the sweep folder
(or ``--out DIR --name NAME``), lists failed runs under the table, and prints the markdown.
``--plot`` also draws gold reward against KL, one point per run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from po_bench.results.tracking import log_table


def add_claim_options(ap: argparse.ArgumentParser) -> None:
    """The options that decide what a table's comparisons claim (po-bench-table and po-bench-report)."""
    ap.add_argument(
        "--claims",
        choices=("method", "policy"),
        default="method",
        help="method (default): seeds are the unit, does the method train better policies; policy: "
        "these checkpoints compared on these prompts (what AlpacaEval / Arena-Hard compare)",
    )
    ap.add_argument(
        "--effect",
        type=float,
        default=0.05,
        help="the difference in the headline metric the power line sizes seeds for (default 0.05)",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="po-bench-table", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "sweep_dir", nargs="+", help="multirun folder(s), searched recursively for run.json; several are merged"
    )
    ap.add_argument("--out", default=None, help="output folder (default: the sweep folder)")
    ap.add_argument("--name", default="results", help="file stem (default: results)")
    ap.add_argument("--plot", action="store_true", help="also write NAME.png (gold reward vs KL)")
    ap.add_argument("--title", default="")
    ap.add_argument("--wall-seconds", type=float, default=None, help="the sweep's wall time, printed under the table")
    ap.add_argument(
        "--best-by",
        default=None,
        help="per method keep the grid point with the best mean of this metric (default: the preset's select_best)",
    )
    ap.add_argument(
        "--plot-x", default="kl_to_ref", help="plot x: a metric (scatter) or a config key such as noise.rate (lines)"
    )
    ap.add_argument("--plot-y", default="gold_reward")
    ap.add_argument("--color-by", default=None, help="colour the scatter by a config key (e.g. loss.beta)")
    ap.add_argument(
        "--wandb", action="store_true", help="also log the table as a wandb Table (offline without WANDB_API_KEY)"
    )
    ap.add_argument("--baseline", default="DPO", help="the method every row is tested against (default DPO)")
    add_claim_options(ap)
    a = ap.parse_args(argv)
    for d in a.sweep_dir:
        if not Path(d).is_dir():
            print(f"po-bench-table: {d}: no such folder", file=sys.stderr)
            return 2
    # lazy: the table's libraries (scipy, ~1.5 s) are not needed for --help or a usage error
    from po_bench.results.table import tabulate, unreadable
    from po_bench.results.writers import write_tables  # lazy: numpy, scipy (~0.8 s)

    try:
        t = tabulate(a.sweep_dir, a.title, a.best_by, a.baseline, a.claims, a.effect)
        bad = unreadable(t.runs)
        if bad:  # the table is made of the rest; each file is also named under it, counted as failed
            print(
                f"po-bench-table: {len(bad)} of {len(t.runs)} run.json unreadable (counted as failed): "
                + "; ".join(r["error"].removeprefix("unreadable ") for r in bad),
                file=sys.stderr,
            )
        paths = write_tables(
            a.sweep_dir,
            a.out,
            a.name,
            a.plot,
            a.title,
            a.wall_seconds,
            a.best_by,
            a.plot_x,
            a.plot_y,
            a.color_by,
            a.baseline,
            a.claims,
            a.effect,
            tabulated=t,
        )
    except FileNotFoundError as e:  # also NoReadableRun: every run.json found is unreadable
        print(f"po-bench-table: {e}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    if a.wandb:
        sweep = Path(a.sweep_dir[0]).resolve()
        print("wandb:", log_table(paths["csv"], f"{sweep.parent.name}/{sweep.name}", out_dir=paths["csv"].parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())

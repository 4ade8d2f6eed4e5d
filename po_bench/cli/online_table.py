"""``po-bench-online SWEEP_DIR... --out DIR --name NAME``: online and iterative methods against offline DPO at
equal labels (issue 24, ``make table-online``): ``NAME.csv``, ``NAME.md`` (the table at the full budget with
method-level intervals and each method's difference from DPO) and ``NAME.png`` (gold reward against labels used,
one line per method with its interval band) (:mod:`po_bench.results.online_view`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="po-bench-online", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", nargs="+", help="multirun folder(s), searched recursively for run.json")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--name", default="online-labels", help="file stem (default: online-labels)")
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    for d in a.sweep_dir:
        if not Path(d).is_dir():
            print(f"po-bench-online: {d}: no such folder", file=sys.stderr)
            return 2
    from po_bench.results.online_view import write_online  # lazy: scipy, matplotlib (~1 s)

    try:
        paths = write_online(a.sweep_dir, a.out, a.name, a.title)
    except FileNotFoundError as e:
        print(f"po-bench-online: {e}", file=sys.stderr)
        return 2
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

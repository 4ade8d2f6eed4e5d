"""``po-bench-diagnostics SWEEP_DIR... --out DIR --name NAME``: the diagnostics of a sweep run with
``diagnostics=full`` (issue 25), finding by finding per method with method-level intervals:
``NAME.csv``, ``NAME.md`` and the figures ``NAME.png`` (:mod:`po_bench.results.diagnostics`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="po-bench-diagnostics", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", nargs="+", help="multirun folder(s), searched recursively for run.json")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--name", default="diagnostics", help="file stem (default: diagnostics)")
    ap.add_argument("--title", default="")
    a = ap.parse_args(argv)
    for d in a.sweep_dir:
        if not Path(d).is_dir():
            print(f"po-bench-diagnostics: {d}: no such folder", file=sys.stderr)
            return 2
    from po_bench.results.diagnostics import write_diagnostics  # lazy: scipy, matplotlib (~1 s)

    try:
        paths = write_diagnostics(a.sweep_dir, a.out, a.name, a.title)
    except FileNotFoundError as e:
        print(f"po-bench-diagnostics: {e}", file=sys.stderr)
        return 2
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""po-bench's benchmarks (``make bench``): each measures both sides of a comparison in one invocation on
this machine, alternating A and B, prints min / median / max and writes results/bench/<name>.md (+ .json),
with the hardware and versions under it; then the README's performance section is regenerated from the
reports (scripts/bench/readme.py).

    python scripts/bench/run.py                       # every benchmark (tens of minutes on 2 CPU cores)
    python scripts/bench/run.py judging process       # some
    python scripts/bench/run.py sweep --repeats 3     # one, with its own options (see its --help)
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write  # noqa: E402

# cheap first; the order `make bench` runs them in
ALL = ["judging", "process", "overhead", "memory", "launch", "parallel", "sweep", "generation"]


def main(argv: list[str]) -> int:
    if argv and argv[0] in ALL and any(a.startswith("-") for a in argv[1:]):
        names, rest = [argv[0]], argv[1:]  # one benchmark with its own options
    else:
        names, rest = argv, []
    names = names or ALL
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(ALL)}", file=sys.stderr)
        return 2
    for name in names:
        t0 = time.perf_counter()
        print(f"== {name} ...", flush=True)
        report = importlib.import_module(name).main(rest)
        path = write(report)
        print(path.read_text())
        print(f"== {name}: {time.perf_counter() - t0:.0f} s, written {path}", flush=True)
    from readme import update_readme

    update_readme()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

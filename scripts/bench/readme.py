"""The README's performance section, generated from results/bench/*.json (the targets of each benchmark,
measured where the report says), between the markers ``<!-- bench:start -->`` and ``<!-- bench:end -->``."""

from __future__ import annotations

import json
import re

from common import OUT, ROOT

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def section() -> str:
    lines = [
        START,
        "| benchmark | target | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for path in sorted(OUT.glob("*.json")):
        data = json.loads(path.read_text())
        for t in data["targets"]:
            met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
            val = "n/a" if t["measured"] is None else f"{t['measured']:.3g}"
            lines.append(f"| [{path.stem}](results/bench/{path.stem}.md) | {t['what']} | {val} | {t['goal']} | {met} |")
    lines.append(END)
    return "\n".join(lines)


def update_readme() -> None:
    if OUT != ROOT / "results" / "bench":
        return  # reports written elsewhere (PO_BENCH_BENCH_OUT): the README describes the committed ones
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text:
        print(f"README.md has no {START} marker: performance section not written")
        return
    readme.write_text(re.sub(re.escape(START) + r".*?" + re.escape(END), lambda m: section(), text, flags=re.S))


if __name__ == "__main__":
    update_readme()

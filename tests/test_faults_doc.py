"""docs/faults.md cannot rot: every test it names exists, and its totals match its tables."""

import ast
import re

from .conftest import ROOT

DOC = ROOT / "docs" / "faults.md"
REF = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")


def _test_names(path):
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")
    }


def test_every_referenced_test_exists():
    refs = REF.findall(DOC.read_text())
    assert len(refs) > 50
    missing = []
    names = {}
    for file, name in refs:
        path = ROOT / file
        if not path.is_file():
            missing.append(f"{file} (no such file)")
            continue
        if file not in names:
            names[file] = _test_names(path)
        if name not in names[file]:
            missing.append(f"{file}::{name}")
    assert missing == [], f"docs/faults.md names tests that do not exist: {sorted(set(missing))}"


def test_totals_match_the_tables():
    text = DOC.read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    summary = dict((name.strip(), int(n)) for name, n in re.findall(r"^\| ([^|*]+?) \| (\d+) \|$", sections[0], re.M))
    total = int(re.search(r"^\| \*\*Total\*\* \| \*\*(\d+)\*\* \|$", sections[0], re.M).group(1))
    counted = {}
    for sec in sections[1:]:
        title, n = re.match(r"(.+?) \((\d+)\)\n", sec).groups()
        rows = [int(x) for x in re.findall(r"^\| (\d+) \|", sec, re.M)]
        assert rows == list(range(1, len(rows) + 1)), f"{title}: rows are not numbered 1..n"
        assert len(rows) == int(n), f"{title}: the heading says {n}, the table has {len(rows)} rows"
        for row in re.findall(r"^\| \d+ \|.*$", sec, re.M):
            assert REF.search(row), f"{title}: a row names no test: {row[:80]}"
        counted[title] = len(rows)
    assert counted == summary
    assert sum(counted.values()) == total

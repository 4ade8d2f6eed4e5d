"""Environment variables are user settings, never a channel between po-bench's own modules: every
``PO_BENCH_*`` variable the package reads is documented in the README, and no module sets one (what one
module tells another travels as an argument; ``tests/test_live_tracking.py`` covers the wandb case)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = sorted((ROOT / "po_bench").rglob("*.py"))
VAR = re.compile(r"PO_BENCH_[A-Z0-9_]+")


def variables_read() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in PACKAGE:
        for name in VAR.findall(path.read_text()):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def settings_written(source: str) -> list[str]:
    """``PO_BENCH_*`` variables a module sets: ``os.environ[X] = ...``, ``os.environ.setdefault(X, ...)``, or
    a ``{X: ...}`` dict (what ``os.environ.update`` or a child's ``env=`` takes); X a literal or a module
    constant holding one."""
    tree = ast.parse(source)
    consts = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        if VAR.fullmatch(node.value.value)
        for t in node.targets
        if isinstance(t, ast.Name)
    }

    def named(n) -> bool:
        return (isinstance(n, ast.Constant) and isinstance(n.value, str) and bool(VAR.fullmatch(n.value))) or (
            isinstance(n, ast.Name) and n.id in consts
        )

    def environ(n) -> bool:
        return isinstance(n, ast.Attribute) and n.attr == "environ"

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            out += [
                ast.unparse(t)
                for t in node.targets
                if isinstance(t, ast.Subscript) and environ(t.value) and named(t.slice)
            ]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault":
            if environ(node.func.value) and node.args and named(node.args[0]):
                out.append(ast.unparse(node))
        elif isinstance(node, ast.Dict):
            out += [ast.unparse(k) for k in node.keys if k is not None and named(k)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            out += [kw.arg for kw in node.keywords if kw.arg and VAR.fullmatch(kw.arg)]
    return out


def test_every_setting_read_is_documented():
    readme = (ROOT / "README.md").read_text()
    found = variables_read()
    assert {"PO_BENCH_CACHE", "PO_BENCH_LOCK"} <= set(found)  # the walk sees them
    missing = {name: where for name, where in found.items() if f"`{name}`" not in readme}
    assert missing == {}, f"environment variables read by po_bench/ and not in the README: {missing}"


def test_no_module_sets_a_setting():
    written = {str(p.relative_to(ROOT)): w for p in PACKAGE if (w := settings_written(p.read_text()))}
    assert written == {}, f"po_bench/ sets its own environment variables (pass an argument instead): {written}"


def test_the_write_check_sees_every_spelling():
    planted = [
        'os.environ["PO_BENCH_X"] = "1"',
        'os.environ.setdefault("PO_BENCH_X", "1")',
        'FLAG = "PO_BENCH_X"\nos.environ.update({FLAG: "1"})',
        'env = dict(os.environ, PO_BENCH_X="1")',
    ]
    for src in planted:
        assert settings_written(src), src
    for src in ('os.environ.get("PO_BENCH_X")', 'os.environ["WANDB_DIR"] = "d"', 'x = "PO_BENCH_X"'):
        assert settings_written(src) == [], src

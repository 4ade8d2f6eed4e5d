"""What each import inside a function of po_bench/ saves: for every (module, imported module) pair, the
seconds and the heavy packages that importing it adds once the module itself is imported, measured in a
fresh interpreter each (median of --repeats).  An import is worth deferring only where that is measurable;
the house rule (CONTRIBUTING.md, tests/test_imports.py) keeps such imports with a ``# lazy:`` reason and
moves the others to the top of their module.

    python scripts/import_costs.py                 # the table, slowest first
    python scripts/import_costs.py --json out.json
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the light paths' heavy packages (scripts/bench/common.py), and the others an import here may pull in
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from common import HEAVY as LIGHT_PATH_HEAVY  # noqa: E402

HEAVY = (
    *LIGHT_PATH_HEAVY,
    *("deepspeed", "statsmodels", "lm_eval", "alpaca_eval", "openai", "httpx", "numpy", "pyarrow"),
    *("huggingface_hub", "sentence_transformers", "submitit", "hydra", "omegaconf"),
)

PROBE = """
import importlib, json, sys, time
importlib.import_module({module!r})
before = set(sys.modules)
t = time.perf_counter()
exec({target!r})
dt = time.perf_counter() - t
new = sorted({{m.split(".")[0] for m in set(sys.modules) - before}} & set({heavy!r}))
print(json.dumps({{"seconds": dt, "heavy": new}}))
"""


def module_name(path: Path, base: Path = ROOT) -> str:
    rel = path.relative_to(base).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def function_imports(root: Path = ROOT / "po_bench") -> list[dict]:
    """Every import statement inside a function of the package: file, line, the importing module and the
    imported module (``from a import b`` imports ``a``; relative imports resolved)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        mod = module_name(path, root.parent)
        seen = set()
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in seen:
                    continue
                seen.add(node.lineno)
                line = node.lineno
                if isinstance(node, ast.ImportFrom) and node.level:  # relative: made absolute
                    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
                    absolute = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                    node = ast.ImportFrom(module=absolute, names=node.names, level=0)
                statement = ast.unparse(node)
                out.append(
                    {"file": str(path.relative_to(root.parent)), "line": line, "module": mod, "target": statement}
                )
    return out


def measure(module: str, target: str, repeats: int) -> dict:
    code = PROBE.format(module=module, target=target, heavy=HEAVY)
    runs = []
    for _ in range(repeats):
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            return {"seconds": None, "heavy": [], "error": r.stderr.strip().splitlines()[-1:]}
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return {"seconds": statistics.median(x["seconds"] for x in runs), "heavy": runs[0]["heavy"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    sites = function_imports()
    pairs = sorted({(s["module"], s["target"]) for s in sites})
    costs = {}
    for i, (mod, target) in enumerate(pairs, 1):
        costs[(mod, target)] = measure(mod, target, a.repeats)
        print(f"[{i}/{len(pairs)}] {mod} -> {target}: {costs[(mod, target)]}", file=sys.stderr, flush=True)
    rows = [{**s, **costs[(s["module"], s["target"])]} for s in sites]
    rows.sort(key=lambda r: -(r["seconds"] or 0))
    print("| seconds | heavy packages it adds | import | site |")
    print("|---|---|---|---|")
    for r in rows:
        sec = "error" if r["seconds"] is None else f"{r['seconds']:.3f}"
        print(f"| {sec} | {', '.join(r['heavy']) or '-'} | {r['target']} | {r['file']}:{r['line']} |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The house rule on imports inside functions (CONTRIBUTING.md): one is kept only where it measurably cuts
start-up time, and says so with a ``# lazy: <what it pulls> (~N s)`` comment on its line (or the line above);
``scripts/import_costs.py`` measures what each one saves.  The standard library is never deferred (it costs
nothing worth it), except where the importing package is itself what imports the module."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from import_costs import function_imports  # noqa: E402


def reason_of(site: dict) -> str:
    lines = (ROOT / site["file"]).read_text().split("\n")
    line, above = lines[site["line"] - 1], lines[site["line"] - 2].strip()
    if "# lazy:" in line:
        return line.split("# lazy:", 1)[1].strip()
    return above.split("# lazy:", 1)[1].strip() if above.startswith("# lazy:") else ""


def test_every_import_inside_a_function_says_what_it_saves():
    missing = [f"{s['file']}:{s['line']}: {s['target']}" for s in function_imports() if not reason_of(s)]
    assert missing == [], "an import inside a function needs a '# lazy: <what it pulls> (~N s)' reason, or the top"


def test_the_standard_library_is_imported_at_the_top():
    deferred = [
        f"{s['file']}:{s['line']}: {s['target']}"
        for s in function_imports()
        if s["target"].split()[1].split(".")[0] in sys.stdlib_module_names
    ]
    assert deferred == []


def test_the_scan_sees_imports_in_functions_and_resolves_relative_ones(tmp_path):
    pkg = tmp_path / "po_bench" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "import os\n\ndef f():\n    import json  # lazy: x\n    from . import other\n    from .other import g\n"
    )
    sites = function_imports(tmp_path / "po_bench")
    assert [(s["line"], s["target"]) for s in sites] == [
        (4, "import json"),
        (5, "from po_bench.sub import other"),
        (6, "from po_bench.sub.other import g"),
    ]

"""The test suite's shape: fixtures live in tests/conftest.py, plain helpers in tests/conftest.py or
tests/helpers.py, and a test file never imports another test file (each one can be read, run, moved
and deleted on its own; a helper shared by two files is a helper, not part of either's tests)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FILES = sorted(TESTS.glob("*.py"))


def imported_test_files(source: str) -> list[str]:
    """The test modules (``test_*``) that ``source`` imports, in any spelling: ``from .test_x import y``,
    ``from tests.test_x import y``, ``from . import test_x``, ``import tests.test_x``, ``import test_x``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".") if node.module else []
            if node.level == 0 and parts[:1] not in (["tests"], []) and not parts[0].startswith("test_"):
                continue  # another package
            found += [p for p in parts if p.startswith("test_")]
            if parts in ([], ["tests"]):  # from . import test_x / from tests import test_x
                found += [a.name for a in node.names if a.name.startswith("test_")]
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "tests" or parts[0].startswith("test_"):
                    found += [p for p in parts if p.startswith("test_")]
    return found


def test_the_walk_sees_the_suite():
    names = {p.name for p in FILES}
    assert {"conftest.py", "helpers.py", "test_suite_layout.py", "test_judges.py"} <= names and len(names) > 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_test_file_imports_another(path):
    assert imported_test_files(path.read_text()) == [], (
        f"{path.name} imports a test file: move what it shares to tests/helpers.py (plain helpers) "
        "or tests/conftest.py (fixtures) and import it from there"
    )


def test_the_import_check_sees_every_spelling():
    planted = [
        "from .test_judges import FakeOpenAI",
        "from tests.test_judges import FakeOpenAI",
        "from . import test_judges",
        "from tests import test_judges",
        "import tests.test_judges",
        "import test_judges",
        "from test_judges import FakeOpenAI",
    ]
    for line in planted:
        assert imported_test_files(line) == ["test_judges"], line
    fine = ["from .conftest import compose", "from .helpers import FakeOpenAI", "from test import support"]
    for line in fine + ["import pytest", "from po_bench.results import table"]:
        assert imported_test_files(line) == [], line


@pytest.mark.parametrize("path", sorted(TESTS.glob("test_*.py")), ids=lambda p: p.name)
def test_no_test_file_keeps_its_own_compose(path):
    """The app's config for some overrides is tests/conftest.py's compose(); a copy drifts from it."""
    tree = ast.parse(path.read_text())
    own = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("compose", "_compose")]
    assert own == [], f"{path.name} defines {own[0]}: use `from .conftest import compose as _compose`"


def test_caches_are_this_sessions_own(private_caches, tmp_path_factory):
    """No test reads or writes ~/.cache/po-bench, ~/.cache or a .po_bench_cache that another session shares
    (SmolLM2's converted checkpoint is shared by this session's xdist workers, under the session's base)."""
    from po_bench.judges.client import default_cache_dir
    from po_bench.training import smollm2

    from .conftest import compose

    base = tmp_path_factory.getbasetemp()
    session = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    assert smollm2.default_dir().is_relative_to(session)
    assert Path(compose().cache_dir).is_relative_to(private_caches)
    assert default_cache_dir().is_relative_to(private_caches)
    assert Path(os.environ["XDG_CACHE_HOME"]).is_relative_to(private_caches)


PACKAGE = TESTS.parent / "po_bench"
EXEMPT = {"__init__.py", "__main__.py"}  # a package's marker and its `python -m` entry hold no logic of their own
# modules whose tests still live in the feature files of the modules they came from (a module added without
# its test file goes here only with a reason, until its file exists)
NOT_YET_MAPPED: set[str] = set()


def mapping_files(module: Path, stems: dict[str, int]) -> list[str]:
    """The test files that map ``module`` (po_bench/<...>/<pkg>/<stem>.py): tests/test_<pkg>_<stem>.py, or
    tests/test_<stem>.py when no other module shares its stem (where two do, the <pkg>_<stem> name wins:
    each of them needs its own tests/test_<pkg>_<stem>.py)."""
    names = [f"test_{module.parent.name}_{module.stem}.py"]
    if stems[module.stem] == 1:
        names.append(f"test_{module.stem}.py")
    return names


def test_every_module_has_a_test_file_named_after_it():
    """The suite is a map of the code: po_bench/<...>/<pkg>/<stem>.py is tested in tests/test_<stem>.py or
    tests/test_<pkg>_<stem>.py, and where two modules share a stem (results/table.py, cli/table.py) each
    is tested in its tests/test_<pkg>_<stem>.py (tests that drive several modules end to end live in
    feature files besides)."""
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in EXEMPT)
    assert len(modules) > 30
    stems: dict[str, int] = {}
    for p in modules:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    unmapped = {
        p.relative_to(TESTS.parent).as_posix()
        for p in modules
        if not any((TESTS / name).is_file() for name in mapping_files(p, stems))
    }
    assert sorted(unmapped - NOT_YET_MAPPED) == [], "modules without a tests/test_<module>.py"
    assert sorted(NOT_YET_MAPPED - unmapped) == [], "mapped or gone since: remove them from NOT_YET_MAPPED"


def test_a_shared_stem_needs_the_package_in_the_name():
    stems = {"table": 2, "hh": 1}
    assert mapping_files(Path("po_bench/cli/table.py"), stems) == ["test_cli_table.py"]
    assert mapping_files(Path("po_bench/data/formats/hh.py"), stems) == ["test_formats_hh.py", "test_hh.py"]

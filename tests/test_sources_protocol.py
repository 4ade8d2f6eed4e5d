"""The data-source contract (po_bench/data/sources.py): every registered source has every member of
``DataSource``, the pipeline's modules use no member outside it (read from their source code), the
protocol lists nothing they do not use, and no on-policy decision is left outside the sources."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from po_bench.data.sources import SOURCES, DataSource

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = ("pipeline.py", "stages.py", "specs.py", "config.py")  # under po_bench/ (config: the source's capabilities)
# members the registry's functions use (sources.source_for / source_class / prompts / validate_dataset), not the pipeline
REGISTRY = {"kind", "spec_of", "prompts", "validate"}
SOURCE_VARS = {"src"}  # the name a source (instance or class) has in the pipeline's modules
SOURCE_ATTRS = {"source"}  # p.source: the Plan's source
SOURCE_FACTORIES = {"source_for", "source_class", "_source"}  # source_class(spec).member; config's _source(cfg)


def protocol_members() -> set[str]:
    """The members DataSource declares: annotated attributes (``gold``, ``kind``) and methods."""
    names = set(getattr(DataSource, "__annotations__", {}))
    names |= {n for n, v in vars(DataSource).items() if callable(v) or isinstance(v, staticmethod)}
    return {n for n in names if not n.startswith("_")}


def source_uses(path: Path) -> set[str]:
    """Attributes read off a source in a module: ``src.x``, ``<anything>.source.x``, ``source_class(...).x``."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if (
            (isinstance(v, ast.Name) and v.id in SOURCE_VARS)
            or (isinstance(v, ast.Attribute) and v.attr in SOURCE_ATTRS)
            or (isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in SOURCE_FACTORIES)
        ):
            used.add(node.attr)
    return used


def pipeline_uses() -> dict[str, set[str]]:
    return {name: source_uses(ROOT / "po_bench" / name) for name in PIPELINE}


def test_the_protocol_walk_sees_attributes_and_methods():
    assert {"gold", "kind", "always_sft", "spec_of", "build_pairs", "data_report"} <= protocol_members()


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_every_registered_source_has_every_member(kind):
    cls = SOURCES[kind]
    own = {n for c in cls.__mro__ if c not in (DataSource, object) for n in vars(c)}
    missing = sorted(protocol_members() - own)
    assert missing == [], f"dataset.kind={kind}: {cls.__name__} lacks {missing} (po_bench/data/sources.py)"
    assert cls.kind == kind  # the registry name is the class's own
    for name in ("spec_of", "sft_examples", "build_pairs"):  # called on the class, in any process
        assert isinstance(inspect.getattr_static(cls, name), staticmethod), (
            f"{cls.__name__}.{name} must be a staticmethod (stages call it on the class)"
        )


def test_the_pipeline_uses_exactly_the_protocol():
    uses = pipeline_uses()
    assert all(uses.values()), uses  # the walk sees every module's uses (the names above are still the ones used)
    used = set().union(*uses.values())
    members = protocol_members()
    outside = {name: sorted(u - members) for name, u in uses.items() if u - members}
    assert outside == {}, f"source members used outside DataSource (po_bench/data/sources.py): {outside}"
    assert sorted(members - used - REGISTRY) == [], "DataSource members the pipeline never uses"


def source_names(path: Path) -> set[str]:
    """The names a module binds a source to (``x = source_for(...)``, ``x = source_class(...)``, ``x = p.source``,
    also in tuple assignments)."""

    def is_source(v) -> bool:
        return (isinstance(v, ast.Attribute) and v.attr in SOURCE_ATTRS) or (
            isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in SOURCE_FACTORIES
        )

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = (
                zip(target.elts, node.value.elts)
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                else [(target, node.value)]
            )
            names |= {t.id for t, v in pairs if isinstance(t, ast.Name) and is_source(v)}
    return names


def test_the_pipeline_names_a_source_src():
    """So the walk above sees every use: a source bound to another name would escape it."""
    for name in PIPELINE:
        assert source_names(ROOT / "po_bench" / name) <= SOURCE_VARS, name


def test_the_walk_sees_every_spelling(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("src.a\np.source.b\nsource_class(spec).c\nsource_for(d).e\nother.f\nsrc_x.g\n")
    assert source_uses(mod) == {"a", "b", "c", "e"}
    mod.write_text("s = source_for(d)\nsrc, loss = p.source, cfg.loss\nt = source_class(spec)\nu = other\n")
    assert source_names(mod) == {"s", "src", "t"}


def test_no_on_policy_branch_outside_the_sources():
    for name in PIPELINE:
        text = (ROOT / "po_bench" / name).read_text()
        assert "onpolicy" not in text, f"po_bench/{name} decides on the source's on-policy flag: ask the source"

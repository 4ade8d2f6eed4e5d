"""Artifact store: keys, atomic publication, sharing."""

import json

import pytest

from po_bench.store import Store, atomic_write_json, fingerprint


def test_key_depends_on_fields_only(tmp_path):
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_build_once_then_shared(tmp_path):
    s = Store(tmp_path)
    calls = []
    build = lambda: calls.append(1) or {"x": 1}
    assert s.get_or_build_json("k", {"f": 1}, build) == {"x": 1}
    assert s.get_or_build_json("k", {"f": 1}, build) == {"x": 1}
    assert len(calls) == 1
    assert Store(tmp_path).exists("k", {"f": 1})
    assert json.loads((s.path("k", {"f": 1}) / "fields.json").read_text()) == {"f": 1}


def test_failed_build_leaves_nothing(tmp_path):
    s = Store(tmp_path)

    def boom(d):
        (d / "partial.bin").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        s.get_or_build_dir("sft", {"f": 1}, boom)
    assert not s.exists("sft", {"f": 1})
    assert [p.name for p in (tmp_path / "sft").iterdir() if not p.name.endswith(".lock")] == []


def test_atomic_write_json(tmp_path):
    p = tmp_path / "run.json"
    atomic_write_json(p, {"status": "done"})
    assert json.loads(p.read_text()) == {"status": "done"}
    assert [x.name for x in tmp_path.iterdir()] == ["run.json"]

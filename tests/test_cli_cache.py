"""`po-bench-cache` (po_bench/cli/cache.py): ls, du and gc over the artifact store, and ``po-bench cache``
dispatching to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from po_bench.cli import cache as cache_cli
from po_bench.store import Store, atomic_write_json

from .conftest import ROOT


def test_cache_ls_and_du(tmp_path, capsys):
    s, keys = _populate(tmp_path)
    root = str(s.root)
    assert cache_cli.main(["--root", root, "ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["kind", "hash", "size", "created", "fields"]
    assert len(out) == 1 + len(keys)
    for k in keys:
        kind, h = k.split("/")
        (line,) = [x for x in out if h in x]
        assert line.split()[0] == kind
    assert any('loss="dpo"' in x and "sft.seed=0" in x for x in out)
    assert cache_cli.main(["--root", root, "ls", "--kind", "sft"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert cache_cli.main(["--root", root, "du"]) == 0
    du = {x.split()[0]: x.split() for x in capsys.readouterr().out.splitlines()[1:]}
    assert du["sft"][1] == "2" and du["policy"][1] == "1" and du["samples"][1] == "1" and du["total"][1] == "4"


def test_cache_gc_keeps_what_the_sweeps_use(tmp_path, capsys):
    s, keys = _populate(tmp_path)
    sft0, sft1, policy, samples = keys
    _run_json(tmp_path / "sweep1" / "0", hits=[], built=[sft0, policy])
    _run_json(tmp_path / "sweep2" / "0", hits=[sft0], built=[samples])
    root = str(s.root)
    assert cache_cli.main(["--root", root, "gc", "--keep", str(tmp_path / "sweep1"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete {sft1}" in out and f"would delete {samples}" in out and sft0 not in out
    assert all(s.root.joinpath("v2", k).exists() for k in keys)  # dry run: nothing gone
    assert cache_cli.main(["--root", root, "gc", "--keep", str(tmp_path / "sweep1"), str(tmp_path / "sweep2")]) == 0
    assert [k for k in keys if s.root.joinpath("v2", k).exists()] == [sft0, policy, samples]
    assert cache_cli.main(["--root", root, "gc", "--keep", str(tmp_path / "sweep1")]) == 0
    assert [k for k in keys if s.root.joinpath("v2", k).exists()] == [sft0, policy]
    assert not [p for p in s.root.joinpath("v2").rglob("*") if ".gc-" in p.name]
    # a sweep folder without any run.json deletes nothing
    (tmp_path / "empty").mkdir()
    assert cache_cli.main(["--root", root, "gc", "--keep", str(tmp_path / "empty")]) == 2
    assert [k for k in keys if s.root.joinpath("v2", k).exists()] == [sft0, policy]


def test_cache_gc_quarantine_and_usage_errors(tmp_path):
    s, keys = _populate(tmp_path)
    (s.root / "v2" / keys[0] / "data.json").write_text("{")
    assert cache_cli.main(["--root", str(s.root), "verify"]) == 1
    assert (s.root / ".quarantine").exists()
    assert cache_cli.main(["--root", str(s.root), "gc"]) == 2
    assert cache_cli.main(["--root", str(s.root), "gc", "--quarantine"]) == 0
    assert not (s.root / ".quarantine").exists()


def _populate(tmp_path):
    s = Store(tmp_path / "cache")
    keys = {}
    for kind, fields in [
        ("sft", {"model": "tiny", "seed": 0}),
        ("sft", {"model": "tiny", "seed": 1}),
        ("policy", {"loss": "dpo", "beta": 0.1, "sft": {"model": "tiny", "seed": 0}}),
        ("samples", {"n": 16}),
    ]:
        s.get_or_build_json(kind, fields, lambda f=fields: {"fields": f, "pad": "x" * 100})
        keys[(kind, json.dumps(fields))] = s.key(kind, fields)
    return s, list(keys.values())


def _run_json(folder: Path, hits, built):
    folder.mkdir(parents=True)
    atomic_write_json(folder / "run.json", {"status": "done", "metrics": {"artifacts": {"hits": hits, "built": built}}})


def test_po_bench_cache_dispatches_from_the_app(tmp_path):
    s, _ = _populate(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PO_BENCH_CACHE=str(s.root))
    r = subprocess.run(
        [sys.executable, "-m", "po_bench", "cache", "du"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].split()[:2] == ["total", "4"]

"""Artifact store: keys, atomic publication, sharing, manifests (verified reads, quarantine), the
store format version, the lock-file fallback (two real processes), and ``po-bench cache``."""

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from po_bench import store as store_mod
from po_bench.cli import cache as cache_cli
from po_bench.store import STORE_VERSION, Store, atomic_write_json, check_artifact, fingerprint

ROOT = Path(__file__).resolve().parent.parent


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
    assert s.path("k", {"f": 1}) == tmp_path / f"v{STORE_VERSION}" / "k" / fingerprint({"f": 1})
    assert json.loads((s.path("k", {"f": 1}) / "fields.json").read_text()) == {"f": 1}
    assert s.misses == [s.key("k", {"f": 1})] and s.hits == [s.key("k", {"f": 1})]


def test_failed_build_leaves_nothing(tmp_path):
    s = Store(tmp_path)

    def boom(d):
        (d / "partial.bin").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        s.get_or_build_dir("sft", {"f": 1}, boom)
    assert not s.exists("sft", {"f": 1})
    assert [p.name for p in (tmp_path / "v2" / "sft").iterdir() if ".lock" not in p.name] == []


def test_atomic_write_json(tmp_path):
    p = tmp_path / "run.json"
    atomic_write_json(p, {"status": "done"})
    assert json.loads(p.read_text()) == {"status": "done"}
    assert [x.name for x in tmp_path.iterdir()] == ["run.json"]


# ---- manifests ---------------------------------------------------------------------------------------


def _build_model_dir(d: Path) -> None:
    (d / "sub").mkdir()
    (d / "weights.bin").write_bytes(bytes(range(256)) * 40)
    (d / "sub" / "config.json").write_text('{"layers": 2}')


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path):
    import hashlib

    s = Store(tmp_path)
    d = s.get_or_build_dir("sft", {"f": 1}, _build_model_dir)
    m = json.loads((d / "manifest.json").read_text())
    assert m["store_version"] == STORE_VERSION and m["kind"] == "sft" and m["hash"] == d.name
    listed = {f["path"]: f for f in m["files"]}
    assert set(listed) == {"weights.bin", "sub/config.json", "fields.json"}  # fields.json too; not itself
    for rel, f in listed.items():
        data = (d / rel).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert check_artifact(d) is None and check_artifact(d, full_hash=True) is None


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name == "po_bench.store"]


def test_truncated_json_artifact_is_quarantined_and_rebuilt_with_one_warning(tmp_path, caplog):
    s = Store(tmp_path)
    calls = []
    build = lambda: calls.append(1) or {"rows": list(range(50))}
    s.get_or_build_json("samples", {"n": 16}, build)
    d = s.path("samples", {"n": 16})
    text = (d / "data.json").read_text()
    (d / "data.json").write_text(text[: len(text) // 2])  # truncated on disk
    caplog.set_level(logging.WARNING, logger="po_bench.store")
    s2 = Store(tmp_path)
    assert s2.get_or_build_json("samples", {"n": 16}, build) == {"rows": list(range(50))}
    assert len(calls) == 2 and s2.misses == [s2.key("samples", {"n": 16})] and s2.hits == []
    w = _warnings(caplog)
    assert len(w) == 1, w
    assert f"samples/{d.name}" in w[0] and "data.json" in w[0] and "size" in w[0]
    q = list((tmp_path / ".quarantine").iterdir())
    assert len(q) == 1 and q[0].name.startswith(f"samples-{d.name}-")
    assert (q[0] / "data.json").read_text() == text[: len(text) // 2]  # moved aside, not deleted
    assert check_artifact(d) is None  # the rebuilt one is good


def test_same_size_corruption_of_a_small_file_is_caught_on_read(tmp_path, caplog):
    s = Store(tmp_path)
    d = s.get_or_build_dir("sft", {"f": 1}, _build_model_dir)
    raw = bytearray((d / "weights.bin").read_bytes())
    raw[100] ^= 0xFF
    (d / "weights.bin").write_bytes(raw)
    caplog.set_level(logging.WARNING, logger="po_bench.store")
    built = []
    s.get_or_build_dir("sft", {"f": 1}, lambda t: built.append(1) or _build_model_dir(t))
    assert built == [1]
    (w,) = _warnings(caplog)
    assert f"sft/{d.name}" in w and "weights.bin: sha256" in w


def test_large_files_are_size_checked_on_read_and_hashed_by_verify(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(store_mod, "HASH_ON_READ_BYTES", 1000)  # weights.bin (10240 B) counts as large
    s = Store(tmp_path)
    d = s.get_or_build_dir("sft", {"f": 1}, _build_model_dir)
    raw = bytearray((d / "weights.bin").read_bytes())
    raw[5] ^= 0xFF
    (d / "weights.bin").write_bytes(raw)  # same size, other bytes
    built = []
    assert s.get_or_build_dir("sft", {"f": 1}, lambda t: built.append(1)) == d and built == []  # size only
    assert cache_cli.main(["--root", str(tmp_path), "verify", "--dry-run"]) == 1
    assert "weights.bin: sha256" in capsys.readouterr().out and d.exists()
    assert cache_cli.main(["--root", str(tmp_path), "verify"]) == 1
    assert not d.exists() and len(list((tmp_path / ".quarantine").iterdir())) == 1
    assert cache_cli.main(["--root", str(tmp_path), "verify"]) == 0


def test_missing_manifest_means_rebuild(tmp_path, caplog):
    s = Store(tmp_path)
    d = s.get_or_build_dir("sft", {"f": 1}, _build_model_dir)
    (d / "manifest.json").unlink()
    (d / "weights.bin").unlink()  # e.g. a copy that stopped half-way
    assert not s.exists("sft", {"f": 1})
    caplog.set_level(logging.WARNING, logger="po_bench.store")
    s.get_or_build_dir("sft", {"f": 1}, _build_model_dir)
    assert (d / "weights.bin").exists() and check_artifact(d) is None
    (w,) = _warnings(caplog)
    assert "no manifest.json" in w and f"sft/{d.name}" in w


def test_load_json_quarantines_a_damaged_artifact_and_returns_none(tmp_path):
    s = Store(tmp_path)
    s.save_json("ref_logps", {"k": 1}, {"chosen": [1.0, 2.0]})
    assert Store(tmp_path).load_json("ref_logps", {"k": 1}) == {"chosen": [1.0, 2.0]}
    (s.path("ref_logps", {"k": 1}) / "data.json").write_text('{"chosen": [1.0,')
    s2 = Store(tmp_path)
    assert s2.load_json("ref_logps", {"k": 1}) is None and s2.hits == []
    assert s2.quarantined == [s2.key("ref_logps", {"k": 1})]
    assert s2.load_json("ref_logps", {"k": 2}) is None  # absent: None, nothing quarantined
    assert len(s2.quarantined) == 1


# ---- store format version ------------------------------------------------------------------------------


def test_old_format_artifacts_are_never_read_and_named_once(tmp_path, caplog):
    old = tmp_path / "sft" / fingerprint({"f": 1})
    old.mkdir(parents=True)
    (old / "fields.json").write_text('{"f": 1}')
    (old / "data.json").write_text('{"stale": true}')
    (tmp_path / "judge").mkdir()  # the judge client's cache is not an old artifact
    caplog.set_level(logging.WARNING, logger="po_bench.store")
    s = Store(tmp_path)
    Store(tmp_path)
    msgs = [m for m in _warnings(caplog) if "older po-bench" in m]
    assert msgs == [
        f"artifact store {tmp_path.resolve()} holds artifacts from an older po-bench (format 1, "
        f"incomplete keys): they are not used; delete {tmp_path.resolve() / 'sft'}"
    ]
    assert s.load_json("sft", {"f": 1}) is None
    assert s.get_or_build_json("sft", {"f": 1}, lambda: {"fresh": True}) == {"fresh": True}
    assert old.exists() and s.get_or_build_json("sft", {"f": 1}, lambda: 1 / 0) == {"fresh": True}


# ---- locks ---------------------------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from po_bench.store import Store
    root, log, me, other_ready = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = Store(root)

    def note(event):
        with open(log, "a") as f:
            f.write(f"{me} {event}\\n"); f.flush(); os.fsync(f.fileno())

    def build(d):
        note("build-start")
        if other_ready != "-":  # hold the lock until the other process is about to contend for it
            while not Path(other_ready).exists():
                time.sleep(0.05)
        for i in range(3):
            note(f"build-{i}")
        (d / "model.bin").write_text(me)
        note("build-end")

    if other_ready == "-":
        note("ask")
        Path(str(log) + ".ready").write_text("1")
    d = s.get_or_build_dir("sft", {"f": 1}, build)
    note("got " + (d / "model.bin").read_text())
    for i in range(5):
        with s._lock("sft", {"f": 2}):
            note("cs-start")
            note("cs-end")
""")


def _run_contenders(tmp_path, mode: str) -> list[str]:
    log = tmp_path / "events.log"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, PO_BENCH_LOCK=mode, PYTHONPATH=str(ROOT))
    a = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "store"), str(log), "A", str(log) + ".ready"], env=env
    )
    # B starts once A is inside the build (A holds the key's lock); it marks .ready just before it asks
    while not log.exists() or "A build-start" not in log.read_text():
        assert a.poll() is None, "A exited early"
        time.sleep(0.05)
    b = subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(log), "B", "-"], env=env)
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    return log.read_text().splitlines()


@pytest.mark.parametrize("mode", ["file", "flock"])
def test_two_processes_contend_for_one_key(tmp_path, mode):
    ev = _run_contenders(tmp_path, mode)
    # one build, by A; B asked while A built and got A's artifact after A's build ended
    assert [e for e in ev if "build-start" in e] == ["A build-start"]
    assert ev.index("B ask") < ev.index("A build-end") < ev.index("B got A")
    assert "A got A" in ev
    # the critical sections never interleave: every start is followed by the same process's end
    cs = [e for e in ev if " cs-" in e]
    assert len(cs) == 20
    for start, end in zip(cs[::2], cs[1::2]):
        assert start.endswith("cs-start") and end == start.replace("cs-start", "cs-end")
    assert not list((tmp_path / "store" / "v2" / "sft").glob("*.lock.file"))  # released


def test_stale_lock_of_a_dead_process_is_broken(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PO_BENCH_LOCK", "file")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    s = Store(tmp_path)
    lock = tmp_path / "v2" / "sft" / f".{fingerprint({'f': 1})}.lock.file"
    lock.parent.mkdir(parents=True)
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "time": 0, "token": "x"}))
    caplog.set_level(logging.WARNING, logger="po_bench.store")
    assert s.get_or_build_json("sft", {"f": 1}, lambda: 7) == 7
    assert any("stale lock" in m and "dead" in m for m in _warnings(caplog))
    assert not lock.exists()


def test_stale_lock_from_another_host_breaks_only_when_old(tmp_path, monkeypatch):
    monkeypatch.setenv("PO_BENCH_LOCK_STALE_S", "600")
    lock = tmp_path / ".x.lock.file"
    lock.write_text(json.dumps({"host": "other-node", "pid": 1, "time": 0, "token": "t"}))
    store_mod._break_if_stale(lock, "this-node")
    assert lock.exists()  # fresh: another node's live build
    os.utime(lock, (1e9, 1e9))  # not refreshed for years
    store_mod._break_if_stale(lock, "this-node")
    assert not lock.exists()


def test_flock_unsupported_falls_back_to_lock_files(tmp_path, monkeypatch, caplog):
    def no_flock(fh, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(store_mod.fcntl, "flock", no_flock)
    monkeypatch.setattr(store_mod, "_FLOCK_UNSUPPORTED", False)
    caplog.set_level(logging.WARNING, logger="po_bench.store")
    s = Store(tmp_path)
    assert s.get_or_build_json("k", {"f": 1}, lambda: 1) == 1
    assert s.get_or_build_json("k", {"f": 1}, lambda: 2) == 1
    assert sum("flock is not supported" in m for m in _warnings(caplog)) == 1
    assert store_mod._FLOCK_UNSUPPORTED


def test_bad_lock_mode_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PO_BENCH_LOCK", "nfs")
    with pytest.raises(ValueError, match="PO_BENCH_LOCK"):
        Store(tmp_path).get_or_build_json("k", {"f": 1}, lambda: 1)


# ---- po-bench cache ------------------------------------------------------------------------------------


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


def _run_json(folder: Path, hits, built):
    folder.mkdir(parents=True)
    atomic_write_json(folder / "run.json", {"status": "done", "metrics": {"artifacts": {"hits": hits, "built": built}}})


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

"""Artifact store: every stage reads and writes its artifacts here, keyed by the config fields
that determine them, so that runs in a sweep share an SFT checkpoint, on-policy samples or
reference log-probs whenever those fields agree.

Layout (store format ``STORE_VERSION`` = 2)::

    <root>/v2/<kind>/<hash>/           one artifact: its files, plus
                     .../fields.json   the key's fields (provenance)
                     .../manifest.json every file's relative path, size and sha256; written LAST,
                                       so it is the completeness marker
    <root>/v2/<kind>/.<hash>.lock      the per-key lock (flock) or lock file (file mode)
    <root>/v2/<kind>/.<hash>.work      a build in progress (kept after a kill: the build resumes)
    <root>/.quarantine/<kind>-<hash>-<time>   artifacts that failed verification, moved aside
    <root>/judge/                      the judge client's response cache (not store artifacts)

Writes go to a work folder that is renamed into place once ``manifest.json`` is written, so a
half-written artifact is never visible.

**Verification on read.**  ``get_or_build_dir``, ``get_or_build_json`` and ``load_json`` check an
artifact's manifest before serving it: every listed file must exist with the recorded size, and
files smaller than ``HASH_ON_READ_BYTES`` (64 MB) are re-hashed (sha256) on every read.  Larger
files (model checkpoints) get the size check only on a read, since hashing gigabytes per run is
too slow; ``po-bench cache verify`` hashes everything.  Files in the folder that the manifest does
not list are ignored.  A missing or mismatching manifest means the artifact is moved to
``<root>/.quarantine/`` and rebuilt, with one warning line naming it (``kind/hash``) and the first
mismatching file.

**Format version.**  Format 1 (po-bench before the store version bump) kept artifacts directly
under ``<root>/<kind>/<hash>/`` under keys that missed fields that change an artifact; those are
never read.  A store that still holds them says so once, in one line naming the folders to delete.

**Locking.**  ``PO_BENCH_LOCK`` selects how concurrent jobs (threads, processes, nodes) exclude
each other while one of them builds a key:

* ``flock`` (default): ``fcntl.flock`` on ``.<hash>.lock``.  If the file system refuses flock
  (some Lustre / BeeGFS / NFS mounts: ``ENOLCK``, ``EOPNOTSUPP``, ``ENOSYS``), the store logs
  one line and falls back to ``file`` for the rest of the process.
* ``file``: a lock file ``.<hash>.lock.file`` created with ``O_CREAT | O_EXCL`` (atomic on any
  POSIX file system, including parallel ones), holding the holder's host, pid, start time and a
  random token.  The holder refreshes its modification time every ``PO_BENCH_LOCK_STALE_S / 4``
  seconds.  A waiter polls (0.1 s, backing off to 2 s) and breaks the lock when it is stale: the
  holder is on this host and its pid is dead, or the lock file was not refreshed for
  ``PO_BENCH_LOCK_STALE_S`` seconds (default 600; a holder on another node that died).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("po_bench.store")

STORE_VERSION = 2
HASH_ON_READ_BYTES = 64 * 2**20  # files below this size are sha256-checked on every read
MANIFEST = "manifest.json"
FIELDS = "fields.json"
QUARANTINE = ".quarantine"
NON_ARTIFACT_DIRS = {"judge"}  # other tenants of the cache root (the judge client's response cache)
LOCK_MODES = ("flock", "file")


def canonical(fields: Any) -> str:
    return json.dumps(fields, sort_keys=True, default=str, separators=(",", ":"))


def fingerprint(fields: Any) -> str:
    return hashlib.sha256(canonical(fields).encode()).hexdigest()[:16]


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


# ---- manifests -------------------------------------------------------------------------------------


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _artifact_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.relative_to(d).as_posix() != MANIFEST)


def write_manifest(d: Path, kind: str, key_hash: str) -> dict:
    """Record every file under ``d`` (relative path, size, sha256); ``manifest.json`` is written last."""
    files = [
        {"path": p.relative_to(d).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in _artifact_files(d)
    ]
    manifest = {
        "store_version": STORE_VERSION,
        "kind": kind,
        "hash": key_hash,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    atomic_write_json(d / MANIFEST, manifest)
    return manifest


def read_manifest(d: Path) -> dict | None:
    try:
        m = json.loads((d / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and isinstance(m.get("files"), list) else None


def check_artifact(d: Path, full_hash: bool = False) -> str | None:
    """None when the artifact at ``d`` matches its manifest, else the reason (naming the first
    mismatching file).  Sizes are always checked; sha256 for files under ``HASH_ON_READ_BYTES``,
    or for every file with ``full_hash``."""
    if not (d / MANIFEST).exists():
        return f"no {MANIFEST}"
    m = read_manifest(d)
    if m is None:
        return f"{MANIFEST} unreadable"
    if m.get("store_version") != STORE_VERSION:
        return f"{MANIFEST} is store format {m.get('store_version')}, not {STORE_VERSION}"
    for f in m["files"]:
        p = d / f["path"]
        try:
            size = p.stat().st_size
        except OSError:
            return f"{f['path']}: missing"
        if size != f["size"]:
            return f"{f['path']}: size {size} != {f['size']} in the manifest"
        if (full_hash or size < HASH_ON_READ_BYTES) and sha256_file(p) != f["sha256"]:
            return f"{f['path']}: sha256 differs from the manifest"
    return None


def dir_size(p: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# ---- locks -----------------------------------------------------------------------------------------


def _lock_mode() -> str:
    mode = os.environ.get("PO_BENCH_LOCK", "flock").strip().lower() or "flock"
    if mode not in LOCK_MODES:
        raise ValueError(f"PO_BENCH_LOCK={mode!r}: expected one of {', '.join(LOCK_MODES)}")
    return mode


_FLOCK_UNSUPPORTED = False  # set once flock failed on this process's file system


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _stale_after() -> float:
    return float(os.environ.get("PO_BENCH_LOCK_STALE_S", "600"))


@contextlib.contextmanager
def file_lock(lock_path: Path, poll: float = 0.1, max_poll: float = 2.0):
    """Exclusive lock through a lock file created with O_CREAT|O_EXCL (see the module docstring)."""
    host, pid, token = socket.gethostname(), os.getpid(), secrets.token_hex(8)
    body = json.dumps({"host": host, "pid": pid, "time": time.time(), "token": token}).encode()
    delay = poll
    while True:
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _break_if_stale(lock_path, host)
            time.sleep(delay)
            delay = min(max_poll, delay * 1.5)
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        break
    stop = threading.Event()

    def heartbeat() -> None:  # keeps a long build's lock fresh for waiters on other hosts
        while not stop.wait(max(1.0, _stale_after() / 4)):
            with contextlib.suppress(OSError):
                os.utime(lock_path)

    beat = threading.Thread(target=heartbeat, name="po-bench-lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(OSError):
            if json.loads(lock_path.read_bytes()).get("token") == token:  # still ours
                os.unlink(lock_path)


def _read_holder(lock_path: Path) -> dict | None:
    try:
        return json.loads(lock_path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written right now, or garbage: judged by age alone


def _break_if_stale(lock_path: Path, host: str) -> None:
    holder = _read_holder(lock_path)
    if holder is None:
        return
    try:
        age = time.time() - lock_path.stat().st_mtime
    except FileNotFoundError:
        return
    dead = holder.get("host") == host and isinstance(holder.get("pid"), int) and not _pid_alive(holder["pid"])
    if not dead and age < _stale_after():
        return
    # Move the stale file aside under a unique name (atomic), then check that what we moved is the
    # holder we judged; if another waiter broke it first and a live holder's file got moved, put it back.
    aside = lock_path.with_name(f"{lock_path.name}.stale.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.rename(lock_path, aside)
    except FileNotFoundError:
        return
    moved = _read_holder(aside)
    if moved and holder and moved.get("token") != holder.get("token"):
        with contextlib.suppress(OSError):
            os.link(aside, lock_path)  # never clobbers a lock taken meanwhile
    else:
        log.warning(
            "artifact store: broke a stale lock %s (holder %s pid %s, %s, %.0f s old)",
            lock_path,
            holder.get("host"),
            holder.get("pid"),
            "dead" if dead else "not refreshed",
            age,
        )
    with contextlib.suppress(OSError):
        os.unlink(aside)


# ---- the store -------------------------------------------------------------------------------------

_FORMAT1_WARNED: set[Path] = set()


def _format1_dirs(root: Path) -> list[Path]:
    """Folders of a format-1 store directly under ``root`` (``<root>/<kind>/<hash>/fields.json``)."""
    out = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith(".") or d.name in NON_ARTIFACT_DIRS or d.name == f"v{STORE_VERSION}":
            continue
        if any((c / FIELDS).exists() for c in d.iterdir() if c.is_dir()):
            out.append(d)
    return out


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.base = self.root / f"v{STORE_VERSION}"
        self.hits: list[str] = []  # keys served from the store during this process (for the run record)
        self.misses: list[str] = []
        self.quarantined: list[str] = []
        # called before this process builds an artifact (the pipeline sets torch's threads there: a run whose
        # artifacts all come from the store computes nothing and never imports torch)
        self.before_build: Callable[[], None] | None = None
        old = _format1_dirs(self.root) if self.root not in _FORMAT1_WARNED else []
        if old:
            _FORMAT1_WARNED.add(self.root)
            log.warning(
                "artifact store %s holds artifacts from an older po-bench (format 1, incomplete keys): "
                "they are not used; delete %s",
                self.root,
                " ".join(str(d) for d in old),
            )

    def path(self, kind: str, fields: dict) -> Path:
        return self.base / kind / fingerprint(fields)

    def key(self, kind: str, fields: dict) -> str:
        return f"{kind}/{fingerprint(fields)}"

    def _lock(self, kind: str, fields: dict):
        return self.lock_key(kind, fingerprint(fields))

    @contextlib.contextmanager
    def lock_key(self, kind: str, key_hash: str):
        """The per-key lock (``PO_BENCH_LOCK``: flock, falling back to lock files; see the module docstring)."""
        global _FLOCK_UNSUPPORTED
        folder = self.base / kind
        folder.mkdir(parents=True, exist_ok=True)
        name = f".{key_hash}.lock"
        if _lock_mode() == "flock" and not _FLOCK_UNSUPPORTED:
            with open(folder / name, "w") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                except OSError as e:
                    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                        raise
                    _FLOCK_UNSUPPORTED = True
                    log.warning(
                        "artifact store %s: flock is not supported here (%s); using lock files (PO_BENCH_LOCK=file)",
                        self.root,
                        e,
                    )
                else:
                    try:
                        yield
                    finally:
                        fcntl.flock(fh, fcntl.LOCK_UN)
                    return
        with file_lock(folder / f"{name}.file"):
            yield

    def artifacts(self, kind: str | None = None) -> list[tuple[str, str, Path]]:
        """(kind, hash, folder) of every published-looking artifact folder (work folders and locks skipped)."""
        out: list[tuple[str, str, Path]] = []
        if not self.base.is_dir():
            return out
        for kd in sorted(self.base.iterdir()):
            if not kd.is_dir() or kd.name.startswith(".") or (kind and kd.name != kind):
                continue
            out += [(kd.name, d.name, d) for d in sorted(kd.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        return out

    def exists(self, kind: str, fields: dict) -> bool:
        """Whether a published artifact is there (its manifest exists; not verified: see the reads)."""
        return (self.path(kind, fields) / MANIFEST).exists()

    def quarantine(self, kind: str, key_hash: str, reason: str) -> Path | None:
        """Move ``<kind>/<hash>`` aside to ``<root>/.quarantine/`` with one warning line."""
        src = self.base / kind / key_hash
        stamp = _dt.datetime.now().strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}-{secrets.token_hex(2)}"
        dst = self.root / QUARANTINE / f"{kind}-{key_hash}-{stamp}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except FileNotFoundError:
            return None
        self.quarantined.append(f"{kind}/{key_hash}")
        log.warning(
            "artifact store: %s/%s failed verification (%s); moved to %s and rebuilt", kind, key_hash, reason, dst
        )
        return dst

    def _verified(self, kind: str, fields: dict) -> bool:
        """Under the key's lock: True if a good artifact is there; a bad one is quarantined."""
        final = self.path(kind, fields)
        if not final.exists():
            return False
        reason = check_artifact(final)
        if reason is None:
            return True
        self.quarantine(kind, final.name, reason)
        return False

    def get_or_build_dir(self, kind: str, fields: dict, build: Callable[[Path], None]) -> Path:
        """Directory artifact: ``build(tmp_dir)`` fills a fresh directory that is then published."""
        final = self.path(kind, fields)
        with self._lock(kind, fields):
            if self._verified(kind, fields):
                self.hits.append(self.key(kind, fields))
                return final
            self.misses.append(self.key(kind, fields))
            # A stable work folder: a build killed outright (SIGKILL, node loss) leaves it in place,
            # so the next attempt resumes from whatever checkpoints it holds.
            tmp = final.parent / f".{final.name}.work"
            tmp.mkdir(parents=True, exist_ok=True)
            try:
                if self.before_build is not None:
                    self.before_build()
                build(tmp)
                atomic_write_json(tmp / FIELDS, fields)  # provenance
                write_manifest(tmp, kind, final.name)  # written last: marks completeness
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final

    def _read_data_json(self, kind: str, fields: dict) -> Any:
        return json.loads((self.path(kind, fields) / "data.json").read_text())

    def get_or_build_json(self, kind: str, fields: dict, build: Callable[[], Any]) -> Any:
        def _build(d: Path) -> None:
            atomic_write_json(d / "data.json", build())

        for attempt in range(2):
            self.get_or_build_dir(kind, fields, _build)
            try:
                return self._read_data_json(kind, fields)
            except (OSError, ValueError) as e:  # changed after verification (or a manifest-consistent bad file)
                if attempt:
                    raise
                with self._lock(kind, fields):
                    self.quarantine(kind, fingerprint(fields), f"data.json: {type(e).__name__}: {e}")

    def load_json(self, kind: str, fields: dict) -> Any | None:
        """The JSON artifact if a verified one is there, else None (a damaged one is quarantined)."""
        if not self.path(kind, fields).exists():
            return None
        with self._lock(kind, fields):
            if not self._verified(kind, fields):
                return None
            try:
                obj = self._read_data_json(kind, fields)
            except (OSError, ValueError) as e:
                self.quarantine(kind, fingerprint(fields), f"data.json: {type(e).__name__}: {e}")
                return None
        self.hits.append(self.key(kind, fields))
        return obj

    def save_json(self, kind: str, fields: dict, obj: Any) -> None:
        self.get_or_build_dir(kind, fields, lambda d: atomic_write_json(d / "data.json", obj))

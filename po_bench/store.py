"""Artifact store: every stage reads and writes its artifacts here, keyed by the config fields
that determine them, so that runs in a sweep share an SFT checkpoint, on-policy samples or
reference log-probs whenever those fields agree.

Layout: ``<root>/<kind>/<hash>/`` holding the artifact plus ``fields.json`` (the key's fields, for
provenance).  Writes go to a temporary sibling and are renamed into place, so a half-written
artifact is never visible; a per-key file lock keeps concurrent jobs from building it twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


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


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.hits: list[str] = []  # keys served from the store during this process (for the run record)
        self.misses: list[str] = []

    def path(self, kind: str, fields: dict) -> Path:
        return self.root / kind / fingerprint(fields)

    def key(self, kind: str, fields: dict) -> str:
        return f"{kind}/{fingerprint(fields)}"

    @contextlib.contextmanager
    def _lock(self, kind: str, fields: dict):
        lock_path = self.root / kind / f".{fingerprint(fields)}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def exists(self, kind: str, fields: dict) -> bool:
        return (self.path(kind, fields) / "fields.json").exists()

    def get_or_build_dir(self, kind: str, fields: dict, build: Callable[[Path], None]) -> Path:
        """Directory artifact: ``build(tmp_dir)`` fills a fresh directory that is then published."""
        final = self.path(kind, fields)
        with self._lock(kind, fields):
            if (final / "fields.json").exists():
                self.hits.append(self.key(kind, fields))
                return final
            self.misses.append(self.key(kind, fields))
            # A stable work folder: a build killed outright (SIGKILL, node loss) leaves it in place,
            # so the next attempt resumes from whatever checkpoints it holds.
            tmp = final.parent / f".{final.name}.work"
            tmp.mkdir(parents=True, exist_ok=True)
            try:
                build(tmp)
                atomic_write_json(tmp / "fields.json", fields)  # written last: marks completeness
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final

    def get_or_build_json(self, kind: str, fields: dict, build: Callable[[], Any]) -> Any:
        def _build(d: Path) -> None:
            atomic_write_json(d / "data.json", build())

        d = self.get_or_build_dir(kind, fields, _build)
        return json.loads((d / "data.json").read_text())

    def load_json(self, kind: str, fields: dict) -> Any | None:
        p = self.path(kind, fields) / "data.json"
        if (self.path(kind, fields) / "fields.json").exists() and p.exists():
            self.hits.append(self.key(kind, fields))
            return json.loads(p.read_text())
        return None

    def save_json(self, kind: str, fields: dict, obj: Any) -> None:
        self.get_or_build_dir(kind, fields, lambda d: atomic_write_json(d / "data.json", obj))

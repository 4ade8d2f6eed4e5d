"""``po-bench cache ls | du | verify | gc``: look after the artifact store (``po_bench/store.py``).

    po-bench cache [--root DIR] ls [--kind KIND]     kind, hash, size, created, a summary of the key's fields
    po-bench cache [--root DIR] du                   artifacts and bytes per kind (+ quarantine)
    po-bench cache [--root DIR] verify [--dry-run]   every manifest checked with sha256; bad artifacts are
                                                     moved to <root>/.quarantine (exit code 1 if any)
    po-bench cache [--root DIR] gc --keep SWEEP_DIR... [--dry-run]
                                                     delete artifacts no run.json under the sweeps used
                                                     (metrics.artifacts.hits and .built)
    po-bench cache [--root DIR] gc --quarantine      delete <root>/.quarantine

The root defaults to ``$PO_BENCH_CACHE`` or ``.po_bench_cache`` (the ``cache_dir`` default).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path

from po_bench.store import FIELDS, QUARANTINE, Store, check_artifact, dir_size, read_manifest


def _default_root() -> str:
    return os.environ.get("PO_BENCH_CACHE") or ".po_bench_cache"


def human(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _leaves(obj, prefix: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and len(obj) > 4:
        yield prefix, f"[{len(obj)} items]"
    else:
        yield prefix, obj


def summary(fields, width: int = 70) -> str:
    """A short one-line summary of a key's fields: leaf=value pairs, cut at ``width``."""
    text = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in _leaves(fields))
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_ls(store: Store, a) -> int:
    rows = []
    for kind, h, d in store.artifacts(a.kind):
        m = read_manifest(d)
        try:
            fields = json.loads((d / FIELDS).read_text())
        except (OSError, ValueError):
            fields = None
        rows.append(
            (
                kind,
                h,
                human(dir_size(d)),
                (m or {}).get("created", "no manifest"),
                summary(fields) if fields is not None else "(no fields.json)",
            )
        )
    if not rows:
        print(f"no artifacts in {store.base}")
        return 0
    print(f"{'kind':<12} {'hash':<16} {'size':>8}  {'created':<25} fields")
    for r in rows:
        print(f"{r[0]:<12} {r[1]:<16} {r[2]:>8}  {r[3]:<25} {r[4]}")
    return 0


def cmd_du(store: Store, a) -> int:
    per: dict[str, list[int]] = {}
    for kind, _h, d in store.artifacts():
        c = per.setdefault(kind, [0, 0])
        c[0] += 1
        c[1] += dir_size(d)
    print(f"{'kind':<14} {'artifacts':>9} {'size':>9}")
    for kind, (n, b) in sorted(per.items()):
        print(f"{kind:<14} {n:>9} {human(b):>9}")
    print(f"{'total':<14} {sum(n for n, _ in per.values()):>9} {human(sum(b for _, b in per.values())):>9}")
    q = store.root / QUARANTINE
    if q.is_dir():
        items = list(q.iterdir())
        print(f"{'quarantine':<14} {len(items):>9} {human(dir_size(q)):>9}   (po-bench cache gc --quarantine)")
    return 0


def cmd_verify(store: Store, a) -> int:
    bad = 0
    n = 0
    for kind, h, d in store.artifacts():
        n += 1
        reason = check_artifact(d, full_hash=True)
        if reason is None:
            continue
        bad += 1
        if a.dry_run:
            print(f"BAD {kind}/{h}: {reason}")
        else:
            with store.lock_key(kind, h):
                dst = store.quarantine(kind, h, reason)
            print(f"BAD {kind}/{h}: {reason} -> {dst}")
    print(
        f"verified {n} artifacts (sha256 of every file): {n - bad} ok, {bad} bad"
        + (" (dry run: nothing moved)" if a.dry_run and bad else "")
    )
    return 1 if bad else 0


def _kept_keys(sweeps: list[str]) -> tuple[set[str], int]:
    keep: set[str] = set()
    n = 0
    for s in sweeps:
        root = Path(s)
        if not root.exists():
            raise SystemExit(f"po-bench cache gc: {root} does not exist")
        for rj in [root] if root.is_file() else sorted(root.rglob("run.json")):
            try:
                rec = json.loads(rj.read_text())
            except (OSError, ValueError) as e:
                raise SystemExit(f"po-bench cache gc: cannot read {rj} ({e}); nothing deleted") from None
            art = ((rec.get("metrics") or {}).get("artifacts")) or {}
            keep.update(art.get("hits") or [])
            keep.update(art.get("built") or [])
            n += 1
    return keep, n


def _delete(path: Path, dry_run: bool) -> None:
    if dry_run:
        return
    if path.is_dir():
        doomed = path.with_name(f".{path.name}.gc-{secrets.token_hex(4)}")  # atomically out of sight first
        os.replace(path, doomed)
        shutil.rmtree(doomed)
    else:
        path.unlink(missing_ok=True)


def cmd_gc(store: Store, a) -> int:
    verb = "would delete" if a.dry_run else "deleted"
    if not (a.keep or a.quarantine):
        print("po-bench cache gc: say what to delete: --keep SWEEP_DIR... or --quarantine", file=sys.stderr)
        return 2
    if a.quarantine:
        q = store.root / QUARANTINE
        if q.is_dir():
            print(f"{verb} {q} ({human(dir_size(q))})")
            _delete(q, a.dry_run)
    if a.keep:
        keep, n_runs = _kept_keys(a.keep)
        if n_runs == 0:
            print(f"po-bench cache gc: no run.json under {' '.join(a.keep)}; nothing deleted", file=sys.stderr)
            return 2
        freed = n_del = n_kept = 0
        for kind, h, d in store.artifacts():
            if f"{kind}/{h}" in keep:
                n_kept += 1
                continue
            size = dir_size(d)
            print(f"{verb} {kind}/{h} ({human(size)})")
            if not a.dry_run:
                with store.lock_key(kind, h):
                    _delete(d, False)
                (d.parent / f".{h}.lock").unlink(missing_ok=True)
            freed += size
            n_del += 1
        print(f"gc: {n_runs} runs use {len(keep)} artifacts; kept {n_kept}, {verb} {n_del} ({human(freed)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="po-bench cache",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--root", default=None, help="the store's root (cache_dir); default $PO_BENCH_CACHE or .po_bench_cache"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("ls", help="list artifacts")
    ls.add_argument("--kind", default=None)
    sub.add_parser("du", help="sizes per kind")
    v = sub.add_parser("verify", help="check every manifest with sha256; quarantine bad artifacts")
    v.add_argument("--dry-run", action="store_true", help="report only, move nothing")
    g = sub.add_parser("gc", help="delete artifacts")
    g.add_argument("--keep", nargs="+", metavar="SWEEP_DIR", help="keep what the run.json files under these use")
    g.add_argument("--quarantine", action="store_true", help="delete the quarantine folder")
    g.add_argument("--dry-run", action="store_true", help="print what would be deleted")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    store = Store(a.root or _default_root())
    return {"ls": cmd_ls, "du": cmd_du, "verify": cmd_verify, "gc": cmd_gc}[a.cmd](store, a)


if __name__ == "__main__":
    sys.exit(main())

"""Reading raw rows: local files (.jsonl / .json / .parquet, gzip), ``save_to_disk`` folders and the Hub."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from po_bench.data.formats.base import BAD_ROW, DataError


def source_name(dcfg, split: str | None = None) -> str:
    split = split or dcfg.split
    if getattr(dcfg, "path", None):
        return str(_local_path(dcfg.path, split, dcfg.split))
    return f"{dcfg.hub_id} (split {split})"


def parse_hub_id(hub_id: str) -> tuple[str, str | None, str | None]:
    """``owner/name[:config][/data_dir]`` -> (repo id, config name, data_dir).

    ``Anthropic/hh-rlhf/harmless-base`` loads one HH-RLHF subset (``data_dir=harmless-base``).
    """
    parts = hub_id.strip("/").split("/")
    if len(parts) < 2:
        raise DataError(f"dataset.hub_id={hub_id!r}: expected owner/name[:config][/data_dir]")
    repo, data_dir = "/".join(parts[:2]), ("/".join(parts[2:]) or None)
    name = None
    if ":" in repo:
        repo, name = repo.split(":", 1)
    return repo, name, data_dir


def _hub_load(repo_id: str, split: str, name: str | None = None, data_dir: str | None = None):
    """The one place that downloads: ``datasets.load_dataset`` (tests replace this function)."""
    import datasets  # lazy: datasets (~1 s) only for Hub ids and save_to_disk folders

    return datasets.load_dataset(repo_id, name=name, data_dir=data_dir, split=split)


def _local_path(path: str, split: str, default_split: str) -> Path:
    p = Path(str(path).replace("{split}", split)).expanduser()
    if "{split}" not in str(path) and split != default_split and not p.is_dir():
        raise DataError(
            f"dataset.path={path} is one file (split {default_split}); split {split!r} was asked for: "
            "put {split} in dataset.path, or set dataset.eval_split=null"
        )
    return p


def read_file(path: str | Path, max_rows: int = 0) -> list[dict]:
    """Rows of a local .jsonl / .jsonl.gz / .json / .json.gz / .parquet file.

    A JSONL line that is not a JSON object becomes a placeholder row that the converters count as
    ``invalid_json`` (so it is reported, not silently dropped).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"no such data file: {p}")
    name = p.name.lower()
    opener = gzip.open if name.endswith(".gz") else open
    base = name[:-3] if name.endswith(".gz") else name
    rows: list[dict] = []
    if base.endswith(".jsonl") or base.endswith(".ndjson"):
        with opener(p, "rt", encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if max_rows and len(rows) >= max_rows:
                    break
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    rows.append({BAD_ROW: f"invalid_json (line {i}: {e.msg})"})
                    continue
                rows.append(obj if isinstance(obj, dict) else {BAD_ROW: f"not_an_object (line {i})"})
        return rows
    if base.endswith(".json"):
        with opener(p, "rt", encoding="utf-8") as f:
            try:
                obj = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}: not valid JSON ({e})") from None
        rows = _json_records(obj, p)
    elif base.endswith(".parquet"):
        import pyarrow.parquet as pq  # lazy: only for .parquet files

        table = pq.read_table(p)
        if max_rows:
            table = table.slice(0, max_rows)
        rows = table.to_pylist()
    else:
        raise DataError(f"{p}: unknown data file type (use .jsonl, .jsonl.gz, .json or .parquet)")
    rows = [r if isinstance(r, dict) else {BAD_ROW: "not_an_object"} for r in rows]
    return rows[:max_rows] if max_rows else rows


def _json_records(obj: Any, p: Path) -> list:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        for key in ("data", "rows", "examples", "train"):
            if isinstance(obj.get(key), list):
                return obj[key]
        if obj and all(isinstance(v, list) for v in obj.values()):  # columnar {"col": [...], ...}
            n = {len(v) for v in obj.values()}
            if len(n) == 1:
                keys = list(obj)
                return [dict(zip(keys, vals)) for vals in zip(*obj.values())]
    raise DataError(f'{p}: expected a JSON list of objects, {{"data": [...]}} or columns of equal length')


def load_rows(dcfg, split: str | None = None) -> list[dict]:
    """Raw rows of a dataset config's split: ``dataset.path`` (a local file or a ``save_to_disk``
    folder; wins when set) or ``datasets.load_dataset(dataset.hub_id, split=...)``; then the first
    ``dataset.max_rows`` rows (when > 0)."""
    split = split or dcfg.split
    max_rows = int(getattr(dcfg, "max_rows", 0) or 0)
    if getattr(dcfg, "path", None):
        p = _local_path(dcfg.path, split, dcfg.split)
        if p.is_dir():
            return _dataset_rows(_load_from_disk(p, split), max_rows)
        return read_file(p, max_rows)
    if not getattr(dcfg, "hub_id", None):
        raise DataError(f"dataset={dcfg.name}: set dataset.path=<file> or dataset.hub_id=<owner/name>")
    repo, name, data_dir = parse_hub_id(dcfg.hub_id)
    ds = _hub_load(repo, split, name=name, data_dir=data_dir)
    return _dataset_rows(ds, max_rows)


def _load_from_disk(p: Path, split: str):
    import datasets  # lazy: as in _hub_load

    if not ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
        for ext in (".jsonl", ".jsonl.gz", ".json", ".parquet"):
            if (p / f"{split}{ext}").is_file():
                return read_file(p / f"{split}{ext}")
        raise DataError(f"{p}: not a datasets.save_to_disk folder and no {split}.jsonl/.json/.parquet in it")
    ds = datasets.load_from_disk(str(p))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{p}: no split {split!r} (splits: {', '.join(ds)})")
        ds = ds[split]
    return ds


def _dataset_rows(ds, max_rows: int) -> list[dict]:
    if isinstance(ds, list):
        return ds[:max_rows] if max_rows else ds
    if max_rows and len(ds) > max_rows:
        ds = ds.select(range(max_rows))
    return ds.to_list()

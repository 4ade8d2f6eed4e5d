"""The unpaired view ``{"prompt", "completion", "label"}`` for KTO-like losses."""

from __future__ import annotations

from collections.abc import Sequence

from po_bench.data.formats.base import (
    Report,
    Skip,
    assistant_turn,
    check_columns,
    check_roles,
    columns_for,
    conv_prompt,
    convert_rows,
    get_field,
    split_answer,
)
from po_bench.data.formats.paired import to_pairs
from po_bench.data.formats.read import load_rows, source_name


def _unpaired_row(row, cols, rep) -> dict:
    """One ``unpaired`` row: prompt, completion and its desirable / undesirable label."""
    prompt = get_field(row, cols, "prompt")
    prefix, completion = split_answer(get_field(row, cols, "completion"), "completion")
    label = _label(get_field(row, cols, "label"))
    if isinstance(prompt, str) and prefix is None:
        if not prompt.strip():
            raise Skip("empty_prompt")
        return {"prompt": prompt, "completion": completion, "label": label}
    conv = conv_prompt(prompt, prefix, rep)
    check_roles(conv, rep)
    return {"prompt": conv, "completion": assistant_turn(completion), "label": label}


_TRUE = {"true", "1", "yes", "desirable", "good", "chosen"}


_FALSE = {"false", "0", "no", "undesirable", "bad", "rejected"}


def _label(v) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise Skip("bad_label")


def to_unpaired(
    rows: Sequence[dict], format: str, columns: dict | None = None, source: str = "<rows>"
) -> tuple[list[dict], dict]:
    """The unpaired view ``{"prompt", "completion", "label"}`` for KTO-like losses.

    ``format=unpaired`` rows are parsed directly (completion as text or messages; label as bool,
    0/1 or true/false); any paired format goes through :func:`to_pairs` and contributes its chosen
    answer as desirable and its rejected answer as undesirable.
    """
    if format != "unpaired":
        pairs, report = to_pairs(rows, format, columns, source)
        out = []
        for p in pairs:
            out.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
            out.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
        return out, {**report, "unpaired": len(out)}
    cols = columns_for(format, columns)
    check_columns(rows, cols, ("prompt", "completion", "label"), source)
    out, d = convert_rows(rows, cols, Report(format, source, len(rows)), _unpaired_row, "unpaired examples", "unpaired")
    d["desirable"] = sum(1 for x in out if x["label"])
    d["undesirable"] = len(out) - d["desirable"]
    return out, d


def load_unpaired(dcfg, split: str | None = None) -> tuple[list[dict], dict]:
    split = split or dcfg.split
    rows = load_rows(dcfg, split)
    return to_unpaired(rows, dcfg.format, dict(dcfg.columns or {}), source_name(dcfg, split))

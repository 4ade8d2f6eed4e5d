"""Preference pairs (formats ``pairs``, ``conversational``, and ``hh`` / ``ranked`` through their
families) and the SFT examples drawn from them."""

from __future__ import annotations

from collections.abc import Sequence

from po_bench.data.formats.base import (
    BAD_ROW,
    DataError,
    Report,
    Skip,
    as_messages,
    check_columns,
    columns_for,
    conv_prompt,
    convert_rows,
    finish_pair,
    get_field,
    split_answer,
)
from po_bench.data.formats.hh import hh_pair
from po_bench.data.formats.ranked import ranked_pair
from po_bench.data.formats.read import load_rows, source_name


def _pair_plain(row, cols, rep):
    prompt, chosen, rejected = (get_field(row, cols, k) for k in ("prompt", "chosen", "rejected"))
    for k, v in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not isinstance(v, str):
            raise Skip(f"{k}_not_text")  # message lists: use format conversational
    if not prompt.strip():
        raise Skip("empty_prompt")
    return finish_pair(prompt, chosen, rejected, rep)


def _pair_conversational(row, cols, rep):
    prompt = get_field(row, cols, "prompt", required=False)
    c_prefix, chosen = split_answer(get_field(row, cols, "chosen"), "chosen")
    r_prefix, rejected = split_answer(get_field(row, cols, "rejected"), "rejected")
    if (c_prefix or None) != (r_prefix or None) and c_prefix and r_prefix:
        raise Skip("prompt_mismatch")  # the two answers continue different conversations
    prefix = c_prefix or r_prefix
    return finish_pair(conv_prompt(prompt, prefix, rep), chosen, rejected, rep)


_PAIR_PARSERS = {"pairs": _pair_plain, "conversational": _pair_conversational, "hh": hh_pair, "ranked": ranked_pair}


def to_pairs(
    rows: Sequence[dict], format: str, columns: dict | None = None, source: str = "<rows>"
) -> tuple[list[dict], dict]:
    """Convert raw rows to preference pairs; returns (pairs, report).

    The report counts rows read, pairs kept and rows skipped by reason (with up to five example
    row indices per reason) plus ``notes`` for kept rows that deserve a look.  Raises
    :class:`DataError` naming ``source`` when no pair is left.
    """
    if format == "unpaired":
        raise DataError(f"{source}: format unpaired has no preference pairs; use to_unpaired (KTO-like losses)")
    cols = columns_for(format, columns)
    required = {
        "pairs": ("prompt", "chosen", "rejected"),
        "conversational": ("chosen", "rejected"),
        "hh": ("chosen", "rejected"),
        "ranked": ("prompt", "responses", "scores"),
    }[format]
    check_columns(rows, cols, required, source)
    return convert_rows(
        rows, cols, Report(format, source, len(rows)), _PAIR_PARSERS[format], "preference pairs", "pairs"
    )


def to_sft(
    rows: Sequence[dict], format: str, columns: dict | None = None, source: str = "<rows>"
) -> tuple[list[dict], dict]:
    """SFT examples: ``{"messages"}`` (conversational data with a messages column, e.g. UltraChat)
    or ``{"prompt", "completion"}`` from the chosen answers of preference data."""
    if format == "conversational":
        cols = columns_for(format, columns)
        good = [r for r in rows if BAD_ROW not in r]
        if good and any(cols["messages"] in r for r in good):
            rep = Report(format, source, len(rows))
            out = []
            for i, row in enumerate(rows):
                if BAD_ROW in row:
                    rep.skip(i, row[BAD_ROW].split(" ")[0])
                    continue
                try:
                    msgs = as_messages(get_field(row, cols, "messages"), "messages")
                    if not any(m["role"] == "assistant" for m in msgs):
                        raise Skip("no_assistant_turn")
                    if msgs[-1]["role"] != "assistant":
                        rep.notes["trailing_non_assistant_turns"] += 1
                    out.append({"messages": msgs})
                except Skip as e:
                    rep.skip(i, e.reason)
            rep.check_nonempty(len(out), "SFT conversations")
            return out, rep.as_dict(len(out), "examples")
    pairs, report = to_pairs(rows, format, columns, source)
    out = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs]
    return out, {**report, "examples": len(out)}


def load_pairs(dcfg, split: str | None = None) -> tuple[list[dict], dict]:
    """Rows of a dataset config converted to pairs (see :func:`to_pairs`)."""
    split = split or dcfg.split
    rows = load_rows(dcfg, split)
    return to_pairs(rows, dcfg.format, dict(dcfg.columns or {}), source_name(dcfg, split))


def load_sft(dcfg, split: str | None = None) -> tuple[list[dict], dict]:
    split = split or dcfg.split
    rows = load_rows(dcfg, split)
    return to_sft(rows, dcfg.format, dict(dcfg.columns or {}), source_name(dcfg, split))

"""``ranked`` rows (prompt + k responses + k scores): the best-vs-worst pair, or the whole rated list
(``dataset.pair_strategy=list``, for listwise losses)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from po_bench.data.formats.base import (
    DataError,
    Report,
    Skip,
    assistant_turn,
    check_columns,
    check_roles,
    columns_for,
    conv_prompt,
    convert_rows,
    finish_pair,
    get_field,
    norm_text,
    split_answer,
)
from po_bench.data.formats.read import load_rows, source_name


def _rated(row, cols) -> tuple[Any, list, list[float]]:
    """A ``ranked`` row's prompt, responses and finite scores (one per response), or the skip reason."""
    prompt = get_field(row, cols, "prompt")
    responses, scores = get_field(row, cols, "responses"), get_field(row, cols, "scores")
    if not isinstance(responses, (list, tuple)) or len(responses) < 2:
        raise Skip("too_few_responses")
    if not isinstance(scores, (list, tuple)) or len(scores) != len(responses):
        raise Skip("scores_do_not_match_responses")
    try:
        s = [float(x) for x in scores]
    except (TypeError, ValueError):
        raise Skip("bad_score") from None
    if not all(math.isfinite(x) for x in s):
        raise Skip("bad_score")
    return prompt, list(responses), s


def ranked_pair(row, cols, rep):
    prompt, responses, s = _rated(row, cols)
    best = max(range(len(s)), key=lambda i: s[i])
    worst = min(range(len(s)), key=lambda i: s[i])
    if s[best] == s[worst]:
        raise Skip("tie")
    b_prefix, b = split_answer(responses[best], "response")
    w_prefix, w = split_answer(responses[worst], "response")
    if isinstance(prompt, str) and b_prefix is None and w_prefix is None:
        if not prompt.strip():
            raise Skip("empty_prompt")
        return finish_pair(prompt, b, w, rep)
    if b_prefix and w_prefix and b_prefix != w_prefix:
        raise Skip("prompt_mismatch")
    return finish_pair(conv_prompt(prompt, b_prefix or w_prefix, rep), b, w, rep)


def _list_ranked(row, cols, rep):
    """One ``ranked`` row as a rated list (dataset.pair_strategy=list): every response, best first by
    score (stable), with its score; rows whose scores are all equal carry no preference (``tie``)."""
    prompt, responses, s = _rated(row, cols)
    if max(s) == min(s):
        raise Skip("tie")
    split = [split_answer(r, "response") for r in responses]
    if not all(isinstance(a, str) for _, a in split):
        raise Skip("response_not_text")
    prefixes = [p for p, _ in split if p]
    if any(p != prefixes[0] for p in prefixes):
        raise Skip("prompt_mismatch")
    if len({norm_text(a) for _, a in split}) < len(split):
        rep.notes["duplicate_responses_kept"] += 1
    order = sorted(range(len(s)), key=lambda i: -s[i])
    answers = [split[i][1] for i in order]
    if isinstance(prompt, str) and not prefixes:
        if not prompt.strip():
            raise Skip("empty_prompt")
        return {"prompt": prompt, "responses": answers, "scores": [s[i] for i in order]}
    conv = conv_prompt(prompt, prefixes[0] if prefixes else None, rep)
    check_roles(conv, rep)
    return {"prompt": conv, "responses": [assistant_turn(a) for a in answers], "scores": [s[i] for i in order]}


def to_lists(
    rows: Sequence[dict], format: str, columns: dict | None = None, source: str = "<rows>"
) -> tuple[list[dict], dict]:
    """``ranked`` rows as rated lists ``{"prompt", "responses", "scores"}`` (responses best first), for
    listwise losses; returns (lists, report) like :func:`to_pairs`."""
    if format != "ranked":
        raise DataError(f"{source}: rated lists (dataset.pair_strategy=list) come from format ranked, not {format}")
    cols = columns_for(format, columns)
    check_columns(rows, cols, ("prompt", "responses", "scores"), source)
    return convert_rows(rows, cols, Report(format, source, len(rows)), _list_ranked, "rated lists", "lists")


def best_worst_pair(row: dict) -> dict:
    """A rated list's best response against its worst (the held-out pairs of implicit-reward accuracy)."""
    return {"prompt": row["prompt"], "chosen": row["responses"][0], "rejected": row["responses"][-1]}


def load_lists(dcfg, split: str | None = None) -> tuple[list[dict], dict]:
    """Rows of a ``ranked`` dataset config as rated lists (see :func:`to_lists`)."""
    split = split or dcfg.split
    rows = load_rows(dcfg, split)
    return to_lists(rows, dcfg.format, dict(dcfg.columns or {}), source_name(dcfg, split))

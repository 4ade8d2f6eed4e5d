"""What every format family shares: the closed set of formats and their default columns, the
conversion report (rows read, kept, skipped by reason), the skip reasons, the message checks and
the row loop (:func:`convert_rows`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

FORMATS = ("pairs", "conversational", "hh", "ranked", "unpaired")
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "pairs": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    "conversational": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "messages": "messages"},
    "hh": {"chosen": "chosen", "rejected": "rejected"},
    "ranked": {"prompt": "prompt", "responses": "responses", "scores": "scores"},
    "unpaired": {"prompt": "prompt", "completion": "completion", "label": "label"},
}
ROLES = ("system", "user", "assistant", "tool")
BAD_ROW = "__po_bench_bad_row__"  # key of a placeholder row for a line that could not be read
_EXAMPLES = 5


class DataError(ValueError):
    """Unusable data (empty after conversion, unreadable file, missing source)."""


def columns_for(fmt: str, columns: dict | None = None) -> dict[str, str]:
    if fmt not in FORMATS:
        raise DataError(f"dataset.format={fmt!r}: allowed {', '.join(FORMATS)}")
    cols = dict(DEFAULT_COLUMNS[fmt])
    known = {k for c in DEFAULT_COLUMNS.values() for k in c}
    for k, v in dict(columns or {}).items():
        if k not in known:  # a typo; fields of other formats are ignored (a config's mapping survives format=...)
            raise DataError(f"dataset.columns.{k}: no field {k!r} in any format (format {fmt} has: {', '.join(cols)})")
        if k in cols:
            cols[k] = str(v)
    return cols


class Skip(Exception):
    """A row a converter leaves out, with the reason it is counted under in the report."""

    def __init__(self, reason: str):
        self.reason = reason


class Report:
    """One conversion's account: rows read, rows skipped by reason (with example indices), notes on kept rows."""

    def __init__(self, fmt: str, source: str, n_rows: int):
        self.fmt, self.source, self.n_rows = fmt, source, n_rows
        self.skipped: Counter = Counter()
        self.notes: Counter = Counter()
        self.examples: dict[str, list[int]] = {}

    def skip(self, i: int, reason: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < _EXAMPLES:
            self.examples[reason].append(i)

    def as_dict(self, n_out: int, out_name: str) -> dict:
        return {
            "format": self.fmt,
            "source": self.source,
            "rows": self.n_rows,
            out_name: n_out,
            "skipped": dict(sorted(self.skipped.items())),
            "n_skipped": sum(self.skipped.values()),
            "skipped_examples": self.examples,
            "notes": dict(sorted(self.notes.items())),
        }

    def check_nonempty(self, n_out: int, what: str) -> None:
        if n_out == 0:
            why = ", ".join(f"{k}: {v}" for k, v in self.skipped.most_common()) or "no rows"
            raise DataError(f"{self.source}: no usable {what} in {self.n_rows} rows (format {self.fmt}; skipped {why})")


def get_field(row: dict, cols: dict, key: str, required: bool = True):
    col = cols[key]
    if col not in row or row[col] is None:
        if required:
            raise Skip(f"missing_{key}")
        return None
    return row[col]


def as_messages(value, what: str) -> list[dict]:
    if not isinstance(value, (list, tuple)) or not value:
        raise Skip(f"{what}_not_messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise Skip(f"{what}_bad_message")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def split_answer(value, what: str) -> tuple[list[dict] | None, str]:
    """(message prefix or None, answer) for a response given as text or as messages."""
    if isinstance(value, str):
        return None, value
    msgs = as_messages(value, what)
    if msgs[-1]["role"] != "assistant":
        raise Skip(f"{what}_last_not_assistant")
    return msgs[:-1], msgs[-1]["content"]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assistant_turn(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def norm_text(text: str) -> str:
    return " ".join(str(text).split()).lower()


def conv_prompt(prompt, prefix: list[dict] | None, rep: Report) -> list[dict]:
    """The conversational prompt from a prompt column (str / messages / absent) and the message
    prefix of a response that came as a full conversation."""
    if prefix:
        if isinstance(prompt, str):
            users = [m for m in prefix if m["role"] == "user"]
            if not users or norm_text(users[-1]["content"]) != norm_text(prompt):
                rep.notes["prompt_column_differs_from_conversation"] += 1
        elif isinstance(prompt, (list, tuple)) and prompt:
            if as_messages(prompt, "prompt") != prefix:
                raise Skip("prompt_mismatch")
        return prefix
    if prompt is None:
        raise Skip("missing_prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise Skip("empty_prompt")
        return _user(prompt)
    return as_messages(prompt, "prompt")


def finish_pair(prompt, chosen: str, rejected: str, rep: Report) -> dict:
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise Skip("response_not_text")
    if chosen.strip() == rejected.strip():
        raise Skip("identical_responses")
    if not chosen.strip():
        rep.notes["empty_chosen_kept"] += 1
    if not rejected.strip():
        rep.notes["empty_rejected_kept"] += 1
    if isinstance(prompt, str):
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    check_roles(prompt, rep)
    return {"prompt": prompt, "chosen": assistant_turn(chosen), "rejected": assistant_turn(rejected)}


def check_roles(prompt: list[dict], rep: Report) -> None:
    """The role order of a conversational prompt, as a chat template will get it.

    Skipped (counted by reason; under ``dataset.on_error=fail`` the first one stops the run naming
    the file and line): a system message anywhere but first (``system_not_first``); no user turn
    first (``first_turn_not_user``, e.g. the assistant speaks first); a prompt whose last turn is
    the assistant's (``prompt_ends_with_assistant``: the answer would follow an assistant turn).
    Kept and counted in ``notes``: two turns of one role in a row (``non_alternating_roles``;
    real HH-RLHF rows have them and ChatML templates render them).
    """
    roles = [m["role"] for m in prompt]
    if "system" in roles[1:]:
        raise Skip("system_not_first")
    turns = roles[1:] if roles and roles[0] == "system" else roles
    if not turns or turns[0] != "user":
        raise Skip("first_turn_not_user")
    if turns[-1] == "assistant":
        raise Skip("prompt_ends_with_assistant")
    if any(a == b and a != "tool" for a, b in zip(turns, turns[1:])):
        rep.notes["non_alternating_roles"] += 1


def convert_rows(rows: Sequence[dict], cols: dict, rep: Report, parse, what: str, unit: str) -> tuple[list[dict], dict]:
    """Every row through ``parse``; rows marked bad on reading and rows ``parse`` skips are counted by
    reason in the report; no row left is a DataError (``what``: the rows' name in that message)."""
    out = []
    for i, row in enumerate(rows):
        if BAD_ROW in row:
            rep.skip(i, row[BAD_ROW].split(" ")[0])
            continue
        try:
            out.append(parse(row, cols, rep))
        except Skip as e:
            rep.skip(i, e.reason)
    rep.check_nonempty(len(out), what)
    return out, rep.as_dict(len(out), unit)


def check_columns(rows: Sequence[dict], cols: dict, required: Iterable[str], source: str = "") -> None:
    """Fail early when a required column is absent from every row (a wrong mapping, not bad rows)."""
    good = [r for r in rows if BAD_ROW not in r]
    if not good:
        return
    missing = [k for k in required if all(cols[k] not in r for r in good)]
    if missing:
        have = sorted({c for r in good[:50] for c in r})
        raise DataError(
            (f"{source}: " if source else "")
            + ", ".join(f"column {cols[k]!r} (for {k})" for k in missing)
            + f" not found in any row; columns: {', '.join(have)}. Map them with dataset.columns.<field>=<column>"
        )

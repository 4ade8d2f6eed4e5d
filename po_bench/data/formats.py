"""Real preference data: loaders, format conversion, statistics and train/eval leakage checks.

One internal representation for the training stages: a list of dicts ``{"prompt", "chosen",
"rejected"}`` where either

* all three are strings (*plain*), or
* ``prompt`` is a list of ``{"role", "content"}`` messages and ``chosen`` / ``rejected`` are
  one-element lists ``[{"role": "assistant", "content": ...}]`` (TRL's *conversational*
  preference format).

Chat templates are applied later by the model's tokenizer, never here.  KTO-like losses get the
unpaired view ``{"prompt", "completion", "label"}`` (:func:`to_unpaired`); SFT stages get
``{"messages"}`` or ``{"prompt", "completion"}`` examples (:func:`to_sft`).

Source formats (``dataset.format``; ``dataset.columns`` maps internal names to source columns):

=================  ==========================================================================
``pairs``          prompt / chosen / rejected strings
``conversational`` message lists; chosen/rejected may be full conversations whose last message
                   is the assistant answer (UltraFeedback-binarized, SimPO's on-policy sets) or
                   just the answer; prompt may be a string or a message list or absent (then the
                   shared message prefix of chosen and rejected is the prompt).  For SFT data a
                   ``messages`` column (UltraChat).
``hh``             Anthropic HH-RLHF raw transcripts (``\\n\\nHuman: ... \\n\\nAssistant: ...``) in
                   chosen / rejected; the prompt is their shared prefix up to the last shared
                   ``\\n\\nAssistant:``.
``ranked``         prompt + k responses + k scores: best vs worst by score (ties skipped, counted);
                   with ``dataset.pair_strategy=list`` every response, as a rated list (:func:`to_lists`)
``unpaired``       prompt / completion / label (KTO-like losses only)
=================  ==========================================================================

Nothing is dropped silently: every converter returns a report with the rows read, the rows kept
and the rows skipped by reason (with example row indices); an empty result is an error naming the
source.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository
SHARED_DATA = ROOT.parent / "shared" / "data"

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


def source_name(dcfg, split: str | None = None) -> str:
    split = split or dcfg.split
    if getattr(dcfg, "path", None):
        return str(_local_path(dcfg.path, split, dcfg.split))
    return f"{dcfg.hub_id} (split {split})"


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


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
    import datasets

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
        import pyarrow.parquet as pq

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
    import datasets

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


# ---------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------


class _Skip(Exception):
    def __init__(self, reason: str):
        self.reason = reason


class _Report:
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


def _get(row: dict, cols: dict, key: str, required: bool = True):
    col = cols[key]
    if col not in row or row[col] is None:
        if required:
            raise _Skip(f"missing_{key}")
        return None
    return row[col]


def _messages(value, what: str) -> list[dict]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _Skip(f"{what}_not_messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise _Skip(f"{what}_bad_message")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _split_answer(value, what: str) -> tuple[list[dict] | None, str]:
    """(message prefix or None, answer) for a response given as text or as messages."""
    if isinstance(value, str):
        return None, value
    msgs = _messages(value, what)
    if msgs[-1]["role"] != "assistant":
        raise _Skip(f"{what}_last_not_assistant")
    return msgs[:-1], msgs[-1]["content"]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _norm(text: str) -> str:
    return " ".join(str(text).split()).lower()


def _conv_prompt(prompt, prefix: list[dict] | None, rep: _Report) -> list[dict]:
    """The conversational prompt from a prompt column (str / messages / absent) and the message
    prefix of a response that came as a full conversation."""
    if prefix:
        if isinstance(prompt, str):
            users = [m for m in prefix if m["role"] == "user"]
            if not users or _norm(users[-1]["content"]) != _norm(prompt):
                rep.notes["prompt_column_differs_from_conversation"] += 1
        elif isinstance(prompt, (list, tuple)) and prompt:
            if _messages(prompt, "prompt") != prefix:
                raise _Skip("prompt_mismatch")
        return prefix
    if prompt is None:
        raise _Skip("missing_prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise _Skip("empty_prompt")
        return _user(prompt)
    return _messages(prompt, "prompt")


def _finish_pair(prompt, chosen: str, rejected: str, rep: _Report) -> dict:
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise _Skip("response_not_text")
    if chosen.strip() == rejected.strip():
        raise _Skip("identical_responses")
    if not chosen.strip():
        rep.notes["empty_chosen_kept"] += 1
    if not rejected.strip():
        rep.notes["empty_rejected_kept"] += 1
    if isinstance(prompt, str):
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    _check_roles(prompt, rep)
    return {"prompt": prompt, "chosen": _assistant(chosen), "rejected": _assistant(rejected)}


def _check_roles(prompt: list[dict], rep: _Report) -> None:
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
        raise _Skip("system_not_first")
    turns = roles[1:] if roles and roles[0] == "system" else roles
    if not turns or turns[0] != "user":
        raise _Skip("first_turn_not_user")
    if turns[-1] == "assistant":
        raise _Skip("prompt_ends_with_assistant")
    if any(a == b and a != "tool" for a, b in zip(turns, turns[1:])):
        rep.notes["non_alternating_roles"] += 1


def _pair_plain(row, cols, rep):
    prompt, chosen, rejected = (_get(row, cols, k) for k in ("prompt", "chosen", "rejected"))
    for k, v in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not isinstance(v, str):
            raise _Skip(f"{k}_not_text")  # message lists: use format conversational
    if not prompt.strip():
        raise _Skip("empty_prompt")
    return _finish_pair(prompt, chosen, rejected, rep)


def _pair_conversational(row, cols, rep):
    prompt = _get(row, cols, "prompt", required=False)
    c_prefix, chosen = _split_answer(_get(row, cols, "chosen"), "chosen")
    r_prefix, rejected = _split_answer(_get(row, cols, "rejected"), "rejected")
    if (c_prefix or None) != (r_prefix or None) and c_prefix and r_prefix:
        raise _Skip("prompt_mismatch")  # the two answers continue different conversations
    prefix = c_prefix or r_prefix
    return _finish_pair(_conv_prompt(prompt, prefix, rep), chosen, rejected, rep)


# ---- Anthropic HH-RLHF transcripts ------------------------------------------------------------

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}
_ASSISTANT_MARK = "\n\nAssistant:"


def _hh_messages(text: str) -> list[dict]:
    """Messages of a raw transcript (must start with a ``\\n\\nHuman:`` turn)."""
    if not text.startswith("\n\nHuman:"):
        text = "\n\n" + text.lstrip("\n") if text.lstrip("\n").startswith("Human:") else text
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise _Skip("bad_transcript")
    return [{"role": _HH_ROLE[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def parse_hh(transcript: str) -> tuple[list[dict], str]:
    """(prompt messages, final assistant answer) of an Anthropic HH-RLHF transcript.

    Raises ValueError when the transcript has no ``\\n\\nHuman:`` turn or does not end with an
    assistant turn.
    """
    try:
        msgs = _hh_messages(transcript)
    except _Skip as e:
        raise ValueError(f"not an HH transcript ({e.reason}): {transcript[:80]!r}") from None
    if msgs[-1]["role"] != "assistant":
        raise ValueError(f"HH transcript does not end with an assistant turn: {transcript[-80:]!r}")
    return msgs[:-1], msgs[-1]["content"]


def hh_split_pair(chosen: str, rejected: str) -> tuple[list[dict], str, str, str]:
    """Split two HH transcripts of one comparison into (prompt messages, chosen answer, rejected
    answer, raw shared prefix).

    The prompt is the longest common prefix of the two transcripts cut at its last
    ``\\n\\nAssistant:``: normally both transcripts diverge only in the final assistant turn and
    the answers are those turns.  In a few HH rows one transcript carries extra turns after the
    divergence; those are kept as the answer text (reported as ``response_has_turn_markers``).
    """
    n = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(_ASSISTANT_MARK, 0, n)
    if cut < 0:
        raise _Skip("no_shared_assistant_turn")
    raw_prefix = chosen[:cut]
    if not raw_prefix.strip():
        raise _Skip("bad_transcript")
    prompt = _hh_messages(raw_prefix)
    start = cut + len(_ASSISTANT_MARK)
    return prompt, chosen[start:].strip(), rejected[start:].strip(), raw_prefix


def _pair_hh(row, cols, rep):
    chosen, rejected = _get(row, cols, "chosen"), _get(row, cols, "rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise _Skip("transcript_not_text")
    prompt, c, r, _ = hh_split_pair(chosen, rejected)
    if _HH_TURN.search("\n\n" + c) or _HH_TURN.search("\n\n" + r):
        rep.notes["response_has_turn_markers"] += 1
    return _finish_pair(prompt, c, r, rep)  # role order checked (and non-alternating turns noted) there


# ---- ranked -----------------------------------------------------------------------------------


def _rated(row, cols) -> tuple[Any, list, list[float]]:
    """A ``ranked`` row's prompt, responses and finite scores (one per response), or the skip reason."""
    prompt = _get(row, cols, "prompt")
    responses, scores = _get(row, cols, "responses"), _get(row, cols, "scores")
    if not isinstance(responses, (list, tuple)) or len(responses) < 2:
        raise _Skip("too_few_responses")
    if not isinstance(scores, (list, tuple)) or len(scores) != len(responses):
        raise _Skip("scores_do_not_match_responses")
    try:
        s = [float(x) for x in scores]
    except (TypeError, ValueError):
        raise _Skip("bad_score") from None
    if not all(math.isfinite(x) for x in s):
        raise _Skip("bad_score")
    return prompt, list(responses), s


def _pair_ranked(row, cols, rep):
    prompt, responses, s = _rated(row, cols)
    best = max(range(len(s)), key=lambda i: s[i])
    worst = min(range(len(s)), key=lambda i: s[i])
    if s[best] == s[worst]:
        raise _Skip("tie")
    b_prefix, b = _split_answer(responses[best], "response")
    w_prefix, w = _split_answer(responses[worst], "response")
    if isinstance(prompt, str) and b_prefix is None and w_prefix is None:
        if not prompt.strip():
            raise _Skip("empty_prompt")
        return _finish_pair(prompt, b, w, rep)
    if b_prefix and w_prefix and b_prefix != w_prefix:
        raise _Skip("prompt_mismatch")
    return _finish_pair(_conv_prompt(prompt, b_prefix or w_prefix, rep), b, w, rep)


def _list_ranked(row, cols, rep):
    """One ``ranked`` row as a rated list (dataset.pair_strategy=list): every response, best first by
    score (stable), with its score; rows whose scores are all equal carry no preference (``tie``)."""
    prompt, responses, s = _rated(row, cols)
    if max(s) == min(s):
        raise _Skip("tie")
    split = [_split_answer(r, "response") for r in responses]
    if not all(isinstance(a, str) for _, a in split):
        raise _Skip("response_not_text")
    prefixes = [p for p, _ in split if p]
    if any(p != prefixes[0] for p in prefixes):
        raise _Skip("prompt_mismatch")
    if len({_norm(a) for _, a in split}) < len(split):
        rep.notes["duplicate_responses_kept"] += 1
    order = sorted(range(len(s)), key=lambda i: -s[i])
    answers = [split[i][1] for i in order]
    if isinstance(prompt, str) and not prefixes:
        if not prompt.strip():
            raise _Skip("empty_prompt")
        return {"prompt": prompt, "responses": answers, "scores": [s[i] for i in order]}
    conv = _conv_prompt(prompt, prefixes[0] if prefixes else None, rep)
    _check_roles(conv, rep)
    return {"prompt": conv, "responses": [_assistant(a) for a in answers], "scores": [s[i] for i in order]}


def to_lists(
    rows: Sequence[dict], format: str, columns: dict | None = None, source: str = "<rows>"
) -> tuple[list[dict], dict]:
    """``ranked`` rows as rated lists ``{"prompt", "responses", "scores"}`` (responses best first), for
    listwise losses; returns (lists, report) like :func:`to_pairs`."""
    if format != "ranked":
        raise DataError(f"{source}: rated lists (dataset.pair_strategy=list) come from format ranked, not {format}")
    cols = columns_for(format, columns)
    _check_columns(rows, cols, ("prompt", "responses", "scores"), source)
    return _convert(rows, cols, _Report(format, source, len(rows)), _list_ranked, "rated lists", "lists")


def _convert(rows: Sequence[dict], cols: dict, rep: _Report, parse, what: str, unit: str) -> tuple[list[dict], dict]:
    """Every row through ``parse``; rows marked bad on reading and rows ``parse`` skips are counted by
    reason in the report; no row left is a DataError (``what``: the rows' name in that message)."""
    out = []
    for i, row in enumerate(rows):
        if BAD_ROW in row:
            rep.skip(i, row[BAD_ROW].split(" ")[0])
            continue
        try:
            out.append(parse(row, cols, rep))
        except _Skip as e:
            rep.skip(i, e.reason)
    rep.check_nonempty(len(out), what)
    return out, rep.as_dict(len(out), unit)


def best_worst_pair(row: dict) -> dict:
    """A rated list's best response against its worst (the held-out pairs of implicit-reward accuracy)."""
    return {"prompt": row["prompt"], "chosen": row["responses"][0], "rejected": row["responses"][-1]}


_PAIR_PARSERS = {"pairs": _pair_plain, "conversational": _pair_conversational, "hh": _pair_hh, "ranked": _pair_ranked}


def _check_columns(rows: Sequence[dict], cols: dict, required: Iterable[str], source: str = "") -> None:
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
    _check_columns(rows, cols, required, source)
    return _convert(rows, cols, _Report(format, source, len(rows)), _PAIR_PARSERS[format], "preference pairs", "pairs")


def _unpaired_row(row, cols, rep) -> dict:
    """One ``unpaired`` row: prompt, completion and its desirable / undesirable label."""
    prompt = _get(row, cols, "prompt")
    prefix, completion = _split_answer(_get(row, cols, "completion"), "completion")
    label = _label(_get(row, cols, "label"))
    if isinstance(prompt, str) and prefix is None:
        if not prompt.strip():
            raise _Skip("empty_prompt")
        return {"prompt": prompt, "completion": completion, "label": label}
    conv = _conv_prompt(prompt, prefix, rep)
    _check_roles(conv, rep)
    return {"prompt": conv, "completion": _assistant(completion), "label": label}


_TRUE = {"true", "1", "yes", "desirable", "good", "chosen"}
_FALSE = {"false", "0", "no", "undesirable", "bad", "rejected"}


def _label(v) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise _Skip("bad_label")


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
    _check_columns(rows, cols, ("prompt", "completion", "label"), source)
    out, d = _convert(rows, cols, _Report(format, source, len(rows)), _unpaired_row, "unpaired examples", "unpaired")
    d["desirable"] = sum(1 for x in out if x["label"])
    d["undesirable"] = len(out) - d["desirable"]
    return out, d


def to_sft(
    rows: Sequence[dict], format: str, columns: dict | None = None, source: str = "<rows>"
) -> tuple[list[dict], dict]:
    """SFT examples: ``{"messages"}`` (conversational data with a messages column, e.g. UltraChat)
    or ``{"prompt", "completion"}`` from the chosen answers of preference data."""
    if format == "conversational":
        cols = columns_for(format, columns)
        good = [r for r in rows if BAD_ROW not in r]
        if good and any(cols["messages"] in r for r in good):
            rep = _Report(format, source, len(rows))
            out = []
            for i, row in enumerate(rows):
                if BAD_ROW in row:
                    rep.skip(i, row[BAD_ROW].split(" ")[0])
                    continue
                try:
                    msgs = _messages(_get(row, cols, "messages"), "messages")
                    if not any(m["role"] == "assistant" for m in msgs):
                        raise _Skip("no_assistant_turn")
                    if msgs[-1]["role"] != "assistant":
                        rep.notes["trailing_non_assistant_turns"] += 1
                    out.append({"messages": msgs})
                except _Skip as e:
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


def load_lists(dcfg, split: str | None = None) -> tuple[list[dict], dict]:
    """Rows of a ``ranked`` dataset config as rated lists (see :func:`to_lists`)."""
    split = split or dcfg.split
    rows = load_rows(dcfg, split)
    return to_lists(rows, dcfg.format, dict(dcfg.columns or {}), source_name(dcfg, split))


def load_unpaired(dcfg, split: str | None = None) -> tuple[list[dict], dict]:
    split = split or dcfg.split
    rows = load_rows(dcfg, split)
    return to_unpaired(rows, dcfg.format, dict(dcfg.columns or {}), source_name(dcfg, split))


def load_sft(dcfg, split: str | None = None) -> tuple[list[dict], dict]:
    split = split or dcfg.split
    rows = load_rows(dcfg, split)
    return to_sft(rows, dcfg.format, dict(dcfg.columns or {}), source_name(dcfg, split))


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _lengths(tokenizer, prompt, response) -> tuple[int, int]:
    """(prompt tokens, response tokens) as a preference trainer sees them: plain prompts as text,
    responses with EOS appended; conversational ones through the chat template, the response being
    what the template adds after the generation prompt (end-of-turn tokens included)."""
    from po_bench.generation.logprobs import render_prompt

    p_text = render_prompt(tokenizer, prompt)
    n_p = _n_tokens(tokenizer, p_text)
    if isinstance(prompt, str):
        eos = tokenizer.eos_token or ""
        return n_p, _n_tokens(tokenizer, response) + (1 if eos else 0)
    full = tokenizer.apply_chat_template(list(prompt) + list(response), tokenize=False)
    if full.startswith(p_text):
        return n_p, _n_tokens(tokenizer, full[len(p_text) :])
    return n_p, max(0, _n_tokens(tokenizer, full) - n_p)


def _pct(values: Sequence[int]) -> dict:
    import numpy as np

    if not len(values):
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    a = np.asarray(values, dtype=float)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": int(a.max()),
        "mean": float(a.mean()),
    }


def data_stats(pairs: Sequence[dict], tokenizer, max_length: int) -> dict:
    """Counts and token-length statistics of preference pairs under ``tokenizer``.

    Percentiles (p50/p90/p99/max/mean, numpy's linear interpolation) of prompt, chosen and rejected
    lengths; the mean chosen-minus-rejected length gap; and how many pairs exceed ``max_length``
    (prompt + the longer response), i.e. would be truncated by the trainer.
    """
    lp, lc, lr = [], [], []
    for p in pairs:
        n_p, n_c = _lengths(tokenizer, p["prompt"], p["chosen"])
        _, n_r = _lengths(tokenizer, p["prompt"], p["rejected"])
        lp.append(n_p)
        lc.append(n_c)
        lr.append(n_r)
    n_trunc = sum(1 for a, b, c in zip(lp, lc, lr) if a + max(b, c) > max_length)
    n = len(pairs)
    return {
        "n_pairs": n,
        "conversational": sum(1 for p in pairs if not isinstance(p["prompt"], str)),
        "prompt_tokens": _pct(lp),
        "chosen_tokens": _pct(lc),
        "rejected_tokens": _pct(lr),
        "response_tokens": _pct(lc + lr),
        "chosen_minus_rejected_tokens": (sum(lc) - sum(lr)) / n if n else 0.0,
        "chosen_longer_fraction": sum(1 for c, r in zip(lc, lr) if c > r) / n if n else 0.0,
        "max_length": int(max_length),
        "n_truncated": n_trunc,
        "truncated_fraction": n_trunc / n if n else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# leakage
# ---------------------------------------------------------------------------------------------


def prompt_key(prompt) -> str:
    """Comparison key of a prompt: the text (last user turn of a message list), lower-cased with
    whitespace collapsed."""
    if isinstance(prompt, (list, tuple)):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        text = users[-1] if users else (prompt[-1].get("content", "") if prompt else "")
    else:
        text = prompt
    return _norm(text if isinstance(text, str) else "")


def leakage(train_prompts: Iterable, eval_sets: dict[str, Sequence], n_examples: int = 5) -> dict:
    """For each eval set: how many of its prompts also occur among the training prompts.

    Returns ``{name: {"count", "n_eval", "fraction", "examples"}}``; ``count`` counts eval prompts
    (with repetitions) whose key (:func:`prompt_key`) is a training prompt's key; ``examples`` are
    up to ``n_examples`` of them as they appear in the eval set.
    """
    train = {prompt_key(p) for p in train_prompts}
    train.discard("")
    out = {}
    for name, prompts in eval_sets.items():
        hits = [p for p in prompts if prompt_key(p) in train]
        out[name] = {
            "count": len(hits),
            "n_eval": len(prompts),
            "fraction": len(hits) / len(prompts) if len(prompts) else 0.0,
            "examples": [p if isinstance(p, str) else prompt_key(p) for p in hits[:n_examples]],
        }
    return out


def alpaca_eval_prompts(
    path: str | Path = SHARED_DATA / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json",
) -> list[str]:
    """AlpacaEval's 805 instructions (field ``instruction`` of a model-outputs JSON file)."""
    rows = read_file(path)
    return [r["instruction"] for r in rows if isinstance(r.get("instruction"), str)]


def mt_bench_prompts(path: str | Path = SHARED_DATA / "mt_bench" / "question.jsonl") -> list[str]:
    """MT-Bench first turns (``turns[0]`` of question.jsonl)."""
    return [r["turns"][0] for r in read_file(path) if r.get("turns")]


def arena_hard_prompts(path: str | Path = SHARED_DATA / "arena_hard" / "arena-hard-v0.1_question.jsonl") -> list[str]:
    """Arena-Hard v0.1 questions: field ``prompt`` (or, in older files, ``turns[0].content``)."""
    out = []
    for r in read_file(path):
        if isinstance(r.get("prompt"), str):
            out.append(r["prompt"])
        elif r.get("turns"):
            t = r["turns"][0]
            out.append(t["content"] if isinstance(t, dict) else t)
    return out


def eval_sets(world_spec=None, shared_data: str | Path | None = SHARED_DATA) -> dict[str, list]:
    """The eval prompt sets to check for leakage: the world's held-out prompts (when a world spec
    is given) and AlpacaEval / MT-Bench / Arena-Hard where their files exist under ``shared_data``."""
    from po_bench.data import world

    sets: dict[str, list] = {}
    if world_spec is not None:
        sets["world_eval"] = world.make_prompts(world_spec, "eval")
        sets["world_ood"] = world.make_prompts(world_spec, "ood")
    if shared_data is not None:
        d = Path(shared_data)
        for name, fn, rel in (
            ("alpaca_eval", alpaca_eval_prompts, "alpaca_eval/gpt4_1106_preview_model_outputs.json"),
            ("mt_bench", mt_bench_prompts, "mt_bench/question.jsonl"),
            ("arena_hard", arena_hard_prompts, "arena_hard/arena-hard-v0.1_question.jsonl"),
        ):
            if (d / rel).is_file():
                sets[name] = fn(d / rel)
    return sets

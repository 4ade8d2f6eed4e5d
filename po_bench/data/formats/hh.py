"""Anthropic HH-RLHF raw transcripts (``\\n\\nHuman: ... \\n\\nAssistant: ...``)."""

from __future__ import annotations

import os
import re

from po_bench.data.formats.base import Skip, finish_pair, get_field

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


_HH_ROLE = {"Human": "user", "Assistant": "assistant"}


_ASSISTANT_MARK = "\n\nAssistant:"


def _hh_messages(text: str) -> list[dict]:
    """Messages of a raw transcript (must start with a ``\\n\\nHuman:`` turn)."""
    if not text.startswith("\n\nHuman:"):
        text = "\n\n" + text.lstrip("\n") if text.lstrip("\n").startswith("Human:") else text
    parts = _HH_TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        raise Skip("bad_transcript")
    return [{"role": _HH_ROLE[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def parse_hh(transcript: str) -> tuple[list[dict], str]:
    """(prompt messages, final assistant answer) of an Anthropic HH-RLHF transcript.

    Raises ValueError when the transcript has no ``\\n\\nHuman:`` turn or does not end with an
    assistant turn.
    """
    try:
        msgs = _hh_messages(transcript)
    except Skip as e:
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
        raise Skip("no_shared_assistant_turn")
    raw_prefix = chosen[:cut]
    if not raw_prefix.strip():
        raise Skip("bad_transcript")
    prompt = _hh_messages(raw_prefix)
    start = cut + len(_ASSISTANT_MARK)
    return prompt, chosen[start:].strip(), rejected[start:].strip(), raw_prefix


def hh_pair(row, cols, rep):
    chosen, rejected = get_field(row, cols, "chosen"), get_field(row, cols, "rejected")
    if not isinstance(chosen, str) or not isinstance(rejected, str):
        raise Skip("transcript_not_text")
    prompt, c, r, _ = hh_split_pair(chosen, rejected)
    if _HH_TURN.search("\n\n" + c) or _HH_TURN.search("\n\n" + r):
        rep.notes["response_has_turn_markers"] += 1
    return finish_pair(prompt, c, r, rep)  # role order checked (and non-alternating turns noted) there

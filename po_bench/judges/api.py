"""The judges' contract: every judge returns a :class:`JudgeResult`.

``metrics`` is JSON-ready (it goes into run.json under ``<judge>_<name>``); ``records`` holds one
entry per judged item (a pairwise verdict, a turn score, a benchmark item), the per-item scores
that paired comparisons between runs are built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class JudgeResult:
    metrics: dict
    records: list[dict] = field(default_factory=list)

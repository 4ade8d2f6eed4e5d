"""Per-item scores: ``scores.jsonl`` next to a run's ``run.json``, one row per scored item.

Every comparison in the results (intervals, paired tests, ranks) pairs two runs on the same seed and
the same items; that needs each run's item scores, not only its means.  Two kinds of rows:

- world runs (judge=gold), one row per eval prompt::

      {"prompt_index": 0, "prompt": "...", "gold_policy": 0.41, "gold_sft": 0.12, "win": 1}

  (``win``: 1 / 0.5 / 0, the policy sample against the SFT sample under the gold reward);
- LLM judges / benchmarks, one row per judged item (an AlpacaEval instruction, an MT-Bench turn,
  an Arena-Hard battle, a benchmark question)::

      {"judge": "mt_bench", "item": "81/1", "score": 7.0, "metric": "mt_bench_score"}

  ``metric`` (optional, recommended) names the run metric whose items these are; without it the
  rows count for the judge's headline metric (``Judge.headline_metric``), else ``<judge>_score``.

:func:`write_scores` / :func:`read_scores` are what the pipeline and the judges call;
:func:`item_scores` turns a run's rows into ``{item key: score}`` for one metric, and only when the
items reproduce the run's own number (their mean equals the metric; a length-controlled or
Bradley-Terry score is not an item mean, and then the run-level value is used instead).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from po_bench.judges.api import headline_metrics
from po_bench.store import atomic_write_text

SCORES_FILE = "scores.jsonl"

# world rows: run metric -> the row field that holds its per-prompt value
WORLD_FIELDS = {"gold_reward": "gold_policy", "gold_reward_sft": "gold_sft", "win_rate_vs_sft": "win"}


def write_scores(run_dir: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``<run_dir>/scores.jsonl`` atomically (one JSON object per line) and return its path.
    Rows are written as given; NaN becomes null."""

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    path = Path(run_dir) / SCORES_FILE
    text = "".join(json.dumps({k: clean(v) for k, v in r.items()}, default=str) + "\n" for r in rows)
    atomic_write_text(path, text)
    return path


def world_rows(prompts: list[str], gold_policy: list[float], gold_sft: list[float]) -> list[dict]:
    """The world's rows from the eval prompts and the gold reward of the policy's and the SFT
    model's sample on each (the win uses the same rule as ``gold_metrics``: ties count half)."""
    out = []
    for i, (p, a, b) in enumerate(zip(prompts, gold_policy, gold_sft)):
        a, b = float(a), float(b)
        out.append(
            {
                "prompt_index": i,
                "prompt": p,
                "gold_policy": a,
                "gold_sft": b,
                "win": 1.0 if a > b else (0.5 if a == b else 0.0),
            }
        )
    return out


def read_scores(run_dir: str | Path) -> list[dict] | None:
    """The rows of ``<run_dir>/scores.jsonl``; None when the file is absent or unreadable."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return None
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError):
        return None


def _samples_as_rows(run_dir: Path, n_eval: int | None) -> list[dict] | None:
    """``samples.jsonl`` as world rows when it holds every eval prompt (small sweeps keep all of them;
    it is cut at 32 rows otherwise, and a cut file says nothing about the whole eval set)."""
    path = run_dir / "samples.jsonl"
    if not n_eval or not path.is_file():
        return None
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError):
        return None
    if len(rows) != n_eval or not all("gold_policy" in r and "gold_sft" in r for r in rows):
        return None
    return world_rows(
        [r.get("prompt", "") for r in rows], [r["gold_policy"] for r in rows], [r["gold_sft"] for r in rows]
    )


def _values(rows: list[dict], metric: str) -> dict[Any, float]:
    field = WORLD_FIELDS.get(metric)
    out: dict[Any, float] = {}
    for r in rows:
        if field and field in r and "prompt_index" in r:
            key, v = ("p", r["prompt_index"]), r[field]
        elif "judge" in r and "score" in r:
            m = r.get("metric") or headline_metrics().get(r["judge"], f"{r['judge']}_score")
            if m != metric:
                continue
            key, v = (r["judge"], r.get("item")), r["score"]
        else:
            continue
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[key] = float(v)
    return out


def item_scores(run: dict, metric: str) -> dict[Any, float] | None:
    """``{item key: score}`` of one metric of a run record (with ``_path``: its folder), or None when
    the run has no item scores for it, or when their mean does not reproduce the run's metric
    (values in [0, 1] against a metric in percent are rescaled by 100)."""
    run_dir = Path(run.get("_path", ""))
    if not run.get("_path"):
        return None
    cache = run.setdefault("_scores_cache", {})
    if "rows" not in cache:
        rows = read_scores(run_dir)
        if rows is None:
            n_eval = ((run.get("config") or {}).get("dataset") or {}).get("n_eval")
            rows = _samples_as_rows(run_dir, n_eval if isinstance(n_eval, int) else None)
        cache["rows"] = rows or []
    vals = _values(cache["rows"], metric)
    if not vals:
        return None
    target = (run.get("metrics") or {}).get(metric)
    if not isinstance(target, (int, float)) or isinstance(target, bool) or math.isnan(target):
        return vals
    mean = sum(vals.values()) / len(vals)
    for scale in (1.0, 100.0):
        if math.isclose(mean * scale, target, rel_tol=1e-6, abs_tol=1e-6):
            return {k: v * scale for k, v in vals.items()}
    return None

"""Preference pairs from a judge's real annotations: AlpacaEval's (tatsu-lab/alpaca_eval; its
``results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json``, which ../shared/data/alpaca_eval/
holds gzipped as ``<model>/weighted_alpaca_eval_gpt4_turbo_annotations.json.gz``), or a JSONL of
prompt/chosen/rejected rows.  The out-of-distribution set of the reward_models diagnostic on real data
(po_bench/judges/reward_shift.py): other prompts, other models' responses, another annotator (GPT-4-turbo).

An AlpacaEval annotation row has ``instruction``, ``output_1`` (the baseline's answer), ``output_2`` (the
model's) and ``preference`` in [1, 2]: the weighted judge's expected preference, 1 + P(output_2 preferred).
The pair's chosen answer is output_1 below 1.5 and output_2 above it; a preference of exactly 1.5 is a tie
(AlpacaEval counts it as half a win) and is dropped, as are rows without a preference on that scale and rows
whose two answers are identical; each is counted.  A file is read as AlpacaEval annotations when its rows
have those four fields (whatever its name).

Users with the Hub: the dataset ``tatsu-lab/alpaca_eval`` (licence cc-by-nc-4.0) lists annotation files
(``alpaca_eval_annotations_alpaca_eval_gpt4.json``: AlpacaEval 1's GPT-4 judge; AlpacaFarm's human
annotations); download one and pass its path.  Not verified here (no network): that their rows carry the
same four fields and the same preference scale; a row off the scale is counted as ``no_preference``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from po_bench.data.formats.base import assistant_turn

ALPACA_EVAL_FIELDS = ("instruction", "output_1", "output_2", "preference")


def is_alpaca_eval(rows: list[dict]) -> bool:
    """Whether rows are AlpacaEval annotations (they have instruction, output_1, output_2 and preference)."""
    return bool(rows) and all(k in rows[0] for k in ALPACA_EVAL_FIELDS)


def read_json(path: Path):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        if path.name.endswith((".jsonl", ".jsonl.gz")):
            return [json.loads(line) for line in f if line.strip()]
        return json.load(f)


def alpaca_eval_pairs(rows: list[dict], conversational: bool = False) -> tuple[list[dict], dict]:
    """(pairs, counts) from AlpacaEval annotation rows (module docstring); ``conversational``: the prompt
    as one user message and the answers as assistant turns (the form of chat-format training pairs)."""
    counts = {"rows": len(rows), "pairs": 0, "ties": 0, "no_preference": 0, "identical": 0, "chosen_output_2": 0}
    pairs = []
    for r in rows:
        pref = r.get("preference")
        if pref is None or not 1 <= float(pref) <= 2:  # none, or not on AlpacaEval's scale
            counts["no_preference"] += 1
            continue
        if float(pref) == 1.5:
            counts["ties"] += 1
            continue
        a, b = r["output_1"], r["output_2"]
        if a.strip() == b.strip():
            counts["identical"] += 1
            continue
        second = float(pref) > 1.5
        counts["chosen_output_2"] += second
        chosen, rejected = (b, a) if second else (a, b)
        prompt = r["instruction"]
        if conversational:
            prompt, chosen, rejected = (
                [{"role": "user", "content": prompt}],
                assistant_turn(chosen),
                assistant_turn(rejected),
            )
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    counts["pairs"] = len(pairs)
    return pairs, counts


def read_pair_file(path: str | Path, conversational: bool = False) -> tuple[list[dict], dict]:
    """(pairs, counts) of an OOD pair file: AlpacaEval annotations (:func:`alpaca_eval_pairs`), or JSON /
    JSONL rows that already have prompt, chosen and rejected (kept as they are)."""
    path = Path(path).expanduser()
    rows = read_json(path)
    if is_alpaca_eval(rows):
        return alpaca_eval_pairs(rows, conversational)
    pairs = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]
    return pairs, {"rows": len(rows), "pairs": len(pairs)}

"""Pairs from AlpacaEval's real GPT-4-turbo annotations (po_bench/data/annotations.py), the out-of-distribution
set of the reward_models diagnostic on real data; the files are ../shared/data/alpaca_eval/'s (skipped without)."""

from __future__ import annotations

import gzip
import json

import pytest

from po_bench.data.annotations import alpaca_eval_pairs, read_pair_file

from .conftest import SHARED
from .helpers import shared_or_skip

ALPACA = SHARED / "data" / "alpaca_eval"
ANNOTATIONS = "weighted_alpaca_eval_gpt4_turbo_annotations.json.gz"


@pytest.mark.parametrize(
    "model, ties, output_2", [("alpaca-7b", 3, 17), ("claude-2.1", 2, 115), ("gemma-7b-it", 1, 50)]
)
def test_alpaca_eval_reader_on_the_real_annotations(model, ties, output_2):
    path = shared_or_skip(ALPACA / model / ANNOTATIONS)
    pairs, counts = read_pair_file(path)
    rows = json.loads(gzip.open(path, "rt").read())
    assert counts == {
        "rows": 805,
        "pairs": 805 - ties,
        "ties": ties,
        "no_preference": 0,
        "identical": 0,
        "chosen_output_2": output_2,
    }
    assert sum(r["preference"] == 1.5 for r in rows) == ties  # recounted from the file
    kept = [r for r in rows if r["preference"] != 1.5]
    for r, p in zip(kept, pairs):  # in file order; the judge's side wins
        want = (r["output_2"], r["output_1"]) if r["preference"] > 1.5 else (r["output_1"], r["output_2"])
        assert (p["prompt"], p["chosen"], p["rejected"]) == (r["instruction"], *want)
    conv, _ = read_pair_file(path, conversational=True)
    assert conv[0]["prompt"] == [{"role": "user", "content": pairs[0]["prompt"]}]
    assert conv[0]["chosen"] == [{"role": "assistant", "content": pairs[0]["chosen"]}]


def test_alpaca_eval_reader_counts_what_it_drops():
    rows = [
        {"instruction": "q", "output_1": "a", "output_2": "b", "preference": 1.5},
        {"instruction": "q", "output_1": "a", "output_2": "b", "preference": None},
        {"instruction": "q", "output_1": "same", "output_2": " same ", "preference": 1.9},
        {"instruction": "q", "output_1": "a", "output_2": "b", "preference": 1.51},
        {"instruction": "q", "output_1": "a", "output_2": "b", "preference": 1.0},
    ]
    pairs, c = alpaca_eval_pairs(rows)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("b", "a"), ("a", "b")]
    assert (c["ties"], c["no_preference"], c["identical"], c["pairs"], c["chosen_output_2"]) == (1, 1, 1, 2, 1)


def test_a_jsonl_pair_file_is_read_as_it_is(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r", "extra": 1}) + "\n\n")
    assert read_pair_file(f) == ([{"prompt": "p", "chosen": "c", "rejected": "r"}], {"rows": 1, "pairs": 1})

"""po_bench/data/onpolicy_files.py: where ``po-bench-data onpolicy`` takes its prompts from (a text or a
JSONL file), how the k samples of a prompt are seeded, and which scorer a ``--scorer`` names."""

from __future__ import annotations

import json
import logging

import pytest

from po_bench.data import world
from po_bench.data.onpolicy_files import GoldScorer, OnPolicyError, file_prompts, make_scorer, sample_seeds


def test_file_prompts_from_a_text_file_and_a_jsonl_column(tmp_path, caplog):
    txt = tmp_path / "prompts.txt"
    txt.write_text("Write a poem.\n\n  \nExplain tides.\nName a colour.\n")
    assert file_prompts(str(txt), "prompt", 0) == ["Write a poem.", "Explain tides.", "Name a colour."]
    assert file_prompts(str(txt), "prompt", 2) == ["Write a poem.", "Explain tides."]
    rows = [{"question": "q1"}, {"question": ""}, {"other": "x"}, {"question": [{"role": "user", "content": "q4"}]}]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING, logger="po_bench.data"):
        assert file_prompts(str(jsonl), "question", 0) == ["q1", [{"role": "user", "content": "q4"}]]
    assert "2 rows without a usable 'question' column skipped" in caplog.text
    with pytest.raises(OnPolicyError, match=r"rows\.jsonl: no prompts in column 'prompt'"):
        file_prompts(str(jsonl), "prompt", 0)


def test_sample_seeds_are_one_per_sample_distinct_and_reproducible():
    seeds = sample_seeds(3, 4)
    assert len(seeds) == len(set(seeds)) == 4 and seeds == sample_seeds(3, 4)
    assert sample_seeds(3, 2) == seeds[:2]  # a sample's seed does not depend on k
    assert not set(seeds) & set(sample_seeds(4, 4))


def test_the_gold_scorer_is_the_worlds_reward_and_an_absent_reward_model_is_one_error(tmp_path):
    scorer = make_scorer("gold")
    assert isinstance(scorer, GoldScorer) and scorer.desc["kind"] == "gold"
    prompts = ["Tell me about item 3.", [{"role": "user", "content": "Tell me about item 3."}]]
    got = scorer(prompts, ["A kind answer.", "A kind answer."])
    assert got[0] == pytest.approx(float(world.gold_reward(prompts[0], "A kind answer.")))
    with pytest.raises(OnPolicyError, match="no such reward-model folder"):
        make_scorer(str(tmp_path / "absent"))

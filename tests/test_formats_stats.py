"""po_bench/data/formats/stats.py: a dataset's statistics (po-bench-data inspect), on rows with known answers."""

import copy

import pytest

from po_bench.data.formats.stats import data_stats


def test_data_stats_known_answers(tokenizer):
    # world tokenizer: one token per word; plain responses count their EOS
    pairs = [
        {"prompt": "write about apple =>", "chosen": " the apple river", "rejected": " the"},  # 4 | 4, 2
        {"prompt": "write about apple river =>", "chosen": " apple", "rejected": " a river b"},  # 5 | 2, 4
        {"prompt": "list apple =>", "chosen": " apple apple apple apple apple", "rejected": " a"},
    ]  # 3 | 6, 2
    s = data_stats(pairs, tokenizer, max_length=8)
    assert s["n_pairs"] == 3 and s["conversational"] == 0
    assert s["prompt_tokens"]["p50"] == 4 and s["prompt_tokens"]["max"] == 5
    assert s["chosen_tokens"]["max"] == 6 and s["rejected_tokens"]["max"] == 4
    assert s["chosen_minus_rejected_tokens"] == pytest.approx(((4 - 2) + (2 - 4) + (6 - 2)) / 3)
    assert s["n_truncated"] == 2  # 4+4 = 8 fits; 5+4 = 9 and 3+6 = 9 do not
    assert s["response_tokens"]["p50"] == 3.0  # of 4,2,6 | 2,4,2 -> sorted 2,2,2,4,4,6
    many = [
        {"prompt": "write about " + " ".join(["apple"] * i) + " =>", "chosen": " a", "rejected": " b"}
        for i in range(0, 101)
    ]
    p = data_stats(many, tokenizer, max_length=1000)["prompt_tokens"]
    assert (p["p50"], p["p90"], p["p99"], p["max"]) == (53.0, 93.0, 102.0, 103)
    # conversational: through the chat template, response = what the template adds after the prompt
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m['content'] + ' ' }}{% endfor %}"
    conv = [
        {
            "prompt": [{"role": "user", "content": "write about apple"}],
            "chosen": [{"role": "assistant", "content": "the apple"}],
            "rejected": [{"role": "assistant", "content": "the"}],
        }
    ]
    s = data_stats(conv, tok, max_length=5)
    assert (s["prompt_tokens"]["max"], s["chosen_tokens"]["max"], s["rejected_tokens"]["max"]) == (3, 2, 1)
    assert s["n_truncated"] == 0 and s["conversational"] == 1

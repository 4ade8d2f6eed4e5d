"""po_bench/data/formats/ranked.py: ranked files give rated lists (and best-worst pairs)."""

import pytest

from po_bench.data.formats.base import DataError
from po_bench.data.formats.ranked import best_worst_pair, to_lists


def test_ranked_files_give_rated_lists():
    rows = [
        {"prompt": "q1", "responses": ["a", "b", "c"], "scores": [0.2, 0.9, 0.5]},
        {"prompt": "q2", "responses": ["a", "b"], "scores": [1, 1]},  # a tie: no preference
        {
            "prompt": "q3",
            "responses": [
                [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "x"}],
                [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "y"}],
            ],
            "scores": [0, 3],
        },
    ]
    lists, rep = to_lists(rows, "ranked")
    assert lists[0] == {"prompt": "q1", "responses": ["b", "c", "a"], "scores": [0.9, 0.5, 0.2]}
    assert lists[1]["prompt"] == [{"role": "user", "content": "q3"}]
    assert lists[1]["responses"] == [[{"role": "assistant", "content": "y"}], [{"role": "assistant", "content": "x"}]]
    assert rep["skipped"] == {"tie": 1} and rep["lists"] == 2
    assert best_worst_pair(lists[0]) == {"prompt": "q1", "chosen": "b", "rejected": "a"}
    with pytest.raises(DataError, match="format ranked"):
        to_lists(rows, "pairs")

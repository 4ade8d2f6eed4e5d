"""dataset.on_error: skip counts every bad row by kind; fail names the file and the first bad row."""

import json
from types import SimpleNamespace as NS

import pytest

from po_bench import prefdata
from po_bench.pipeline_real import _apply_error_policy


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_skip_counts_and_fail_names_row(tmp_path):
    f = tmp_path / "pairs.jsonl"
    _write(f, [
        {"prompt": "a", "chosen": "x", "rejected": "y"},
        '{"prompt": "broken json',                                # malformed JSON line
        {"prompt": "b", "chosen": "same", "rejected": "same"},    # chosen == rejected
        {"prompt": "c", "chosen": "", "rejected": "y"},           # empty answer: kept, counted in notes
        {"prompt": "d", "rejected": "y"},                         # missing column
        {"prompt": "e", "chosen": "x2", "rejected": "y2"},
    ])
    d = NS(path=str(f), hub_id=None, split="train", format="pairs", columns={}, max_rows=0, on_error="skip",
           name="file")
    pairs, rep = prefdata.load_pairs(d)
    assert [p["prompt"] for p in pairs] == ["a", "c", "e"]
    assert rep["notes"]["empty_chosen_kept"] == 1
    assert rep["rows"] + rep.get("n_unreadable", 0) >= 5
    assert rep["n_skipped"] + len(pairs) == rep["rows"]
    assert len(rep["skipped"]) >= 3  # distinct reasons, each counted
    _apply_error_policy(d, rep)  # skip: no error

    d.on_error = "fail"
    with pytest.raises(prefdata.DataError) as e:
        _apply_error_policy(d, rep)
    msg = str(e.value)
    assert "pairs.jsonl" in msg and "row " in msg and "dataset.on_error=skip" in msg


def test_empty_after_filtering_is_an_error(tmp_path):
    f = tmp_path / "bad.jsonl"
    _write(f, [{"prompt": "b", "chosen": "same", "rejected": "same"}])
    d = NS(path=str(f), hub_id=None, split="train", format="pairs", columns={}, max_rows=0, on_error="skip",
           name="file")
    with pytest.raises(prefdata.DataError, match="bad.jsonl"):
        prefdata.load_pairs(d)

"""po_bench/data/formats/base.py: the row checks every format shares: an empty result names
the file and the skip reasons, a wrong column mapping names the columns there are."""

import json

import pytest

from po_bench.data.formats.base import DataError
from po_bench.data.formats.paired import load_pairs, to_pairs
from po_bench.data.schema import dataset_config


def test_empty_result_names_the_file_and_reasons(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}) + "\n")
    dcfg = dataset_config("file", path=str(path))
    with pytest.raises(DataError, match=r"bad\.jsonl.*identical_responses: 1"):
        load_pairs(dcfg)


def test_wrong_column_mapping_is_an_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([{"question": "q", "good": "a", "bad": "b"}]))
    dcfg = dataset_config("file", path=str(path))
    with pytest.raises(DataError, match="column 'prompt'.*columns: bad, good, question"):
        load_pairs(dcfg)
    with pytest.raises(DataError, match="no field .answer. in any format"):
        to_pairs([], "pairs", {"answer": "x"})

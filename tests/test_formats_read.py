"""po_bench/data/formats/read.py: reading a dataset's rows from files, a {split} placeholder, max_rows."""

import json

import pytest

from po_bench.data.formats.base import DataError
from po_bench.data.formats.paired import load_pairs
from po_bench.data.formats.read import load_rows
from po_bench.data.schema import dataset_config


def test_split_placeholder_and_max_rows(tmp_path):
    for split, n in (("train", 5), ("test", 3)):
        (tmp_path / f"{split}.jsonl").write_text(
            "".join(json.dumps({"prompt": f"{split}{i}", "chosen": "a", "rejected": "b"}) + "\n" for i in range(n))
        )
    dcfg = dataset_config("file", path=str(tmp_path / "{split}.jsonl"), eval_split="test", max_rows=4)
    assert [p["prompt"] for p in load_pairs(dcfg)[0]] == ["train0", "train1", "train2", "train3"]
    assert len(load_pairs(dcfg, "test")[0]) == 3
    one = dataset_config("file", path=str(tmp_path / "train.jsonl"))
    with pytest.raises(DataError, match="one file"):
        load_rows(one, "test")

"""po_bench.common: the small helpers the stages and the pipeline share (config nodes as plain dicts,
seeding every generator, stage timers, JSON-lines files)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from po_bench import common
from po_bench.common import plain, seed_everything, timed, write_jsonl


def test_plain_resolves_a_config_node_and_copies_a_mapping():
    node = OmegaConf.create({"lr": 0.1, "args": {"beta": "${lr}"}, "names": ["a", "b"]})
    out = plain(node)
    assert out == {"lr": 0.1, "args": {"beta": 0.1}, "names": ["a", "b"]}
    assert type(out) is dict and type(out["args"]) is dict and type(out["names"]) is list
    d = {"x": 1}
    assert plain(d) == d and plain(d) is not d


def test_seed_everything_seeds_python_numpy_and_torch():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(7)
    a = draws()
    seed_everything(7)
    assert draws() == a
    seed_everything(8)
    assert all(x != y for x, y in zip(draws(), a))  # each generator follows the seed
    seed_everything(2**32 + 7)  # numpy's seed is taken modulo 2**32; torch and random take it whole
    assert draws()[1] == a[1]


def test_timed_adds_the_blocks_wall_time_even_when_it_raises(monkeypatch):
    clock = iter([10.0, 12.5, 20.0, 21.25])
    monkeypatch.setattr(common, "time", NS(perf_counter=lambda: next(clock)))
    seconds = {"sft": 1.0}
    with timed(seconds, "train"):
        pass
    assert seconds == {"sft": 1.0, "train": 2.5}
    with pytest.raises(RuntimeError), timed(seconds, "train"):
        raise RuntimeError("boom")
    assert seconds == {"sft": 1.0, "train": 3.75}  # the failed block's time is added too


def test_write_jsonl_writes_one_json_object_per_line(tmp_path):
    rows = [{"prompt": "a", "score": 0.5}, {"path": Path("/x/y"), "n": None}]
    path = tmp_path / "sub" / "rows.jsonl"
    path.parent.mkdir()
    write_jsonl(path, rows)
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 2
    assert [json.loads(line) for line in text.splitlines()] == [rows[0], {"path": "/x/y", "n": None}]
    write_jsonl(path, [])  # replaced, not appended
    assert path.read_text() == ""
    assert not [p for p in path.parent.iterdir() if p.name != "rows.jsonl"]  # no temporary file left behind

"""po_bench/data/formats/leakage.py: the overlap of training prompts with the benchmarks' prompts, on known answers."""

import json

from po_bench.data import world
from po_bench.data.formats.leakage import eval_sets, leakage

from .conftest import SHARED


def test_leakage_known_answers(tmp_path):
    train = [
        "Write  about APPLE =>",
        "unrelated",
        [
            {"role": "user", "content": "old question"},
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "What is   2+2?"},
        ],
    ]
    res = leakage(
        train, {"a": ["write about apple =>", "other"], "b": ["what is 2+2?", "WHAT IS 2+2?", "old question"], "c": []}
    )
    assert res["a"]["count"] == 1 and res["a"]["examples"] == ["write about apple =>"]
    assert res["b"]["count"] == 2 and res["b"]["n_eval"] == 3  # only the last user turn counts
    assert res["c"] == {"count": 0, "n_eval": 0, "fraction": 0.0, "examples": []}

    # benchmark loaders read a given path; missing folders are simply not included
    d = tmp_path / "shared"
    (d / "alpaca_eval").mkdir(parents=True)
    (d / "mt_bench").mkdir()
    (d / "arena_hard").mkdir()
    (d / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json").write_text(
        json.dumps([{"instruction": "What is 2+2?", "output": "4"}, {"instruction": "Tell a joke", "output": "no"}])
    )
    (d / "mt_bench" / "question.jsonl").write_text(
        json.dumps({"question_id": 1, "turns": ["Tell a JOKE", "again"]}) + "\n"
    )
    (d / "arena_hard" / "arena-hard-v0.1_question.jsonl").write_text(
        json.dumps({"uid": "u", "prompt": "write about apple =>"})
        + "\n"
        + json.dumps({"question_id": "v", "turns": [{"content": "old question"}]})
        + "\n"
    )
    spec = world.WorldSpec(n_eval=8, n_ood=4)
    sets = eval_sets(spec, shared_data=d)
    assert {k: len(v) for k, v in sets.items()} == {
        "world_eval": 8,
        "world_ood": 4,
        "alpaca_eval": 2,
        "mt_bench": 1,
        "arena_hard": 2,
    }
    world_train = world.make_prompts(world.WorldSpec(n_pref=50), "pref") + sets["world_eval"][:3] + ["tell a joke"]
    res = leakage(world_train, sets)
    # the world's eval prompts are distinct and none is a pref prompt: exactly the three planted ones leak
    assert res["world_eval"]["count"] == 3 and res["world_eval"]["examples"] == sets["world_eval"][:3]
    assert res["world_ood"]["count"] == 0 and res["alpaca_eval"]["count"] == 1 and res["mt_bench"]["count"] == 1
    assert set(eval_sets(None, shared_data=tmp_path / "absent")) == set()
    if (SHARED / "data").is_dir():  # the real benchmark files, where present
        real = eval_sets(None)
        assert {k: len(v) for k, v in real.items()} == {"alpaca_eval": 805, "mt_bench": 80, "arena_hard": 500}

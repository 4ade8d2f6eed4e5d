"""Real preference data: every file format, and the Hub-backed configs (download replaced by a tiny local
dataset of the real schema)."""

import gzip
import json

import pytest

from po_bench.data.formats import read as formats_read
from po_bench.data.formats.paired import load_pairs, load_sft
from po_bench.data.formats.read import load_rows
from po_bench.data.formats.unpaired import load_unpaired
from po_bench.data.schema import dataset_config

from .conftest import compose as _compose
from .helpers import conv as _conv

# ---------------------------------------------------------------------------------------------
# file formats
# ---------------------------------------------------------------------------------------------


# format -> (columns, good rows, expected first pair/example, bad rows with their skip reason)
CASES = {
    "pairs": (
        {"prompt": "question", "chosen": "good", "rejected": "bad"},
        [{"question": "q1", "good": "a", "bad": "b"}, {"question": "q2", "good": "c", "bad": "d"}],
        {"prompt": "q1", "chosen": "a", "rejected": "b"},
        [
            ({"question": "q3", "good": None, "bad": "x"}, "missing_chosen"),
            ({"question": "q4", "good": "same", "bad": "same"}, "identical_responses"),
            ({"question": "  ", "good": "a", "bad": "b"}, "empty_prompt"),
        ],
    ),
    "conversational": (
        {},
        [
            {"prompt": "q1", "chosen": _conv("q1", "a"), "rejected": _conv("q1", "b")},
            {"prompt": "q2", "chosen": _conv("q2", "c"), "rejected": _conv("q2", "d")},
        ],
        {
            "prompt": [{"role": "user", "content": "q1"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
        [
            (
                {"prompt": "q3", "chosen": [{"role": "user", "content": "q3"}], "rejected": _conv("q3", "b")},
                "chosen_last_not_assistant",
            ),
            ({"prompt": "q4", "chosen": _conv("q4", "a"), "rejected": _conv("other", "b")}, "prompt_mismatch"),
        ],
    ),
    "hh": (
        {"chosen": "win", "rejected": "lose"},
        [
            {"win": "\n\nHuman: hi\n\nAssistant: hello", "lose": "\n\nHuman: hi\n\nAssistant: go away"},
            {
                "win": "\n\nHuman: x\n\nAssistant: y\n\nHuman: z\n\nAssistant: good",
                "lose": "\n\nHuman: x\n\nAssistant: y\n\nHuman: z\n\nAssistant: bad",
            },
        ],
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": "go away"}],
        },
        [
            ({"win": "no markers", "lose": "none here"}, "no_shared_assistant_turn"),
            (
                {"win": "\n\nHuman: hi\n\nAssistant: same", "lose": "\n\nHuman: hi\n\nAssistant: same"},
                "identical_responses",
            ),
        ],
    ),
    "ranked": (
        {"responses": "all_generated_responses", "scores": "all_rm_scores"},
        [
            {"prompt": "q1", "all_generated_responses": ["mid", "best", "worst"], "all_rm_scores": [0.5, 0.9, 0.1]},
            {"prompt": "q2", "all_generated_responses": ["a", "b"], "all_rm_scores": [1.0, 2.0]},
        ],
        {"prompt": "q1", "chosen": "best", "rejected": "worst"},
        [
            ({"prompt": "q3", "all_generated_responses": ["a", "b"], "all_rm_scores": [1.0, 1.0]}, "tie"),
            ({"prompt": "q4", "all_generated_responses": ["a"], "all_rm_scores": [1.0]}, "too_few_responses"),
            (
                {"prompt": "q5", "all_generated_responses": ["a", "b", "c"], "all_rm_scores": [1.0, 2.0]},
                "scores_do_not_match_responses",
            ),
        ],
    ),
    "unpaired": (
        {"completion": "response", "label": "desirable"},
        [
            {"prompt": "q1", "response": "a", "desirable": "true"},
            {"prompt": "q1", "response": "b", "desirable": "false"},
        ],
        {"prompt": "q1", "completion": "a", "label": True},
        [
            ({"prompt": "q2", "response": "c", "desirable": "maybe"}, "bad_label"),
            ({"prompt": "q3", "response": None, "desirable": "true"}, "missing_completion"),
        ],
    ),
}


def _write(path, rows, ext):
    if ext == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    elif ext == "jsonl.gz":
        with gzip.open(path, "wt") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    elif ext == "json":
        path.write_text(json.dumps(rows))
    elif ext == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("ext", ["jsonl", "json", "parquet"])
@pytest.mark.parametrize("fmt", list(CASES))
def test_file_formats(fmt, ext, tmp_path):
    columns, good, first, bad = CASES[fmt]
    rows = good + [r for r, _ in bad]
    path = tmp_path / f"data.{ext}"
    _write(path, rows, ext)
    overrides = ["dataset=file", f"dataset.path={path}", f"dataset.format={fmt}"]
    overrides += [f"dataset.columns.{k}={v}" for k, v in columns.items()]
    dcfg = _compose(overrides).dataset
    loaded = load_rows(dcfg)
    assert len(loaded) == len(rows) + (ext == "jsonl")
    expected_skips: dict = {}
    for _, reason in bad:
        expected_skips[reason] = expected_skips.get(reason, 0) + 1
    if ext == "jsonl":
        expected_skips["invalid_json"] = 1
    if fmt == "unpaired":
        out, report = load_unpaired(dcfg)
        assert report["unpaired"] == len(good) and (report["desirable"], report["undesirable"]) == (1, 1)
    else:
        out, report = load_pairs(dcfg)
        assert report["pairs"] == len(good)
    assert out[0] == first
    assert report["skipped"] == expected_skips, report
    assert report["rows"] == len(loaded) and report["source"] == str(path)
    bad_index = {reason: [len(good) + i] for i, (_, reason) in enumerate(bad)}
    for reason, idx in bad_index.items():
        assert report["skipped_examples"][reason] == idx


# ---------------------------------------------------------------------------------------------
# Hub-backed configs: only the download is replaced, by tiny datasets of the real schema
# ---------------------------------------------------------------------------------------------


def _uf_row(i):
    p = f"prompt {i}"
    return {
        "prompt": p,
        "prompt_id": f"id{i}",
        "chosen": _conv(p, f"good {i}"),
        "rejected": _conv(p, f"bad {i}"),
        "messages": _conv(p, f"good {i}"),
        "score_chosen": 8.0,
        "score_rejected": 4.0,
    }


def _simpo_row(i):
    p = f"prompt {i}"
    resp = [f"r{i}-{j}" for j in range(5)]
    scores = [0.1, 0.5, 0.9, 0.3, 0.2]
    return {
        "prompt_id": f"id{i}",
        "prompt": p,
        "all_generated_responses": resp,
        "all_rm_scores": scores,
        "chosen": _conv(p, resp[2]),
        "rejected": _conv(p, resp[0]),
    }


def _chat_row(i):
    return {
        "prompt": f"hello {i}",
        "prompt_id": f"id{i}",
        "messages": _conv(f"hello {i}", "hi") + _conv("more?", "sure"),
    }


def _hh_row(i):
    return {
        "chosen": f"\n\nHuman: question {i}\n\nAssistant: kind answer",
        "rejected": f"\n\nHuman: question {i}\n\nAssistant: rude answer",
    }


HUB = {
    "ultrafeedback": ("HuggingFaceH4/ultrafeedback_binarized", None, "train_prefs", "test_prefs", _uf_row),
    "simpo_onpolicy_llama3": ("princeton-nlp/llama3-ultrafeedback-armorm", None, "train", "test", _simpo_row),
    "simpo_onpolicy_gemma2": ("princeton-nlp/gemma2-ultrafeedback-armorm", None, "train", "test", _simpo_row),
    "hh_rlhf": ("Anthropic/hh-rlhf", None, "train", "test", _hh_row),
    "ultrachat": ("HuggingFaceH4/ultrachat_200k", None, "train_sft", "test_sft", _chat_row),
}


@pytest.fixture
def fake_hub(monkeypatch):
    from datasets import Dataset

    calls = []

    def load(repo_id, split, name=None, data_dir=None):
        calls.append((repo_id, split, name, data_dir))
        make = next(v[4] for v in HUB.values() if v[0] == repo_id)
        return Dataset.from_list([make(i) for i in range(6)])

    monkeypatch.setattr(formats_read, "_hub_load", load)
    return calls


@pytest.mark.parametrize("name", list(HUB))
def test_hub_configs_compose_and_load(name, fake_hub):
    repo, data_dir, split, eval_split, _ = HUB[name]
    d = _compose([f"dataset={name}", "dataset.max_rows=4"]).dataset
    assert (d.kind, d.hub_id, d.split, d.eval_split) == ("hf", repo, split, eval_split)
    if name == "ultrachat":
        ex, report = load_sft(d)
        assert len(ex) == 4 and ex[0]["messages"][1] == {"role": "assistant", "content": "hi"}
    else:
        pairs, report = load_pairs(d)
        assert report["pairs"] == 4 and report["skipped"] == {}
        p = pairs[0]
        assert p["prompt"][-1] == {"role": "user", "content": p["prompt"][-1]["content"]}
        assert len(p["chosen"]) == len(p["rejected"]) == 1 and p["chosen"][0]["role"] == "assistant"
        expected = {
            "ultrafeedback": ("prompt 0", "good 0", "bad 0"),
            "hh_rlhf": ("question 0", "kind answer", "rude answer"),
        }
        want = expected.get(name, ("prompt 0", "r0-2", "r0-0"))
        assert (p["prompt"][-1]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"]) == want
        load_pairs(d, d.eval_split)
    assert fake_hub[0] == (repo, split, None, data_dir)
    if name != "ultrachat":
        assert fake_hub[1][1] == eval_split


def test_hub_extras(fake_hub):
    """hh subsets via owner/name/data_dir; SimPO sets as ranked data; ultrafeedback names its SFT set."""
    d = _compose(["dataset=hh_rlhf", "dataset.hub_id=Anthropic/hh-rlhf/harmless-base"]).dataset
    load_pairs(d)
    assert fake_hub[-1] == ("Anthropic/hh-rlhf", "train", None, "harmless-base")
    d = _compose(["dataset=simpo_onpolicy_gemma2", "dataset.format=ranked"]).dataset
    ranked, _ = load_pairs(d)
    assert ranked[0] == {"prompt": "prompt 0", "chosen": "r0-2", "rejected": "r0-0"}
    uf = _compose(["dataset=ultrafeedback"]).dataset
    sft_cfg = dataset_config(uf.sft, max_rows=2)
    ex, _ = load_sft(sft_cfg)
    assert len(ex) == 2 and fake_hub[-1][:2] == ("HuggingFaceH4/ultrachat_200k", "train_sft")
    unpaired, rep = load_unpaired(uf)
    assert len(unpaired) == 12 and rep["unpaired"] == 12 and unpaired[1]["label"] is False

"""Real preference data: HH-RLHF from disk, every file format, the Hub-backed configs (download
replaced by a tiny local dataset of the real schema), on-policy data generation, statistics and
leakage checks."""

import copy
import gzip
import json
import os
import time
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.cli import data as data_cli
from po_bench.config import dataset_config
from po_bench.data import world
from po_bench.data.formats import read as formats_read
from po_bench.data.formats.base import DataError
from po_bench.data.formats.hh import parse_hh
from po_bench.data.formats.leakage import eval_sets, leakage
from po_bench.data.formats.paired import load_pairs, load_sft, to_pairs, to_sft
from po_bench.data.formats.read import load_rows
from po_bench.data.formats.stats import data_stats
from po_bench.data.formats.unpaired import load_unpaired
from po_bench.data.onpolicy_files import RewardModelScorer
from po_bench.training import models

from .conftest import SHARED
from .conftest import compose as _compose

HH_FILE = SHARED / "data" / "hh_rlhf" / "harmless-base_test.jsonl.gz"
needs_hh = pytest.mark.skipif(not HH_FILE.is_file(), reason=f"HH-RLHF test file not present: {HH_FILE}")


def _hh_cfg():
    return _compose(["dataset=hh_rlhf", f"dataset.path={HH_FILE}", "dataset.eval_split=null"])


# ---------------------------------------------------------------------------------------------
# HH-RLHF (real file)
# ---------------------------------------------------------------------------------------------


def test_parse_hh():
    t = "\n\nHuman: hi there\n\nAssistant: hello!\n\nHuman: how are you?\n\nAssistant:  fine, thanks"
    prompt, answer = parse_hh(t)
    assert prompt == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": "how are you?"},
    ]
    assert answer == "fine, thanks"
    with pytest.raises(ValueError):
        parse_hh("\n\nHuman: no answer yet")
    with pytest.raises(ValueError):
        parse_hh("just text")


@needs_hh
def test_hh_rlhf_real_file_every_row_parses():
    cfg = _hh_cfg()
    raw = [json.loads(line) for line in gzip.open(HH_FILE, "rt", encoding="utf-8")]
    pairs, report = load_pairs(cfg.dataset)
    assert len(raw) == 2312
    assert report["rows"] == 2312 and report["pairs"] == 2312 and report["skipped"] == {}, report
    mark = "\n\nAssistant:"
    naive = 0
    for r, p in zip(raw, pairs):
        # independent check: the prompt is the transcripts' longest common prefix cut at its last
        # "\n\nAssistant:", the responses are what follows that marker in each transcript
        n = len(os.path.commonprefix([r["chosen"], r["rejected"]]))
        cut = r["chosen"].rfind(mark, 0, n)
        shared = r["chosen"][:cut]
        assert r["rejected"].startswith(shared + mark)
        assert p["prompt"] == parse_hh(shared + mark + " x")[0]
        assert p["prompt"][0]["role"] == "user"
        assert p["chosen"] == [{"role": "assistant", "content": r["chosen"][cut + len(mark) :].strip()}]
        assert p["rejected"] == [{"role": "assistant", "content": r["rejected"][cut + len(mark) :].strip()}]
        # and, where both transcripts only differ in their final assistant turn, the responses are
        # exactly those final turns and the prompt is both transcripts' shared history
        (pc, c), (pr, rj) = parse_hh(r["chosen"]), parse_hh(r["rejected"])
        if pc == pr:
            naive += 1
            assert (p["prompt"], p["chosen"][0]["content"], p["rejected"][0]["content"]) == (pc, c, rj)
    assert naive >= 2300  # a handful of HH rows continue the conversation in one transcript
    assert report["notes"]["empty_chosen_kept"] == 4  # real HH rows whose chosen answer is empty


@needs_hh
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_hh_rlhf_dpo_step_with_smollm2_tokenizer(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from po_bench.training.smollm2 import smollm2_tokenizer
    from po_bench.training.trl.preference import train_preference

    tok = smollm2_tokenizer()
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    cfg = _compose(
        ["dataset=hh_rlhf", f"dataset.path={HH_FILE}", "dataset.eval_split=null", "dataset.max_rows=200", "loss=dpo"]
    )
    pairs, _ = load_pairs(cfg.dataset)
    sample = sorted(pairs, key=lambda p: len(json.dumps(p)))[:8]  # short ones: fast and untruncated
    stats = data_stats(sample, tok, max_length=128)
    assert stats["n_pairs"] == 8 and stats["conversational"] == 8 and stats["n_truncated"] == 0
    rendered = tok.apply_chat_template(sample[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")

    mcfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(mcfg)
    ref = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(
        **{**cfg.train, "max_steps": 2, "batch_size": 4, "logging_steps": 1, "progress": False, "max_length": 128}
    )
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    res = train_preference(model, ref, tok, sample, loss_cfg, train, tmp_path / "trainer", 0)
    assert res["steps"] == 2
    assert res["train_loss_final"] is not None and torch.isfinite(torch.tensor(res["train_loss_final"]))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())


# ---------------------------------------------------------------------------------------------
# file formats
# ---------------------------------------------------------------------------------------------


def _conv(user, answer):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


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


def test_conversational_trl_style_and_shared_prefix():
    """TRL's conversational layout (prompt messages + one-message answers) and prompt-less rows
    whose prompt is the shared message prefix."""
    sys_user = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    rows = [
        {
            "prompt": sys_user,
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
        {
            "chosen": sys_user + [{"role": "assistant", "content": "c"}],
            "rejected": sys_user + [{"role": "assistant", "content": "d"}],
        },
        {"prompt": "q", "chosen": "plain a", "rejected": "plain b"},
    ]
    pairs, report = to_pairs(rows, "conversational")
    assert report["skipped"] == {}
    assert pairs[0] == {
        "prompt": sys_user,
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    }
    assert pairs[1]["prompt"] == sys_user and pairs[1]["chosen"][0]["content"] == "c"
    assert pairs[2]["prompt"] == [{"role": "user", "content": "q"}]
    sft, rep = to_sft(
        [{"messages": _conv("u", "v")}, {"messages": [{"role": "user", "content": "x"}]}], "conversational"
    )
    assert sft == [{"messages": _conv("u", "v")}] and rep["skipped"] == {"no_assistant_turn": 1}


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


# ---------------------------------------------------------------------------------------------
# po-bench-data onpolicy
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    d = tmp_path_factory.mktemp("policy")
    tok = models.train_world_tokenizer()
    models.build_tiny_model(
        tok, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, seed=0
    ).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_outputs(out, name, n_prompts, k):
    ranked = _read_jsonl(out / f"{name}.ranked.jsonl")
    pairs = _read_jsonl(out / f"{name}.pairs.jsonl")
    recipe = json.loads((out / f"{name}.recipe.json").read_text())
    assert len(ranked) == n_prompts and all(len(r["responses"]) == len(r["scores"]) == k for r in ranked)
    ties = sum(1 for r in ranked if max(r["scores"]) == min(r["scores"]))
    assert len(pairs) == n_prompts - ties
    assert recipe["counts"]["prompts"] == n_prompts and recipe["counts"]["pairs"] == len(pairs)
    assert recipe["counts"]["ties_skipped"] == ties and recipe["k"] == k
    assert len(set(recipe["sample_seeds"])) == k
    assert recipe["counts"]["mean_distinct_samples"] > 1
    for r, p in zip((r for r in ranked if max(r["scores"]) != min(r["scores"])), pairs):
        s = r["scores"]
        assert p["prompt"] == r["prompt"]
        assert p["chosen"] == r["responses"][s.index(max(s))] and p["rejected"] == r["responses"][s.index(min(s))]
    return ranked, recipe


def test_onpolicy_world_gold(tiny_policy, tmp_path):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = data_cli.main(
        [
            "onpolicy",
            "--model",
            str(tiny_policy),
            "--world",
            "pref",
            "--n",
            "24",
            "-k",
            "4",
            "--max-new-tokens",
            "10",
            "--batch-size",
            "24",
            "--temperature",
            "1.0",
            "--seed",
            "3",
            "--scorer",
            "gold",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    wall = time.perf_counter() - t0
    print(f"\nonpolicy world/gold: 24 prompts x 4 samples, wall {wall:.2f}s")
    assert rc == 0
    ranked, recipe = _check_outputs(out, "onpolicy", 24, 4)
    prompts = world.make_prompts(world.WorldSpec(n_pref=24), "pref")
    assert [r["prompt"] for r in ranked] == prompts
    for r in ranked:
        assert r["scores"] == [world.gold_reward(r["prompt"], y) for y in r["responses"]]
    assert recipe["scorer"]["kind"] == "gold" and recipe["prompt_source"] == {"world": "pref", "world_seed": 0, "n": 24}
    assert recipe["generation"]["temperature"] == 1.0 and recipe["seed"] == 3
    assert recipe["model"] == str(tiny_policy) and recipe["wall_seconds"]["total"] > 0


def test_onpolicy_prompt_file_reward_model(tiny_policy, tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = models.train_world_tokenizer()
    rm_dir = tmp_path / "rm"
    torch.manual_seed(0)
    rm = LlamaForSequenceClassification(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            num_labels=1,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            bos_token_id=None,
        )
    )
    rm.save_pretrained(str(rm_dir))
    tok.save_pretrained(str(rm_dir))
    prompts = world.make_prompts(world.WorldSpec(n_eval=16), "eval")
    pfile = tmp_path / "prompts.jsonl"
    pfile.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts))
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = data_cli.main(
        [
            "onpolicy",
            "--model",
            str(tiny_policy),
            "--prompts",
            str(pfile),
            "--prompt-column",
            "instruction",
            "-k",
            "3",
            "--max-new-tokens",
            "10",
            "--batch-size",
            "16",
            "--scorer",
            str(rm_dir),
            "--out",
            str(out),
            "--name",
            "rm",
            "--no-progress",
        ]
    )
    wall = time.perf_counter() - t0
    print(f"\nonpolicy file/reward-model: 16 prompts x 3 samples, wall {wall:.2f}s")
    assert rc == 0
    ranked, recipe = _check_outputs(out, "rm", 16, 3)
    assert recipe["scorer"]["kind"] == "reward_model" and recipe["scorer"]["path"] == str(rm_dir)
    assert recipe["prompt_source"]["file"] == str(pfile.resolve())
    # the scores are the reward model's: recompute one batch directly
    scorer = RewardModelScorer(str(rm_dir))
    r0 = ranked[0]
    assert scorer([r0["prompt"]] * 3, r0["responses"]) == pytest.approx(r0["scores"], abs=1e-5)
    # the ranked file is itself a dataset: format ranked reproduces the pairs view
    pairs, _ = load_pairs(dataset_config("file", path=str(out / "rm.ranked.jsonl"), format="ranked"))
    assert pairs == _read_jsonl(out / "rm.pairs.jsonl")


# ---------------------------------------------------------------------------------------------
# statistics and leakage
# ---------------------------------------------------------------------------------------------


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

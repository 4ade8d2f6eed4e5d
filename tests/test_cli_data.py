"""`po-bench-data` (po_bench/cli/data.py): ``onpolicy`` samples a policy on the world's or a file's
prompts and ranks the samples with the gold or a reward model, and refuses the world's scorer on other
prompts; ``inspect`` says when leakage was not checked."""

from __future__ import annotations

import json
import re
import time

import pytest
import torch

from po_bench.cli import data as data_cli
from po_bench.data import world
from po_bench.data.formats.paired import load_pairs
from po_bench.data.onpolicy_files import RewardModelScorer
from po_bench.data.schema import dataset_config
from po_bench.training import models

from .helpers import pairs_file


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


def test_inspect_says_when_leakage_was_not_checked(tmp_path, capsys):
    from po_bench.cli import data as data_cli

    f = pairs_file(tmp_path)
    rc = data_cli.main(["inspect", "--dataset", "file", "--path", str(f), "--shared-data", str(tmp_path / "absent")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["leakage"] == "not checked (benchmark files absent)"
    assert str(tmp_path / "absent") in out["leakage_files"]
    # one benchmark present: its count, and the others named as not checked
    (tmp_path / "bench" / "mt_bench").mkdir(parents=True)
    (tmp_path / "bench" / "mt_bench" / "question.jsonl").write_text(
        json.dumps({"question_id": 1, "turns": ["Say something about item 3."]}) + "\n"
    )
    rc = data_cli.main(["inspect", "--dataset", "file", "--path", str(f), "--shared-data", str(tmp_path / "bench")])
    leak = json.loads(capsys.readouterr().out)["leakage"]
    assert leak["mt_bench"]["count"] == 1 and leak["alpaca_eval"] == "not checked (benchmark file absent)"


def test_onpolicy_refuses_the_world_scorer_on_other_prompts(tmp_path):
    from po_bench.cli import data as data_cli

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Write a poem.\nExplain tides.\n")
    args = ["onpolicy", "--model", str(tmp_path / "no-model"), "--prompts", str(prompts), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="--allow-world-scorer"):
        data_cli.main(args)
    assert not (tmp_path / "o").exists()
    # allowed: it goes on past the scorer check and stops where the absent model is loaded
    with pytest.raises(OSError, match=re.escape(str(tmp_path / "no-model"))):
        data_cli.main(args + ["--allow-world-scorer"])
    assert not (tmp_path / "o").exists()

"""Validate before the expensive part: what configs and files can tell is checked before training
(a reward model's output count from its config.json), a failed validation leaves no run folder,
``po-bench-data inspect`` says when leakage was not checked, ``onpolicy`` refuses the world's reward
on prompts that are not the world's."""

from __future__ import annotations

import json
import time

import pytest

from po_bench.config import ConfigError, validate

from .conftest import ROOT, run_cli
from .test_config import _compose


def _reward_model_dir(tmp_path, num_labels: int):
    from transformers import LlamaConfig

    d = tmp_path / f"rm{num_labels}"
    LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=num_labels,
    ).save_pretrained(str(d))  # config.json only
    return d


def _pairs_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(
        "".join(
            json.dumps({"prompt": f"Say something about item {i}.", "chosen": "A kind answer.", "rejected": "No."})
            + "\n"
            for i in range(8)
        )
    )
    return f


def _real(tmp_path, rm_path) -> list[str]:
    return [
        "model=smollm2_135m",
        "dataset=file",
        f"dataset.path={_pairs_file(tmp_path)}",
        "judge=reward_model",
        f"judge.model_path={rm_path}",
    ]


def test_reward_model_output_count_is_checked_from_its_config(tmp_path):
    with pytest.raises(ConfigError, match=r"has 2 outputs \(num_labels=2\); a reward model has exactly 1"):
        validate(_compose(_real(tmp_path, _reward_model_dir(tmp_path, 2))))
    validate(_compose(_real(tmp_path, _reward_model_dir(tmp_path, 1))))
    with pytest.raises(ConfigError, match="no such model folder"):
        validate(_compose(_real(tmp_path, tmp_path / "absent")))
    validate(_compose(_real(tmp_path, "someone/not-in-the-local-cache")))  # a Hub id not cached: checked at load


def test_cli_reward_model_shape_fails_before_training_and_leaves_no_folder(tmp_path):
    t0 = time.perf_counter()
    run = tmp_path / "run"
    r = run_cli(
        [
            *_real(tmp_path, _reward_model_dir(tmp_path, 2)),
            "tracking=none",
            f"cache_dir={tmp_path}/cache",
            f"hydra.run.dir={run}",
        ],
        ROOT,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("po-bench: config error: judge=reward_model:") and "has 2 outputs" in last
    assert last.endswith("was removed") and not run.exists() and not (tmp_path / "cache").exists()
    print(f"\nconfig error after {time.perf_counter() - t0:.1f} s (before: after SFT, training and generation)")


def test_sweep_config_error_leaves_no_run_folder_for_tables(tmp_path):
    """A config error in a sweep: no job folder, so po-bench-table does not count it as a failed run."""
    sweep = tmp_path / "sweep"
    r = run_cli(
        [
            "-m",
            "noise=flip",
            "noise.rate=0.7",
            "tracking=none",
            f"cache_dir={tmp_path}/cache",
            f"hydra.sweep.dir={sweep}",
        ],
        ROOT,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "1 failed (1 config errors)" in r.stdout and "noise.rate=0.7" in r.stdout
    assert not [p for p in sweep.iterdir() if p.is_dir()] and not list(sweep.rglob("run.json"))


def test_inspect_says_when_leakage_was_not_checked(tmp_path, capsys):
    from po_bench.data import cli as data_cli

    f = _pairs_file(tmp_path)
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
    from po_bench.data import cli as data_cli

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Write a poem.\nExplain tides.\n")
    args = ["onpolicy", "--model", str(tmp_path / "no-model"), "--prompts", str(prompts), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="--allow-world-scorer"):
        data_cli.main(args)
    assert not (tmp_path / "o").exists()
    with pytest.raises(Exception) as e:  # allowed: it goes on (and stops at the absent model)
        data_cli.main(args + ["--allow-world-scorer"])
    assert "--allow-world-scorer" not in str(e.value)

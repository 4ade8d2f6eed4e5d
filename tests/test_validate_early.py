"""Validate before the expensive part: what configs and files can tell is checked before training
(a reward model's output count from its config.json), a failed validation leaves no run folder,
``po-bench-data inspect`` says when leakage was not checked, ``onpolicy`` refuses the world's reward
on prompts that are not the world's; impossible generation / vLLM engine numbers and an unwritable
cache_dir are one config error line before any compute."""

from __future__ import annotations

import json
import re
import time

import pytest

from po_bench.config import ConfigError, check_machine, validate

from .conftest import ROOT, SMALL, run_cli
from .conftest import compose as _compose


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
    from po_bench.cli import data as data_cli

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


# ---- generation numbers and cache_dir: refused before any compute ------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("generation.tensor_parallel_size=0", "generation.tensor_parallel_size=0: must be >= 1"),
        ("generation.tensor_parallel_size=-2", "generation.tensor_parallel_size=-2: must be >= 1"),
        ("generation.gpu_memory_utilization=0", "generation.gpu_memory_utilization=0.0: allowed (0, 1]"),
        ("generation.gpu_memory_utilization=1.5", "generation.gpu_memory_utilization=1.5: allowed (0, 1]"),
        ("generation.gpu_memory_utilization=-0.1", "generation.gpu_memory_utilization=-0.1: allowed (0, 1]"),
        ("generation.kv_cache_memory_gib=0", "generation.kv_cache_memory_gib=0.0: must be > 0, or null"),
        ("generation.max_model_len=0", "generation.max_model_len=0: must be >= 1, or null (the model's)"),
        ("generation.max_num_seqs=-1", "generation.max_num_seqs=-1: must be >= 1, or null"),
        ("generation.max_new_tokens=0", "generation.max_new_tokens=0: must be >= 1"),
        ("generation.batch_size=0", "generation.batch_size=0: must be >= 1"),
    ],
)
def test_impossible_generation_numbers_are_config_errors(override, message):
    with pytest.raises(ConfigError) as e:
        validate(_compose(["generation=vllm", override]))
    assert str(e.value).startswith(message), str(e.value)


def test_possible_generation_numbers_validate():
    validate(_compose(["generation=vllm", "generation.gpu_memory_utilization=1", "generation.max_model_len=64"]))
    validate(
        _compose(["generation=vllm", "generation.gpu_memory_utilization=null", "generation.kv_cache_memory_gib=2"])
    )


def _one_config_error_line(r) -> str:
    """The run's only stderr line, a config error (no traceback, nothing else)."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, (r.returncode, r.stderr[-3000:])
    assert lines[0].startswith("po-bench: config error: ") and "Traceback" not in r.stderr + r.stdout
    return lines[0]


def test_cli_vllm_tensor_parallel_size_0_fails_before_compute(tmp_path):
    run, cache = tmp_path / "run", tmp_path / "cache"
    # small sizes: were it not refused, SFT and training would run before vLLM failed, in about a minute
    small = [o for o in SMALL if not o.startswith("threads=")]
    r = run_cli(
        [
            *small,
            "generation=vllm",
            "generation.tensor_parallel_size=0",
            "threads=1",
            f"cache_dir={cache}",
            f"hydra.run.dir={run}",
        ],
        ROOT,
        timeout=300,
    )
    line = _one_config_error_line(r)
    assert line == (
        "po-bench: config error: generation.tensor_parallel_size=0: must be >= 1 (GPUs per vLLM engine); "
        f"its folder {run} was removed"
    )
    assert not run.exists() and not cache.exists()


@pytest.mark.parametrize(
    "where, why",
    [
        (
            "/proc/po-bench-test/cache",
            "cannot create it (/proc/po-bench-test: ",
        ),  # under a location nothing can be made in
        ("/proc", "cannot write a file in it ("),  # an existing folder that refuses files
        ("{tmp}/a-file/cache", "cannot create it ("),  # under a regular file
        ("{tmp}/a-file", "exists and is not a folder"),
    ],
)
def test_unwritable_cache_dir_is_a_config_error(tmp_path, where, why):
    (tmp_path / "a-file").write_text("")
    where = where.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as e:
        check_machine(_compose([f"cache_dir={where}"]))
    assert str(e.value).startswith(f"cache_dir={where}: {why}"), str(e.value)
    assert "set cache_dir (or PO_BENCH_CACHE) to a writable folder" in str(e.value)
    assert (tmp_path / "a-file").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_writable_cache_dir_is_made_and_left_without_the_probe(tmp_path):
    check_machine(_compose([f"cache_dir={tmp_path}/new/cache"]))
    assert (tmp_path / "new" / "cache").is_dir() and not list((tmp_path / "new" / "cache").iterdir())


def test_cli_unwritable_cache_dir_fails_before_compute_and_leaves_no_folder(tmp_path):
    run = tmp_path / "run"
    r = run_cli(
        ["tracking=none", "threads=1", "cache_dir=/proc/po-bench-test/cache", f"hydra.run.dir={run}"],
        ROOT,
        timeout=300,
    )
    line = _one_config_error_line(r)
    assert line == (
        "po-bench: config error: cache_dir=/proc/po-bench-test/cache: cannot create it (/proc/po-bench-test: "
        "No such file or directory); set cache_dir (or PO_BENCH_CACHE) to a writable folder; "
        f"its folder {run} was removed"
    )
    assert not run.exists() and not list(tmp_path.iterdir())

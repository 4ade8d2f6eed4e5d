"""An LLM judge inside real po-bench runs, against a real OpenAI-compatible HTTP server on loopback
(tests/helpers.py's FakeOpenAI): a tiny chat model trained on a small conversational file,
judged by AlpacaEval's annotator.

* budget: judge.max_requests=1 stops the judge after one request; the run is recorded failed with
  one line, every count kept, exit code 3; a rerun with a larger cap pays only for the rest.
* secrets: a 2-run sweep (wandb offline) whose judge needs the key planted in the environment, a
  run whose key comes from judge.api_key_file, attempts to pass the key as an override; the server
  checks the key (so the test can fail), and no file under the output tree holds it.
"""

from __future__ import annotations

import json

import pytest

from .conftest import ROOT, read_runs, run_cli
from .helpers import FakeOpenAI, alpaca_verdict, judge_run_args, judge_run_data

pytestmark = pytest.mark.slow
ENV_SECRET = "sk-po-bench-PLANTED-env-7d41c2"
FILE_SECRET = "sk-po-bench-PLANTED-file-93be05"


def test_judge_budget_stops_the_run_cleanly_and_rerun_pays_only_the_rest(tiny_chat_model, tmp_path):
    data = judge_run_data(tmp_path, 3)
    with FakeOpenAI(alpaca_verdict) as srv:
        args = [
            *judge_run_args(tiny_chat_model, data, srv.url, tmp_path / "cache"),
            "tracking=none",
            "judge.api_key_env=null",
            "judge.price_input_per_mtok=1",
            "judge.price_output_per_mtok=2",
        ]
        r = run_cli([*args, "judge.max_requests=1", f"hydra.run.dir={tmp_path}/run1"], ROOT)
        assert r.returncode == 3, r.stderr[-3000:]
        assert len(srv.requests) == 1  # the cap: one request reached the server
        last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
        assert last.startswith("po-bench: judge budget exhausted (judge.max_requests=1): 1 requests sent")
        assert "Traceback" not in r.stderr
        rec = json.loads((tmp_path / "run1" / "run.json").read_text())
        m = rec["metrics"]
        assert rec["status"] == "failed" and rec["error"] == last[len("po-bench: ") :]
        assert (
            m["alpaca_eval_budget_exhausted"],
            m["alpaca_eval_n_asked"],
            m["alpaca_eval_n_not_judged_budget"],
            m["alpaca_eval_n_judged"],
            m["alpaca_eval_n_request_failures"],
        ) == (True, 3, 2, 1, 0)
        assert m["judge_budget"]["requests_sent"] == 1 and m["judge_budget"]["not_sent"] == 2
        assert m["judge_client"]["cost_usd"] == pytest.approx((100 * 1 + 5 * 2) / 1e6)
        assert m["implicit_reward_accuracy"] is not None and m["train_loss_final"] is not None  # the rest is kept

        r = run_cli([*args, "judge.max_requests=10", f"hydra.run.dir={tmp_path}/run2"], ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        assert len(srv.requests) == 3  # only the two judgments not made before
        rec = json.loads((tmp_path / "run2" / "run.json").read_text())
        m = rec["metrics"]
        assert rec["status"] == "done" and not m["alpaca_eval_budget_exhausted"]
        assert (m["alpaca_eval_n_judged"], m["judge_client"]["cache_hits"], m["judge_client"]["requests"]) == (3, 1, 2)
        assert m["artifacts"]["built"] == []  # policy, samples and the policy's answers all come from the store
        assert {k.split("/")[0] for k in m["artifacts"]["hits"]} >= {"policy", "answers"}


def _hits(root, secrets):
    return [(str(p), s) for p in root.rglob("*") if p.is_file() for s in secrets if s.encode() in p.read_bytes()]


def test_judge_key_never_lands_in_the_output_tree(tiny_chat_model, tmp_path):
    data = judge_run_data(tmp_path, 2)
    out = tmp_path / "out"  # everything po-bench writes: sweep, runs, wandb, caches (judge cache included)
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "judge.key").write_text(FILE_SECRET + "\n")
    env = {"PO_BENCH_TEST_JUDGE_KEY": ENV_SECRET, "WANDB_API_KEY": ""}
    outputs = []

    # 1. a sweep of two runs, wandb offline, the key in the environment variable judge.api_key_env names
    with FakeOpenAI(alpaca_verdict, require_key=ENV_SECRET) as srv:
        args = [
            *judge_run_args(tiny_chat_model, data, srv.url, out / "cache"),
            "judge.api_key_env=PO_BENCH_TEST_JUDGE_KEY",
            "tracking=wandb",
            "tracking.mode=offline",
        ]
        r = run_cli(
            ["-m", *args, "loss=dpo,simpo", f"hydra.sweep.dir={out}/sweep", "hydra.sweep.subdir=${hydra.job.num}"],
            ROOT,
            env_extra=env,
        )
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, r.stderr[-3000:]
        runs = read_runs(out / "sweep")
        assert [x["status"] for x in runs] == ["done", "done"], [x.get("error") for x in runs]
        for x in runs:
            assert x["metrics"]["alpaca_eval_n_judged"] == 2 and x["metrics"]["alpaca_eval_n_request_failures"] == 0
        assert srv.requests and set(srv.auth) == {f"Bearer {ENV_SECRET}"}  # the key was used: the search below can fail
        assert len(list((out / "sweep").glob("*/wandb/offline-run-*"))) == 2

        # keys passed as overrides are refused before anything is written
        for sneak in (
            f"+judge.api_key={ENV_SECRET}",
            f"judge.api_key_env={ENV_SECRET}",
            f"hydra.job.env_set.OPENAI_API_KEY={ENV_SECRET}",
        ):
            r = run_cli(["-m", *args, sneak, f"hydra.sweep.dir={out}/sneak"], ROOT, env_extra=env)
            outputs.append(r.stdout + r.stderr)
            assert r.returncode == 2 and "config error" in r.stderr and not (out / "sneak").exists()

    # 2. the key in a file (judge.api_key_file wins; the environment variable is not set)
    with FakeOpenAI(alpaca_verdict, require_key=FILE_SECRET) as srv:
        args = [
            *judge_run_args(tiny_chat_model, data, srv.url, out / "cache"),
            "judge.api_key_env=PO_BENCH_TEST_JUDGE_KEY",
            f"judge.api_key_file={secret_dir / 'judge.key'}",
            f"judge.cache.dir={out}/judge_cache_file",
            "tracking=wandb",
            "tracking.mode=offline",
            "loss=dpo",
        ]
        r = run_cli([*args, f"hydra.run.dir={out}/keyfile"], ROOT, env_extra={"WANDB_API_KEY": ""})
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads((out / "keyfile" / "run.json").read_text())["status"] == "done"
        assert len(srv.requests) == 2 and set(srv.auth) == {f"Bearer {FILE_SECRET}"}

    assert list((out / "cache" / "judge").rglob("*.json")) and list((out / "judge_cache_file").rglob("*.json"))
    assert list(out.rglob(".hydra/config.yaml")) and list(out.rglob("*.log"))
    assert _hits(out, (ENV_SECRET, FILE_SECRET)) == []
    assert not [o for o in outputs if ENV_SECRET in o or FILE_SECRET in o]

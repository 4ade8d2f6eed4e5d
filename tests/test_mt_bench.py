"""MT-Bench (po_bench/judges/mt_bench.py): scores, parse failures, the answers' per-category temperatures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from po_bench.judges.api import JudgeResult
from po_bench.judges.client import load_judge_config

from .helpers import FakeOpenAI, client_cfg, mt_data


def test_mt_bench_scores_and_parse_failures(tmp_path):
    from po_bench.judges.mt_bench import MTBenchJudge, parse_rating

    assert parse_rating("Rating: [[7]]") == 7 and parse_rating("score [8.5]") == 8.5 and parse_rating("none") is None

    def responder(body):  # 8 when the (last) judged answer is EXCELLENT, 3 otherwise; no rating for math turn 2
        user = body["messages"][-1]["content"]
        if "R2:" in user or "Reference answer:\n6" in user:
            return "I cannot rate this.", None
        return ("Rating: [[3]]" if "meh" in user else "Rating: [[8]]"), None

    with FakeOpenAI(responder) as srv:
        cfg = dict(client_cfg(srv.url, tmp_path), **mt_data(tmp_path))
        judge = MTBenchJudge(cfg)
        gen = lambda convs: ["EXCELLENT " + c[-1]["content"] if len(c) == 1 else "meh" for c in convs]
        res = judge.run(gen)
        assert isinstance(res, JudgeResult)
        m = res.metrics
        assert m["n_judgments"] == 4 and m["n_parse_failures"] == 1 and m["n_scored"] == 3
        assert [r["judge_prompt"] for r in res.records] == [
            "single-v1",
            "single-v1-multi-turn",
            "single-math-v1",
            "single-math-v1-multi-turn",
        ]
        scores = [r["score"] for r in res.records]
        assert scores == [8, 3, 8, None]  # the unparsable one: left out, not a tie / not a 5
        assert m["score"] == pytest.approx(19 / 3)
        assert (m["score_turn1"], m["score_turn2"]) == (8, 3)
        # each request opens with its judge prompt's system prompt (FastChat's file, or the stand-ins)
        jp = {p["name"]: p for p in map(json.loads, Path(cfg["judge_prompts_path"]).read_text().splitlines())}
        assert {(b["messages"][0]["role"], b["messages"][0]["content"]) for b in srv.requests} == {
            ("system", jp[r["judge_prompt"]]["system_prompt"]) for r in res.records
        }
        assert len(srv.requests) == 4 and all(b["temperature"] == 0.0 and b["max_tokens"] == 2048 for b in srv.requests)
        # the second turn was generated from the conversation [q1, a1, q2]
        assert res.records[1]["answer"] == "meh" and res.records[0]["answer"].startswith("EXCELLENT")


def test_mt_bench_answers_use_fastchats_per_category_temperatures():
    from po_bench.judges.mt_bench import MTBenchJudge

    from .conftest import SHARED

    q = SHARED / "data" / "mt_bench" / "question.jsonl"
    if not q.is_file():
        pytest.skip("MT-Bench questions not in ../shared")
    cfg = load_judge_config(
        "mt_bench",
        base_url="http://127.0.0.1:9/v1",
        model="x",
        api_key_env=None,
        questions_path=str(q),
        reference_path=str(q.parent / "reference_answer_gpt-4.jsonl"),
        judge_prompts_path=str(q.parent / "judge_prompts.jsonl"),
        question_ids=[81, 111, 131],
    )
    judge = MTBenchJudge(cfg)
    cats = {x["question_id"]: x["category"] for x in judge.questions()}
    calls = []

    def answer(convs, temperature=None):
        calls.append((temperature, len(convs)))
        return [f"a{temperature}"] * len(convs)

    out = judge.generate_answers(answer)
    want = {
        "writing": 0.7,
        "roleplay": 0.7,
        "extraction": 0.0,
        "math": 0.0,
        "coding": 0.0,
        "reasoning": 0.0,
        "stem": 0.1,
        "humanities": 0.1,
    }
    for (a1, a2), q in zip(out, judge.questions()):
        assert a1 == a2 == f"a{want[q['category']]}", (q["question_id"], cats)
    assert {t for t, _ in calls} == {want[c] for c in cats.values()}

"""MT-Bench's answers are generated at FastChat's per-category temperatures (the generation side of the
mt_bench judge).  Where generation stops (the tokenizer's EOS and the chat template's end-of-turn
token) is tested per module: tests/test_chat.py, tests/test_generate.py, tests/test_vllm_engine.py."""

from __future__ import annotations

import pytest


def test_mt_bench_answers_use_fastchats_per_category_temperatures():
    from po_bench.judges.client import load_judge_config
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

"""MT-Bench: FastChat's single-answer grading (``fastchat/llm_judge``), scores 1-10.

* 80 two-turn questions (``question.jsonl``: question_id, category, turns).
* The policy answers both turns: turn 1 to [user q1], turn 2 to [user q1, assistant a1, user q2].
  Generation is a function passed in (``generate_fn(list of message lists) -> list of str``), so
  this module does not depend on a generation backend.
* Each turn is graded separately with FastChat's judge prompts (``judge_prompts.jsonl``):
  turn 1 with ``single-v1``, turn 2 with ``single-v1-multi-turn`` (the whole conversation, the
  judge focusing on the second answer); questions of the categories that need a reference
  (math, reasoning, coding) use ``single-math-v1`` / ``single-math-v1-multi-turn`` with the GPT-4
  reference answers (``reference_answer/gpt-4.jsonl``).  The judge sees [system prompt, user
  prompt]; FastChat's judge settings are temperature 0, max_tokens 2048.
* The rating is parsed as FastChat does: ``[[x]]``, else ``[x]``; a reply without one is a parse
  failure (FastChat's -1), counted and left out of the averages (as FastChat's show_result drops -1).
* Scores: mean of turn-1 ratings, mean of turn-2 ratings, and the overall mean of all ratings.

Data: local paths (``questions_path``, ``reference_path``, ``judge_prompts_path``) win over the
default sources (FastChat's GitHub files).
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from po_bench.judges.api import Judge, JudgeInputs, JudgeResult, Reads, register_judge
from po_bench.judges.client import (
    FailureTally,
    JudgeClient,
    LLMJudgeConfig,
    cfg_get,
    read_json_or_jsonl,
    resolve_data_file,
    stats_delta,
    to_plain,
)

log = logging.getLogger("po_bench.judges")

_FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"
DEFAULT_SOURCES = {
    "questions": f"{_FASTCHAT}/mt_bench/question.jsonl",
    "reference": f"{_FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl",
    "judge_prompts": f"{_FASTCHAT}/judge_prompts.jsonl",
}
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")  # FastChat common.NEED_REF_CATS
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # FastChat one_score_pattern
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")  # one_score_pattern_backup
RATING_REGEX = r"Rating: \[\[(10|[1-9])\]\]"  # structured_outputs: true (a local judge: the verdict only)

GenerateFn = Callable[[list[list[dict]]], list[str]]


def parse_rating(text: str | None) -> float | None:
    """FastChat's rating parser; None where it would give -1."""
    if not text:
        return None
    m = ONE_SCORE.search(text) or ONE_SCORE_BACKUP.search(text)
    if not m:
        return None
    try:
        v = ast.literal_eval(m.groups()[0])
    except (ValueError, SyntaxError):
        return None
    return float(v)


@dataclass
class MTBenchConfig(LLMJudgeConfig):
    """judge=mt_bench (conf/judge/mt_bench.yaml)."""

    questions_path: str | None = None
    questions_source: str | None = None
    reference_path: str | None = None
    reference_source: str | None = None
    judge_prompts_path: str | None = None
    judge_prompts_source: str | None = None
    question_ids: list[int] | None = None
    subset_size: int = 0
    # FastChat's per-category answer temperatures (category -> temperature)
    answer_temperature_by_category: dict[str, float] = field(default_factory=dict)


@register_judge("mt_bench")
class MTBenchJudge(Judge):
    config_class = MTBenchConfig
    reads = Reads.ANSWERS
    uses_client = True
    headline_metric = "mt_bench_score"
    reports_interval = True
    order = 21

    def __init__(self, cfg: Any, client: JudgeClient | None = None):
        self.cfg = cfg
        self.client = client
        self._data: dict | None = None

    def _client(self) -> JudgeClient:
        if self.client is None:
            self.client = JudgeClient(self.cfg)
        return self.client

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        """The policy's answers to both turns of each question, graded 1-10."""
        return self.evaluate(self.generate_answers(policy.answers))

    def _load(self) -> dict:
        if self._data is None:

            def rows(kind: str):
                path = resolve_data_file(
                    cfg_get(self.cfg, f"{kind}_path"),
                    cfg_get(self.cfg, f"{kind}_source", DEFAULT_SOURCES[kind]),
                    f"mt_bench {kind}",
                )
                return read_json_or_jsonl(path)

            questions = rows("questions")
            ids = cfg_get(self.cfg, "question_ids")
            if ids:
                want = {int(i) for i in ids}
                questions = [q for q in questions if int(q["question_id"]) in want]
            n = int(cfg_get(self.cfg, "subset_size", 0))
            if n > 0:
                questions = questions[:n]
            refs = {int(r["question_id"]): r["choices"][0]["turns"] for r in rows("reference")}
            prompts = {p["name"]: p for p in rows("judge_prompts")}
            for name in ("single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"):
                if name not in prompts:
                    raise ValueError(f"mt_bench judge prompts lack {name!r}")
            self._data = {"questions": questions, "refs": refs, "prompts": prompts}
        return self._data

    def questions(self) -> list[dict]:
        return self._load()["questions"]

    def generate_answers(self, generate_fn: GenerateFn) -> list[list[str]]:
        """Both turns for every question: [[answer_1, answer_2], ...]."""
        qs = self.questions()
        temps = to_plain(cfg_get(self.cfg, "answer_temperature_by_category")) or {}

        if temps and "temperature" not in inspect.signature(generate_fn).parameters:
            log.warning(
                "mt_bench: the answer function takes no temperature: FastChat's per-category "
                "temperatures are not applied"
            )
            temps = {}

        def by_temperature(convs: list) -> list[str]:
            """FastChat's per-category temperatures: one generate call per temperature."""
            if not temps:
                return [a.strip() for a in generate_fn(convs)]
            out: list = [None] * len(convs)
            groups: dict = {}
            for i, q in enumerate(qs):
                groups.setdefault(float(temps.get(q["category"], 0.7)), []).append(i)
            for t, idx in sorted(groups.items()):
                for i, a in zip(idx, generate_fn([convs[i] for i in idx], temperature=t)):
                    out[i] = a.strip()
            return out

        a1 = by_temperature([[{"role": "user", "content": q["turns"][0]}] for q in qs])
        convs2 = [
            [
                {"role": "user", "content": q["turns"][0]},
                {"role": "assistant", "content": x},
                {"role": "user", "content": q["turns"][1]},
            ]
            for q, x in zip(qs, a1)
        ]
        a2 = by_temperature(convs2)
        return [[x, y] for x, y in zip(a1, a2)]

    def structured_outputs(self) -> dict | None:
        so = cfg_get(self.cfg, "structured_outputs")
        if so is True:
            return {"regex": RATING_REGEX}
        return to_plain(so) if so else None

    def judge_messages(self, q: dict, answers: Sequence[str], turn: int) -> tuple[list[dict], str]:
        """FastChat's judge conversation for one question and turn (1 or 2), and the prompt's name."""
        d = self._load()
        need_ref = q["category"] in NEED_REF_CATS
        name = ("single-math-v1" if need_ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
        tpl = d["prompts"][name]
        kw = {}
        if need_ref:
            ref = d["refs"].get(int(q["question_id"]))
            if ref is None:
                raise ValueError(f"mt_bench question {q['question_id']} ({q['category']}) has no reference answer")
            kw["ref_answer_1"] = ref[0]
            if turn == 2:
                kw["ref_answer_2"] = ref[1]
        if turn == 2:
            user = tpl["prompt_template"].format(
                question_1=q["turns"][0], question_2=q["turns"][1], answer_1=answers[0], answer_2=answers[1], **kw
            )
        else:
            user = tpl["prompt_template"].format(question=q["turns"][0], answer=answers[0], **kw)
        return [{"role": "system", "content": tpl["system_prompt"]}, {"role": "user", "content": user}], name

    def evaluate(self, answers: Sequence[Sequence[str]], model_name: str = "po-bench-policy") -> JudgeResult:
        qs = self.questions()
        if len(answers) != len(qs):
            raise ValueError(f"mt_bench: {len(answers)} answers for {len(qs)} questions")
        params = {
            "temperature": cfg_get(self.cfg, "temperature", 0.0),
            "max_tokens": cfg_get(self.cfg, "max_tokens", 2048),
        }
        so = self.structured_outputs()
        items, requests = [], []
        for q, ans in zip(qs, answers):
            for turn in (1, 2):
                msgs, name = self.judge_messages(q, ans, turn)
                items.append(
                    {
                        "question_id": q["question_id"],
                        "category": q["category"],
                        "turn": turn,
                        "judge_prompt": name,
                        "model": model_name,
                    }
                )
                requests.append({"messages": msgs, "structured_outputs": so, **params})
        client = self._client()
        before = client.stats.as_dict()
        results = client.chat_many(requests, desc="mt_bench")
        n_parse, failures, examples = 0, FailureTally(len(items)), []
        for it, res in zip(items, results):
            if not res.ok:
                failures.add(res.error)
                it.update(score=None, error=res.error)
                continue
            it["judgment"] = res.text
            it["score"] = parse_rating(res.text)
            if it["score"] is None:
                n_parse += 1
                if len(examples) < 5:
                    examples.append({"question_id": it["question_id"], "turn": it["turn"], "text": res.text})
        if n_parse:
            log.warning("mt_bench: %d judge replies without a [[rating]] (left out)", n_parse)

        def mean(xs):
            xs = [x for x in xs if x is not None]
            return float(sum(xs) / len(xs)) if xs else None

        by_cat: dict[str, list] = {}
        for it in items:
            by_cat.setdefault(it["category"], []).append(it.get("score"))
        m = {
            "benchmark": "mt_bench",
            "judge": client.identity(),
            "score": mean([it.get("score") for it in items]),
            "score_turn1": mean([it.get("score") for it in items if it["turn"] == 1]),
            "score_turn2": mean([it.get("score") for it in items if it["turn"] == 2]),
            "score_by_category": {c: mean(v) for c, v in sorted(by_cat.items())},
            "n_questions": len(qs),
            "n_judgments": len(items),
            "n_scored": sum(it.get("score") is not None for it in items),
            "n_parse_failures": n_parse,
            "parse_failure_examples": examples,
            "client": stats_delta(before, client.stats.as_dict()),
            **failures.metrics(client, "mt_bench"),
        }
        return JudgeResult(metrics=m, records=items)

    def run(self, generate_fn: GenerateFn, model_name: str = "po-bench-policy") -> JudgeResult:
        answers = self.generate_answers(generate_fn)
        res = self.evaluate(answers, model_name)
        for it in res.records:
            q = next(i for i, q in enumerate(self.questions()) if q["question_id"] == it["question_id"])
            it["answer"] = answers[q][it["turn"] - 1]
        return res

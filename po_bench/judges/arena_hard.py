"""Arena-Hard-Auto v0.1: pairwise judgments against a baseline's answers, Bradley-Terry score.

As in arena-hard-auto (``config/judge_config.yaml``, ``gen_judgment.py``, v0.1 ``show_result.py``):

* 500 questions (``arena-hard-v0.1_question.jsonl``: uid, category, cluster, prompt; the older
  format question_id / turns is read too), answered by the policy and by a baseline (the
  benchmark's gpt-4-0314 answers, or any answers passed in, e.g. the SFT policy's);
* every question is judged twice with the positions swapped: game 1 shows the baseline as
  assistant A and the policy as B, game 2 the policy as A and the baseline as B;
* the judge (gpt-4-1106-preview, temperature 0, max_tokens 4096) gets the arena-hard system
  prompt and ``<|User Prompt|> ... <|The Start of Assistant A's Answer|> ...``; its verdict label
  is the unique match of ``\\[\\[([AB<>=]+)\\]\\]`` (A>>B, A>B, A=B, B>A, B>>A); with no label the
  conversation is continued once ("continue your judgment and finish by outputting a final
  verdict label", 2 attempts in all); no label or conflicting labels is a parse failure, counted
  and left out (never a tie);
* battles: a strong verdict (>>) counts ``verdict_weight`` = 3 times, a slight one once, A=B is
  a tie; the score is the Bradley-Terry (logistic, ties = half a win) win rate of the policy
  against the baseline, with a bootstrap 95% interval (``bootstrap_rounds`` = 100 resamples of
  the battles).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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

DEFAULT_SOURCES = {
    "questions": "hf://datasets/lmarena-ai/arena-hard-auto/data/arena-hard-v0.1/question.jsonl",
    "baseline": "hf://datasets/lmarena-ai/arena-hard-auto/data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl",
}
SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user prompt displayed below. You will be given assistant A's answer and assistant B's answer. Your job is "
    "to evaluate which assistant's answer is better.\n\nBegin your evaluation by generating your own answer to the "
    "prompt. You must provide your answers before judging any answers.\n\nWhen evaluating the assistants' answers, "
    "compare both assistants' answers with your answer. You must identify and correct any mistakes or inaccurate "
    "information.\n\nThen consider if the assistant's answers are helpful, relevant, and concise. Helpful means the "
    "answer correctly responds to the prompt or follows the instructions. Note when user prompt has any ambiguity "
    "or more than one interpretation, it is more helpful and appropriate to ask for clarifications or more "
    "information from the user than providing an answer based on assumptions. Relevant means all parts of the "
    "response closely connect or are appropriate to what is being asked. Concise means the response is clear and "
    "not verbose or excessive.\n\nThen consider the creativity and novelty of the assistant's answers when needed. "
    "Finally, identify any missing important information in the assistants' answers that would be beneficial to "
    "include when responding to the user prompt.\n\nAfter providing your explanation, you must output only one of "
    "the following choices as your final verdict with a label:\n\n1. Assistant A is significantly better: "
    "[[A>>B]]\n2. Assistant A is slightly better: [[A>B]]\n3. Tie, relatively the same: [[A=B]]\n4. Assistant B is "
    'slightly better: [[B>A]]\n5. Assistant B is significantly better: [[B>>A]]\n\nExample output: "My final '
    'verdict is tie: [[A=B]]".'
)
PROMPT_TEMPLATE = (
    "<|User Prompt|>\n{question_1}\n\n<|The Start of Assistant A's Answer|>\n{answer_1}\n<|The End of Assistant "
    "A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{answer_2}\n<|The End of Assistant B's Answer|>"
)
CONTINUE_PROMPT = "continue your judgment and finish by outputting a final verdict label"
VERDICT = re.compile(r"\[\[([AB<>=]+)\]\]")
LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")


def parse_verdict(text: str | None) -> tuple[str | None, bool]:
    """arena-hard-auto's get_score: (label, try_again).  No label -> (None, True); several
    different labels -> (None, False)."""
    matches = [m for m in VERDICT.findall(text or "") if m != ""]
    if len(set(matches)) == 0:
        return None, True
    if len(set(matches)) == 1:
        return matches[0].strip("\n"), False
    return None, False


def battle_outcomes(label: str | None, game: int, weight: int = 3) -> list[float]:
    """Outcomes for the policy (1 win, 0 loss, 0.5 tie) from one game's verdict.
    Game 1: A = baseline, B = policy; game 2: A = policy, B = baseline."""
    if label not in LABELS:
        return []
    policy_is_a = game == 2
    if label == "A=B":
        return [0.5]
    a_wins = label.startswith("A")
    n = weight if ">>" in label else 1
    return [1.0 if a_wins == policy_is_a else 0.0] * n


def bt_win_rate(outcomes: np.ndarray, scale: float = 400.0, base: float = 10.0) -> tuple[float, float]:
    """Bradley-Terry fit of policy vs baseline battles (arena-hard's compute_mle_elo: logistic
    regression on the duplicated battles, a tie = one win + one loss, baseline anchored at 1000).
    Returns (policy rating, win rate vs baseline).  With two players the maximum-likelihood win rate
    is the mean outcome; a sweep with no losses (or no wins) has no finite rating."""
    w = float(np.sum(outcomes))
    n = float(len(outcomes))
    if n == 0:
        return float("nan"), float("nan")
    p = w / n
    if p <= 0.0 or p >= 1.0:
        return (-math.inf if p <= 0 else math.inf), p
    rating = 1000.0 + scale * math.log(p / (1 - p)) / math.log(base)
    win = 1.0 / (1.0 + base ** ((1000.0 - rating) / scale))
    return rating, win


def bootstrap_ci(outcomes: np.ndarray, rounds: int = 100, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    n = len(outcomes)
    if n == 0 or rounds <= 0:
        return float("nan"), float("nan")
    wins = [bt_win_rate(outcomes[rng.integers(0, n, n)])[1] for _ in range(rounds)]
    a = (1 - level) / 2
    return float(np.quantile(wins, a)), float(np.quantile(wins, 1 - a))


def _question_text(q: dict) -> str:
    if "prompt" in q:
        return q["prompt"]
    t = q["turns"][0]
    return t["content"] if isinstance(t, dict) else t


def _qid(q: dict) -> str:
    return str(q.get("uid", q.get("question_id")))


def _answer_text(a: dict) -> str:
    if "messages" in a:  # new arena-hard-auto format
        c = a["messages"][-1]["content"]
        return c["answer"] if isinstance(c, dict) else c
    t = a["choices"][0]["turns"][0]
    return t["content"] if isinstance(t, dict) else t


@dataclass
class ArenaHardConfig(LLMJudgeConfig):
    """judge=arena_hard (conf/judge/arena_hard.yaml)."""

    questions_path: str | None = None
    questions_source: str | None = None
    baseline_path: str | None = None
    baseline_source: str | None = None
    baseline_model: str | None = None
    subset_size: int = 0
    subset_seed: int = 0
    verdict_weight: int = 3
    judgment_attempts: int = 2
    bootstrap_rounds: int = 100
    seed: int = 0


@register_judge("arena_hard")
class ArenaHardJudge(Judge):
    config_class = ArenaHardConfig
    reads = Reads.ANSWERS
    uses_client = True
    headline_metric = "arena_hard_score"
    reports_interval = True
    order = 22

    def __init__(self, cfg: Any, client: JudgeClient | None = None):
        self.cfg = cfg
        self.client = client
        self._questions: list[dict] | None = None

    def _client(self) -> JudgeClient:
        if self.client is None:
            self.client = JudgeClient(self.cfg)
        return self.client

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        """The policy's answers against the baseline's; without baseline answers configured, the SFT
        policy's answers are the baseline."""
        convs = [[{"role": "user", "content": q}] for q in self.prompts()]
        if cfg_get(self.cfg, "baseline_path") or cfg_get(self.cfg, "baseline_source"):
            return self.evaluate(policy.answers(convs))
        return self.evaluate(policy.answers(convs), baseline_answers=policy.sft_answers(convs), baseline_name="sft")

    def questions(self) -> list[dict]:
        """Rows {uid, prompt, category, cluster} (subset applied)."""
        if self._questions is None:
            path = resolve_data_file(
                cfg_get(self.cfg, "questions_path"),
                cfg_get(self.cfg, "questions_source", DEFAULT_SOURCES["questions"]),
                "arena_hard questions",
            )
            qs = [
                {
                    "uid": _qid(q),
                    "prompt": _question_text(q),
                    "category": q.get("category"),
                    "cluster": q.get("cluster"),
                }
                for q in read_json_or_jsonl(path)
            ]
            n = int(cfg_get(self.cfg, "subset_size", 0))
            if 0 < n < len(qs):
                idx = sorted(random.Random(int(cfg_get(self.cfg, "subset_seed", 0))).sample(range(len(qs)), n))
                qs = [qs[i] for i in idx]
            self._questions = qs
        return self._questions

    def prompts(self) -> list[str]:
        return [q["prompt"] for q in self.questions()]

    def baseline_answers(self) -> list[str]:
        """The configured baseline's answers (gpt-4-0314 by default), in question order."""
        path = resolve_data_file(
            cfg_get(self.cfg, "baseline_path"),
            cfg_get(self.cfg, "baseline_source", DEFAULT_SOURCES["baseline"]),
            "arena_hard baseline answers",
        )
        by_id = {str(a.get("uid", a.get("question_id"))): _answer_text(a) for a in read_json_or_jsonl(path)}
        missing = [q["uid"] for q in self.questions() if q["uid"] not in by_id]
        if missing:
            raise ValueError(f"arena_hard: the baseline has no answer for {len(missing)} questions (e.g. {missing[0]})")
        return [by_id[q["uid"]] for q in self.questions()]

    def structured_outputs(self) -> dict | None:
        so = cfg_get(self.cfg, "structured_outputs")
        if so is True:
            return {"choice": [f"[[{lab}]]" for lab in LABELS]}
        return to_plain(so) if so else None

    def _judge(self, convs: list[list[dict]]) -> list[tuple[str | None, str | None, str]]:
        """(label, error, full judgment text) per conversation, with arena-hard's second attempt."""
        client = self._client()
        params = {
            "temperature": cfg_get(self.cfg, "temperature", 0.0),
            "max_tokens": cfg_get(self.cfg, "max_tokens", 4096),
        }
        so = self.structured_outputs()
        attempts = max(1, int(cfg_get(self.cfg, "judgment_attempts", 2)))
        out: list = [None] * len(convs)
        texts = [""] * len(convs)
        todo = list(range(len(convs)))
        convs = [list(c) for c in convs]
        for attempt in range(attempts):
            results = client.chat_many(
                [{"messages": convs[i], "structured_outputs": so, **params} for i in todo],
                desc=f"arena_hard (attempt {attempt + 1})",
            )
            again = []
            for i, res in zip(todo, results):
                if not res.ok:
                    out[i] = (None, res.error, texts[i])
                    continue
                texts[i] += "\n" + (res.text or "")
                label, retry = parse_verdict(texts[i])
                out[i] = (label, None, texts[i])
                convs[i].append({"role": "assistant", "content": res.text or ""})
                if retry and attempt + 1 < attempts:
                    convs[i].append({"role": "user", "content": CONTINUE_PROMPT})
                    again.append(i)
            todo = again
            if not todo:
                break
        return out

    def evaluate(
        self,
        answers: Sequence[str],
        baseline_answers: Sequence[str] | None = None,
        model_name: str = "po-bench-policy",
        baseline_name: str | None = None,
    ) -> JudgeResult:
        qs = self.questions()
        if baseline_answers is None:
            baseline_answers = self.baseline_answers()
            baseline_name = baseline_name or cfg_get(self.cfg, "baseline_model", "gpt-4-0314")
        baseline_name = baseline_name or "baseline"
        if not (len(answers) == len(baseline_answers) == len(qs)):
            raise ValueError(
                f"arena_hard: {len(answers)} answers / {len(baseline_answers)} baseline answers for {len(qs)} questions"
            )
        convs, items = [], []
        for q, ans, base in zip(qs, answers, baseline_answers):
            ans, base = (ans or "").strip(), (base or "").strip()
            for game, (a, b) in ((1, (base, ans)), (2, (ans, base))):
                user = PROMPT_TEMPLATE.format(question_1=q["prompt"], answer_1=a, answer_2=b)
                convs.append([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}])
                items.append({"uid": q["uid"], "game": game, "model": model_name, "baseline": baseline_name})
        client = self._client()
        before = client.stats.as_dict()
        judged = self._judge(convs)
        weight = int(cfg_get(self.cfg, "verdict_weight", 3))
        outcomes: list[float] = []
        counts = {lab: 0 for lab in LABELS}
        n_parse, failures, examples = 0, FailureTally(len(items)), []
        for it, (label, err, text) in zip(items, judged):
            it.update(verdict=label, judgment=text)
            if err is not None:
                failures.add(err)
                it["error"] = err
                continue
            if label not in LABELS:
                n_parse += 1
                if len(examples) < 5:
                    examples.append({"uid": it["uid"], "game": it["game"], "text": text[-500:], "label": label})
                continue
            counts[label] += 1
            it["outcomes"] = battle_outcomes(label, it["game"], weight)
            outcomes += it["outcomes"]
        if n_parse:
            log.warning("arena_hard: %d judgments without a valid verdict label (left out)", n_parse)
        arr = np.asarray(outcomes, dtype=float)
        rating, win = bt_win_rate(arr)
        lo, hi = bootstrap_ci(arr, int(cfg_get(self.cfg, "bootstrap_rounds", 100)), int(cfg_get(self.cfg, "seed", 0)))
        pct = lambda x: None if x is None or math.isnan(x) else round(100.0 * x, 6)
        m = {
            "benchmark": "arena_hard",
            "judge": client.identity(),
            "baseline": baseline_name,
            "score": pct(win),
            "ci_low": pct(lo),
            "ci_high": pct(hi),
            "rating": None if math.isnan(rating) else (rating if math.isfinite(rating) else str(rating)),
            "n_questions": len(qs),
            "n_games": len(items),
            "n_battles": len(outcomes),
            "verdicts_game1": {k: sum(1 for it in items if it["game"] == 1 and it.get("verdict") == k) for k in LABELS},
            "verdicts_game2": {k: sum(1 for it in items if it["game"] == 2 and it.get("verdict") == k) for k in LABELS},
            "n_parse_failures": n_parse,
            "parse_failure_examples": examples,
            "client": stats_delta(before, client.stats.as_dict()),
            **failures.metrics(client, "arena_hard", "games"),
        }
        return JudgeResult(metrics=m, records=items)

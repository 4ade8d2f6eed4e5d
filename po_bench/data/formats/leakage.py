"""Train/eval leakage: prompt keys, the benchmarks' prompt sets, and the overlap counts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from po_bench.data import world
from po_bench.data.formats.base import norm_text
from po_bench.data.formats.read import read_file

ROOT = Path(__file__).resolve().parents[3]  # the repository
SHARED_DATA = ROOT.parent / "shared" / "data"


def prompt_key(prompt) -> str:
    """Comparison key of a prompt: the text (last user turn of a message list), lower-cased with
    whitespace collapsed."""
    if isinstance(prompt, (list, tuple)):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        text = users[-1] if users else (prompt[-1].get("content", "") if prompt else "")
    else:
        text = prompt
    return norm_text(text if isinstance(text, str) else "")


def leakage(train_prompts: Iterable, eval_sets: dict[str, Sequence], n_examples: int = 5) -> dict:
    """For each eval set: how many of its prompts also occur among the training prompts.

    Returns ``{name: {"count", "n_eval", "fraction", "examples"}}``; ``count`` counts eval prompts
    (with repetitions) whose key (:func:`prompt_key`) is a training prompt's key; ``examples`` are
    up to ``n_examples`` of them as they appear in the eval set.
    """
    train = {prompt_key(p) for p in train_prompts}
    train.discard("")
    out = {}
    for name, prompts in eval_sets.items():
        hits = [p for p in prompts if prompt_key(p) in train]
        out[name] = {
            "count": len(hits),
            "n_eval": len(prompts),
            "fraction": len(hits) / len(prompts) if len(prompts) else 0.0,
            "examples": [p if isinstance(p, str) else prompt_key(p) for p in hits[:n_examples]],
        }
    return out


def alpaca_eval_prompts(
    path: str | Path = SHARED_DATA / "alpaca_eval" / "gpt4_1106_preview_model_outputs.json",
) -> list[str]:
    """AlpacaEval's 805 instructions (field ``instruction`` of a model-outputs JSON file)."""
    rows = read_file(path)
    return [r["instruction"] for r in rows if isinstance(r.get("instruction"), str)]


def mt_bench_prompts(path: str | Path = SHARED_DATA / "mt_bench" / "question.jsonl") -> list[str]:
    """MT-Bench first turns (``turns[0]`` of question.jsonl)."""
    return [r["turns"][0] for r in read_file(path) if r.get("turns")]


def arena_hard_prompts(path: str | Path = SHARED_DATA / "arena_hard" / "arena-hard-v0.1_question.jsonl") -> list[str]:
    """Arena-Hard v0.1 questions: field ``prompt`` (or, in older files, ``turns[0].content``)."""
    out = []
    for r in read_file(path):
        if isinstance(r.get("prompt"), str):
            out.append(r["prompt"])
        elif r.get("turns"):
            t = r["turns"][0]
            out.append(t["content"] if isinstance(t, dict) else t)
    return out


def eval_sets(world_spec=None, shared_data: str | Path | None = SHARED_DATA) -> dict[str, list]:
    """The eval prompt sets to check for leakage: the world's held-out prompts (when a world spec
    is given) and AlpacaEval / MT-Bench / Arena-Hard where their files exist under ``shared_data``."""
    sets: dict[str, list] = {}
    if world_spec is not None:
        sets["world_eval"] = world.make_prompts(world_spec, "eval")
        sets["world_ood"] = world.make_prompts(world_spec, "ood")
    if shared_data is not None:
        d = Path(shared_data)
        for name, fn, rel in (
            ("alpaca_eval", alpaca_eval_prompts, "alpaca_eval/gpt4_1106_preview_model_outputs.json"),
            ("mt_bench", mt_bench_prompts, "mt_bench/question.jsonl"),
            ("arena_hard", arena_hard_prompts, "arena_hard/arena-hard-v0.1_question.jsonl"),
        ):
            if (d / rel).is_file():
                sets[name] = fn(d / rel)
    return sets

"""A data source from outside po-bench (CONTRIBUTING.md's "A data source" recipe as a plug-in, run by
``tests/test_sources.py``): arithmetic questions ("What is 17 + 25?") whose chosen answer is the sum and
whose rejected answer is off by 1 to 9, drawn from ``dataset.seed``; ``n_pref`` training pairs and
``n_eval`` held-out pairs.  It reads no file, and it has an exact gold reward (1 when the answer's first
number is the sum), which the pipeline reports as it does the world's.

It subclasses :class:`~po_bench.data.sources.FileSource` (text data for a real model: no SFT stage,
held-out pairs from the pairs artifact, the leakage and token report) and replaces what makes it a
different source: its kind, its spec, its checks, its pairs, its gold scorer and its sample rows."""

from __future__ import annotations

import random
import re

from po_bench.data.sources import FileSource, check, register_source

NUMBER = re.compile(r"-?\d+")


def question(a: int, b: int) -> str:
    return f"What is {a} + {b}? Answer with the number only."


def correct(prompt: str, answer: str) -> float:
    """1.0 when the first number in ``answer`` is the prompt's sum, else 0.0."""
    a, b = (int(x) for x in NUMBER.findall(prompt)[:2])
    found = NUMBER.search(answer)
    return float(found is not None and int(found.group()) == a + b)


@register_source
class ArithmeticSource(FileSource):
    kind = "arith"

    @classmethod
    def validate(cls, d, model_cfg) -> None:
        check(model_cfg.kind != "tiny", "dataset=toy_arith needs a model with a text tokenizer (not model=tiny)")
        check(not d.path and not d.hub_id, "dataset=toy_arith reads no file: unset dataset.path and dataset.hub_id")
        check(d.n_pref >= 8, f"dataset.n_pref={d.n_pref}: toy_arith needs >= 8 training pairs")
        check(d.n_eval >= 1, f"dataset.n_eval={d.n_eval}: toy_arith needs >= 1 held-out pair")

    @staticmethod
    def spec_of(dcfg) -> dict:
        return {
            "kind": "arith",
            "name": dcfg.name,
            "seed": int(dcfg.seed),
            "n_pref": dcfg.n_pref,
            "n_eval": dcfg.n_eval,
        }

    @staticmethod
    def build_pairs(spec: dict, inputs) -> dict:
        src = spec["source"]
        rng = random.Random(src["seed"])
        rows = []
        for _ in range(src["n_pref"] + src["n_eval"]):
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            wrong = a + b + rng.choice([-1, 1]) * rng.randint(1, 9)
            rows.append({"prompt": question(a, b), "chosen": str(a + b), "rejected": str(wrong)})
        n = len(rows)
        report = {"source": "toy_arith", "rows": n, "pairs": n, "n_skipped": 0, "skipped": {}}
        return {
            "train": rows[: src["n_pref"]],
            "eval": rows[src["n_pref"] :],
            "stats": {"conversion": report, "conversion_eval": None, "skipped_prompt_over_max_length": 0},
        }

    def gold(self, prompts: list, policy_samples: list[str], sft_samples: list[str]) -> dict:
        rp = [correct(p, y) for p, y in zip(prompts, policy_samples)]
        rs = [correct(p, y) for p, y in zip(prompts, sft_samples)]
        wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rp, rs)]
        return {
            "gold_reward": sum(rp) / len(rp),
            "gold_reward_sft": sum(rs) / len(rs),
            "win_rate_vs_sft": sum(wins) / len(wins),
            "mean_length_words": sum(len(y.split()) for y in policy_samples) / len(policy_samples),
        }

    @staticmethod
    def sample_rows(prompts_, samples, sft_samples) -> list[dict]:
        return [
            {"prompt": p, "policy": y, "sft": s, "gold_policy": correct(p, y), "gold_sft": correct(p, s)}
            for p, y, s in zip(prompts_, samples, sft_samples)
        ]

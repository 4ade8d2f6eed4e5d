"""A toy judge, registered from outside ``po_bench/`` (CONTRIBUTING.md's "A judge" recipe, carried out
by ``tests/test_api.py``): how often the policy's sample is longer than the SFT policy's on the
same eval prompt, in words or characters.  It reads the samples (:class:`Reads.SAMPLES`), so it runs on
the embedded world too.

Registered through the entry point group ``po_bench.judges`` (the test writes the entry point);
``conf/judge/toy.yaml`` beside this module is its yaml (the test adds ``tests/plugins/conf`` to
Hydra's search path)."""

from __future__ import annotations

from dataclasses import dataclass

from po_bench.judges.api import (
    BaseJudgeConfig,
    ConfigChecks,
    Judge,
    JudgeInputs,
    JudgeResult,
    Reads,
    check,
    register_judge,
)

UNITS = ("words", "chars")


@dataclass
class ToyConfig(BaseJudgeConfig):
    length_unit: str = "words"  # words | chars

    def validate(self, checks: ConfigChecks) -> None:
        super().validate(checks)
        check(self.length_unit in UNITS, f"judge.length_unit={self.length_unit!r}: allowed {', '.join(UNITS)}")


def length(text: str, unit: str) -> int:
    return len(text.split()) if unit == "words" else len(text)


@register_judge("toy")
class ToyJudge(Judge):
    config_class = ToyConfig
    reads = Reads.SAMPLES
    headline_metric = "toy_score"

    def __init__(self, cfg):
        self.unit = str(cfg.length_unit)

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        records = []
        for i, (a, b) in enumerate(zip(policy.samples, policy.sft_samples)):
            la, lb = length(a, self.unit), length(b, self.unit)
            records.append({"judge": "toy", "item": i, "score": 100.0 * (la > lb) + 50.0 * (la == lb)})
        n = len(records)
        return JudgeResult(
            metrics={
                "score": sum(r["score"] for r in records) / n if n else None,
                "mean_length": sum(length(a, self.unit) for a in policy.samples) / n if n else None,
                "unit": self.unit,
                "n_items": n,
            },
            records=records,
        )

"""The pipeline's own judges: ``judge=gold`` (the embedded world's exact gold reward r*) and
``judge=none`` (no external judge).  The pipeline scores them itself: the gold reward of the policy's
and the SFT policy's samples on every eval prompt wherever the data source has one, and the implicit
judges (:mod:`po_bench.judges.implicit`) on every run; the runner has nothing to add."""

from __future__ import annotations

from dataclasses import dataclass

from po_bench.judges.api import BaseJudgeConfig, Judge, JudgeInputs, JudgeResult, Reads, check, register_judge


@dataclass
class GoldConfig(BaseJudgeConfig):
    """judge=gold (conf/judge/gold.yaml): no fields of its own."""

    def check_data(self, world_data: bool) -> None:
        check(world_data, "judge=gold needs dataset=world (the gold reward is defined on the embedded world only)")


@register_judge("gold")
class GoldJudge(Judge):
    config_class = GoldConfig
    reads = Reads.WORLD
    order = 0

    def __init__(self, cfg=None):
        self.cfg = cfg

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        return JudgeResult(metrics={})


@register_judge("none")
class NoJudge(Judge):
    reads = Reads.NOTHING
    order = 1

    def __init__(self, cfg=None):
        self.cfg = cfg

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        return JudgeResult(metrics={})

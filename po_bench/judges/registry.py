"""``judge=<kind>`` -> the judge object (adding a judge = one module + one entry here)."""

from __future__ import annotations

from typing import Any

JUDGES = ("alpaca_eval", "mt_bench", "arena_hard", "reward_model", "openllm_v2")


def get_judge(cfg: Any, client=None):
    """The judge object for a judge config (``cfg.kind``, else ``cfg.name``)."""
    from po_bench.judges.client import cfg_get

    kind = cfg_get(cfg, "kind") or cfg_get(cfg, "name")
    if kind == "alpaca_eval":
        from po_bench.judges.alpaca_eval import AlpacaEvalJudge

        return AlpacaEvalJudge(cfg, client)
    if kind == "mt_bench":
        from po_bench.judges.mt_bench import MTBenchJudge

        return MTBenchJudge(cfg, client)
    if kind == "arena_hard":
        from po_bench.judges.arena_hard import ArenaHardJudge

        return ArenaHardJudge(cfg, client)
    if kind == "reward_model":
        from po_bench.judges.reward_model import RewardModelJudge

        return RewardModelJudge(cfg)
    if kind == "openllm_v2":
        from po_bench.judges.openllm import OpenLLMJudge

        return OpenLLMJudge(cfg)
    raise ValueError(f"judge kind {kind!r} is not available; valid: {', '.join(JUDGES)}")

"""Dispatch from ``judge=<name>`` to the judge modules in ``po_bench.judges`` (real data)."""

from __future__ import annotations


def run_judge(cfg, **kw) -> dict:
    raise NotImplementedError(f"judge={cfg.judge.name} is not wired into the pipeline yet")

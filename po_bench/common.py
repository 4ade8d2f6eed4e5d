"""Small helpers shared by the stages and the pipeline (the one public place for them)."""

from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf


def plain(node) -> dict:
    """A config node (or mapping) as a plain, resolved dict."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextmanager
def timed(seconds: dict, stage: str):
    """Add the wall time of the block to ``seconds[stage]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = round(seconds.get(stage, 0.0) + time.perf_counter() - t0, 3)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    from po_bench.store import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))

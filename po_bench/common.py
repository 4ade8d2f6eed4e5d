"""Small helpers shared by the stages and the pipeline (the one public place for them)."""

from __future__ import annotations

import ast
import importlib.util
import json
import random
import time
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from po_bench.store import atomic_write_text


def plain(node) -> dict:
    """A config node (or mapping) as a plain, resolved dict."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def seed_everything(seed: int) -> None:
    import numpy as np  # lazy: numpy (~0.1 s)
    import torch  # lazy: numpy, torch (~1.2 s)

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

    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def cpu_only_torch() -> bool:
    """Whether the installed torch is a CPU-only build (neither CUDA nor ROCm), read from its version file
    without importing torch (~1 s): then ``torch.cuda.is_available()`` is False for certain.  False when
    it may see a GPU (ask torch) or when that cannot be told."""
    try:
        spec = importlib.util.find_spec("torch")
        folder = Path(next(iter(spec.submodule_search_locations)))
        tree = ast.parse((folder / "version.py").read_text())
    except (ImportError, ValueError, AttributeError, TypeError, StopIteration, OSError, SyntaxError):
        return False
    values = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        target = node.target if isinstance(node, ast.AnnAssign) else target
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant):
            values[target.id] = node.value.value
    return "cuda" in values and "hip" in values and values["cuda"] is None and values["hip"] is None

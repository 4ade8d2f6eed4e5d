"""The closed sets of the config, each defined once.

A config value of one of these sets is a plain string in the yaml and on the command line
(``train.precision=bf16-mixed``); the config section that owns the field checks it with
:meth:`Choice.allows` and names the allowed values with :meth:`Choice.listed` in its one-line error,
and the code that acts on it compares against the member (``precision == Precision.BF16_MIXED``:
a :class:`~enum.StrEnum` member equals its string).  Open sets are registries, not enums: loss
backends and kinds (:mod:`po_bench.training.methods`), judges (:mod:`po_bench.judges.api`), data
sources (:mod:`po_bench.data.sources`).  This module imports nothing from po-bench.
"""

from __future__ import annotations

from enum import StrEnum


class Choice(StrEnum):
    """A closed set of config values."""

    @classmethod
    def allows(cls, value) -> bool:
        """Whether ``value`` (a string from the config, or anything else) is one of the set's values."""
        return isinstance(value, str) and value in cls._value2member_map_

    @classmethod
    def listed(cls) -> str:
        """The values, comma-separated, in definition order (what an error message names as allowed)."""
        return ", ".join(m.value for m in cls)


class ModelKind(Choice):
    """``model.kind``: how the model is built or found."""

    TINY = "tiny"  # built from the model config, the world's word-level tokenizer
    HUB = "hub"  # a Hub id or a local folder
    SMOLLM2 = "smollm2"  # SmolLM2-135M-Instruct converted offline from its GGUF file


class ImplicitReward(Choice):
    """``loss.implicit_reward``: the implicit reward a run's accuracy is measured with."""

    LOGRATIO = "logratio"  # beta * log(pi / pi_ref)
    AVG_LOGP = "avg_logp"  # beta * mean token log pi (reference-free losses)


class NoiseKind(Choice):
    """``noise.kind``."""

    NONE = "none"
    FLIP = "flip"  # each training pair's labels swapped with probability noise.rate


class FilterKind(Choice):
    """``dataset.filter.kind``: the score a training-pair filter keeps the lowest ``dataset.filter.keep`` share by."""

    NONE = "none"  # every pair is trained on
    CHES = "ches"  # CHES at the start checkpoint (Razin et al. 2025; po_bench/generation/hidden.py)
    CHES_LN = "ches_ln"  # length-normalised CHES (the authors' filter)


class OnError(Choice):
    """``dataset.on_error``: what a bad row of a data file does."""

    SKIP = "skip"  # skipped and counted in run.json
    FAIL = "fail"  # stops the run at the first one, naming the file and line


class Precision(Choice):
    """``train.precision``."""

    FP32 = "fp32"
    BF16_MIXED = "bf16-mixed"  # fp32 weights and AdamW state, bf16 autocast
    BF16_PURE = "bf16-pure"  # bf16 weights and state (opt-in)


class GenerationBackend(Choice):
    """``generation.backend``."""

    HF = "hf"  # transformers' generate
    VLLM = "vllm"


class Strategy(Choice):
    """``launch.strategy``: how the training stages run."""

    LOCAL = "local"  # in the pipeline's process
    DDP = "ddp"
    FSDP = "fsdp"
    ZERO2 = "zero2"
    ZERO3 = "zero3"

    @property
    def deepspeed(self) -> bool:
        """DeepSpeed ZeRO: GPUs only, through accelerate's launcher."""
        return self in (Strategy.ZERO2, Strategy.ZERO3)


class Launcher(Choice):
    """``launch.launcher``: what starts the process group."""

    AUTO = "auto"  # accelerate on GPUs, torchrun on CPUs
    ACCELERATE = "accelerate"
    TORCHRUN = "torchrun"


class TrackingBackend(Choice):
    """``tracking.backend`` (the ``tracking`` group)."""

    WANDB = "wandb"
    NONE = "none"


class TrackingMode(Choice):
    """``tracking.mode``."""

    AUTO = "auto"  # online with WANDB_API_KEY, else offline
    ONLINE = "online"
    OFFLINE = "offline"
    DISABLED = "disabled"

"""Structured configs (registered in Hydra's ConfigStore) and semantic validation.

Hydra checks key names and types against these dataclasses while composing (a typo in a key or
a group option fails before anything runs); :func:`validate` then checks values and
combinations, raising :class:`ConfigError` with one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf, open_dict

from po_bench import plugins
from po_bench.choices import (
    FilterKind,
    GenerationBackend,
    ImplicitReward,
    Launcher,
    ModelKind,
    NoiseKind,
    Precision,
    Strategy,
    TrackingBackend,
    TrackingMode,
)
from po_bench.common import cpu_only_torch
from po_bench.data.schema import DatasetConfig
from po_bench.data.sources import DatasetConfigError, sources, validate_dataset
from po_bench.judges.api import (
    ConfigChecks,
    JudgeConfigError,
    config_union,
    config_view,
    judge_names,
    runner_judge_names,
)
from po_bench.training.launch import global_batch, split_batch, world_size
from po_bench.training.losses import fmt_range, in_range, plain_sources
from po_bench.training.methods import BACKENDS, MethodKind, can_guide, known_backend, method_of
from po_bench.training.online_losses import loop_of
from po_bench.training.pair_scores import check
from po_bench.training.trl.args import validate_loss_args


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Any = "all-linear"


@dataclass
class ModelConfig:
    name: str = "tiny"
    kind: str = "tiny"  # tiny: built from a config, world tokenizer | hub: a Hub id or local path
    name_or_path: str | None = None
    dtype: str = "float32"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 64
    chat_template: str | None = None  # a Jinja chat template that replaces the tokenizer's
    reference_id: str | None = None  # this model's name in results/reference/*.csv (paper tables)
    # What the model needs, the defaults of train.max_length, generation.max_new_tokens and every loss's lr
    # (interpolated there; an explicit train.* / generation.* / loss.lr wins).  The tiny model's are the world's.
    max_length: int = 48
    max_new_tokens: int = 24
    lr: float = 2.0e-4
    lora: LoraConfig = field(default_factory=LoraConfig)  # train LoRA adapters (peft); merged into the saved policy

    @staticmethod
    def validate(cfg) -> None:
        """model.*: its kind, a Hub path that exists, LoRA, and a train.max_length at its scale."""
        m, t = cfg.model, cfg.train
        _check(ModelKind.allows(m.kind), f"model.kind={m.kind!r}: allowed {ModelKind.listed()}")
        if m.kind == ModelKind.HUB:
            _check(bool(m.name_or_path), "model.name_or_path is required when model.kind=hub")
            p = str(m.name_or_path)
            if p.startswith((".", "/", "~")):
                _check(Path(p).expanduser().exists(), f"model.name_or_path={p}: no such directory")
        lora = m.lora
        if lora.enabled:
            _check(lora.r > 0 and lora.alpha > 0, "model.lora.r and model.lora.alpha must be > 0")
            _check(0 <= lora.dropout < 1, "model.lora.dropout must be in [0, 1)")
        if m.kind != ModelKind.TINY:
            _check(
                t.max_length >= WORLD_SIZED_LENGTH,
                f"train.max_length={t.max_length} is the embedded world's scale, not model={m.name}'s: set "
                f"model.max_length (the model config's) or train.max_length (>= {WORLD_SIZED_LENGTH})",
            )


@dataclass
class LossConfig:
    name: str = MISSING
    label: str = ""  # method label used in results tables (matches the papers' row names)
    backend: str = (
        "dpo"  # TRL trainer: dpo | cpo | orpo | kto; pobench (po_bench.training.losses); sft (no preference stage)
    )
    function: str = ""  # backend=pobench: the loss function in po_bench.training.losses
    beta: float = 0.1
    lr: float = "${model.lr}"  # type: ignore[assignment]  (the model config's; loss yamls may set their own)
    reference_free: bool = False
    paired: bool = True  # False: trains on the unpaired (prompt, completion, label) view
    implicit_reward: str = "logratio"  # logratio: beta*log(pi/ref) | avg_logp: beta*mean token logp
    citation: str = ""
    formula: str = ""  # the per-example loss, for docs/losses.md
    args: dict[str, Any] = field(default_factory=dict)  # passed to the backend's TRL config
    # config values the method is defined with, checked before any compute (Curry-DPO: dataset.k_samples, ...)
    requires: dict[str, Any] = field(default_factory=dict)
    # a loss guided by another method's trained policy (TGDPO: the DPO policy's token rewards): that loss's
    # conf/loss name; its policy on the same data and config is an artifact this one depends on (specs.plan)
    guide: str = ""
    # per-pair scores computed before training for a loss with per-pair weights (MADPO: kind reward_margin +
    # the reward model's lr/epochs/batch_size; Sem-DPO: kind semantic_distance + embedder); po_bench.training.pair_scores
    pair_scores: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def validate(cfg) -> None:
        """loss.*: the backend, the implicit reward, beta and lr, and the method's own arguments in range (TRL's
        fields, a pure function's hyperparameters, its per-pair scores)."""
        loss = cfg.loss
        _check(known_backend(loss.backend), f"loss.backend={loss.backend!r}: allowed {', '.join(BACKENDS)}")
        method = method_of(loss)
        _check(
            ImplicitReward.allows(loss.implicit_reward),
            f"loss.implicit_reward={loss.implicit_reward!r}: allowed {ImplicitReward.listed()}",
        )
        _check(loss.beta > 0, f"loss.beta={loss.beta:g} for {loss.name}: allowed (0, inf)")
        _check(loss.lr > 0, f"loss.lr={loss.lr}: must be > 0")
        if loss.reference_free:
            _check(
                loss.implicit_reward != ImplicitReward.LOGRATIO,
                f"loss={loss.name} is reference-free: loss.implicit_reward must be avg_logp, not logratio",
            )
        if not method.trains_preference:
            return
        if method.iterative:  # rounds of an inner loss: its own arguments, then the inner loss as a loss config
            _check_iterative_args(loss)
            LossConfig.validate(inner_loss_config(cfg))
            return

        try:
            validate_loss_args(method)
        except ValueError as e:
            raise ConfigError(f"loss={loss.name}: {e}") from None
        _check_pair_scores(loss)
        if method.trl_loss:
            for k, v in dict(loss.args).items():
                if k in TRL_ARG_RANGES and isinstance(v, (int, float)):
                    lo, hi, lo_inc, hi_inc = TRL_ARG_RANGES[k]
                    _check(
                        in_range(v, lo, hi, lo_inc, hi_inc),
                        f"loss.args.{k}={v:g} for {loss.name}: allowed {fmt_range(lo, hi, lo_inc, hi_inc)}",
                    )

    @staticmethod
    def validate_needs(cfg) -> None:
        """What the method needs of the rest of the config, checked once every section is valid on its own:
        the values it is defined with (loss.requires), its data shape (pairs, unpaired rows, rated lists, an
        order), its guide policy, its source models."""

        loss, d = cfg.loss, cfg.dataset
        method = method_of(loss)
        for k, v in dict(loss.get("requires") or {}).items():
            got = OmegaConf.select(cfg, k)
            _check(got == v, f"loss={loss.name} needs {k}={v} (got {got}): the method is defined on that data")
        _check(
            d.format != "unpaired" or (not loss.paired and method.kind is MethodKind.UNPAIRED_TRL),
            f"dataset.format=unpaired has no pairs: loss={loss.name} needs pairs (use loss=kto)",
        )
        _check(
            d.curriculum == "none" or not method.kl_rows,
            f"dataset.curriculum={d.curriculum}: loss={loss.name} reorders its unpaired rows (KTO's KL rows); "
            "a curriculum order needs a paired loss",
        )
        if method.iterative:
            _check_iterative_needs(cfg)
            LossConfig.validate_needs(inner_loss_config(cfg))
            return
        _check_lists(cfg, method)
        _check_filter(cfg, method)
        _check_guide(cfg, method)
        _check_unpaired_and_sources(cfg, method)
        _check_online(cfg, method)


@dataclass
class NoiseConfig:
    kind: str = "none"  # none | flip
    rate: float = 0.0

    @staticmethod
    def validate(cfg) -> None:
        noise = cfg.noise
        _check(NoiseKind.allows(noise.kind), f"noise.kind={noise.kind!r}: allowed {NoiseKind.listed()}")
        _check(0.0 <= noise.rate < 0.5, f"noise.rate={noise.rate}: must be in [0, 0.5)")
        _check(
            noise.kind == NoiseKind.FLIP or noise.rate == 0.0,
            "noise.rate is set but noise.kind is none: use noise=flip",
        )


# The composed ``judge`` node's schema: every registered judge's fields.  Each judge's config is a dataclass
# of its own module (po_bench/judges/*.py: AlpacaEvalConfig, RewardModelConfig, ...; a plug-in's in its own),
# with its own validate(); judges register with @register_judge (po_bench.judges.api).
JudgeConfig = config_union("JudgeConfig", __name__)


@dataclass
class GenerationConfig:
    backend: str = "hf"
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = "${model.max_new_tokens}"  # type: ignore[assignment]
    batch_size: int = 128
    progress: bool = True
    # vLLM engine options (generation=vllm); ignored by hf
    n: int = 1
    dtype: str = "float32"
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = 0.25
    kv_cache_memory_gib: float | None = None
    enforce_eager: bool = True
    max_num_seqs: int | None = None
    tensor_parallel_size: int = 1
    multiprocessing: bool = True
    engine_args: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def validate(cfg) -> None:
        """generation.*: the backend, sampling and the sizes of the vLLM engine (which vLLM itself refuses
        only when the engine starts, after SFT and training)."""
        g = cfg.generation
        _check(
            GenerationBackend.allows(g.backend),
            f"generation.backend={g.backend!r}: allowed {GenerationBackend.listed()}",
        )
        _check(g.temperature >= 0, "generation.temperature must be >= 0")
        _check(0 < g.top_p <= 1, "generation.top_p must be in (0, 1]")
        _check(g.n == 1, "generation.n must be 1 (one sample per prompt per run; use seeds for more)")
        _check(g.max_new_tokens >= 1, f"generation.max_new_tokens={g.max_new_tokens}: must be >= 1")
        _check(g.batch_size >= 1, f"generation.batch_size={g.batch_size}: must be >= 1")
        _check(
            g.tensor_parallel_size >= 1,
            f"generation.tensor_parallel_size={g.tensor_parallel_size}: must be >= 1 (GPUs per vLLM engine)",
        )
        _check(
            g.gpu_memory_utilization is None or 0 < g.gpu_memory_utilization <= 1,
            f"generation.gpu_memory_utilization={g.gpu_memory_utilization}: allowed (0, 1] (a fraction of the "
            "device's memory), or null for vLLM's default",
        )
        _check(
            g.kv_cache_memory_gib is None or g.kv_cache_memory_gib > 0,
            f"generation.kv_cache_memory_gib={g.kv_cache_memory_gib}: must be > 0, or null (gpu_memory_utilization sizes it)",
        )
        for k, unset in (("max_model_len", "the model's"), ("max_num_seqs", "vLLM's default")):
            v = getattr(g, k)
            _check(v is None or v >= 1, f"generation.{k}={v}: must be >= 1, or null ({unset})")


@dataclass
class TrainConfig:
    sft_lr: float = 2.0e-3
    sft_epochs: float = 6.0
    sft_batch_size: int = 64
    epochs: float = 2.0
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 0  # >0 caps preference steps (smoke tests)
    # The global batch is the recipe's, the same under every launch: >0 sets it (e.g. the papers' 128), 0 means
    # batch_size x grad_accum (sft_batch_size x grad_accum for SFT), what one process trains with.  Under a
    # process group the per-device batch (at most batch_size) and the accumulation are derived from it and the
    # world size (launch.num_processes x num_machines; specs.batch_fields); one it does not divide is refused.
    global_batch_size: int = 0
    keep_checkpoints: bool = False  # keep the Trainer's checkpoints (optimizer state) once a policy is complete
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05  # -> TRL's warmup_steps as a ratio of the run's steps, in [0, 1)
    max_length: int = "${model.max_length}"  # type: ignore[assignment]
    # fp32 | bf16-mixed (fp32 weights and AdamW state, bf16 autocast) | bf16-pure (bf16 weights and state;
    # opt-in).  Default: bf16-mixed where a GPU with bf16 is present, else fp32 (resolved when composed).
    precision: str = "${pob_default_precision:}"
    logging_steps: int = 5
    save_steps: int = 0  # >0: checkpoint every N steps; a killed run resumes from the last one
    progress: bool = True

    @staticmethod
    def validate(cfg) -> None:
        """train.*: batch sizes (KTO's KL rows need two per batch), warmup, precision."""

        t, loss = cfg.train, cfg.loss
        method = method_of(loss)
        if method.kl_rows:
            _check(
                t.batch_size >= 2,
                f"train.batch_size={t.batch_size} for loss={loss.name}: must be >= 2 "
                "(KTO's KL term needs mismatched pairs in the batch)",
            )
        _check(t.batch_size >= 1, f"train.batch_size={t.batch_size} for loss={loss.name}: must be >= 1")
        _check(t.sft_batch_size >= 1, f"train.sft_batch_size={t.sft_batch_size}: must be >= 1")
        _check(t.grad_accum >= 1, f"train.grad_accum={t.grad_accum}: must be >= 1")
        _check(
            0.0 <= t.warmup_ratio < 1.0,
            f"train.warmup_ratio={t.warmup_ratio:g}: allowed [0, 1) (a ratio of the run's steps)",
        )
        _check(Precision.allows(t.precision), f"train.precision={t.precision!r}: allowed {Precision.listed()}")
        if t.precision == Precision.BF16_PURE and (method.trains_preference and loss.lr < 1e-5 or t.sft_lr < 1e-5):
            logging.getLogger("po_bench").warning(
                "train.precision=bf16-pure with a learning rate below 1e-5 (loss.lr=%g, train.sft_lr=%g): most updates "
                "round to nothing in bf16 weights; bf16-mixed keeps fp32 master weights",
                loss.lr,
                t.sft_lr,
            )


@dataclass
class LaunchConfig:
    """How the training stages (SFT, preference) run: ``local`` in the pipeline's process, or as
    their own process group (``ddp``, ``fsdp``, ``zero2``, ``zero3``) started by ``accelerate launch``
    on GPUs or ``torchrun`` on CPUs (gloo), from the stage's spec (po_bench/training/launch.py)."""

    name: str = "local"
    strategy: str = "local"  # local | ddp | fsdp | zero2 | zero3
    launcher: str = "auto"  # auto (accelerate on GPUs, torchrun on CPUs) | accelerate | torchrun
    num_processes: int = 1  # processes per machine (GPUs per node)
    num_machines: int = 1
    machine_rank: int = 0  # this machine's rank (Slurm: $SLURM_NODEID, set by the srun wrapper)
    main_process_ip: str = "127.0.0.1"
    main_process_port: int = 0  # 0: a free port (one machine); several machines need a fixed one
    # accelerate launch --mixed_precision; null: follows train.precision (bf16-mixed -> bf16, else no),
    # which is what the Trainer itself uses
    mixed_precision: str | None = None
    accelerate_config: str | None = None  # conf/accelerate/<file>.yaml (project-owned)
    trainer_args: dict[str, Any] = field(
        default_factory=dict
    )  # TrainingArguments fields of the strategy (fsdp, deepspeed)
    srun: bool = False  # multi-node under Slurm: start one launcher per node with srun
    dry_run: bool = False  # print the launch command line and stop before training

    @staticmethod
    def validate(cfg) -> None:
        """The launch (process group) and the batch arithmetic, before any compute."""
        la, t = cfg.launch, cfg.train
        _check(Strategy.allows(la.strategy), f"launch.strategy={la.strategy!r}: allowed {Strategy.listed()}")
        _check(Launcher.allows(la.launcher), f"launch.launcher={la.launcher!r}: allowed {Launcher.listed()}")
        _check(
            la.num_processes >= 1 and la.num_machines >= 1, "launch.num_processes and launch.num_machines must be >= 1"
        )
        _check(
            0 <= la.machine_rank < la.num_machines,
            f"launch.machine_rank={la.machine_rank}: must be in [0, launch.num_machines={la.num_machines})",
        )
        _check(
            la.strategy != Strategy.LOCAL or la.num_processes * la.num_machines == 1,
            f"launch=local runs in one process; for {la.num_processes * la.num_machines} processes use launch=ddp "
            "(or fsdp, zero2, zero3)",
        )
        _check(
            la.num_machines == 1 or la.main_process_port > 0,
            f"launch.num_machines={la.num_machines}: set launch.main_process_port (every machine must reach the "
            "same rendezvous port on launch.main_process_ip)",
        )
        _check(
            la.mixed_precision in (None, "no", "bf16"),
            f"launch.mixed_precision={la.mixed_precision!r}: allowed null (follow train.precision), no, bf16",
        )
        if la.mixed_precision is not None:
            want = "bf16" if t.precision == Precision.BF16_MIXED else "no"
            _check(
                la.mixed_precision == want,
                f"launch.mixed_precision={la.mixed_precision} disagrees with "
                f"train.precision={t.precision} (which the Trainer uses): set "
                f"launch.mixed_precision={want} or leave it null",
            )

        # the recipe's global batch is kept under every launch (specs.batch_fields derives the per-device batch
        # and the accumulation from it): the world size must divide it, for each stage that trains
        ws = world_size(la)
        sft_trains = _source(cfg).always_sft or bool(cfg.dataset.sft)
        for key in ("batch_size", "sft_batch_size") if sft_trains else ("batch_size",):
            g, what = global_batch(t, key)
            _check(
                g % ws == 0,
                f"{what} does not divide over world size {ws} (launch.num_processes x launch.num_machines), and the "
                f"global batch is the same under every launch: pick a multiple of {ws}",
            )
        if method_of(cfg.loss).kl_rows:
            per = split_batch(global_batch(t)[0], ws, t.batch_size)[0]
            _check(
                per >= 2,
                f"a per-device batch of {per} (train.batch_size={t.batch_size} over world size {ws}) for "
                f"loss={cfg.loss.name}: must be >= 2 (KTO's KL term needs mismatched pairs in the batch)",
            )
        if la.strategy == Strategy.LOCAL:
            return
        _check(
            not cfg.model.lora.enabled,
            f"model.lora.enabled with launch={la.strategy}: LoRA adapters are merged "
            "in-process; use launch=local for LoRA runs",
        )


@dataclass
class TrackingConfig:
    backend: str = "wandb"  # wandb | none
    project: str = "po-bench"
    entity: str | None = None
    mode: str = "auto"  # auto (online with WANDB_API_KEY, else offline) | online | offline | disabled
    group: str | None = None
    n_samples: int = 32

    @staticmethod
    def validate(cfg) -> None:
        tr = cfg.tracking
        _check(TrackingBackend.allows(tr.backend), f"tracking={tr.backend!r}: allowed {TrackingBackend.listed()}")
        _check(TrackingMode.allows(tr.mode), f"tracking.mode={tr.mode!r}: allowed {TrackingMode.listed()}")


# launches whose parameters are sharded across ranks (a callback cannot score the module): no probe there
SHARDED_STRATEGIES = (Strategy.FSDP, Strategy.ZERO3)


@dataclass
class DiagnosticsConfig:
    """``diagnostics.*``: the papers' own measures beside the end metrics (conf/diagnostics/: ``default``,
    ``off``, ``full``).  The cheap one (``probe``) is on by default; the others are opt-in.  With every
    measure off a run does no forward pass beyond training, generation and its judges.

    * ``probe``: log-probability trajectories during preference training on a fixed probe set drawn from
      the training pairs (likelihood displacement, Razin et al.; the 3D-properties, Yan et al.): summed
      log pi(y+), log pi(y-), their change from the start, and the mass on unseen responses
      (po_bench/training/trl/probe.py).  Part of the policy's key (its trajectory is stored with it).
    * ``ches``: per-pair CHES and length-normalised CHES at the start of training and their rank correlation
      with each probe pair's final change of log pi(y+) (po_bench/generation/hidden.py, po_bench/results/ches.py;
      the ``ches`` artifact, which ``dataset.filter`` also reads: docs/diagnostics.md).
    * ``reward_models``: DPO's implicit reward (DPORM) against an explicit Bradley-Terry reward model (EXRM)
      trained on the same pairs, in distribution and under prompt, response and label shifts (Lin et al.;
      po_bench/judges/reward_shift.py).  The EXRM is the reward_model stage's (MADPO's) with ``rm_lr`` (null:
      model.lr), ``rm_epochs`` and ``rm_batch_size``: at the defaults it is MADPO's reward model on the same
      pairs.  ``ood_pairs`` (real data): a pair file for the out-of-distribution set, AlpacaEval annotations
      (rows with instruction, output_1, output_2, preference; po_bench/data/annotations.py) or JSON(L) rows of
      prompt/chosen/rejected; its first ``ood_pairs_n`` pairs are used (0: all).
    * ``token_credit``: per-token beta log-ratio against the world's exact token gains on the held-out eval
      pairs (From r to Q*; the world only; po_bench/judges/r_to_q.py).
    * ``beams``: beam widths at which the policy also answers the eval prompts (deterministic beam search; 1:
      greedy) for gold, KL and implicit reward against beam width (po_bench/judges/r_to_q.py); [] for none.
    """

    probe: bool = True
    probe_pairs: int = 32  # probe pairs drawn (by the seed) from the training pairs
    probe_unseen: int = 16  # responses in no training pair, scored for the dispersed mass
    probe_every: int = 0  # optimizer steps between probe measurements; 0: about 10 over the run
    ches: bool = False
    reward_models: bool = False
    rm_lr: float | None = None  # the EXRM's learning rate; null: model.lr (MADPO's reward model's default)
    rm_epochs: int = 2
    rm_batch_size: int = 32
    ood_pairs: str | None = None  # real data: the OOD pair file of the reward_models diagnostic
    ood_pairs_n: int = 512
    token_credit: bool = False
    beams: list[int] = field(default_factory=list)

    @staticmethod
    def validate(cfg) -> None:
        d = cfg.diagnostics
        for k in ("probe_pairs", "probe_unseen", "probe_every"):
            _check(d[k] >= 0, f"diagnostics.{k}={d[k]}: must be >= 0")
        _check(
            not d.probe or d.probe_pairs >= 1,
            f"diagnostics.probe_pairs={d.probe_pairs}: the probe needs at least one pair (or diagnostics.probe=false)",
        )
        _check(
            not (d.probe and cfg.launch.strategy in SHARDED_STRATEGIES and cfg.stages.train)
            or not method_of(cfg.loss).trains_preference,
            f"diagnostics.probe under launch={cfg.launch.strategy}: the probe scores the policy between optimizer "
            "steps and cannot read its sharded parameters; add diagnostics.probe=false",
        )
        _check(
            all(int(b) >= 1 for b in d.beams),
            f"diagnostics.beams={list(d.beams)}: beam widths must be >= 1",
        )
        _check(
            len(set(d.beams)) == len(d.beams),
            f"diagnostics.beams={list(d.beams)}: each beam width once",
        )
        _check(
            not (d.beams or d.token_credit) or (cfg.stages.generate and cfg.stages.judge),
            "diagnostics.beams and diagnostics.token_credit are measured beside the run's judges: they need "
            "stages.generate=true and stages.judge=true",
        )
        _check(
            not d.token_credit or cfg.dataset.kind == "world",
            f"diagnostics.token_credit=true: the world only (it compares the policy's per-token credit with the "
            f"world's exact token gains); dataset.kind={cfg.dataset.kind!r} has none",
        )
        _check(
            not d.reward_models or (cfg.stages.generate and cfg.stages.judge),
            "diagnostics.reward_models=true scores the held-out sets beside the run's judges: it needs "
            "stages.generate=true and stages.judge=true",
        )
        _check(
            d.rm_epochs >= 1 and d.rm_batch_size >= 1 and d.ood_pairs_n >= 0,
            f"diagnostics.rm_epochs={d.rm_epochs}, rm_batch_size={d.rm_batch_size}, ood_pairs_n={d.ood_pairs_n}: "
            "the epochs and batch size must be >= 1, ood_pairs_n >= 0",
        )
        if d.ood_pairs is not None:
            _check(
                cfg.dataset.kind != "world",
                "diagnostics.ood_pairs: the world's shifts are its own (held-out prompts, other policies' responses, "
                "the annotator's labels); an OOD pair file is for real data",
            )
            _check(Path(d.ood_pairs).expanduser().is_file(), f"diagnostics.ood_pairs={d.ood_pairs}: no such file")


@dataclass
class StagesConfig:
    sft: bool = True
    train: bool = True
    generate: bool = True
    judge: bool = True


@dataclass
class ScaleConfig:
    """``scale=tiny`` (CPU, minutes: the embedded world) or ``scale=paper`` (the published setup, GPUs)."""

    name: str = "tiny"
    description: str = ""


@dataclass
class ReferenceConfig:
    """Where a preset's published numbers live, printed beside ours by ``po-bench-table``."""

    csv: str | None = None  # a file in results/reference/
    columns: list[str] = field(default_factory=list)  # its metric columns to show
    models: list[str] = field(default_factory=list)  # rows' model has no reference_id (the world): show these
    citation: str = ""


@dataclass
class PresetConfig:
    """Set by ``experiment=<name>`` (conf/experiment/) and its ``scale`` half (conf/preset/<name>/)."""

    name: str | None = None
    scale: str | None = None
    title: str = ""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    select_best: str | None = None  # a metric: per method, report the grid point with the best mean
    ours: list[str] = field(default_factory=list)  # our metric columns to show first (default: all)
    # config keys (or key prefixes) that are part of a method, not a setting: the analysis compares rows
    # across their values (beyond_pairs: the data shape each method is defined with)
    method_columns: list[str] = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    preset: PresetConfig = field(default_factory=PresetConfig)
    seed: int = 0
    cache_dir: str = "${oc.env:PO_BENCH_CACHE,.po_bench_cache}"
    threads: int = 0  # torch threads; 0 = all cores


def default_precision() -> str:
    """bf16-mixed on a GPU with bf16 support (the papers' setting), fp32 elsewhere (CPU)."""
    if cpu_only_torch():  # known without importing torch (~1 s): composing a config needs no torch
        return "fp32"
    try:
        import torch  # lazy: torch (~1.1 s)

        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    except Exception:  # noqa: BLE001
        return "fp32"


def _register_resolvers() -> None:

    if not OmegaConf.has_resolver("pob_default_precision"):
        OmegaConf.register_new_resolver("pob_default_precision", default_precision)
    if not OmegaConf.has_resolver("pob_mul"):  # ${pob_mul:${model.lr},0.1}: a scaled default
        OmegaConf.register_new_resolver("pob_mul", lambda a, b: float(a) * float(b))
    if not OmegaConf.has_resolver("pob_cores"):  # ${pob_cores:}: the cores this process may run on
        OmegaConf.register_new_resolver("pob_cores", available_cores)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity: a Slurm allocation's, a container's), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (no sched_getaffinity on this platform)
        return os.cpu_count() or 1


_register_resolvers()


def register() -> None:
    cs = ConfigStore.instance()
    # One schema for the whole tree: every group option merges into its typed node, so unknown
    # keys and wrong types fail while Hydra composes.
    cs.store(name="po_bench_schema", node=Config)


class ConfigError(ValueError):
    """A user error in the configuration: reported as one line, exit code 2."""


# Ranges of TRL arguments that losses set: name -> (low, high, low_inclusive, high_inclusive)
TRL_ARG_RANGES = {
    "label_smoothing": (0.0, 0.5, True, False),
    "simpo_gamma": (0.0, None, True, False),
    "cpo_alpha": (0.0, None, True, False),
    "ld_alpha": (0.0, 1.0, True, True),
    "discopop_tau": (0.0, None, False, False),
    "ref_model_mixup_alpha": (0.0, 1.0, True, True),
    "ref_model_sync_steps": (1, None, True, False),
    "desirable_weight": (0.0, None, False, False),
    "undesirable_weight": (0.0, None, False, False),
    "alpha": (None, None, True, True),
    "ref_model_sync_fraction": (0.0, 1.0, False, True),
}
WORLD_SIZED_LENGTH = 64  # train.max_length below this is the embedded world's scale, not a real model's


JUDGE_CONF_DIR = Path(__file__).resolve().parent.parent / "conf" / "judge"
# What the judges of judge.also take from judge.* when the run changed it from the main judge's yaml: where
# and how to reach the judge model (a local vLLM judge serves them all), its prices and the response cache.
# Budgets (max_requests, max_cost_usd) stay per judge: each judge's own yaml, or its entry in judge.also.
SHARED_JUDGE_FIELDS = (
    "base_url",
    "model",
    "api_key_env",
    "api_key_file",
    "max_concurrency",
    "timeout",
    "max_retries",
    "backoff_base",
    "backoff_max",
    "price_input_per_mtok",
    "price_output_per_mtok",
    "structured_outputs",
    "cache",
)


def judge_configs(cfg) -> list:
    """The judges of one run: ``judge`` itself, then each of ``judge.also`` composed from
    ``conf/judge/<name>.yaml`` + the shared fields the run changed on ``judge`` (SHARED_JUDGE_FIELDS) +
    ``judge.answer_generation`` (per judge name already) + the entry's own fields."""

    main = cfg.judge
    also = list(main.get("also") or [])
    if not also:
        return [main]
    schema = OmegaConf.structured(JudgeConfig)
    main_yaml = JUDGE_CONF_DIR / f"{main.name}.yaml"
    default = OmegaConf.to_container(OmegaConf.merge(schema, OmegaConf.load(main_yaml) if main_yaml.is_file() else {}))
    now = OmegaConf.to_container(main, resolve=True)
    carried = {k: now[k] for k in SHARED_JUDGE_FIELDS if now.get(k) != default.get(k)}
    carried["answer_generation"] = now.get("answer_generation") or {}
    out, seen = [main], {main.name}
    for k, entry in enumerate(also):
        entry = OmegaConf.to_container(entry, resolve=True) if OmegaConf.is_config(entry) else entry
        own = dict(entry) if isinstance(entry, dict) else {"name": entry}
        name = own.get("name")
        allowed = runner_judge_names()
        _check(
            isinstance(name, str) and name in allowed,
            f"judge.also[{k}]={name!r}: allowed {', '.join(allowed)} (a name, or {{name: <judge>, <field>: <value>}})",
        )
        _check(name not in seen, f"judge.also[{k}]={name}: this run already has judge {name}")
        _check("also" not in own, f"judge.also[{k}]: a judge of judge.also has no judge.also of its own")
        seen.add(name)
        path = JUDGE_CONF_DIR / f"{name}.yaml"
        try:
            j = OmegaConf.merge(schema, OmegaConf.load(path), carried, own)
        except Exception as e:  # noqa: BLE001  (an unknown field, a wrong type)
            raise ConfigError(f"judge.also[{k}] ({name}): {type(e).__name__}: {str(e).splitlines()[0]}") from None
        out.append(j)
    return out


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# config keys that would carry a key (max_tokens does not match: whole _-separated words only)
SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|token|passw(or)?d|credentials?)($|_)", re.IGNORECASE)
# schema fields whose names hold such a word and carry no key (a switch: the token-level credit diagnostic)
NOT_SECRET = frozenset({"diagnostics.token_credit"})


def _check_pair_scores(loss) -> None:
    """loss.pair_scores against the loss function: a per-pair weighting loss needs its kind of score (and
    its fields in range, an embedder that loads); every other loss none."""

    per_pair = method_of(loss).pair_score
    ps = OmegaConf.to_container(loss.pair_scores, resolve=True) if "pair_scores" in loss else {}
    try:
        check(loss.function, per_pair or (), ps or {})
    except ValueError as e:
        raise ConfigError(f"loss={loss.name}: {e}") from None


def _check_lists(cfg, method) -> None:
    """dataset.pair_strategy=list (rated lists, one row per prompt) and listwise losses go together."""
    d, loss = cfg.dataset, cfg.loss
    lists = d.pair_strategy == "list"
    if method.list_function:
        _check(
            lists,
            f"loss={loss.name} trains on rated lists: set dataset.pair_strategy=list "
            "(k responses per prompt with their scores)",
        )
        _check(
            not (method.dynamic_anchor and cfg.model.lora.enabled),
            f"loss={loss.name} with loss.args.anchor=dynamic moves a reference model; with model.lora.enabled "
            "the reference is the base model: use anchor=fixed or full fine-tuning",
        )
    if not lists:
        return
    _check(
        method.list_function or not method.trains_preference,
        f"dataset.pair_strategy=list builds rated lists, not pairs: "
        f"loss={loss.name} needs pairs (listwise losses: lipo, irpo, adpo_list)",
    )
    _check(
        cfg.noise.kind == NoiseKind.NONE,
        "noise=flip flips pair labels; dataset.pair_strategy=list has no pairs "
        "(use noise=none, or the annotator's temperature)",
    )
    _check(
        d.curriculum == "none",
        f"dataset.curriculum={d.curriculum} orders pairs; dataset.pair_strategy=list "
        "has none: set dataset.curriculum=none",
    )


def _check_filter(cfg, method) -> None:
    """dataset.filter: a known score and a share in (0, 1]; a filter (kind other than none) needs a run that
    trains on pairs (CHES compares a pair's chosen and rejected response)."""
    f, loss, d = cfg.dataset.filter, cfg.loss, cfg.dataset
    _check(FilterKind.allows(f.kind), f"dataset.filter.kind={f.kind!r}: allowed {FilterKind.listed()}")
    _check(0 < f.keep <= 1, f"dataset.filter.keep={f.keep}: the share of the training pairs kept, allowed (0, 1]")
    if f.kind == FilterKind.NONE:
        return
    what = f"dataset.filter.kind={f.kind} keeps the training pairs with the lowest CHES"
    _check(
        method.trains_preference and cfg.stages.train,
        f"{what}: this run trains on none (loss={loss.name}, stages.train={cfg.stages.train}); "
        "set dataset.filter.kind=none",
    )
    _check(d.format != "unpaired", f"{what}: dataset.format=unpaired has no pairs; set dataset.filter.kind=none")
    _check(
        d.pair_strategy != "list",
        f"{what}: dataset.pair_strategy=list builds rated lists, not pairs; set dataset.filter.kind=none",
    )
    _check(
        bool(loss.paired),
        f"{what}: loss={loss.name} trains on unpaired rows (loss.paired=false); use a paired loss or "
        "dataset.filter.kind=none",
    )


def _check_unpaired_and_sources(cfg, method) -> None:
    """po-bench's unpaired losses (BCO) train on the unpaired view; InfiFPO's sources are SFT models."""
    loss = cfg.loss
    if not method.pair_function:
        return
    unp = method.kind is MethodKind.UNPAIRED_CUSTOM
    _check(
        bool(loss.paired) != unp,
        f"loss={loss.name}: loss.paired={loss.paired}, but {loss.function} trains on "
        + ("unpaired rows (set loss.paired=false)" if unp else "pairs (set loss.paired=true)"),
    )
    if unp:
        _check(
            not cfg.model.lora.enabled,
            f"loss={loss.name}: model.lora.enabled is not supported (its reference "
            "is a separate model, scored each step)",
        )
        _check(
            cfg.dataset.curriculum == "none",
            f"dataset.curriculum={cfg.dataset.curriculum}: loss={loss.name} trains on shuffled unpaired rows; "
            "a curriculum order needs a paired loss",
        )
    if not method.needs_source_models:
        return

    _check(
        _source(cfg).always_sft or cfg.stages.sft,
        f"loss={loss.name} fuses SFT models of other seeds (loss.args.sources): it needs "
        "an SFT stage (dataset=world, or real data with an SFT dataset and stages.sft=true)",
    )
    sizes = ("hidden_size", "num_layers", "num_heads", "intermediate_size")
    for i, s in enumerate(plain_sources(loss.args.sources)):
        for k in s.get("model", {}):
            _check(
                cfg.model.kind == ModelKind.TINY and k in sizes,
                f"loss.args.sources[{i}].model.{k}: a source's model fields are the world "
                f"model's sizes ({', '.join(sizes)}); the tokenizer is shared",
            )


# loss.args of an iterative method (loss=iterative_dpo) and the values each takes
ITERATIVE_LABELLERS = ("gold", "annotator", "implicit", "explicit")
ITERATIVE_REF_UPDATES = ("fixed", "per_round")
ITERATIVE_ARGS = ("rounds", "inner", "labeller", "ref_update", "reward_model")
# the inner loss's kinds: offline losses over (prompt, chosen, rejected) pairs
ITERATIVE_INNER_KINDS = (MethodKind.PAIRWISE_TRL, MethodKind.REFERENCE_FREE_TRL, MethodKind.PAIRWISE_CUSTOM)
# the labellers that read the world's gold reward (the exact one, or the annotator's biased Bradley-Terry draw)
WORLD_LABELLERS = ("gold", "annotator")


def inner_loss_path(name: str) -> Path:
    return Path(__file__).resolve().parent.parent / "conf" / "loss" / f"{name}.yaml"


def inner_loss_config(cfg):
    """The run's config with the loss replaced by an iterative method's inner loss (``loss.args.inner``), composed
    as Hydra composes ``loss=<inner>`` (the schema's defaults and ``conf/loss/<inner>.yaml``), with the iterative
    config's ``beta`` and ``lr`` (they are the inner loss's: set them for an inner loss whose defaults differ
    from DPO's).  Each round's policy is that config's policy stage on the round's pairs (specs.iterative_rounds)."""
    g = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    inner = OmegaConf.merge(OmegaConf.structured(LossConfig), OmegaConf.load(inner_loss_path(cfg.loss.args.inner)))
    inner.beta, inner.lr = cfg.loss.beta, cfg.loss.lr
    with open_dict(g):
        g.loss = inner
    return g


def _check_iterative_args(loss) -> None:
    """loss.args of an iterative method: rounds >= 1, an inner loss that trains offline on pairs, a labeller, the
    reference rule, the reward model's training fields (labeller=explicit)."""
    a = loss.args
    for k in a:
        _check(k in ITERATIVE_ARGS, f"loss.args.{k} is not an option of loss={loss.name} ({', '.join(ITERATIVE_ARGS)})")
    rounds = a.get("rounds", 1)
    _check(
        isinstance(rounds, int) and not isinstance(rounds, bool) and rounds >= 1,
        f"loss.args.rounds={rounds}: must be an integer >= 1 (rounds of sample -> label -> train)",
    )
    labeller = a.get("labeller", "gold")
    _check(
        labeller in ITERATIVE_LABELLERS, f"loss.args.labeller={labeller!r}: allowed {', '.join(ITERATIVE_LABELLERS)}"
    )
    ref_update = a.get("ref_update", "fixed")
    _check(
        ref_update in ITERATIVE_REF_UPDATES,
        f"loss.args.ref_update={ref_update!r}: allowed {', '.join(ITERATIVE_REF_UPDATES)}",
    )
    inner = str(a.get("inner", "dpo"))
    _check(inner_loss_path(inner).is_file(), f"loss.args.inner={inner!r}: no such loss config in conf/loss")
    y = OmegaConf.load(inner_loss_path(inner))
    m = method_of(y)
    _check(
        m.kind in ITERATIVE_INNER_KINDS
        and not y.get("guide")
        and not y.get("pair_scores")
        and not y.get("requires")
        and not m.needs_source_models
        and y.get("paired", True),
        f"loss.args.inner={inner}: each round trains an offline loss on (prompt, chosen, rejected) pairs without "
        "artifacts of its own (e.g. dpo, ipo, simpo, cdpo); not an unpaired, listwise, guided, per-pair-scored, "
        "multi-source or iterative loss, nor one defined on other data (loss.requires)",
    )
    rm = a.get("reward_model") or {}
    for k in rm:
        _check(k in REWARD_MODEL_ARGS, f"loss.args.reward_model.{k}: allowed {', '.join(REWARD_MODEL_ARGS)}")
    _check(
        labeller == "explicit" or not rm, f"loss.args.reward_model is read by labeller=explicit only (got {labeller})"
    )
    for k, v in rm.items():
        _check(v > 0, f"loss.args.reward_model.{k}={v}: must be > 0")


# the explicit labeller's reward model training fields (its loss.args.reward_model; MADPO's loss.pair_scores names)
REWARD_MODEL_ARGS = ("lr", "epochs", "batch_size")


def _check_iterative_needs(cfg) -> None:
    """An iterative method samples the world's pref prompts and labels the samples itself: the world, pairs built
    by a pair strategy from the labeller's ranking (not lists, steps, PUGC, other models or a CHES filter)."""
    loss, d = cfg.loss, cfg.dataset
    labeller = loss.args.get("labeller", "gold")
    src = sources().get(d.kind)
    world_data = bool(src is not None and src.world)
    _check(
        world_data or labeller not in WORLD_LABELLERS,
        f"loss.args.labeller={labeller} needs the world's gold reward (dataset=world); dataset.kind={d.kind} has "
        "none: use labeller=implicit or explicit",
    )
    _check(
        world_data,
        f"loss={loss.name} samples the world's pref prompts each round: dataset.kind={d.kind} is not supported yet",
    )
    _check(
        d.pair_strategy != "list" and not d.steps and d.pair_source == "annotator" and d.pair_models == "single",
        f"loss={loss.name} builds pairs from the labeller's ranking of k samples by dataset.pair_strategy: "
        "not lists, steps (dataset.steps), PUGC (dataset.pair_source) or multi-model pairs (dataset.pair_models)",
    )
    _check(
        d.filter.kind == "none" and not cfg.diagnostics.ches,
        f"loss={loss.name}: the CHES filter and diagnostics.ches score one set of pairs at the start; each round has "
        "its own: set dataset.filter.kind=none and diagnostics.ches=false",
    )


def _check_guide(cfg, method) -> None:
    """loss.guide (TGDPO): a guided loss names the loss whose trained policy guides it, and only it does."""
    loss = cfg.loss
    needs = method.needs_guide
    _check(
        needs or not loss.guide,
        f"loss.guide={loss.guide}: loss={loss.name} takes no guide policy "
        "(only guided po-bench losses do, e.g. loss=tgdpo)",
    )
    if not needs:
        return
    _check(bool(loss.guide), f"loss={loss.name} needs loss.guide (the loss whose trained policy guides it, e.g. dpo)")
    path = Path(__file__).resolve().parent.parent / "conf" / "loss" / f"{loss.guide}.yaml"
    _check(path.is_file(), f"loss.guide={loss.guide!r}: no such loss config in conf/loss")

    g = OmegaConf.load(path)
    _check(
        can_guide(g),
        f"loss.guide={loss.guide}: the guide must be a reference-based DPO-family loss without a guide of its own "
        "(its token rewards are beta*log(pi_guide/pi_ref))",
    )
    _check(not cfg.model.lora.enabled, f"loss={loss.name}: a guide policy with model.lora.enabled is not supported")


def _online_vllm(cfg, method) -> bool:
    """Whether the online loop can draw a method's samples from a colocated vLLM engine synced to the policy each
    step (po_bench/generation/vllm_engine.py's PolicyEngine): one process, every sample the policy's (online_dpo,
    brain with proposal=policy: no reference samples, which a second engine would have to draw)."""
    if cfg.launch.strategy != "local":
        return False
    args = dict(cfg.loss.args)
    return method.function == "online_dpo" or (method.function == "brain" and args.get("proposal") == "policy")


def _check_online(cfg, method) -> None:
    """An online method (loss.backend=online, po_bench/training/online.py): what its loop supports today, each a
    one-line refusal (the world's prompts and gold, one process or DDP (RTO, OPRL, OFS: one), HF
    generation or a colocated vLLM engine, fp32 weights, no LoRA, no filter)."""
    if not method.online:
        return
    loss = cfg.loss
    _check(
        cfg.dataset.kind == "world",
        f"loss={loss.name} samples and labels online on the embedded world: dataset=world (got {cfg.dataset.kind})",
    )
    # a loop of its own (po_bench/training/rto.py, oprl.py, ofs.py): one process (online.py's train_online, the
    # others' loop, shards each step over a launch=ddp process group)
    one_process = not loop_of(method.function).ddp
    _check(
        cfg.launch.strategy == "local" or (cfg.launch.strategy == "ddp" and not one_process),
        f"loss={loss.name}: the online loop runs in one process (launch=local; got {cfg.launch.strategy})"
        if one_process
        else f"loss={loss.name}: the online loop runs in one process or under launch=ddp (got {cfg.launch.strategy})",
    )
    _check(
        cfg.generation.backend == "hf" or _online_vllm(cfg, method),
        f"loss={loss.name} samples from the policy while it trains: generation=hf (got {cfg.generation.backend})",
    )
    _check(
        cfg.train.precision == "fp32",
        f"loss={loss.name}: the online loop trains in fp32 (train.precision=fp32; got {cfg.train.precision})",
    )
    _check(not cfg.model.lora.enabled, f"loss={loss.name}: model.lora.enabled is not supported by the online loop")
    _check(
        cfg.dataset.filter.kind == "none",
        f"loss={loss.name} trains on its own samples: dataset.filter does not apply (set dataset.filter.kind=none)",
    )
    _check(
        not cfg.diagnostics.ches,
        f"loss={loss.name} trains on its own samples: diagnostics.ches measures offline pairs (set it false)",
    )
    args = dict(loss.args)
    if method.function == "rto":  # scored samples, not labelled pairs: the sparse reward is the world's gold
        _check(
            args.get("labeller", "gold") == "gold",
            f"loss={loss.name}: the sparse reward is the world's gold reward (loss.args.labeller=gold)",
        )
        _check(
            cfg.noise.kind == "none",
            f"loss={loss.name} scores samples, it labels no pairs: noise does not apply (set noise=none)",
        )
    _check(
        args.get("labeller", "gold") != "annotator" or not args.get("label_temperature"),
        f"loss={loss.name}: loss.args.label_temperature does not apply to the annotator "
        "(it samples at dataset.annotator_temperature)",
    )
    _check(
        args.get("labeller", "gold") != "implicit" or bool(args.get("label_temperature")),
        f"loss={loss.name}: loss.args.labeller=implicit at label_temperature=0 never labels a pair (the policy starts "
        "at its reference: every implicit reward is 0, every pair a tie); set loss.args.label_temperature > 0",
    )
    if method.function == "oprl":  # n samples scored by a scalar reward (the outcome): its own pairs, no verdicts
        _check(
            args.get("labeller", "gold") in ("gold", "annotator", "explicit"),
            f"loss={loss.name} scores each sample's outcome by a scalar reward: loss.args.labeller gold, annotator or "
            f"explicit (got {args.get('labeller')})",
        )
        _check(
            not args.get("label_temperature"),
            f"loss={loss.name} orders its samples by their outcome rewards, it samples no verdicts: "
            "loss.args.label_temperature does not apply (leave it 0)",
        )
        _check(
            cfg.noise.kind == "none",
            f"loss={loss.name} scores samples, it labels no pairs: noise does not apply (set noise=none)",
        )
    if method.function == "ofs_dpo" and args.get("domains"):  # COFS-DPO: families by the prompts' keyword counts
        span = int(cfg.dataset.max_keywords) - int(cfg.dataset.min_keywords) + 1
        _check(
            int(args["domains"]) <= span,
            f"loss={loss.name}: loss.args.domains={args['domains']} families need as many keyword counts "
            f"(dataset.min_keywords..max_keywords gives {span})",
        )
        w = args.get("weights")
        _check(
            w is None or len(w) == int(args["domains"]),
            f"loss={loss.name}: loss.args.weights needs one weight per domain ({args['domains']})",
        )
    if method.function == "brain":  # n samples weighted by a scalar reward: no pairs, no verdicts
        _check(
            args.get("labeller", "gold") in ("gold", "annotator", "explicit"),
            f"loss={loss.name} weights samples by a scalar reward: loss.args.labeller gold, annotator or explicit "
            f"(got {args.get('labeller')})",
        )
        _check(
            not args.get("label_temperature"),
            f"loss={loss.name} weights samples by softmax(r/beta), not by sampled verdicts: "
            "loss.args.label_temperature does not apply (leave it 0)",
        )
        _check(
            cfg.noise.kind == "none",
            f"loss={loss.name} weights samples by a scalar reward: noise={cfg.noise.kind} flips pair labels (set noise=none)",
        )


def _check_judges(cfg) -> None:
    """judge.* and each judge of judge.also: its name, then its own config's validate() (each judge's
    dataclass, in its module), told whether the data is the world's."""
    src = sources().get(cfg.dataset.kind)
    world_data = bool(src is not None and src.world)
    judges = judge_configs(cfg)
    _check_judge(judges[0], world_data)
    for k, extra in enumerate(judges[1:]):
        rooted = cfg.copy()  # the extra judge's node inside the run's config: its interpolations resolve
        rooted.judge = extra
        try:
            _check_judge(rooted.judge, world_data)
        except ConfigError as e:
            raise ConfigError(f"judge.also[{k}] ({extra.name}): {e}") from None


def _check_judge(judge, world_data: bool) -> None:
    """The checks of one judge's config (a node whose interpolations resolve)."""
    names = judge_names()
    _check(judge.name in names, f"judge={judge.name!r}: allowed {', '.join(names)}")
    secret = [k for k in judge if SECRET_KEY.search(str(k)) and k not in ("api_key_env", "api_key_file")]
    try:
        config_view(judge).validate(ConfigChecks(world_data=world_data, secret_keys=secret))
    except JudgeConfigError as e:
        raise ConfigError(str(e)) from None


def _check_dataset(cfg) -> None:
    """dataset.*: a registered kind, then that source's own checks (DataSource.validate)."""
    try:
        validate_dataset(cfg.dataset, cfg.model)
    except DatasetConfigError as e:
        raise ConfigError(str(e)) from None


def _source(cfg):
    """The source class ``dataset.kind`` names (checked by then: :func:`_check_dataset`)."""
    return sources()[cfg.dataset.kind]


def _check_cache_dir(cache_dir) -> None:
    """cache_dir (the artifact store) must be a folder this process can create and write: made here, with
    a probe file written and removed, so that an unwritable location fails before any compute."""

    d = Path(str(cache_dir)).expanduser()
    fix = "set cache_dir (or PO_BENCH_CACHE) to a writable folder"
    _check(not d.exists() or d.is_dir(), f"cache_dir={cache_dir}: exists and is not a folder; {fix}")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cache_dir={cache_dir}: cannot create it ({e.filename or d}: {e.strerror or e}); {fix}"
        ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=d, prefix=".po-bench-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"cache_dir={cache_dir}: cannot write a file in it ({e.strerror or e}); {fix}") from None


def check_machine(cfg) -> None:
    """What the machine must have for the configured launch (checked before any compute, but not
    by validate(), which also checks paper-scale configs on machines that will never run them): a
    writable cache_dir, and GPUs and DeepSpeed for launch=zero2/zero3."""
    _check_cache_dir(cfg.cache_dir)
    la = cfg.launch
    if Strategy.allows(la.strategy) and Strategy(la.strategy).deepspeed and not la.dry_run:
        import torch  # lazy: torch (~1.1 s)

        _check(
            torch.cuda.is_available() and importlib.util.find_spec("deepspeed") is not None,
            f"launch={la.strategy} needs GPUs and DeepSpeed (make install EXTRA=gpu); "
            "launch.dry_run=true prints the launch command line without running it",
        )


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def unknown_keys(node, schema=None, prefix: str = "") -> list[str]:
    """Keys of ``node`` that its structured schema (:class:`Config`) does not have: Hydra refuses them
    while composing, except those added with ``+`` (which it merges in without a word)."""

    schema = schema or Config
    hints = typing.get_type_hints(schema)
    fields = {f.name for f in dataclasses.fields(schema)}
    out = []
    for k in node.keys():
        if k not in fields:
            out.append(f"{prefix}{k}")
            continue
        t = hints.get(k)
        if dataclasses.is_dataclass(t) and node._get_node(k) is not None and not node._get_node(k)._is_none():
            out += unknown_keys(node[k], t, f"{prefix}{k}.")
    return out


def _refuse_unknown_keys(cfg) -> None:
    extra = [k for k in unknown_keys(cfg) if not SECRET_KEY.search(k.rsplit(".", 1)[-1])]  # keys: refused below
    if extra:
        group = extra[0].split(".")[0]
        raise ConfigError(
            f"{extra[0]} is not an option of the {group} config (added with '+'?): po-bench would "
            "ignore it; see po-bench --help" + (f" (also: {', '.join(extra[1:])})" if extra[1:] else "")
        )


def _refuse_broken_plugins(cfg) -> None:
    """A plug-in (loss, judge, data source) its environment installed but that failed to import: one line.
    The judges' are loaded with this module, the sources' here; the losses' when a po-bench loss is looked up."""
    if known_backend(cfg.loss.backend):
        method_of(cfg.loss)
    sources()
    try:
        plugins.check()
    except plugins.PluginError as e:
        raise ConfigError(str(e)) from None


def validate(cfg) -> None:
    """Check values and combinations before any compute: keys the schema lacks, plug-ins that failed to
    import, then each section's own ``validate`` (each judge's config dataclass in its module, the data
    source's for ``dataset.*``), then what the loss needs of the others (:meth:`LossConfig.validate_needs`)."""
    _refuse_unknown_keys(cfg)
    _refuse_broken_plugins(cfg)
    LossConfig.validate(cfg)
    TrainConfig.validate(cfg)
    NoiseConfig.validate(cfg)
    TrackingConfig.validate(cfg)
    DiagnosticsConfig.validate(cfg)
    GenerationConfig.validate(cfg)
    _check_judges(cfg)
    ModelConfig.validate(cfg)
    _check_dataset(cfg)
    LaunchConfig.validate(cfg)
    LossConfig.validate_needs(cfg)

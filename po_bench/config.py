"""Structured configs (registered in Hydra's ConfigStore) and semantic validation.

Hydra checks key names and types against these dataclasses while composing (a typo in a key or
a group option fails before anything runs); :func:`validate` then checks values and
combinations, raising :class:`ConfigError` with one line naming the key and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


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
    name_or_path: Optional[str] = None
    dtype: str = "float32"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    max_position_embeddings: int = 64
    chat_template: Optional[str] = None  # a Jinja chat template that replaces the tokenizer's
    reference_id: Optional[str] = None  # this model's name in results/reference/*.csv (paper tables)
    lora: LoraConfig = field(default_factory=LoraConfig)  # train LoRA adapters (peft); merged into the saved policy


@dataclass
class DatasetConfig:
    name: str = "world"
    kind: str = "world"
    seed: int = 0  # the world's own seed: fixed across run seeds, so seeds vary training, not the task
    n_sft: int = 3000
    n_pref: int = 1600
    n_eval: int = 512
    n_ood: int = 256
    min_keywords: int = 1
    max_keywords: int = 3
    ood_min_keywords: int = 4
    ood_max_keywords: int = 5
    annotator_temperature: float = 0.5
    annotator_length_bias: float = 0.03
    # Real data (kind: hf / file; see conf/dataset/*.yaml).  Unused by kind=world.
    hub_id: Optional[str] = None  # Hub dataset id (users with the Hub)
    path: Optional[str] = None  # local JSONL / JSON / Parquet file (wins over hub_id when set)
    split: str = "train"
    eval_split: Optional[str] = None
    format: str = "pairs"  # pairs | conversational | hh | ranked | unpaired
    columns: Dict[str, str] = field(default_factory=dict)  # internal name -> column name in the source
    max_rows: int = 0  # >0: keep the first N rows
    on_error: str = "skip"  # skip: bad rows are skipped and counted in run.json | fail: stop at the first bad row
    sft: Optional[str] = None  # name of a separate SFT dataset config (e.g. ultrachat)


@dataclass
class LossConfig:
    name: str = MISSING
    label: str = ""  # method label used in results tables (matches the papers' row names)
    backend: str = "dpo"  # TRL trainer: dpo | cpo | orpo | kto; pobench (po_bench.training.losses); sft (no preference stage)
    function: str = ""  # backend=pobench: the loss function in po_bench.training.losses
    beta: float = 0.1
    lr: float = 2.0e-4
    reference_free: bool = False
    paired: bool = True  # False: trains on the unpaired (prompt, completion, label) view
    implicit_reward: str = "logratio"  # logratio: beta*log(pi/ref) | avg_logp: beta*mean token logp
    citation: str = ""
    formula: str = ""  # the per-example loss, for docs/losses.md
    args: Dict[str, Any] = field(default_factory=dict)  # passed to the backend's TRL config


@dataclass
class NoiseConfig:
    kind: str = "none"  # none | flip
    rate: float = 0.0


@dataclass
class JudgeCacheConfig:
    enabled: bool = True
    dir: Optional[str] = None


@dataclass
class JudgeConfig:
    """Judges: gold (the world), none, and the pinned LLM / reward-model judges of conf/judge/.
    API keys never live here: ``api_key_env`` names the environment variable that holds one, or
    ``api_key_file`` a file that holds one (it wins when set)."""

    name: str = "gold"
    kind: str = ""
    version: str = ""
    base_url: Optional[str] = None
    model: Optional[str] = None
    api_key_env: Optional[str] = None
    api_key_file: Optional[str] = None  # a file holding the key (wins over api_key_env)
    max_requests: int = 0  # budget: HTTP requests this run may send (retries included); 0 = unlimited
    max_cost_usd: float = 0.0  # budget: USD this run may spend (from usage and the prices); 0 = unlimited
    max_concurrency: int = 8
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    top_logprobs: Optional[int] = None
    structured_outputs: Any = None
    cache: JudgeCacheConfig = field(default_factory=JudgeCacheConfig)
    subset_size: int = 0
    subset_seed: int = 0
    seed: int = 0
    answer_max_new_tokens: Optional[int] = None
    annotator: str = "weighted_alpaca_eval_gpt4_turbo"
    eval_path: Optional[str] = None
    eval_source: Optional[str] = None
    switch_seed: int = 0
    length_controlled: bool = True
    lc_data_dir: Optional[str] = None
    questions_path: Optional[str] = None
    questions_source: Optional[str] = None
    reference_path: Optional[str] = None
    reference_source: Optional[str] = None
    judge_prompts_path: Optional[str] = None
    judge_prompts_source: Optional[str] = None
    question_ids: Optional[List[int]] = None
    baseline_path: Optional[str] = None
    baseline_source: Optional[str] = None
    baseline_model: Optional[str] = None
    verdict_weight: int = 3
    judgment_attempts: int = 2
    bootstrap_rounds: int = 100
    model_path: Optional[str] = None
    dtype: str = "float32"
    batch_size: int = 8
    max_length: int = 2048
    # judge=openllm_v2 (lm-evaluation-harness on the policy checkpoint; conf/judge/openllm_v2.yaml)
    tasks: Optional[List[str]] = None  # lm-eval tasks / groups; null: the six Open LLM Leaderboard v2 tasks
    lm_eval_backend: str = "hf"  # lm-eval model backend: hf | vllm
    limit: Optional[float] = None  # documents per task (< 1: a fraction); null: all (leaderboard-comparable)
    num_fewshot: Optional[int] = None  # null: each task's own (the leaderboard's)
    apply_chat_template: Optional[bool] = None  # null: when the checkpoint's tokenizer has a chat template
    fewshot_as_multiturn: bool = True  # with a chat template: few-shot examples as conversation turns
    include_path: Optional[str] = None  # a folder of extra lm-eval task YAMLs
    model_args: Dict[str, Any] = field(default_factory=dict)  # extra lm-eval model_args (e.g. vLLM engine options)


@dataclass
class GenerationConfig:
    backend: str = "hf"
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 24
    batch_size: int = 128
    progress: bool = True
    # vLLM engine options (generation=vllm); ignored by hf
    n: int = 1
    dtype: str = "float32"
    max_model_len: Optional[int] = None
    gpu_memory_utilization: Optional[float] = 0.25
    kv_cache_memory_gib: Optional[float] = None
    enforce_eager: bool = True
    max_num_seqs: Optional[int] = None
    tensor_parallel_size: int = 1
    multiprocessing: bool = True
    engine_args: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    sft_lr: float = 2.0e-3
    sft_epochs: float = 6.0
    sft_batch_size: int = 64
    epochs: float = 2.0
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 0  # >0 caps preference steps (smoke tests)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    max_length: int = 48
    logging_steps: int = 5
    save_steps: int = 0  # >0: checkpoint every N steps; a killed run resumes from the last one
    progress: bool = True


@dataclass
class TrackingConfig:
    backend: str = "wandb"  # wandb | none
    project: str = "po-bench"
    entity: Optional[str] = None
    mode: str = "auto"  # auto (online with WANDB_API_KEY, else offline) | online | offline | disabled
    group: Optional[str] = None
    n_samples: int = 32


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

    csv: Optional[str] = None  # a file in results/reference/
    columns: List[str] = field(default_factory=list)  # its metric columns to show
    models: List[str] = field(default_factory=list)  # rows' model has no reference_id (the world): show these
    citation: str = ""


@dataclass
class PresetConfig:
    """Set by ``experiment=<name>`` (conf/experiment/) and its ``scale`` half (conf/preset/<name>/)."""

    name: Optional[str] = None
    scale: Optional[str] = None
    title: str = ""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    select_best: Optional[str] = None  # a metric: per method, report the grid point with the best mean
    ours: List[str] = field(default_factory=list)  # our metric columns to show first (default: all)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    preset: PresetConfig = field(default_factory=PresetConfig)
    seed: int = 0
    cache_dir: str = "${oc.env:PO_BENCH_CACHE,.po_bench_cache}"
    threads: int = 0  # torch threads; 0 = all cores


def register() -> None:
    cs = ConfigStore.instance()
    # One schema for the whole tree: every group option merges into its typed node, so unknown
    # keys and wrong types fail while Hydra composes.
    cs.store(name="po_bench_schema", node=Config)


CONF_DATASET_DIR = Path(__file__).resolve().parent.parent / "conf" / "dataset"


def dataset_config(name: str, **overrides):
    """A dataset config from ``conf/dataset/<name>.yaml`` merged onto the structured schema (used
    to resolve ``dataset.sft: ultrachat`` to the SFT dataset's own config)."""
    from omegaconf import OmegaConf

    from po_bench.data.formats import DataError

    path = CONF_DATASET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONF_DATASET_DIR.glob("*.yaml"))
        raise DataError(f"no dataset config {name!r} in {CONF_DATASET_DIR} (known: {', '.join(known)})")
    cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(path))
    for k, v in overrides.items():
        OmegaConf.update(cfg, k, v, merge=False)
    return cfg



class ConfigError(ValueError):
    """A user error in the configuration: reported as one line, exit code 2."""


BACKENDS = ("dpo", "cpo", "orpo", "kto", "pobench", "sft")
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
}
IMPLICIT_REWARDS = ("logratio", "avg_logp")


JUDGES = ("gold", "none", "reward_model", "alpaca_eval", "mt_bench", "arena_hard", "openllm_v2")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# config keys that would carry a key (max_tokens does not match: whole _-separated words only)
SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|token|passw(or)?d|credentials?)($|_)", re.IGNORECASE)


def _validate_real_data(cfg) -> None:
    from po_bench.data import formats

    d, loss = cfg.dataset, cfg.loss
    _check(cfg.model.kind != "tiny", "dataset.kind=hf needs a real model (model=smollm2_135m or a Hub model); "
                                     "the tiny model's tokenizer only knows the world")
    _check(bool(d.path or d.hub_id), f"dataset={d.name}: set dataset.path (a local file) or dataset.hub_id")
    _check(d.format in formats.FORMATS, f"dataset.format={d.format!r}: allowed {', '.join(formats.FORMATS)}")
    _check(d.max_rows >= 0, "dataset.max_rows must be >= 0")
    _check(d.on_error in ("skip", "fail"), f"dataset.on_error={d.on_error!r}: allowed skip, fail")
    _check(d.format != "unpaired" or (not loss.paired and loss.backend == "kto"),
           f"dataset.format=unpaired has no pairs: loss={loss.name} needs pairs (use loss=kto)")
    try:
        formats.columns_for(d.format, dict(d.columns or {}))
    except formats.DataError as e:
        raise ConfigError(str(e)) from None
    if d.sft:
        _check((Path(__file__).resolve().parent.parent / "conf" / "dataset" / f"{d.sft}.yaml").exists(),
               f"dataset.sft={d.sft!r}: no such dataset config in conf/dataset")
    if d.path:
        for split in {d.split, d.eval_split} - {None}:
            p = Path(str(d.path).replace("{split}", str(split))).expanduser()
            _check(p.exists(), f"dataset.path={p}: no such file")


def _validate_openllm(j, world_data: bool) -> None:
    _check(not world_data, "judge=openllm_v2 evaluates a real model's checkpoint: use a real dataset and model "
                           "(e.g. model=smollm2_135m dataset=hh_rlhf); the world is scored by judge=gold")
    _check(j.lm_eval_backend in ("hf", "vllm"), f"judge.lm_eval_backend={j.lm_eval_backend!r}: allowed hf, vllm")
    _check(j.tasks is None or len(j.tasks) > 0,
           "judge.tasks is empty: list lm-eval tasks, or null for the six leaderboard v2 tasks")
    _check(j.limit is None or j.limit > 0, f"judge.limit={j.limit}: must be > 0 (< 1: a fraction of each task), or null")
    _check(j.num_fewshot is None or j.num_fewshot >= 0, f"judge.num_fewshot={j.num_fewshot}: must be >= 0, or null")
    _check(j.batch_size >= 1, f"judge.batch_size={j.batch_size}: must be >= 1")
    if j.include_path:
        _check(Path(j.include_path).expanduser().is_dir(), f"judge.include_path={j.include_path}: no such folder")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def validate(cfg) -> None:
    """Check values and combinations before any compute."""
    loss = cfg.loss
    _check(loss.backend in BACKENDS, f"loss.backend={loss.backend!r}: allowed {', '.join(BACKENDS)}")
    _check(loss.implicit_reward in IMPLICIT_REWARDS,
           f"loss.implicit_reward={loss.implicit_reward!r}: allowed {', '.join(IMPLICIT_REWARDS)}")
    _check(loss.beta > 0, f"loss.beta={loss.beta:g} for {loss.name}: allowed (0, inf)")
    _check(loss.lr > 0, f"loss.lr={loss.lr}: must be > 0")
    if loss.reference_free:
        _check(loss.implicit_reward != "logratio",
               f"loss={loss.name} is reference-free: loss.implicit_reward must be avg_logp, not logratio")
    if loss.backend != "sft":
        from po_bench.training import trl_adapter

        try:
            trl_adapter.validate_backend_args(loss.backend, dict(loss.args), loss.function)
        except ValueError as e:
            raise ConfigError(f"loss={loss.name}: {e}") from None
        if loss.backend != "pobench":
            from po_bench.training.losses import fmt_range, in_range

            for k, v in dict(loss.args).items():
                if k in TRL_ARG_RANGES and isinstance(v, (int, float)):
                    lo, hi, lo_inc, hi_inc = TRL_ARG_RANGES[k]
                    _check(in_range(v, lo, hi, lo_inc, hi_inc), f"loss.args.{k}={v:g} for {loss.name}: allowed {fmt_range(lo, hi, lo_inc, hi_inc)}")
    noise = cfg.noise
    _check(noise.kind in ("none", "flip"), f"noise.kind={noise.kind!r}: allowed none, flip")
    _check(0.0 <= noise.rate < 0.5, f"noise.rate={noise.rate}: must be in [0, 0.5)")
    _check(noise.kind == "flip" or noise.rate == 0.0, "noise.rate is set but noise.kind is none: use noise=flip")
    world_data = cfg.dataset.kind == "world"
    _check(cfg.judge.name in JUDGES, f"judge={cfg.judge.name!r}: allowed {', '.join(JUDGES)}")
    _check(cfg.judge.name != "gold" or world_data,
           "judge=gold needs dataset=world (the gold reward is defined on the embedded world only)")
    _check(not world_data or cfg.judge.name in ("gold", "none", "openllm_v2"),
           f"judge={cfg.judge.name} scores real-data answers: dataset=world is scored by judge=gold "
           "(use a real dataset and model, e.g. model=smollm2_135m dataset=hh_rlhf)")
    _check(cfg.tracking.backend in ("wandb", "none"), f"tracking={cfg.tracking.backend!r}: allowed wandb, none")
    _check(cfg.tracking.mode in ("auto", "online", "offline", "disabled"),
           f"tracking.mode={cfg.tracking.mode!r}: allowed auto, online, offline, disabled")
    _check(cfg.generation.backend in ("hf", "vllm"), f"generation.backend={cfg.generation.backend!r}: allowed hf, vllm")
    _check(cfg.generation.temperature >= 0, "generation.temperature must be >= 0")
    _check(cfg.generation.n == 1, "generation.n must be 1 (one sample per prompt per run; use seeds for more)")
    if cfg.judge.name not in ("gold", "none", "reward_model", "openllm_v2"):
        _check(bool(cfg.judge.base_url), f"judge={cfg.judge.name} needs an endpoint: set judge.base_url "
                                         "(OpenAI or a local vLLM server) and judge.model")
        _check(bool(cfg.judge.model), f"judge={cfg.judge.name}: set judge.model (the judge model's name at the endpoint)")
    j = cfg.judge
    _check(j.max_requests >= 0, f"judge.max_requests={j.max_requests}: must be >= 0 (0 = unlimited)")
    _check(j.max_cost_usd >= 0, f"judge.max_cost_usd={j.max_cost_usd:g}: must be >= 0 (0 = unlimited)")
    _check(not j.max_cost_usd or j.price_input_per_mtok > 0 or j.price_output_per_mtok > 0,
           f"judge.max_cost_usd={j.max_cost_usd:g} needs the judge's prices: set judge.price_input_per_mtok "
           "and judge.price_output_per_mtok (USD per million tokens)")
    _check(not j.api_key_env or bool(ENV_NAME.fullmatch(str(j.api_key_env))),
           "judge.api_key_env must name an environment variable (letters, digits, _), not hold the key itself")
    _check(not j.api_key_file or Path(str(j.api_key_file)).expanduser().is_file(),
           "judge.api_key_file: no such file (its value is not shown here: it could be a key)")
    secret = [k for k in j if SECRET_KEY.search(str(k)) and k not in ("api_key_env", "api_key_file")]
    _check(not secret, f"judge.{secret[0] if secret else ''}: API keys are never read from the config; put the key "
                       "in the environment variable named by judge.api_key_env or a file named by judge.api_key_file")
    if cfg.judge.name == "reward_model":
        _check(bool(cfg.judge.model_path), "judge=reward_model: set judge.model_path (a sequence-classification model)")
    if cfg.judge.name == "openllm_v2":
        _validate_openllm(cfg.judge, world_data)
    _check(0 < cfg.generation.top_p <= 1, "generation.top_p must be in (0, 1]")
    _check(cfg.model.kind in ("tiny", "hub", "smollm2"), f"model.kind={cfg.model.kind!r}: allowed tiny, hub, smollm2")
    if cfg.model.kind == "hub":
        _check(bool(cfg.model.name_or_path), "model.name_or_path is required when model.kind=hub")
        p = str(cfg.model.name_or_path)
        if p.startswith((".", "/", "~")):
            _check(Path(p).expanduser().exists(), f"model.name_or_path={p}: no such directory")
    lora = cfg.model.lora
    if lora.enabled:
        _check(lora.r > 0 and lora.alpha > 0, "model.lora.r and model.lora.alpha must be > 0")
        _check(0 <= lora.dropout < 1, "model.lora.dropout must be in [0, 1)")
    _check(cfg.dataset.kind in ("world", "hf"), f"dataset.kind={cfg.dataset.kind!r}: allowed world, hf")
    if world_data:
        _check(cfg.model.kind == "tiny", "dataset=world needs model=tiny (the world has its own word-level tokenizer)")
    else:
        _validate_real_data(cfg)
    d = cfg.dataset
    if not world_data:
        return
    _check(1 <= d.min_keywords <= d.max_keywords, "dataset.min_keywords must be >= 1 and <= dataset.max_keywords")
    _check(d.ood_min_keywords <= d.ood_max_keywords, "dataset.ood_min_keywords must be <= dataset.ood_max_keywords")
    _check(d.annotator_temperature >= 0, "dataset.annotator_temperature must be >= 0")
    for k in ("n_sft", "n_pref", "n_eval", "n_ood"):
        _check(getattr(d, k) > 0, f"dataset.{k} must be > 0")
    t = cfg.train
    _check(t.batch_size >= (2 if loss.backend == "kto" else 1),
           "train.batch_size must be >= 2 for kto (its KL term needs mismatched pairs in the batch)")

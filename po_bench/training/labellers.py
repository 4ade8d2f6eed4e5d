"""Preference sources of the online loop (:mod:`po_bench.training.online`): who says which of two responses is
better.  ``loss.args.labeller`` names one; each is a class registered here with :func:`register_labeller`, so a
new source is one class and its test, and the loop does not change.

A labeller's contract:

- ``spec(args, dataset) -> dict``: the config fields that decide its labels (part of the online policy's key,
  po_bench/specs.py); ``args`` are the online method's ``loss.args`` with their defaults, ``dataset`` the
  ``dataset`` config section.
- ``needs`` (optional): names of stored artifacts it reads (``("reward_model",)``); po_bench/specs.py puts each
  one's reference under the spec's ``inputs`` (so the policy key covers them) and the policy stage builds them
  through the store before the loop and hands the labeller each one loaded (``inputs``: name -> the loaded
  artifact, by its stage: po_bench/stages.py ``LABELLER_LOADERS``; a reward model: a scorer with
  ``pair_scores(prompts, first, second) -> (scores of first, scores of second)``).
- ``options(args, cache_dir) -> dict`` (optional): what it needs at run time that decides no label (where a
  judge lives, its key's environment variable, budget, cache folder); never part of a key, handed to the policy
  stage in its run options (``opts["labeller"]``).
- ``__init__(spec)`` (``__init__(spec, inputs, options)`` for a source with ``needs`` or ``options``).
- ``label(request) -> Labels``: one verdict per pair (True: the first response is preferred, False: the second,
  None: no preference, the pair is dropped), with the counts the run reports (labels requested, judge calls and
  tokens: 0 for a source that calls no judge; verdicts that failed: counted, the pair dropped, never guessed).

Sources here:

- ``gold``: the world's exact reward r* (po_bench/data/world.py), argmax of the two (``label_temperature`` 0:
  ties give no preference) or Bradley-Terry sampled, P(a > b) = sigmoid((r(a) - r(b)) / label_temperature).
- ``annotator``: the world's length-biased Bradley-Terry annotator (``dataset.annotator_temperature``,
  ``dataset.annotator_length_bias``): the one that labels the offline pairs.
- ``implicit``: the policy's own implicit reward beta * log pi/ref (DPORM; the loop hands the current policy's
  scores in ``request.scores``), argmax or Bradley-Terry sampled as ``gold``.
- ``explicit``: a Bradley-Terry reward model (the ``reward_model`` stage: TRL's RewardTrainer on the start
  checkpoint's annotator pairs, the artifact MADPO and iterative_dpo's explicit labeller read;
  ``loss.args.reward_model``: its lr / epochs / batch_size), its scores argmax or Bradley-Terry sampled as
  ``gold``.
- ``judge``: an OpenAI-compatible pairwise judge through the project's judge client (po_bench/judges/client.py:
  retries, the on-disk response cache, the request budget, token counts) with AlpacaEval's pairwise annotator
  (its prompt, order switch and logprob parser, po_bench/judges/alpaca_eval.py); P(first wins) from the reply's
  logprobs, argmax (0.5: no preference) or sampled at ``label_temperature`` (1: the judge's own probability).
  ``loss.args.judge`` holds its fields (:data:`JUDGE_KEY_FIELDS` key the policy, :data:`JUDGE_RUN_FIELDS` do
  not).  A request that fails or a reply without usable logprobs is counted (``Labels.failed``, its kind in
  ``Labels.details``) and its pair dropped; a spent budget stops the run with one line (the answers received
  are cached: a rerun with a larger budget pays only for the rest).

Identical responses carry no preference with every source (as the offline pairs, world.label_pairs).

A source that also gives each response a scalar reward has ``rewards(prompts, responses) -> list[float]`` (the
methods that weight samples by a reward, ``brain``, read it): ``gold`` r*, ``annotator`` its biased score
r* + length_bias x words (the quantity its Bradley-Terry verdict compares), ``explicit`` the reward model's
score.  ``implicit`` and ``judge`` have none.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from po_bench.data import world


@dataclass
class LabelRequest:
    """Pairs to label: prompt i with its two responses ``first[i]``, ``second[i]``.  ``scores``: 0 (the first
    responses) or 1 (the second) -> one score each under the current policy (the implicit reward, computed on the
    sampled tokens), for a source that reads it.  ``rng``: the draws of a sampled (Bradley-Terry) verdict."""

    prompts: Sequence[str]
    first: Sequence[str]
    second: Sequence[str]
    rng: np.random.Generator
    scores: Callable[[int], Sequence[float]] | None = None


@dataclass
class Labels:
    """One verdict per pair and the counts: ``failed``, verdicts the source could not give (a failed judge
    request, an unparsable reply: the pair is dropped, never guessed); ``details``, the source's own counts
    (summed over the run into run.json's ``metrics.online.labeller``)."""

    first_wins: list[bool | None]
    requested: int
    judge_calls: int = 0
    judge_tokens: int = 0
    failed: int = 0
    details: dict = field(default_factory=dict)


LABELLERS: dict[str, type] = {}


def register_labeller(name: str):
    """Class decorator: the class is the preference source ``loss.args.labeller=<name>``."""

    def deco(cls):
        cls.name = name
        LABELLERS[name] = cls
        return cls

    return deco


def labeller_names() -> tuple[str, ...]:
    return tuple(LABELLERS)


def labeller_spec(args: dict, dataset, inputs: dict | None = None) -> dict:
    """The spec of the preference source an online method's args name (its key fields), with the references of
    the stored artifacts it reads (``inputs``: name -> {"stage", "spec"}, for each of its ``needs``)."""
    out = {"kind": args["labeller"], **LABELLERS[args["labeller"]].spec(args, dataset)}
    if inputs:
        out["inputs"] = inputs
    return out


def labeller_needs(args: dict) -> tuple[str, ...]:
    """Names of the stored artifacts the preference source of these args reads (po_bench/specs.py specs them)."""
    return tuple(getattr(LABELLERS[args["labeller"]], "needs", ()))


def labeller_options(args: dict, cache_dir) -> dict:
    """The run-time options of the preference source of these args (never part of a key): its ``options``."""
    cls = LABELLERS.get(args.get("labeller", "gold"))
    return cls.options(args, cache_dir) if cls is not None and hasattr(cls, "options") else {}


def labeller_for(spec: dict, inputs: dict | None = None, options: dict | None = None):
    """The labeller of a spec; ``inputs``: name -> each stored artifact it reads, loaded (built first),
    ``options``: its run-time options (:func:`labeller_options`)."""
    cls = LABELLERS[spec["kind"]]
    if getattr(cls, "needs", ()) or hasattr(cls, "options"):
        return cls(spec, inputs or {}, options or {})
    return cls(spec)


def gold_scorer(prompts_spec: dict) -> Callable[[str, str], float] | None:
    """The exact reward of one response to a prompt of the prompt spec's source (the world's r*), or None for a
    source without one; the online loop logs it for the policy's samples of each step."""
    if prompts_spec.get("kind") != "world":
        return None
    weights = world.RewardWeights()
    return lambda prompt, response: world.gold_reward(prompt, response, weights)


def gold_step_gains(prompts_spec: dict) -> Callable[[str, str], list[float]] | None:
    """The exact gain of each step of a response (world.step_gains over world.split_steps: r*(prefix + step) -
    r*(prefix), summing to r*) for a prompt of the prompt spec's source, or None for a source without one."""
    if prompts_spec.get("kind") != "world":
        return None
    weights = world.RewardWeights()
    return lambda prompt, response: world.step_gains(prompt, world.split_steps(response), weights)


def verdicts(s_first: Sequence[float], s_second: Sequence[float], temperature: float, rng) -> list[bool | None]:
    """First-wins verdicts from two scores per pair: the argmax (temperature 0; a tie: None) or Bradley-Terry
    sampled at the temperature (one uniform draw per pair, drawn for every pair so the draws do not depend on
    the scores)."""
    out: list[bool | None] = []
    for a, b in zip(s_first, s_second):
        u = rng.random()
        if temperature <= 0:
            out.append(None if a == b else bool(a > b))
        else:
            out.append(bool(u < 1.0 / (1.0 + math.exp(-(a - b) / temperature))))
    return out


def identical(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def drop_identical(req: LabelRequest, wins: list[bool | None]) -> list[bool | None]:
    return [None if identical(a, b) else w for a, b, w in zip(req.first, req.second, wins)]


@register_labeller("gold")
class GoldLabeller:
    """The world's exact reward, argmax or Bradley-Terry sampled at ``label_temperature``."""

    @staticmethod
    def spec(args: dict, dataset) -> dict:
        return {"temperature": float(args["label_temperature"])}

    def __init__(self, spec: dict):
        self.temperature = float(spec["temperature"])
        self.weights = world.RewardWeights()

    def label(self, req: LabelRequest) -> Labels:
        ra = [world.gold_reward(p, y, self.weights) for p, y in zip(req.prompts, req.first)]
        rb = [world.gold_reward(p, y, self.weights) for p, y in zip(req.prompts, req.second)]
        return Labels(drop_identical(req, verdicts(ra, rb, self.temperature, req.rng)), len(req.prompts))

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [world.gold_reward(p, y, self.weights) for p, y in zip(prompts, responses)]


@register_labeller("annotator")
class AnnotatorLabeller:
    """The world's Bradley-Terry annotator on r* with its length bias (the offline pairs' labeller)."""

    @staticmethod
    def spec(args: dict, dataset) -> dict:
        return {
            "temperature": float(dataset.annotator_temperature),
            "length_bias": float(dataset.annotator_length_bias),
        }

    def __init__(self, spec: dict):
        self.annotator = world.Annotator(temperature=spec["temperature"], length_bias=spec["length_bias"])
        self.weights = world.RewardWeights()

    def label(self, req: LabelRequest) -> Labels:
        wins: list[bool | None] = []
        for p, a, b in zip(req.prompts, req.first, req.second):
            u = req.rng.random()
            pa = self.annotator.p_first(
                world.gold_reward(p, a, self.weights),
                world.gold_reward(p, b, self.weights),
                len(a.split()),
                len(b.split()),
            )
            wins.append(bool(u < pa))
        return Labels(drop_identical(req, wins), len(req.prompts))

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [
            world.gold_reward(p, y, self.weights) + self.annotator.length_bias * len(y.split())
            for p, y in zip(prompts, responses)
        ]


@register_labeller("implicit")
class ImplicitLabeller:
    """The current policy's implicit reward beta * log pi/ref (DPORM), argmax or Bradley-Terry sampled."""

    @staticmethod
    def spec(args: dict, dataset) -> dict:
        return {"temperature": float(args["label_temperature"])}

    def __init__(self, spec: dict):
        self.temperature = float(spec["temperature"])

    def label(self, req: LabelRequest) -> Labels:
        if req.scores is None:
            raise ValueError("the implicit labeller needs the current policy's scores (LabelRequest.scores)")
        sa, sb = list(req.scores(0)), list(req.scores(1))
        return Labels(drop_identical(req, verdicts(sa, sb, self.temperature, req.rng)), len(req.prompts))


@register_labeller("explicit")
class ExplicitLabeller:
    """A Bradley-Terry reward model's scores (the reward_model stage's artifact, built before the loop), argmax or
    Bradley-Terry sampled at ``label_temperature``."""

    needs = ("reward_model",)

    @staticmethod
    def spec(args: dict, dataset) -> dict:
        return {"temperature": float(args["label_temperature"])}

    def __init__(self, spec: dict, inputs: dict, options: dict):
        self.temperature = float(spec["temperature"])
        self.scorer = inputs["reward_model"]  # the loaded reward model: pair_scores(prompts, first, second)

    def label(self, req: LabelRequest) -> Labels:
        ra, rb = self.scorer.pair_scores(req.prompts, req.first, req.second)
        return Labels(drop_identical(req, verdicts(ra, rb, self.temperature, req.rng)), len(req.prompts))

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return self.scorer.pair_scores(prompts, responses, responses)[0]


# loss.args.judge: the fields that decide a judgment (key the online policy: the judge's identity, the request's
# sampling fields, the order switch's seed) and those that do not (where it lives, its key, speed, budget, cache)
JUDGE_KEY_DEFAULTS = {
    "model": None,
    "version": "1",
    "annotator": "weighted_alpaca_eval_gpt4_turbo",
    "temperature": None,
    "max_tokens": None,
    "top_logprobs": None,
    "structured_outputs": None,
    "switch_seed": 0,
}
JUDGE_RUN_DEFAULTS = {
    "base_url": None,
    "api_key_env": None,
    "api_key_file": None,
    "max_requests": 0,
    "max_cost_usd": 0.0,
    "price_input_per_mtok": 0.0,
    "price_output_per_mtok": 0.0,
    "max_concurrency": 8,
    "timeout": 120.0,
    "max_retries": 6,
    "backoff_base": 1.0,
    "backoff_max": 60.0,
    "cache": {"enabled": True, "dir": None},
}
JUDGE_KEY_FIELDS = tuple(JUDGE_KEY_DEFAULTS)
JUDGE_RUN_FIELDS = tuple(JUDGE_RUN_DEFAULTS)
SECRET_WORD = re.compile(r"(^|_)(api_?key|secret|token|passw(or)?d|credentials?)($|_)", re.IGNORECASE)
JUDGE_NAME = "online_judge"  # the judge client's name: its response cache's namespace is <name>-<version>


def plain_map(node) -> dict:
    """A map of config fields (an OmegaConf node or a dict; None: empty) as a plain dict, nested maps too."""
    if node is None:
        return {}
    if hasattr(node, "_get_node"):  # an OmegaConf node
        from omegaconf import OmegaConf  # lazy: omegaconf (~0.0 s)

        return OmegaConf.to_container(node, resolve=True)
    return {k: plain_map(v) if isinstance(v, Mapping) else v for k, v in node.items()}


def judge_args_problem(judge) -> str | None:
    """The first problem of ``loss.args.judge`` (one line, never a value), or None."""
    judge = plain_map(judge)
    for k in judge:
        if k not in JUDGE_KEY_DEFAULTS and k not in JUDGE_RUN_DEFAULTS and SECRET_WORD.search(str(k)):
            return (
                f"loss.args.judge.{k}: API keys are never read from the config; put the key in the environment "
                "variable named by loss.args.judge.api_key_env or a file named by loss.args.judge.api_key_file"
            )
        if k not in JUDGE_KEY_DEFAULTS and k not in JUDGE_RUN_DEFAULTS:
            return (
                f"loss.args.judge.{k} is not a judge field (allowed: {', '.join(JUDGE_KEY_FIELDS + JUDGE_RUN_FIELDS)})"
            )
    if not judge.get("base_url") or not judge.get("model"):
        return (
            "loss.args.labeller=judge needs an OpenAI-compatible endpoint: set loss.args.judge.base_url and "
            "loss.args.judge.model"
        )
    for k in ("max_requests", "max_cost_usd"):
        v = judge.get(k, 0)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            return f"loss.args.judge.{k}={v!r}: must be a number >= 0 (0: unlimited)"
    return None


@register_labeller("judge")
class JudgeLabeller:
    """An OpenAI-compatible pairwise judge (AlpacaEval's annotator) through the judge client: budgeted, cached,
    counted (module docstring)."""

    @staticmethod
    def spec(args: dict, dataset) -> dict:
        j = plain_map(args.get("judge"))
        return {
            "temperature": float(args["label_temperature"]),
            "judge": {k: j.get(k, d) for k, d in JUDGE_KEY_DEFAULTS.items()},
        }

    @staticmethod
    def options(args: dict, cache_dir) -> dict:
        j = plain_map(args.get("judge"))
        out = {k: j.get(k, d) for k, d in JUDGE_RUN_DEFAULTS.items()}
        out["cache"] = {**JUDGE_RUN_DEFAULTS["cache"], **dict(out["cache"] or {})}
        if out["cache"]["dir"] is None and cache_dir is not None:
            out["cache"]["dir"] = str(Path(str(cache_dir)) / "judge")  # as the run's judges: <cache_dir>/judge
        return out

    def __init__(self, spec: dict, inputs: dict, options: dict):
        from po_bench.judges.client import JudgeClient  # lazy: its module (the openai SDK when it first asks)

        if not options.get("base_url"):
            raise ValueError(
                "the judge preference source needs its endpoint at run time (loss.args.judge.base_url: the run "
                "options' labeller section)"
            )
        self.temperature = float(spec["temperature"])
        self.judge = dict(spec["judge"])
        self.client = JudgeClient({"name": JUDGE_NAME, **self.judge, **options})

    def request(self, prompt: str, out_1: str, out_2: str) -> dict:
        from po_bench.judges import alpaca_eval  # lazy: alpaca_eval, pandas (~1.6 s)

        params = alpaca_eval.request_params_default(self.judge["annotator"])
        for k in ("max_tokens", "temperature", "top_logprobs"):
            if self.judge.get(k) is not None:
                params[k] = self.judge[k]
        so = self.judge.get("structured_outputs")
        if so is True:
            so = {"choice": ["m", "M"]}
        return {
            "messages": alpaca_eval.judge_messages(prompt, out_1, out_2, self.judge["annotator"]),
            "structured_outputs": so or None,
            **params,
        }

    def label(self, req: LabelRequest) -> Labels:
        from po_bench.judges import alpaca_eval  # lazy: alpaca_eval, pandas (~1.6 s)
        from po_bench.judges.client import BUDGET_ERROR, is_budget_stop  # lazy: its module (~0.0 s)

        seed = int(self.judge["switch_seed"])
        asked, requests, switched = [], [], []
        for i, (p, a, b) in enumerate(zip(req.prompts, req.first, req.second)):
            if identical(a, b):
                continue
            sw = alpaca_eval.is_switched(p, seed)  # alpaca_eval's order switch (seeded by the instruction)
            requests.append(self.request(p, *((b, a) if sw else (a, b))))
            asked.append(i)
            switched.append(sw)
        before = self.client.stats.as_dict()
        results = self.client.chat_many(requests)
        after = self.client.stats.as_dict()
        calls = after["requests"] - before["requests"]
        tokens = (after["prompt_tokens"] + after["completion_tokens"]) - (
            before["prompt_tokens"] + before["completion_tokens"]
        )
        stopped = sum(is_budget_stop(r.error) for r in results)
        if stopped:
            b = self.client.budget_report()
            raise RuntimeError(
                f"the judge preference source's {BUDGET_ERROR} (loss.args.judge.max_requests={b['max_requests']}, "
                f"max_cost_usd={b['max_cost_usd']:g}): {b['requests_sent']} requests sent, {stopped} pairs of this "
                "step not judged; the answers received are cached, so a rerun with a larger budget pays only for "
                "the rest"
            )
        # P(first wins) per asked pair (None: failed); alpaca_eval's preference p in [1, 2], 2: output_2 wins
        q: list[float | None] = [None] * len(req.prompts)
        details = {"cache_hits": after["cache_hits"] - before["cache_hits"], "request_failures": 0}
        details["parse_failures"] = 0
        for i, sw, res in zip(asked, switched, results):
            if not res.ok:
                details["request_failures"] += 1
                continue
            pref = alpaca_eval.preference_from_logprobs(res.logprobs, self.judge["annotator"])
            if pref is None:
                details["parse_failures"] += 1
                continue
            if sw:
                pref = 3.0 - pref
            q[i] = 2.0 - pref
        eps = 1e-6
        logit = [0.0 if x is None else math.log(max(x, eps) / max(1.0 - x, eps)) for x in q]
        wins = verdicts(logit, [0.0] * len(logit), self.temperature, req.rng)  # (a draw for every pair)
        wins = [None if x is None else w for x, w in zip(q, wins)]
        failed = details["request_failures"] + details["parse_failures"]
        return Labels(wins, len(req.prompts), judge_calls=calls, judge_tokens=tokens, failed=failed, details=details)

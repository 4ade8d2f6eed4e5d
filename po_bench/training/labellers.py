"""Preference sources of the online loop (:mod:`po_bench.training.online`): who says which of two responses is
better.  ``loss.args.labeller`` names one; each is a class registered here with :func:`register_labeller`, so a
new source (a trained explicit reward model, an OpenAI-compatible pairwise judge through the project's judge
client) is one class and its test, and the loop does not change.

A labeller's contract:

- ``spec(args, dataset) -> dict``: the config fields that decide its labels (part of the online policy's key,
  po_bench/specs.py); ``args`` are the online method's ``loss.args`` with their defaults, ``dataset`` the
  ``dataset`` config section.
- ``__init__(spec)``: the labeller of that spec.
- ``label(request) -> Labels``: one verdict per pair (True: the first response is preferred, False: the second,
  None: no preference, the pair is dropped), with the counts the run reports (labels requested, judge calls and
  tokens: 0 for a source that calls no judge).

Sources here:

- ``gold``: the world's exact reward r* (po_bench/data/world.py), argmax of the two (``label_temperature`` 0:
  ties give no preference) or Bradley-Terry sampled, P(a > b) = sigmoid((r(a) - r(b)) / label_temperature).
- ``annotator``: the world's length-biased Bradley-Terry annotator (``dataset.annotator_temperature``,
  ``dataset.annotator_length_bias``): the one that labels the offline pairs.
- ``implicit``: the policy's own implicit reward beta * log pi/ref (DPORM; the loop hands the current policy's
  scores in ``request.scores``), argmax or Bradley-Terry sampled as ``gold``.

Identical responses carry no preference with every source (as the offline pairs, world.label_pairs).

A source that also gives each response a scalar reward has ``rewards(prompts, responses) -> list[float]`` (the
methods that weight samples by a reward, ``brain``, read it): ``gold`` r*, ``annotator`` its biased score
r* + length_bias x words (the quantity its Bradley-Terry verdict compares).  ``implicit`` has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    first_wins: list[bool | None]
    requested: int
    judge_calls: int = 0
    judge_tokens: int = 0


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


def labeller_spec(args: dict, dataset) -> dict:
    """The spec of the preference source an online method's args name (its key fields)."""
    return {"kind": args["labeller"], **LABELLERS[args["labeller"]].spec(args, dataset)}


def labeller_for(spec: dict):
    return LABELLERS[spec["kind"]](spec)


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

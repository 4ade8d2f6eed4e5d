"""The online loop's preference sources (po_bench/training/labellers.py): the world's gold reward (argmax and
Bradley-Terry sampled), its length-biased annotator, the policy's implicit reward; the registry a new source
joins without the loop changing (tests/test_online.py trains with one)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from po_bench.data import world
from po_bench.training import labellers
from po_bench.training.labellers import LabelRequest, gold_scorer, labeller_for, labeller_spec, verdicts

P = "write about apple river =>"
GOOD, BAD, LONG = " the apple and the river", " the cat cat cat", " the apple and the river near the old bright road"
DATASET = OmegaConf.create({"annotator_temperature": 0.5, "annotator_length_bias": 0.03})


def _req(first, second, seed=0, scores=None):
    return LabelRequest([P] * len(first), first, second, np.random.default_rng(seed), scores)


def test_gold_argmax_prefers_the_higher_exact_reward_and_drops_ties_and_identical_pairs():
    assert world.gold_reward(P, GOOD) > world.gold_reward(P, BAD)
    lab = labeller_for(labeller_spec({"labeller": "gold", "label_temperature": 0.0}, DATASET))
    same_reward = " the bright"  # no keyword, no penalty, as long as " the old"
    assert world.gold_reward(P, same_reward) == world.gold_reward(P, " the old")
    out = lab.label(_req([GOOD, BAD, same_reward, GOOD], [BAD, GOOD, " the old", " " + GOOD.strip() + " "]))
    assert out.first_wins == [True, False, None, None] and out.requested == 4
    assert out.judge_calls == out.judge_tokens == 0


def test_gold_bradley_terry_samples_at_its_temperature():
    t = 0.7
    lab = labeller_for({"kind": "gold", "temperature": t})
    n = 4000
    wins = lab.label(_req([GOOD] * n, [BAD] * n, seed=1)).first_wins
    p = 1 / (1 + math.exp(-(world.gold_reward(P, GOOD) - world.gold_reward(P, BAD)) / t))
    assert np.mean(wins) == pytest.approx(p, abs=3 * math.sqrt(p * (1 - p) / n))
    assert 0.5 < p < 0.99  # the test can tell sampling from the argmax


def test_the_annotator_is_the_worlds_length_biased_one():
    spec = labeller_spec({"labeller": "annotator", "label_temperature": 0.0}, DATASET)
    assert spec == {"kind": "annotator", "temperature": 0.5, "length_bias": 0.03}
    n = 4000
    wins = labeller_for(spec).label(_req([LONG] * n, [GOOD] * n, seed=2)).first_wins
    ann = world.Annotator(temperature=0.5, length_bias=0.03)
    p = ann.p_first(world.gold_reward(P, LONG), world.gold_reward(P, GOOD), len(LONG.split()), len(GOOD.split()))
    assert np.mean(wins) == pytest.approx(p, abs=3 * math.sqrt(p * (1 - p) / n))
    assert world.gold_reward(P, LONG) < world.gold_reward(P, GOOD) + 0.2  # the length bias is what prefers LONG


def test_the_implicit_source_reads_the_current_policys_scores():
    lab = labeller_for({"kind": "implicit", "temperature": 0.0})
    first, second = [GOOD, BAD], [BAD, LONG]
    scores = lambda which: [float(len(y)) for y in (first, second)[which]]  # noqa: E731 (stands in for beta*log pi/ref)
    assert lab.label(_req(first, second, scores=scores)).first_wins == [True, False]
    with pytest.raises(ValueError, match="needs the current policy's scores"):
        lab.label(_req([GOOD], [BAD]))


def test_verdicts_draw_once_per_pair_whatever_the_temperature():
    a = verdicts([1.0, 0.0], [0.0, 1.0], 0.0, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    verdicts([1.0, 0.0], [0.0, 1.0], 0.0, rng)
    assert a == [True, False] and rng.random() == np.random.default_rng(0).random(3)[2]


def test_gold_scorer_is_the_worlds_reward_and_none_elsewhere():
    g = gold_scorer({"kind": "world", "split": "pref"})
    assert g(P, GOOD) == world.gold_reward(P, GOOD)
    assert gold_scorer({"kind": "hf"}) is None


def test_a_new_source_registers_by_name():
    @labellers.register_labeller("always_second")
    class AlwaysSecond:
        @staticmethod
        def spec(args, dataset):
            return {}

        def __init__(self, spec):
            pass

        def label(self, req):
            return labellers.Labels([False] * len(req.prompts), len(req.prompts), judge_calls=len(req.prompts))

    try:
        assert "always_second" in labellers.labeller_names()
        out = labeller_for(labeller_spec({"labeller": "always_second"}, DATASET)).label(_req([GOOD], [BAD]))
        assert out.first_wins == [False] and out.judge_calls == 1
    finally:
        del labellers.LABELLERS["always_second"]

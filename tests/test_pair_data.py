"""Pair-data strategies of the embedded world, built as their papers describe: PUGC's pairs rated against
user-generated content (Tan et al. 2025) and multi-model pairs with a stronger model (More is Less, Wang et
al. 2025); the fields that select them reach the pairs key, and bad values are one-line config errors."""

from __future__ import annotations

import numpy as np
import pytest

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.data.sources import WorldSource
from po_bench.specs import plan

from .conftest import compose as _compose
from .helpers import world_demos, world_source

SPEC = world.WorldSpec(n_pref=300)
PROMPTS = world.make_prompts(SPEC, "pref")


def _demos(spec, k, seed, prefix=""):
    return world_demos(spec, PROMPTS, k, seed, prefix)


def _source(**fields):
    return world_source(SPEC.n_pref, **fields)


# --- PUGC ----------------------------------------------------------------------------------------


def test_ugc_is_the_topic_at_noise_zero_and_degrades_with_noise():
    clean = world.user_contents(PROMPTS, 0.0, 0)
    assert clean == world.user_contents(PROMPTS, 0.0, 0)  # part of the world: fixed by dataset.seed
    for p, u in zip(PROMPTS, clean):  # every keyword, nothing off-topic
        assert {t for t in u.split() if t in world.CONTENT_WORDS} == set(world.parse_prompt(p))

    def quality(noise):
        ugc = world.user_contents(PROMPTS, noise, 0)
        recall = np.mean(
            [
                len(set(world.parse_prompt(p)) & set(u.split())) / len(world.parse_prompt(p))
                for p, u in zip(PROMPTS, ugc)
            ]
        )
        off = np.mean(
            [
                sum(t in world.CONTENT_WORDS and t not in world.parse_prompt(p) for t in u.split())
                for p, u in zip(PROMPTS, ugc)
            ]
        )
        return recall, off

    (r3, o3), (r6, o6) = quality(0.3), quality(0.6)
    assert 1.0 > r3 > r6 and 0.0 < o3 < o6


def test_a_clean_reference_scores_exactly_as_the_gold_reward():
    ys = _demos(SPEC, 1, 0)
    for p, u, (y,) in zip(PROMPTS, world.user_contents(PROMPTS, 0.0, 0), ys):
        assert world.reference_score(u, y) == pytest.approx(world.gold_reward(p, y))


def test_pugc_with_a_clean_reference_gives_the_annotators_pairs():
    samples, ann = _demos(SPEC, 4, 5), world.Annotator()
    pugc = world.label_pugc(PROMPTS, samples, world.user_contents(PROMPTS, 0.0, 0), ann, 7, "best_worst")
    ranked = world.label_ranked(PROMPTS, samples, ann, 7, "best_worst")
    assert [{k: v for k, v in p.items() if k != "reference_margin"} for p in pugc] == ranked


def test_pugc_chosen_is_the_reference_closer_best_and_rejected_the_worst():
    """A noiseless judge (T = 0, no length bias) given the UGC: chosen is the best of k by the reference
    score, rejected the worst (the paper's pairs); the rating is about the reference, not r*."""
    samples = _demos(SPEC, 4, 1)
    refs = world.user_contents(PROMPTS, 0.3, 0)
    pairs = world.label_pugc(PROMPTS, samples, refs, world.Annotator(temperature=0.0, length_bias=0.0), 0)
    assert len(pairs) == len({p["row"] for p in pairs}) > 0.9 * len(PROMPTS)  # one pair per prompt
    for pair in pairs:
        ref, ys = refs[pair["row"]], samples[pair["row"]]
        scores = [world.reference_score(ref, y) for y in ys]
        assert world.reference_score(ref, pair["chosen"]) == pytest.approx(max(scores))
        assert world.reference_score(ref, pair["rejected"]) == pytest.approx(min(scores))
        assert pair["reference_margin"] > 0
    # a noisy reference disagrees with r* more often than a clean one
    agree = {
        n: np.mean(
            [
                p["gold_margin"] > 0
                for p in world.label_pugc(
                    PROMPTS,
                    samples,
                    world.user_contents(PROMPTS, n, 0),
                    world.Annotator(temperature=0.0, length_bias=0.0),
                    0,
                )
            ]
        )
        for n in (0.0, 0.6)
    }
    assert agree[0.0] > agree[0.6]


# --- More is Less ----------------------------------------------------------------------------------


def test_the_strong_model_demonstrates_better_and_in_its_own_style():
    spec = world.WorldSpec(n_sft=300)
    strong, own = world.strong_sft_examples(spec), world.sft_examples(spec)
    assert [e["prompt"] for e in strong] == [e["prompt"] for e in own]
    assert all(e["completion"].split()[0] == world.STRONG_STYLE for e in strong)
    gold = {
        name: np.mean([world.gold_reward(e["prompt"], e["completion"]) for e in ex])
        for name, ex in (("strong", strong), ("own", own))
    }
    assert gold["strong"] > gold["own"] + 0.5
    assert np.mean([world.starts_with_style(e["completion"]) for e in own]) < 0.2
    assert WorldSource.sft_examples({**_source().sft_spec(), "n_sft": 300, "demonstrator": "strong"}) == strong


# --- keys and config ---------------------------------------------------------------------------------


def test_the_fields_reach_the_pairs_key_and_the_strong_model_is_a_dependency():
    base = plan(_compose())
    pugc = plan(_compose(["dataset.pair_source=pugc"]))
    noisier = plan(_compose(["dataset.pair_source=pugc", "dataset.ugc_noise=0.6"]))
    assert pugc.pairs["source"]["pugc"] == {"ugc_noise": 0.3}
    assert pugc.pairs["samples"] == base.pairs["samples"]  # the same on-policy samples, rated differently
    k0, k1, k2 = base.keys(), pugc.keys(), noisier.keys()
    assert k0["pref_samples"] == k1["pref_samples"] == k2["pref_samples"]
    assert len({k0["pairs"], k1["pairs"], k2["pairs"]}) == 3 and k1["policy"] != k2["policy"]

    multi = plan(_compose(["dataset.pair_models=multi"]))
    strong = multi.extra_sft["strong"]
    assert strong["data"] == {**base.sft["data"], "demonstrator": "strong"}
    assert {k: v for k, v in strong.items() if k != "data"} == {k: v for k, v in base.sft.items() if k != "data"}
    assert multi.pairs["extra_samples"]["strong"]["model"] == {"stage": "sft", "spec": strong}
    km = multi.keys()
    assert km["sft"] == k0["sft"] and km["pref_samples"] == k0["pref_samples"]
    assert {"sft_strong", "pref_samples_strong"} <= set(km) and km["pairs"] != k0["pairs"]
    assert plan(_compose(["dataset.pair_models=strong_chosen"])).keys()["pairs"] != km["pairs"]
    assert "sft_strong" not in k0 and "extra_samples" not in base.pairs  # single: today's keys


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["dataset.pair_source=ugc"], r"dataset.pair_source='ugc': allowed annotator, pugc"),
        (["dataset.pair_models=two"], r"dataset.pair_models='two': allowed single, multi, strong_chosen"),
        (["dataset.pair_source=pugc", "dataset.ugc_noise=1.5"], r"dataset.ugc_noise=1.5: allowed \[0, 1\]"),
        (["dataset.ugc_noise=0.5"], r"dataset.ugc_noise=0.5 is set but dataset.pair_source=annotator"),
        (["dataset.pair_source=pugc", "dataset.pair_models=multi"], r"one recipe at a time"),
        (["dataset.pair_models=strong_chosen", "dataset.k_samples=4"], r"dataset.k_samples must be 2"),
        (
            ["dataset.pair_source=pugc", "dataset.k_samples=4", "dataset.pair_strategy=list"],
            r"dataset.pair_strategy=list",
        ),
    ],
)
def test_bad_pair_data_settings_are_one_line_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        validate(_compose(overrides))
    assert "\n" not in str(e.value)


def test_the_recipes_validate():
    for ov in (
        ["dataset.pair_source=pugc", "dataset.ugc_noise=0.0"],
        ["dataset.pair_models=multi"],
        ["dataset.pair_models=multi", "dataset.k_samples=4", "dataset.pair_strategy=best_worst"],
        ["dataset.pair_models=strong_chosen"],
    ):
        validate(_compose(ov))

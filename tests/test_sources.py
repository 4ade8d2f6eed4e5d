"""po_bench.data.sources: the world's data source (the pairs its spec names, from on-policy samples: the
annotator's, PUGC's rated against user content, More is Less's across two models; its statistics and
gold metrics).  The world itself: tests/test_world.py; the recipes' keys and config errors:
tests/test_pair_data.py."""

from __future__ import annotations

import pytest

from po_bench.data import world
from po_bench.data.sources import WorldSource

from .conftest import compose
from .helpers import world_demos, world_source
from .helpers import world_k_samples as _k_samples

SPEC = world.WorldSpec(n_pref=300)
PROMPTS = world.make_prompts(SPEC, "pref")


def _demos(spec, k, seed, prefix=""):
    return world_demos(spec, PROMPTS, k, seed, prefix)


def _source(**fields):
    return world_source(SPEC.n_pref, **fields)


def test_k2_defaults_keep_todays_pairs():
    """dataset.k_samples=2 without a curriculum: the world source labels exactly as before (world.label_pairs)."""
    from po_bench.data.sources import WorldSource

    prompts, samples = _k_samples(k=2)
    src = WorldSource({**WorldSource.spec_of(__import__("po_bench.config", fromlist=["x"]).DatasetConfig(n_pref=24))})
    spec = src.pairs_spec()
    assert "ranking" not in spec
    art = WorldSource.make_pairs(spec, samples, 0)
    assert art["train"] == world.label_pairs(prompts, samples, world.Annotator(), 0) and "ordered" not in art


def test_pugc_source_builds_its_pairs_and_statistics():
    src = _source(pair_source="pugc", k_samples=4, pair_strategy="best_worst")
    spec = src.pairs_spec()
    assert spec["pugc"] == {"ugc_noise": 0.3} and spec["ranking"]["pair_strategy"] == "best_worst"
    art = WorldSource.make_pairs(spec, _demos(SPEC, 4, 2), 0)
    st = art["stats"]
    assert st["pair_source"] == "pugc" and st["n_pairs"] == len(art["train"])
    assert st["chosen_reference_closer"] > 0.8 and 0.5 < st["ugc_keyword_recall"] < 0.9
    assert art["train"][0]["chosen"] != art["train"][0]["rejected"]


STRONG = world.WorldSpec(demo_cover_prob=0.9, demo_offtopic_rate=0.3, demo_degenerate_prob=0.05)


def test_multi_model_pairs_take_chosen_from_the_stronger_model_and_separate_by_source():
    own, strong = _demos(SPEC, 2, 3), _demos(STRONG, 2, 4, f"{world.STRONG_STYLE} ")
    single = WorldSource.make_pairs(_source().pairs_spec(), own, 0)
    arts = {
        m: WorldSource.make_pairs(_source(pair_models=m).pairs_spec(), own, 0, extra={"strong": strong})
        for m in ("multi", "strong_chosen")
    }
    sc = arts["strong_chosen"]
    assert all(p["chosen_model"] == "strong" and p["rejected_model"] == "own" for p in sc["train"])
    assert sc["stats"]["chosen_from_strong"] == 1.0 and sc["stats"]["source_separability"] == 1.0
    m = arts["multi"]["stats"]
    assert m["cross_model_pairs"] == 1.0 and m["chosen_from_strong"] > 0.7  # the annotator mostly picks the strong
    assert m["gold_reward_strong"] > m["gold_reward_own"] and m["style_rate_strong"] == 1.0
    # the shortcut: the style word alone tells chosen from rejected in multi-model pairs, not in single-model ones
    sep = {
        name: WorldSource.describe(a["train"], None, 0)["feature_separability"]["style_word"]
        for name, a in (("single", single), ("multi", arts["multi"]), ("strong_chosen", sc))
    }
    assert abs(sep["single"] - 0.5) < 0.1 and sep["multi"] > 0.7 and sep["strong_chosen"] > 0.9


def test_style_word_rate_by_hand():
    """run.json's style_word_rate: the share of policy answers whose first word is the strong model's style
    word (``very``), style_word_rate_sft the same for the SFT answers on the same prompts."""
    from po_bench.data.sources import source_for

    src = source_for(compose().dataset)
    prompts = ["write about apple =>"] * 5
    policy = [" very apple", " apple very", " very", "", " veryapple"]  # yes, no (not first), yes, no, no
    sft = [" the apple", " very river the", " apple", " apple", " apple"]  # 1 of 5
    m = src.gold(prompts, policy, sft)
    assert (m["style_word_rate"], m["style_word_rate_sft"]) == (pytest.approx(2 / 5), pytest.approx(1 / 5))

"""po_bench.data.sources: the world's data source (the pairs its spec names, from on-policy samples: the
annotator's, PUGC's rated against user content, More is Less's across two models; its statistics and
gold metrics).  The world itself: tests/test_world.py; the recipes' keys and config errors:
tests/test_pair_data.py."""

from __future__ import annotations

import pytest

from po_bench.data import world
from po_bench.data.schema import DatasetConfig
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
    src = WorldSource({**WorldSource.spec_of(DatasetConfig(n_pref=24))})
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


# ---- a data source from outside po-bench: CONTRIBUTING.md's "A data source" recipe as a plug-in ---------------


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_a_source_from_outside_runs_through_the_pipeline(tiny_chat_model, tmp_path):
    """tests/plugins/toy_source.py (registered with @register_source, found through the po_bench.sources entry
    point) and its yaml (tests/plugins/conf/dataset/, through hydra.searchpath) feed a real DPO run: its pairs are
    the ones trained on, its held-out pairs measure implicit-reward accuracy, its gold scorer gives the gold
    metrics and the per-prompt rows; no file under po_bench/ names it."""
    import json
    import re

    from po_bench.data.sources import ENTRY_POINT_GROUP

    from .conftest import ROOT, run_cli
    from .helpers import PLUGIN_SEARCH_PATH, plugin_env

    named = re.compile(r"toy_source|toy_arith|\barith\b|ArithmeticSource")
    assert not [p for p in (ROOT / "po_bench").rglob("*.py") if named.search(p.read_text())]
    args = [
        "dataset=toy_arith",
        PLUGIN_SEARCH_PATH,
        "model.kind=hub",
        f"model.name_or_path={tiny_chat_model}",
        "model.name=tiny-chat",
        "judge=none",
        "loss=dpo",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.max_length=96",
        "generation.max_new_tokens=4",
        "generation.progress=false",
        "train.progress=false",
        "tracking=none",
        "threads=1",
        f"cache_dir={tmp_path}/cache",
    ]
    env = plugin_env(tmp_path, ENTRY_POINT_GROUP, {"toy_arith": "tests.plugins.toy_source"})
    r = run_cli([*args, f"hydra.run.dir={tmp_path}/run"], ROOT, env_extra=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "done", rec.get("error")
    m = rec["metrics"]
    assert m["data"]["conversion"] == {"source": "toy_arith", "rows": 64, "pairs": 64, "n_skipped": 0, "skipped": {}}
    assert m["data"]["tokens"]["n_pairs"] == 48 and m["implicit_reward_accuracy"] is not None
    (pairs_file,) = (tmp_path / "cache").rglob("pairs/*/data.json")
    pairs = json.loads(pairs_file.read_text())
    assert len(pairs["train"]) == 48 and len(pairs["eval"]) == 16
    assert all(p["prompt"].startswith("What is ") and p["chosen"] != p["rejected"] for p in pairs["train"])
    # the gold metrics are the plug-in's exact reward, recomputed here by hand from the answers
    rows = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and [r["prompt"] for r in rows] == [p["prompt"] for p in pairs["eval"]]
    by_hand = [
        float(r["policy"].split()[:1] == [str(sum(int(x) for x in r["prompt"][8:].split("?")[0].split(" + ")))])
        for r in rows
    ]
    assert m["gold_reward"] == pytest.approx(sum(by_hand) / 16) and [r["gold_policy"] for r in rows] == by_hand
    assert m["gold_reward_sft"] is not None and 0.0 <= m["win_rate_vs_sft"] <= 1.0
    # without the entry point the kind is unknown: one config error line, before any compute
    bad = run_cli([*args, f"hydra.run.dir={tmp_path}/bad"], ROOT)
    assert bad.returncode == 2, bad.stderr[-2000:]
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("po-bench: config error: dataset.kind='arith': allowed world, hf"), last

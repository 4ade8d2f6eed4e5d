"""The embedded world: determinism and the structure of its gold reward and annotator."""

import numpy as np
import pytest

from po_bench.data import world

from .helpers import world_k_samples as _k_samples


def test_world_is_deterministic_per_seed():
    a, b, c = world.WorldSpec(seed=3), world.WorldSpec(seed=3), world.WorldSpec(seed=4)
    for split in ("sft", "pref", "eval", "ood"):
        assert world.make_prompts(a, split) == world.make_prompts(b, split)
        assert world.make_prompts(a, split) != world.make_prompts(c, split)
    assert world.sft_examples(a) == world.sft_examples(b)
    assert world.sft_examples(a) != world.sft_examples(c)


def test_splits_have_the_documented_shape():
    spec = world.WorldSpec()
    ev, ood = world.make_prompts(spec, "eval"), world.make_prompts(spec, "ood")
    assert len(ev) == spec.n_eval and len(ood) == spec.n_ood
    assert all(p.startswith(world.ID_TEMPLATE) and p.endswith(world.PROMPT_END) for p in ev)
    assert all(spec.min_keywords <= len(world.parse_prompt(p)) <= spec.max_keywords for p in ev)
    # OOD: a different instruction and more keywords than any in-distribution prompt
    assert all(p.startswith(world.OOD_TEMPLATE + " ") for p in ood)
    assert all(len(world.parse_prompt(p)) >= spec.ood_keywords[0] > spec.max_keywords for p in ood)


def test_gold_reward_quality_length_and_degeneration():
    p = "write about apple river =>"
    # quality: covering keywords helps, off-topic content hurts
    assert world.gold_reward(p, "the apple and river") > world.gold_reward(p, "the apple and it")
    assert world.gold_reward(p, "the apple and river") > world.gold_reward(p, "the apple and river castle")
    # length: a true benefit for longer answers, capped
    assert world.gold_reward(p, "the apple and the river") > world.gold_reward(p, "apple river")
    w = world.RewardWeights()
    long_a = " ".join(["apple", "river"] + ["the", "a"] * 20)
    parts = world.reward_parts(["apple", "river"], long_a.split(), w)
    assert parts["length"] == pytest.approx(w.length * w.length_cap)
    # degeneration: immediate and content repetitions are penalised
    assert world.gold_reward(p, "the apple apple apple river") < world.gold_reward(p, "the apple and a river")
    assert world.reward_parts(["apple"], "apple apple".split())["degeneration"] == pytest.approx(
        w.immediate_repeat + w.content_repeat
    )


def test_annotator_bradley_terry_and_length_bias():
    ann = world.Annotator(temperature=0.5, length_bias=0.0)
    assert ann.p_first(1.0, 1.0, 3, 3) == pytest.approx(0.5)
    assert ann.p_first(1.5, 1.0, 3, 3) == pytest.approx(1 / (1 + np.exp(-1.0)))
    biased = world.Annotator(temperature=0.5, length_bias=0.1)
    assert biased.p_first(1.0, 1.0, 8, 3) > 0.5  # over-rewards length at equal gold reward
    assert world.Annotator(temperature=0.0).p_first(1.0, 0.9, 1, 1) == 1.0


def test_label_pairs_deterministic_and_consistent():
    spec = world.WorldSpec(n_pref=200)
    prompts = world.make_prompts(spec, "pref")
    rng = np.random.default_rng(0)
    samples = [[world.demonstrate(spec, p, rng), world.demonstrate(spec, p, rng)] for p in prompts]
    ann = world.Annotator()
    a = world.label_pairs(prompts, samples, ann, seed=1)
    assert a == world.label_pairs(prompts, samples, ann, seed=1)
    assert a != world.label_pairs(prompts, samples, ann, seed=2)
    for pair in a:
        assert {pair["chosen"], pair["rejected"]} == set(samples[pair["row"]])
    # a BT annotator at T=0.5 agrees with the gold reward more often than chance
    assert np.mean([p["gold_margin"] > 0 for p in a]) > 0.6
    strict = world.gold_pairs(prompts, samples)
    assert all(
        world.gold_reward(p["prompt"], p["chosen"]) > world.gold_reward(p["prompt"], p["rejected"]) for p in strict
    )


def test_heldout_prompts_share_no_keyword_set_with_training_prompts():
    """Eval and OOD prompts are drawn from held-out keyword sets only; SFT and preference prompts from
    the rest: no held-out prompt's keyword set (and so no prompt text) occurs in training."""
    from po_bench.data.formats.leakage import leakage

    spec = world.WorldSpec(n_sft=3000, n_pref=1600, n_eval=512, n_ood=256)
    split = {s: world.make_prompts(spec, s) for s in ("sft", "pref", "eval", "ood")}
    train = {frozenset(world.parse_prompt(p)) for s in ("sft", "pref") for p in split[s]}
    for s in ("eval", "ood"):
        assert not train & {frozenset(world.parse_prompt(p)) for p in split[s]}
    leak = leakage(split["pref"] + split["sft"], {"world_eval": split["eval"], "world_ood": split["ood"]})
    assert leak["world_eval"]["count"] == 0 and leak["world_ood"]["count"] == 0
    # the held-out part is a quarter of the keyword sets, fixed by the world's seed
    assert all(world.heldout_keywords(world.parse_prompt(p), spec.seed) for p in split["eval"])


# ---- k samples per prompt ranked by the annotator (Curry-DPO) ----------------------------------------------


def test_ranked_pairs_strategies_and_counts():
    prompts, samples = _k_samples()
    ann = world.Annotator()
    n = {s: world.label_ranked(prompts, samples, ann, 0, s) for s in world.PAIR_STRATEGIES}
    distinct = [len({y.strip() for y in ys}) for ys in samples]
    assert len(n["best_vs_rest"]) == len(n["adjacent"]) == sum(d - 1 for d in distinct)
    assert len(n["best_worst"]) == sum(d > 1 for d in distinct)
    assert len(n["all"]) == sum(d * (d - 1) // 2 for d in distinct)
    for p in n["best_vs_rest"]:  # the top-rated response is the chosen one of every pair of its prompt
        assert p["ranks"][0] == 0 and p["gap"] >= 0
    top = {p["row"]: p["chosen"] for p in n["best_vs_rest"]}
    assert all(p["chosen"] == top[p["row"]] for p in n["best_vs_rest"])


def test_curriculum_orders_pairs_easy_to_hard():
    prompts, samples = _k_samples()
    pairs = world.label_ranked(prompts, samples, world.Annotator(), 0, "best_vs_rest", "easy_to_hard")
    gaps = [p["gap"] for p in pairs]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > gaps[-1]
    plain = world.label_ranked(prompts, samples, world.Annotator(), 0, "best_vs_rest", "none")
    assert sorted(map(str, plain)) == sorted(map(str, pairs))  # the same pairs, another order
    assert [p["row"] for p in plain] == sorted(p["row"] for p in plain)


def test_ranking_is_the_bradley_terry_annotator_in_distribution():
    """Ranking by s + T*Gumbel is a Plackett-Luce draw: the frequency with which a ranks above b is the
    annotator's P(a > b) = sig((s_a - s_b) / T)."""
    prompt = "write about apple river =>"
    a, b, c = " apple river the apple", " river stone", " the old garden"
    ann = world.Annotator(temperature=0.5, length_bias=0.03)
    rng = np.random.default_rng(1)
    n, above = 4000, 0
    for _ in range(n):
        order = [d["response"] for d in world.rate_samples(prompt, [a, b, c], ann, rng)]
        above += order.index(a) < order.index(b)
    want = ann.p_first(world.gold_reward(prompt, a), world.gold_reward(prompt, b), len(a.split()), len(b.split()))
    assert abs(above / n - want) < 0.03, (above / n, want)

"""The embedded world: determinism and the structure of its gold reward and annotator."""

import numpy as np
import pytest

from po_bench.data import world


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
        w.immediate_repeat + w.content_repeat)


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
    assert all(world.gold_reward(p["prompt"], p["chosen"]) > world.gold_reward(p["prompt"], p["rejected"]) for p in strict)


def test_tokenizer_round_trips_world_text(tokenizer):
    text = "write about apple river => the apple and river"
    ids = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(tokenizer) == len(world.vocabulary())

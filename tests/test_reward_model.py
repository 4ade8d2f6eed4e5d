"""The reward-model judge (po_bench/judges/reward_model.py) on a tiny LlamaForSequenceClassification."""

from __future__ import annotations

import pytest


def test_reward_model_judge(tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from po_bench.data import world
    from po_bench.judges.reward_model import RewardModelJudge

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForSequenceClassification(cfg).eval()
    judge = RewardModelJudge({"batch_size": 3}, model=model, tokenizer=tokenizer)
    prompts = world.make_prompts(world.WorldSpec(n_eval=7), "eval")
    a = [" apple river the", " stone", " the the the the", " castle and a meadow", " ember", " quartz near", " old"]
    b = [" river", " stone stone a", " garden", " castle", " ember ember", " quartz", " old"]
    ra, rb = judge.score(prompts, a), judge.score(prompts, b)
    # padding in a batch does not change a reward (the last real token is pooled)
    single = [judge.score([p], [y])[0] for p, y in zip(prompts, a)]
    assert ra == pytest.approx(single, abs=1e-5)
    res = judge.evaluate(prompts, a, b)
    wins = sum((x > y) + 0.5 * (x == y) for x, y in zip(ra, rb)) / len(ra)
    assert res.metrics["win_rate_vs_sft"] == pytest.approx(wins)
    ties = sum(x == y for x, y in zip(ra, rb))
    assert ra[-1] == rb[-1] and ties >= 1  # the last pair is equal: the world where ties get counted
    assert res.metrics["reward"] == pytest.approx(sum(ra) / 7) and res.metrics["n_ties"] == ties
    assert judge.evaluate(prompts, b, a).metrics["win_rate_vs_sft"] == pytest.approx(1 - wins)

"""TRL's OnlineDPOTrainer (trl.experimental, po_bench/training/trl/online_dpo.py: its reward callable the world's
gold reward) and po-bench's own online loop (po_bench/training/online.py, loss=online_dpo with the gold labeller)
agree on the world at the same settings within seed noise: both raise the gold reward of the policy's samples on
held-out prompts, by amounts whose difference is within three standard errors over the seeds."""

from __future__ import annotations

import copy
import math
import statistics

import pytest
from omegaconf import OmegaConf

from po_bench.data import world
from po_bench.generation.generate import generate_hf
from po_bench.training import models
from po_bench.training.labellers import labeller_for
from po_bench.training.online import LoopInputs, train_online
from po_bench.training.trl.online_dpo import reward_function, train_trl_online_dpo

SPEC = world.WorldSpec(n_pref=64, n_eval=64)
PREF, EVAL = world.make_prompts(SPEC, "pref"), world.make_prompts(SPEC, "eval")
GEN = OmegaConf.create(
    {"backend": "hf", "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "batch_size": 128, "progress": False}
)
TRAIN = OmegaConf.create(
    {
        "batch_size": 8,
        "grad_accum": 1,
        "max_steps": 20,
        "epochs": 1.0,
        "max_length": 48,
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
    }
)
BETA, LR, SEEDS = 0.1, 2e-3, (0, 1, 2, 3)


def _gold(model, tokenizer) -> float:
    side = tokenizer.padding_side
    try:  # the mean exact reward of two samples per held-out eval prompt (fixed seeds)
        return statistics.mean(
            world.gold_reward(p, y)
            for s in (100, 101)
            for p, y in zip(EVAL, generate_hf(model, tokenizer, EVAL, GEN, s))
        )
    finally:
        tokenizer.padding_side = side


def _gain(which: str, seed: int, tokenizer, tmp_path) -> float:
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128, seed=seed)
    ref = copy.deepcopy(model)
    before = _gold(model, tokenizer)
    if which == "po-bench":
        gold = labeller_for({"kind": "gold", "temperature": 0.0})
        inp = LoopInputs(model, tokenizer, PREF, "online_dpo", {}, BETA, LR, TRAIN, GEN, seed, gold, ref_model=ref)
        res = train_online(inp)
    else:
        res = train_trl_online_dpo(model, ref, tokenizer, PREF, BETA, LR, TRAIN, GEN, world.gold_reward, seed, tmp_path)
        assert res["steps"] == TRAIN.max_steps
    return _gold(res["model"], tokenizer) - before


def test_the_reward_callable_scores_every_completion_with_the_source():
    f = reward_function(world.gold_reward)
    ps, ys = ["write about apple =>"] * 2, [" the apple", " cat cat"]
    assert f(prompts=ps, completions=ys, completion_ids=[[1], [2]]) == [world.gold_reward(p, y) for p, y in zip(ps, ys)]


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_po_bench_loop_and_trl_online_dpo_agree_within_seed_noise(tokenizer, tmp_path):
    gains = {w: [_gain(w, s, tokenizer, tmp_path) for s in SEEDS] for w in ("po-bench", "trl")}
    means = {w: statistics.mean(g) for w, g in gains.items()}
    se = math.sqrt(sum(statistics.variance(g) / len(g) for g in gains.values()))
    print(f"gold reward gain over {len(SEEDS)} seeds: {gains} means {means} se(diff) {se:.3f}")
    assert means["po-bench"] > 3 * statistics.stdev(gains["po-bench"]) / math.sqrt(len(SEEDS))  # it learns
    assert means["trl"] > 3 * statistics.stdev(gains["trl"]) / math.sqrt(len(SEEDS))
    assert abs(means["po-bench"] - means["trl"]) < 3 * se

"""The embedded world's gold judge: the true reward r* of each sample.

``gold_metrics``: mean r* of policy and SFT samples on the same held-out prompts, win rate of the
policy sample over the SFT sample (ties count half), mean length in words.
"""

from __future__ import annotations

import numpy as np

from po_bench.data import world


def gold_metrics(prompts, policy_samples, sft_samples, weights=world.RewardWeights()) -> dict:
    rp = np.array([world.gold_reward(p, y, weights) for p, y in zip(prompts, policy_samples)])
    rs = np.array([world.gold_reward(p, y, weights) for p, y in zip(prompts, sft_samples)])
    wins = (rp > rs).astype(float) + 0.5 * (rp == rs)
    return {
        "gold_reward": float(rp.mean()),
        "gold_reward_sft": float(rs.mean()),
        "win_rate_vs_sft": float(wins.mean()),
        "mean_length_words": float(np.mean([len(y.split()) for y in policy_samples])),
    }

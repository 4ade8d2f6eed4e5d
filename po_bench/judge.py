"""Judging stage: the gold reward on the embedded world, and the implicit-reward evaluation.

* ``gold_metrics``: mean r* of policy and SFT samples on the same held-out prompts, win rate of
  the policy sample over the SFT sample (ties count half), mean length.
* ``implicit_reward_accuracy``: how often the trained policy's implicit reward ranks the better
  response (by r*) of a held-out pair higher (ties count half).  The implicit reward is
  ``beta * log(pi/ref)`` for reference-based losses and ``beta * mean token log pi`` for
  reference-free ones (SimPO's reward; also used for the SFT baseline).
* ``kl_to_ref``: mean over policy samples of log pi(y|x) - log ref(y|x), the standard unbiased
  Monte-Carlo estimate of the sequence-level KL(pi || ref).
"""

from __future__ import annotations

import numpy as np

from . import world
from .logprobs import completion_logps


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


def implicit_rewards(policy, ref, tokenizer, prompts, completions, kind: str, beta: float, batch_size=128):
    lp, n = completion_logps(policy, tokenizer, prompts, completions, batch_size)
    if kind == "avg_logp":
        return beta * lp / n.clamp(min=1)
    lr, _ = completion_logps(ref, tokenizer, prompts, completions, batch_size)
    return beta * (lp - lr)


def implicit_reward_accuracy(policy, ref, tokenizer, pairs, kind: str, beta: float) -> float:
    if not pairs:
        return float("nan")
    prompts = [p["prompt"] for p in pairs]
    rc = implicit_rewards(policy, ref, tokenizer, prompts, [p["chosen"] for p in pairs], kind, beta)
    rr = implicit_rewards(policy, ref, tokenizer, prompts, [p["rejected"] for p in pairs], kind, beta)
    return float(((rc > rr).float() + 0.5 * (rc == rr).float()).mean())


def kl_and_length(policy, ref, tokenizer, prompts, samples) -> dict:
    lp, n = completion_logps(policy, tokenizer, prompts, samples)
    lr, _ = completion_logps(ref, tokenizer, prompts, samples)
    return {"kl_to_ref": float((lp - lr).mean()), "mean_length": float(n.float().mean())}

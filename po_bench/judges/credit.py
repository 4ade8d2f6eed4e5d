"""Token-level credit assignment of a trained policy, against the world's exact token gains.

"From r to Q*" (Rafailov et al. 2024) reads beta * log(pi(y_t | x, y_<t) / pi_ref(y_t | x, y_<t)) as the
credit the DPO policy assigns to token t (its implicit reward is their sum).  The embedded world knows the
true credit of every token: :func:`po_bench.data.world.token_gains`, r*(prefix + word) - r*(prefix), one
word one token (its tokenizer is word-level), summing to r*(x, y).  :func:`token_credit` compares the two on
a set of responses:

* ``token_credit_spearman``: the rank correlation of implicit and true credit over every response token
  (scipy's Spearman, ties averaged; the EOS token has no true credit and is left out);
* ``token_credit_on_reward_tokens``: the share of the implicit credit's mass (sum of |credit|) that lands on
  the tokens that carry the gold reward beyond length (a keyword covered, an off-topic or repeated word:
  the tokens whose true gain differs from the per-token length reward), beside
  ``reward_token_share``, the share of the tokens that are such tokens (what credit spread evenly would
  give).

``diagnostics.token_credit`` (the world) measures them on a run's held-out eval pairs (:func:`pair_responses`:
both responses of every pair the gold reward labels from the held-out SFT samples, as the implicit-reward
accuracy's pairs), with the run's beta and the start checkpoint as the reference: the ``token_credit``
artifact (po_bench/stages.py), ``metrics["diagnostics"]["token_credit"]`` (po_bench/judges/r_to_q.py).
"""

from __future__ import annotations

import math

import torch

from po_bench.data import world
from po_bench.generation.logprobs import (
    MAX_BATCH_TOKENS,
    right_padded,
    token_batches,
    token_logps,
    tokenize_completion,
)


def completion_token_logps(model, tokenizer, prompts, completions, batch_size: int = 64, max_length=None):
    """log pi of each completion token (a list per completion, EOS included), in right-padded batches."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [tokenize_completion(tokenizer, p, c) for p, c in zip(prompts, completions)]
    seqs = [(p + c)[:max_length] if max_length else p + c for p, c in encoded]
    out: list[list[float]] = [[] for _ in seqs]
    with torch.no_grad():
        for idx in token_batches([len(s) for s in seqs], batch_size, MAX_BATCH_TOKENS):
            ids, attn = (t.to(device) for t in right_padded([seqs[i] for i in idx], pad))
            lp = token_logps(model(input_ids=ids, attention_mask=attn).logits[:, :-1], ids[:, 1:]).cpu()
            for row, i in enumerate(idx):
                start = len(encoded[i][0])  # the first completion token is predicted at position start - 1
                out[i] = lp[row, start - 1 : len(seqs[i]) - 1].tolist()
    return out


def reward_tokens(prompt: str, response: str, gains: list[float], w=world.RewardWeights()) -> list[bool]:
    """Which words carry gold reward beyond length: their gain differs from the per-token length reward."""
    out = []
    for k, g in enumerate(gains):
        length_only = w.length if k < w.length_cap else 0.0
        out.append(abs(g - length_only) > 1e-9)
    return out


def pair_responses(prompts, samples) -> tuple[list[str], list[str]]:
    """(prompt, response) of both responses of every held-out eval pair (world.gold_pairs: the pairs the
    implicit-reward accuracy is measured on; a pair of equal gold reward is left out)."""
    pairs = world.gold_pairs(prompts, samples)
    return [p["prompt"] for p in pairs for _ in (0, 1)], [y for p in pairs for y in (p["chosen"], p["rejected"])]


def token_credit(policy, ref, tokenizer, prompts, responses, beta: float) -> dict:
    """The module docstring's numbers for world ``responses`` to ``prompts`` (one per prompt)."""
    from scipy.stats import spearmanr  # lazy: scipy (~0.3 s): only for this diagnostic

    lp = completion_token_logps(policy, tokenizer, prompts, responses)
    lr = completion_token_logps(ref, tokenizer, prompts, responses)
    credit, truth, on_reward, mass, n_reward, n_tokens = [], [], 0.0, 0.0, 0, 0
    for prompt, response, a, b in zip(prompts, responses, lp, lr):
        gains = world.token_gains(prompt, response)
        c = [beta * (x - y) for x, y in zip(a, b)][: len(gains)]  # the words; EOS (last) has no true gain
        flags = reward_tokens(prompt, response, gains)[: len(c)]
        credit += c
        truth += gains[: len(c)]
        on_reward += sum(abs(x) for x, f in zip(c, flags) if f)
        mass += sum(abs(x) for x in c)
        n_reward += sum(flags)
        n_tokens += len(c)
    rho = spearmanr(credit, truth).statistic if len(set(credit)) > 1 and len(set(truth)) > 1 else math.nan
    return {
        "token_credit_spearman": float(rho),
        "token_credit_on_reward_tokens": on_reward / mass if mass > 0 else math.nan,
        "reward_token_share": n_reward / n_tokens if n_tokens else math.nan,
        "token_credit_tokens": n_tokens,
    }

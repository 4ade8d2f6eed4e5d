"""Judges every run gets, on any data: the implicit-reward accuracy and the KL to the reference.

* ``implicit_reward_accuracy``: how often the trained policy's implicit reward ranks the better
  response (by r*) of a held-out pair higher (ties count half).  The implicit reward is
  ``beta * log(pi/ref)`` for reference-based losses and ``beta * mean token log pi`` for
  reference-free ones (SimPO's reward; also used for the SFT baseline).
* ``kl_to_ref``: mean over policy samples of log pi(y|x) - log ref(y|x), the standard unbiased
  Monte-Carlo estimate of the sequence-level KL(pi || ref).
"""

from __future__ import annotations

from po_bench.generation.logprobs import completion_logps


def implicit_rewards(
    policy, ref, tokenizer, prompts, completions, kind: str, beta: float, batch_size=128, max_length=None
):
    lp, n = completion_logps(policy, tokenizer, prompts, completions, batch_size, max_length)
    if kind == "avg_logp":
        return beta * lp / n.clamp(min=1)
    lr, _ = completion_logps(ref, tokenizer, prompts, completions, batch_size, max_length)
    return beta * (lp - lr)


def implicit_margins(policy, ref, tokenizer, pairs, kind: str, beta: float, max_length=None):
    """The implicit reward's margin r(x, y_w) - r(x, y_l) on every pair (a tensor), each sequence cut to
    ``max_length`` tokens when given."""
    prompts = [p["prompt"] for p in pairs]
    rc = implicit_rewards(policy, ref, tokenizer, prompts, [p["chosen"] for p in pairs], kind, beta, 128, max_length)
    rr = implicit_rewards(policy, ref, tokenizer, prompts, [p["rejected"] for p in pairs], kind, beta, 128, max_length)
    return rc - rr


def implicit_reward_accuracy(policy, ref, tokenizer, pairs, kind: str, beta: float) -> float:
    if not pairs:
        return float("nan")
    m = implicit_margins(policy, ref, tokenizer, pairs, kind, beta)
    return float(((m > 0).float() + 0.5 * (m == 0).float()).mean())


def kl_and_length(policy, ref, tokenizer, prompts, samples) -> dict:
    lp, n = completion_logps(policy, tokenizer, prompts, samples)
    lr, _ = completion_logps(ref, tokenizer, prompts, samples)
    return {"kl_to_ref": float((lp - lr).mean()), "mean_length": float(n.float().mean())}

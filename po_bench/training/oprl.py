"""OPRL's loop (``loss=oprl``; Liu et al. 2025, "Online Process Reward Learning for Agentic Reinforcement
Learning", arXiv:2509.19199), built on the online loop's pieces (po_bench/training/online.py: prompt batches,
generation seeds, per-token log-probs, phase timing, the result).  Each step, alternately (the paper's rollout,
PRM optimisation, policy optimisation):

1. n samples of the current policy per prompt (one generation call), each scored by the preference source's
   scalar reward (the outcome r_o: the world's gold r*, or the annotator's biased score; one label per sample).
   The policy as it sampled is the previous policy snapshot pi_old (one update per batch: its log-probs are the
   policy's own before the step, detached).
2. The implicit PRM pi_prm (its own copy of the start checkpoint and its own AdamW at the loss's lr) takes one
   step on the trajectory DPO loss (:func:`~po_bench.training.online_losses.oprl_prm_losses`) over every pair of
   the same prompt's samples with different outcomes (the higher preferred; ties give no pair).
3. The updated PRM's step rewards on the world's steps of each sample (po_bench/data/world.py ``split_steps``:
   a step is a clause up to a content word; a token belongs to the step its characters end in):
   beta * sum over the step's tokens of log(pi_prm/pi_old) (:func:`~po_bench.training.online_losses.oprl_step_rewards`).
4. Each token's advantage A_E + alpha * A_S (:func:`~po_bench.training.online_losses.oprl_token_advantages`) and
   one AdamW step on GRPO's clipped surrogate (:func:`~po_bench.training.online_losses.grpo_losses`).

Each step also scores how well the step rewards rank the steps as the world does: the Spearman correlation of
the step rewards with the world's exact step gains (world.step_gains: r*(prefix + step) - r*(prefix)) over every
step of the step's samples; run.json ``metrics.online.oprl`` has the first, last and mean, the first and last
steps' numbers are kept in ``online_record``.  ``ties_dropped`` counts the same-prompt sample pairs with equal
outcomes (no PRM pair), ``prm_pairs`` the pairs the PRM trained on.
"""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import torch
from scipy.stats import spearmanr

from po_bench.data import world
from po_bench.generation.generate import generate_hf
from po_bench.training.online import (
    MAX_GRAD_NORM,
    LoopInputs,
    Phases,
    adamw,
    completion_token_logps,
    gen_seed,
    loop_result,
    new_counts,
    prompt_batches,
    steps_of,
)
from po_bench.training.online_losses import (
    grpo_losses,
    online_args,
    oprl_prm_losses,
    oprl_step_rewards,
    oprl_token_advantages,
)


def token_steps(tokenizer, ids: list[int]) -> list[int]:
    """The world step (po_bench/data/world.py ``split_steps`` of the decoded, stripped response) of each sampled
    token: the step whose end is the first at or after the token's last character; a token before the first
    character (leading space) is in step 0, one after the last step's end (a trailing space, the end-of-sequence
    token) in the last step; -1 for every token of a response without steps."""
    full = tokenizer.decode(ids, skip_special_tokens=True)
    lead = len(full) - len(full.lstrip())
    ends = world.step_ends(full.strip())
    if not ends:
        return [-1] * len(ids)
    out = []
    for k in range(len(ids)):
        e = len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True)) - lead
        out.append(min(bisect_left(ends, e), len(ends) - 1))
    return out


def step_index(mask, steps_of_tokens: list[list[int]]):
    """[B, T] step index of each completion position of ``mask`` (the k-th completion position of row i holds
    token k's step), -1 elsewhere (and for tokens cut at max_length)."""
    out = torch.full(mask.shape, -1, dtype=torch.long)
    for i, st in enumerate(steps_of_tokens):
        pos = torch.nonzero(mask[i] > 0).flatten().cpu()
        k = min(len(pos), len(st))
        out[i, pos[:k]] = torch.tensor(st[:k], dtype=torch.long)
    return out.to(mask.device)


def group_pairs(rewards: list[float], n: int) -> list[tuple[int, int]]:
    """(preferred row, other row) for every two samples of the same prompt (rows g*n .. g*n + n-1) whose outcomes
    differ."""
    out = []
    for g in range(len(rewards) // n):
        for i in range(g * n, (g + 1) * n):
            for j in range(i + 1, (g + 1) * n):
                if rewards[i] != rewards[j]:
                    out.append((i, j) if rewards[i] > rewards[j] else (j, i))
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    """scipy's Spearman correlation, None when it is undefined (fewer than 2 values, or a constant side)."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def train_oprl(inp: LoopInputs) -> dict:
    """Train ``inp.policy`` with OPRL (module docstring); ``inp.ref_model`` the implicit PRM (a copy of the start
    checkpoint), ``inp.step_gains(prompt, response)`` the world's exact gain of each of the response's steps,
    ``inp.gold`` the exact reward logged for the policy's samples.  Returns what
    :func:`po_bench.training.online.train_online` returns, with ``online.oprl`` (the step rewards' Spearman
    correlation with the step gains, first / last / mean)."""
    policy, prm, tokenizer, prompts, args = inp.policy, inp.ref_model, inp.tokenizer, inp.prompts, inp.args
    beta, lr, train, gen_cfg, labeller, seed = inp.beta, inp.lr, inp.train, inp.gen, inp.labeller, inp.seed
    step_gains, gold, logging_steps = inp.step_gains, inp.gold, inp.logging_steps
    a = online_args("oprl", args)
    n, alpha, clip = int(a["n"]), float(a["alpha"]), float(a["clip"])
    if not hasattr(labeller, "rewards"):
        raise ValueError(f"the {labeller.name} preference source gives no scalar reward (oprl's outcome is one)")
    batch = int(train.batch_size) * int(train.grad_accum)
    steps = steps_of(train, len(prompts))
    max_length = int(train.max_length)

    opt, sched = adamw([p for p in policy.parameters() if p.requires_grad], lr, train, steps)
    prm_opt, prm_sched = adamw([p for p in prm.parameters() if p.requires_grad], lr, train, steps)
    phases = Phases()
    counts = new_counts(prm_pairs=0)
    history: list[dict] = []
    record: list[dict] = []
    rhos: list[tuple[int, float]] = []  # (step, rho) where the correlation is defined
    last_loss = None
    for step, xs in enumerate(prompt_batches(prompts, batch, steps, seed)):
        rep = [x for x in xs for _ in range(n)]  # prompt g's samples are rows g*n .. g*n + n-1
        with phases.timed("generate"):
            ys, ids = generate_hf(policy, tokenizer, rep, gen_cfg, gen_seed(seed, step, 0), "online samples", True)
        counts["samples_generated"] += len(rep)
        with phases.timed("label"):
            r = [float(v) for v in labeller.rewards(rep, ys)]
        counts["labels_requested"] += len(rep)
        counts["labels_used"] += len(rep)
        with phases.timed("train"):
            policy.train()
            prm.train()
            tok, mask = completion_token_logps(policy, tokenizer, rep, ids, max_length)
            old = tok.detach()  # pi_old: the policy that sampled, before this step's update
            pairs = group_pairs(r, n)
            counts["prm_pairs"] += len(pairs)
            counts["ties_dropped"] += len(xs) * n * (n - 1) // 2 - len(pairs)
            prm_loss = None
            if pairs:
                prm_tok, _ = completion_token_logps(prm, tokenizer, rep, ids, max_length)
                prm_seq, old_seq = (prm_tok * mask).sum(-1), (old * mask).sum(-1)
                w, l_ = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
                loss_prm = oprl_prm_losses(prm_seq[w], old_seq[w], prm_seq[l_], old_seq[l_], beta).mean()
                loss_prm.backward()
                torch.nn.utils.clip_grad_norm_(prm.parameters(), MAX_GRAD_NORM)
                prm_opt.step()
                prm_opt.zero_grad(set_to_none=True)
                prm_loss = float(loss_prm.detach())
            else:
                counts["steps_without_pairs"] += 1
            prm_sched.step()
            with torch.no_grad():  # the updated PRM's step rewards
                prm_tok, _ = completion_token_logps(prm, tokenizer, rep, ids, max_length)
            per_tok = [token_steps(tokenizer, list(c)) for c in ids]
            token_step = step_index(mask, per_tok)
            n_steps = [max(s) + 1 if s and max(s) >= 0 else 0 for s in per_tok]
            S = max(n_steps)
            step_r = oprl_step_rewards(prm_tok, old, token_step, S, beta)
            step_mask = torch.tensor([[1.0] * k + [0.0] * (S - k) for k in n_steps]).to(step_r.device)
            outcome = torch.tensor(r, dtype=tok.dtype, device=tok.device).view(len(xs), n)
            adv, a_e, _ = oprl_token_advantages(outcome, step_r, step_mask, token_step, alpha)
            loss = grpo_losses(tok, old, adv, mask, clip).mean()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        prm_r = [[float(v) for v in step_r[i, : n_steps[i]]] for i in range(len(rep))]
        gains = [[float(v) for v in step_gains(x, y)][: n_steps[i]] for i, (x, y) in enumerate(zip(rep, ys))]
        flat_r = [v for i, row in enumerate(prm_r) for v in row[: len(gains[i])]]
        flat_g = [v for row in gains for v in row]
        rho = spearman(flat_r, flat_g)
        if rho is not None:
            rhos.append((step + 1, rho))
        if step == 0 or step == steps - 1:
            record.append(
                {
                    "step": step,
                    "prompts": list(xs),
                    "samples": [list(ys[g * n : (g + 1) * n]) for g in range(len(xs))],
                    "rewards": r,
                    "step_rewards": prm_r,
                    "step_gains": gains,
                    "spearman": rho,
                }
            )
        last_loss = float(loss.detach())
        entry = {
            "step": step + 1,
            "labels_used": len(rep),
            "rows": len(rep),
            "loss": last_loss,
            "prm_loss": prm_loss,
            "prm_pairs": len(pairs),
            "grad_norm": float(grad_norm),
            "reward_mean": float(np.mean(r)),
            "step_reward_spearman": rho,
            "advantage_abs": float((adv.abs() * mask).sum() / mask.sum().clamp(min=1)),
            "outcome_advantage_abs": float(a_e.abs().mean()),
            "learning_rate": float(sched.get_last_lr()[0]),
        }
        if gold is not None:
            entry["gold_reward"] = float(np.mean([gold(x, y) for x, y in zip(rep, ys)]))
        history.append(entry)
    prm.eval()
    res = loop_result(policy, history, last_loss, steps, batch, logging_steps, counts, phases, record)
    res["online"]["oprl"] = {  # (the first step's is undefined while its PRM is the start: warmup's lr 0)
        "step_reward_spearman_first": rhos[0][1] if rhos else None,
        "step_reward_spearman_first_step": rhos[0][0] if rhos else None,
        "step_reward_spearman_last": rhos[-1][1] if rhos else None,
        "step_reward_spearman_last_step": rhos[-1][0] if rhos else None,
        "step_reward_spearman_mean": float(np.mean([v for _, v in rhos])) if rhos else None,
        "steps_scored": len(rhos),
    }
    return res

"""RTO's loop (``loss=rto``; Zhong et al. 2024, "DPO Meets PPO: Reinforced Token Optimization for RLHF"),
built on the online loop's pieces (po_bench/training/online.py: prompt batches, generation seeds, per-token
log-probs, phase timing).  Each step: two samples of the current policy per prompt (the project's generation
code), each scored by the sparse reward (the world's gold r*: one label per sample), the per-token reward of
:func:`po_bench.training.online_losses.rto_token_rewards` (the stored DPO guide policy's clipped token log-ratio
when ``dense``, the KL penalty to the fixed reference, the sparse reward at the end), and one AdamW step on
REINFORCE with the other sample of the prompt as the baseline (:func:`~po_bench.training.online_losses.reinforce_losses`).
REINFORCE, not PPO: one gradient step per fresh batch makes PPO's ratio 1 (its clip never acts), and a critic
on the tiny world would be a second model to train for a variance reduction the leave-one-out baseline gives.
"""

from __future__ import annotations

import numpy as np
import torch

from po_bench.generation.generate import generate_hf
from po_bench.training.online import (
    MAX_GRAD_NORM,
    LoopInputs,
    Phases,
    adamw,
    completion_token_logps,
    frozen,
    gen_seed,
    loop_result,
    new_counts,
    prompt_batches,
    steps_of,
)
from po_bench.training.online_losses import online_args, reinforce_losses, rto_token_rewards


def train_rto(inp: LoopInputs) -> dict:
    """Train ``inp.policy`` with RTO (module docstring); ``inp.ref_model`` the fixed reference, ``inp.guide`` the
    DPO guide (None when not dense), ``inp.gold`` the sparse reward.  Returns what
    :func:`po_bench.training.online.train_online` returns (the counts: one label per sample)."""
    policy, ref_model, guide_model, tokenizer = inp.policy, inp.ref_model, inp.guide, inp.tokenizer
    prompts, args, beta, lr, train, gen_cfg = inp.prompts, inp.args, inp.beta, inp.lr, inp.train, inp.gen
    gold, seed, logging_steps = inp.gold, inp.seed, inp.logging_steps
    a = online_args("rto", args)
    dense, clip, kl_coef = bool(a["dense"]), float(a["clip"]), float(a["kl_coef"])
    if dense and guide_model is None:
        raise ValueError("rto with dense: true needs the DPO guide policy")
    batch = int(train.batch_size) * int(train.grad_accum)
    steps = steps_of(train, len(prompts))
    max_length = int(train.max_length)
    frozen(ref_model, guide_model)
    opt, sched = adamw([p for p in policy.parameters() if p.requires_grad], lr, train, steps)
    phases = Phases()
    counts = new_counts()
    history: list[dict] = []
    record: list[dict] = []
    last_loss = None
    for step, xs in enumerate(prompt_batches(prompts, batch, steps, seed)):
        with phases.timed("generate"):
            first, first_ids = generate_hf(
                policy, tokenizer, xs, gen_cfg, gen_seed(seed, step, 0), "online samples", True
            )
            second, second_ids = generate_hf(
                policy, tokenizer, xs, gen_cfg, gen_seed(seed, step, 1), "online samples", True
            )
        counts["samples_generated"] += 2 * len(xs)
        policy.train()
        ps, ys, texts = xs + xs, list(first_ids) + list(second_ids), first + second
        with phases.timed("label"):
            sparse = [float(gold(x, y)) for x, y in zip(ps, texts)]
        counts["labels_requested"] += len(ps)
        counts["labels_used"] += len(ps)
        with phases.timed("train"):
            tok, mask = completion_token_logps(policy, tokenizer, ps, ys, max_length)
            with torch.no_grad():
                ref_tok, _ = completion_token_logps(ref_model, tokenizer, ps, ys, max_length)
                guide_tok = completion_token_logps(guide_model, tokenizer, ps, ys, max_length)[0] if dense else None
            rewards = rto_token_rewards(
                tok.detach(), ref_tok, guide_tok, mask, torch.tensor(sparse), beta, clip, kl_coef, dense
            )
            k = len(xs)
            pair_of = torch.tensor([i + k for i in range(k)] + list(range(k)))
            losses, adv = reinforce_losses(tok, rewards, mask, pair_of)
            loss = losses.mean()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        if step == 0 or step == steps - 1:  # (and the first sample's token ids and dense rewards, for checks)
            rec = {"step": step, "prompts": xs, "samples": [list(s) for s in zip(first, second)], "sparse": sparse}
            if dense:
                n0 = int(mask[0].sum())
                d0 = torch.clamp(beta * (guide_tok[0] - ref_tok[0]), -clip, clip)[mask[0] > 0]
                rec.update(first_ids=list(first_ids[0])[:n0], first_dense=[float(v) for v in d0])
            record.append(rec)
        last_loss = float(loss.detach())
        dense_part = rewards.sum(-1) - torch.tensor(sparse)
        history.append(
            {
                "step": step + 1,
                "labels_used": len(ps),
                "rows": len(ps),
                "gold_reward": float(np.mean(sparse[:k])),
                "loss": last_loss,
                "grad_norm": float(grad_norm),
                "kl": float(((tok.detach() - ref_tok) * mask).sum(-1).mean()),
                "token_reward_sum": float(dense_part.mean()),
                "advantage_abs": float(adv.abs().sum() / mask.sum().clamp(min=1)),
                "learning_rate": float(sched.get_last_lr()[0]),
            }
        )
    return loop_result(policy, history, last_loss, steps, batch, logging_steps, counts, phases, record)

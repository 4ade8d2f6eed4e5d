"""po-bench's online loop, shared by every online method (``backend: online``, MethodKind.ONLINE):

each step takes a batch of the source's preference prompts (``train.batch_size`` x ``train.grad_accum``, a
seeded permutation per pass), samples two responses per prompt (the current policy's through the project's
generation code, po_bench/generation/generate.py; XPO's second from the reference), asks the preference source
(po_bench/training/labellers.py) which is better, flips the ``noise`` group's share of the step's labels, and
takes one AdamW step on the method's loss (po_bench/training/online_losses.py) with the reference fixed at the
start checkpoint.  The number of steps: ``train.max_steps`` when set, else ``ceil(train.epochs x prompts /
batch)`` (each prompt sampled ``epochs`` times).  Learning-rate schedule, warmup and the gradient-norm clip (1.0)
are those the TRL trainers use.

What the loop counts (run.json's ``metrics.online``): samples generated, labels requested and used, ties
dropped, verdicts the source failed to give (``labels_failed``: their pairs dropped), labels flipped by the noise,
judge calls and tokens (0 without a judge), the source's own counts (``labeller``: a judge's cache hits, request
and parse failures), and the wall time of each phase (generate, label, train).  The first and the last step's prompts, samples and labelled pairs are kept
(``record``) so a test can check that the labels are those of the current policy's samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
from transformers import get_scheduler

from po_bench.data.noise import flip_labels
from po_bench.generation.generate import generate_hf
from po_bench.generation.logprobs import render_prompt, right_padded, token_logps
from po_bench.training.labellers import LabelRequest
from po_bench.training.losses import PairStats
from po_bench.training.online_losses import N_SAMPLES, ONLINE_LOSSES, POLICY_REFERENCE, brain_targets, online_args

MAX_GRAD_NORM = 1.0  # TRL's (transformers') default clip


def gen_seed(seed: int, step: int, draw: int) -> int:
    """The generation seed of a step's first (0) or second (1) draw: distinct across steps (below a million) and
    run seeds (replicate seeds share no random stream), and apart from the run's sample seeds (seed .. seed + 4001)."""
    return 10_000 + int(seed) * 2_000_003 + 2 * int(step) + int(draw)


def sequence_logps(model, tokenizer, prompts, completion_ids: list[list[int]], max_length: int | None):
    """(summed completion log-probs, completion token counts) of each prompt's sampled completion tokens (as
    generation drew them: po_bench/generation/generate.py's ``with_ids``) under ``model``, with the gradient (one
    right-padded batch; sequences cut at ``max_length`` as in training)."""
    tok, m = completion_token_logps(model, tokenizer, prompts, completion_ids, max_length)
    return (tok * m).sum(-1), m.sum(-1)


def completion_token_logps(model, tokenizer, prompts, completion_ids: list[list[int]], max_length: int | None):
    """(per-token log-probs [B, T-1], completion mask [B, T-1]) of each prompt's sampled completion tokens under
    ``model``, with the gradient (:func:`sequence_logps` sums them); position t scores token t+1 of the row."""
    device = next(model.parameters()).device
    enc = [
        (tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"], list(c))
        for p, c in zip(prompts, completion_ids)
    ]
    seqs = [(p + c)[:max_length] if max_length else p + c for p, c in enc]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, attn = right_padded(seqs, pad)
    cmask = torch.zeros(ids.shape, dtype=torch.float32)
    for i, ((p, _c), s) in enumerate(zip(enc, seqs)):
        cmask[i, len(p) : len(s)] = 1.0
    ids, attn, cmask = ids.to(device), attn.to(device), cmask.to(device)
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1]
    return token_logps(logits, ids[:, 1:]), cmask[:, 1:]


def steps_of(train, n_prompts: int) -> int:
    batch = int(train.batch_size) * int(train.grad_accum)
    if int(train.max_steps) > 0:
        return int(train.max_steps)
    return max(1, math.ceil(float(train.epochs) * n_prompts / batch))


def prompt_batches(prompts: list, batch: int, steps: int, seed: int) -> list[list]:
    """The prompts of each step: consecutive slices of a seeded permutation, a fresh one per pass."""
    rng = np.random.default_rng([int(seed), 41])
    order: list[int] = []
    while len(order) < steps * batch:
        order += [int(i) for i in rng.permutation(len(prompts))]
    return [[prompts[i] for i in order[s * batch : (s + 1) * batch]] for s in range(steps)]


def _samples_step(policy, ref_model, tokenizer, xs, a, beta, gen_cfg, labeller, seed, step, max_length):
    """One step of a method over n samples per prompt (``brain``): n draws per prompt from the proposal (the
    reference, i.e. the start/SFT checkpoint, or the current policy) in one generation call, the source's scalar
    reward of each, and the loss's backward pass (the caller clips and steps).  Returns the logged entry (with
    the phase times, the proposal's (prompt, sample) pairs and the step's record) and the loss."""
    n = int(a["n"])
    t0 = time.perf_counter()
    rep = [x for x in xs for _ in range(n)]  # prompt i's samples are rows i*n .. i*n + n-1
    proposal = policy if a["proposal"] == "policy" else ref_model
    ys, ids = generate_hf(proposal, tokenizer, rep, gen_cfg, gen_seed(seed, step, 0), "online samples", True)
    t1 = time.perf_counter()
    if not hasattr(labeller, "rewards"):
        raise ValueError(f"the {labeller.name} preference source gives no scalar reward (brain weights by one)")
    r = torch.tensor(labeller.rewards(rep, ys), dtype=torch.float32)
    t2 = time.perf_counter()
    policy.train()
    lp, _ = sequence_logps(policy, tokenizer, rep, ids, max_length)
    with torch.no_grad():
        lr_, _ = sequence_logps(ref_model, tokenizer, rep, ids, max_length)
    lq = lp.detach() if a["proposal"] == "policy" else lr_
    B = len(xs)
    fn = ONLINE_LOSSES["brain"].fn
    losses = fn(lp.view(B, n), lr_.view(B, n), lq.view(B, n), r.to(lp.device).view(B, n), beta, a["targets"])
    loss = losses.mean()
    loss.backward()
    t3 = time.perf_counter()
    with torch.no_grad():
        t = brain_targets(r.to(lp.device).view(B, n), lr_.view(B, n), lq.view(B, n), beta, a["targets"])
        ess = float((1.0 / (t**2).sum(-1)).mean())
    entry = {
        "labels_used": B * n,
        "rows": B,
        "loss": float(loss.detach()),
        "kl": float((lp.detach() - lr_).mean()),  # sequence-level log pi/ref on the proposal's samples
        "reward_mean": float(r.mean()),
        "target_ess": ess,  # effective sample size of the targets, 1 (one-hot) .. n (uniform)
        "samples_generated": B * n,
        "samples": list(zip(rep, ys)),
        "seconds_generate": t1 - t0,
        "seconds_label": t2 - t1,
        "seconds_train": t3 - t2,
        "record": {
            "prompts": list(xs),
            "samples": [list(ys[i * n : (i + 1) * n]) for i in range(B)],
            "rewards": [r[i * n : (i + 1) * n].tolist() for i in range(B)],
        },
    }
    return entry, entry["loss"]


class Phases:
    """Wall time per phase (generate, label, train)."""

    def __init__(self):
        self.seconds = {"generate": 0.0, "label": 0.0, "train": 0.0}

    def timed(self, phase: str):
        phases = self

        class T:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                phases.seconds[phase] += time.perf_counter() - self.t

        return T()


def train_online(
    policy,
    ref_model,
    tokenizer,
    prompts: list,
    function: str,
    args: dict,
    beta: float,
    lr: float,
    train,
    gen_cfg,
    labeller,
    noise: dict,
    seed: int,
    gold: Callable[[str, str], float] | None = None,
    logging_steps: int = 5,
) -> dict:
    """Run the online loop (module docstring) on ``policy``; ``ref_model`` is the fixed reference (and XPO's
    second sampler).  ``gold``: the source's exact reward of one response, logged for the policy's samples of each
    step (None: not logged).  Returns the trained model, the logged history, the counts and the phase times."""
    spec = ONLINE_LOSSES[function]
    a = online_args(function, args)
    hp = {k: a[k] for k in spec.defaults if k != "accumulate"}
    accumulate = bool(a.get("accumulate", False))
    batch = int(train.batch_size) * int(train.grad_accum)
    steps = steps_of(train, len(prompts))
    max_length = int(train.max_length)
    ref_model.eval()
    for p in ref_model.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    sched = get_scheduler(
        train.lr_scheduler, opt, num_warmup_steps=math.ceil(float(train.warmup_ratio) * steps), num_training_steps=steps
    )
    phases = Phases()
    counts = {"samples_generated": 0, "labels_requested": 0, "labels_used": 0, "ties_dropped": 0}
    counts.update(noise_flipped=0, judge_calls=0, judge_tokens=0, steps_without_pairs=0, labels_failed=0)
    details: dict = {}  # the source's own counts (Labels.details), summed
    history: list[dict] = []
    record: list[dict] = []
    pool: list[dict] = []  # XPO with accumulate: every labelled pair so far (the paper's growing preference set)
    label_rng = np.random.default_rng([int(seed), 43])

    def logps_of(model, ps, ids):
        return sequence_logps(model, tokenizer, ps, ids, max_length)

    last_loss = None
    for step, xs in enumerate(prompt_batches(prompts, batch, steps, seed)):
        if spec.pairing == N_SAMPLES:
            entry, last_loss = _samples_step(
                policy, ref_model, tokenizer, xs, a, beta, gen_cfg, labeller, seed, step, max_length
            )
            entry["step"] = step + 1
            if gold is not None:
                proposal = entry.pop("samples")
                key = "gold_reward" if a["proposal"] == "policy" else "gold_reward_proposal"
                entry[key] = float(np.mean([gold(x, y) for x, y in proposal]))
            else:
                entry.pop("samples")
            counts["samples_generated"] += entry["samples_generated"]
            counts["labels_requested"] += entry["samples_generated"]
            counts["labels_used"] += entry["samples_generated"]
            for k in ("generate", "label", "train"):
                phases.seconds[k] += entry.pop(f"seconds_{k}")
            if step == 0 or step == steps - 1:
                record.append({"step": step, **entry.pop("record")})
            else:
                entry.pop("record")
            entry.pop("samples_generated")
            with phases.timed("train"):
                entry["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM))
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            entry["learning_rate"] = float(sched.get_last_lr()[0])
            history.append(entry)
            continue
        with phases.timed("generate"):
            first, first_ids = generate_hf(
                policy, tokenizer, xs, gen_cfg, gen_seed(seed, step, 0), "online samples", True
            )
            second_model = ref_model if spec.pairing == POLICY_REFERENCE else policy
            second, second_ids = generate_hf(
                second_model, tokenizer, xs, gen_cfg, gen_seed(seed, step, 1), "online samples", True
            )
        counts["samples_generated"] += 2 * len(xs)
        policy.train()

        def implicit(which: int, xs=xs, ids=(first_ids, second_ids)) -> list[float]:
            with torch.no_grad():  # beta * log pi/ref of the first (0) or second (1) samples, under the current policy
                return (beta * (logps_of(policy, xs, ids[which])[0] - logps_of(ref_model, xs, ids[which])[0])).tolist()

        with phases.timed("label"):
            labels = labeller.label(LabelRequest(xs, first, second, label_rng, implicit))
        counts["labels_requested"] += labels.requested
        counts["judge_calls"] += labels.judge_calls
        counts["judge_tokens"] += labels.judge_tokens
        counts["labels_failed"] += labels.failed
        for k, v in labels.details.items():
            details[k] = details.get(k, 0) + v
        pairs = []
        for i, (x, y1, y2, w) in enumerate(zip(xs, first, second, labels.first_wins)):
            if w is None:
                continue
            chosen, rejected = (y1, y2) if w else (y2, y1)
            ids = (first_ids[i], second_ids[i]) if w else (second_ids[i], first_ids[i])
            pairs.append(
                {"prompt": x, "chosen": chosen, "rejected": rejected, "row": i, "second_chosen": not w, "ids": ids}
            )
        counts["ties_dropped"] += len(xs) - len(pairs) - labels.failed
        if noise.get("kind") == "flip" and pairs:
            pairs, flipped = flip_labels(pairs, float(noise["rate"]), int(seed) * 1_000_003 + step)
            for i in flipped:  # the token ids and the second response's side follow the texts
                pairs[i]["second_chosen"] = not pairs[i]["second_chosen"]
                pairs[i]["ids"] = pairs[i]["ids"][::-1]
            counts["noise_flipped"] += len(flipped)
        counts["labels_used"] += len(pairs)
        if step == 0 or step == steps - 1:
            kept = [{k: v for k, v in p.items() if k != "ids"} for p in pairs]
            record.append(
                {"step": step, "prompts": xs, "samples": [list(s) for s in zip(first, second)], "pairs": kept}
            )
        if accumulate:
            pool += pairs
        rows = pool if accumulate else pairs
        entry: dict = {"step": step + 1, "labels_used": len(pairs), "rows": len(rows)}
        if gold is not None:
            entry["gold_reward"] = float(np.mean([gold(x, y) for x, y in zip(xs, first)]))
        if not rows:
            counts["steps_without_pairs"] += 1
            sched.step()
            history.append(entry)
            continue
        with phases.timed("train"):
            ps = [r["prompt"] for r in rows]
            ys = [r["ids"][0] for r in rows] + [r["ids"][1] for r in rows]
            lp, n = logps_of(policy, ps + ps, ys)
            with torch.no_grad():
                lr_, _ = logps_of(ref_model, ps + ps, ys)
            k = len(rows)
            s = PairStats(lp[:k], lp[k:], n[:k], n[k:], lr_[:k], lr_[k:])
            if spec.pairing == POLICY_REFERENCE:  # the reference's sample: the second response, on its side
                second_chosen = torch.tensor([r["second_chosen"] for r in rows], device=lp.device)
                out = spec.fn(s, beta, ref_sample_logps=torch.where(second_chosen, lp[:k], lp[k:]), **hp)
                from_policy = torch.where(second_chosen, s.rejected_logratio, s.chosen_logratio)
            else:
                out = spec.fn(s, beta, **hp)
                from_policy = torch.cat([s.chosen_logratio, s.rejected_logratio])
            loss = out.losses.mean()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        last_loss = float(loss.detach())
        entry.update(
            loss=last_loss,
            grad_norm=float(grad_norm),
            kl=float(from_policy.detach().mean()),  # sequence-level KL(pi || ref) estimate on the policy's samples
            rewards_margin=float((out.chosen_rewards - out.rejected_rewards).mean()),
            learning_rate=float(sched.get_last_lr()[0]),
        )
        history.append(entry)
    if details:
        counts["labeller"] = details
    return loop_result(policy, history, last_loss, steps, batch, logging_steps, counts, phases, record)


def loop_result(policy, history, last_loss, steps, batch, logging_steps, counts, phases, record) -> dict:
    """What a loop on the online pieces returns to the policy stage (train_online, rto.train_rto): the policy in
    eval mode, every ``logging_steps``-th step's history (and the last), the batch layout of one process, and the
    counts with the seconds per phase."""
    policy.eval()
    logged = [h for i, h in enumerate(history) if (i + 1) % max(1, logging_steps) == 0 or i == len(history) - 1]
    return {
        "model": policy,
        "train_loss_final": last_loss,
        "history": logged,
        "steps": steps,
        "per_device_batch": batch,
        "grad_accum": 1,
        "global_batch": batch,
        "world_size": 1,
        "online": {**counts, "seconds": {k: round(v, 6) for k, v in phases.seconds.items()}},
        "online_record": record,
    }

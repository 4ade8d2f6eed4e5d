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

Under ``launch=ddp`` (a process group: po_bench/training/launch.py starts every rank on the policy stage) the
step's batch is the global batch (per-device batch x accumulation x world size, the recipe's, as offline): each
rank samples and labels its own consecutive shard of the step's prompts with its own generation seeds, label and
noise streams, the loss's gradients are averaged over the ranks weighted by their labelled rows (the gradient of
the mean loss over every rank's rows, as one process on the whole batch), so every rank takes the same optimizer
step and the weights stay identical.  The counts are summed over the ranks, the seconds per phase are the slowest
rank's (the ranks run the phases concurrently); ``ranks`` keeps each rank's counts, seconds and a digest of its
final weights, and the record each rank's steps (``rank``).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


def gen_seed(seed: int, step: int, draw: int, rank: int = 0, world: int = 1) -> int:
    """The generation seed of a step's first (0) or second (1) draw on ``rank`` of ``world`` processes: distinct
    across steps and ranks (steps x world below a million) and run seeds (replicate seeds share no random stream),
    and apart from the run's sample seeds (seed .. seed + 4001).  The ranks of a step draw as consecutive steps
    of one process would, so one process (rank 0 of 1) keeps its seeds."""
    return 10_000 + int(seed) * 2_000_003 + 2 * (int(step) * int(world) + int(rank)) + int(draw)


class Group:
    """The process group the loop runs in (``WORLD_SIZE`` / ``RANK`` of a launcher; one process: every
    collective is the identity).  Started here when a launcher started the ranks and nothing else has (gloo on
    CPUs, NCCL on GPUs, each rank on its ``LOCAL_RANK``'s GPU)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1:
            import torch.distributed as dist  # lazy: only under a launcher

            if not dist.is_initialized():
                if torch.cuda.is_available():
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            self.dist = dist

    def sum(self, values: list[float]) -> list[float]:
        """The sum over the ranks of each value (float64)."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t)
        return t.tolist()

    @property
    def device(self):
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def average_gradients(self, model) -> None:
        """Every rank's gradients replaced by their mean over the ranks (a rank that trained no row adds zeros)."""
        if self.world == 1:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        self.dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            p.grad = flat[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out


def _summed(values: list):
    """The sum over the ranks of one count (a dict of counts, the labeller's: per key; absent on a rank: 0)."""
    if any(isinstance(v, dict) for v in values):
        keys = {k for v in values if v for k in v}
        return {k: sum((v or {}).get(k, 0) for v in values) for k in sorted(keys)}
    return sum(v or 0 for v in values)


def weights_digest(model) -> str:
    """A sha256 of a model's parameters (names and bytes), to check that the ranks hold the same weights."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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


def steps_of(train, n_prompts: int, world: int = 1) -> int:
    """The loop's steps: train.max_steps when set, else the epochs over the prompts at the global batch (one
    process's batch x ``world`` processes)."""
    batch = int(train.batch_size) * int(train.grad_accum) * int(world)
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


def _samples_step(policy, ref_model, tokenizer, xs, a, beta, draw, labeller, seed, step, max_length, group):
    """One step of a method over n samples per prompt (``brain``): n draws per prompt from the proposal (the
    reference, i.e. the start/SFT checkpoint, or the current policy) in one generation call, the source's scalar
    reward of each, and the loss's backward pass (the caller clips and steps).  Returns the logged entry (with
    the phase times, the proposal's (prompt, sample) pairs and the step's record) and the loss."""
    n = int(a["n"])
    t0 = time.perf_counter()
    rep = [x for x in xs for _ in range(n)]  # prompt i's samples are rows i*n .. i*n + n-1
    proposal = policy if a["proposal"] == "policy" else ref_model
    ys, ids = draw(proposal, rep, gen_seed(seed, step, 0, group.rank, group.world))
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
    group.average_gradients(policy)  # every rank's B x n rows: the mean of the ranks' means is the batch's mean
    t3 = time.perf_counter()
    with torch.no_grad():
        t = brain_targets(r.to(lp.device).view(B, n), lr_.view(B, n), lq.view(B, n), beta, a["targets"])
        ess = float((1.0 / (t**2).sum(-1)).mean())
    logged = [float(loss.detach()), float((lp.detach() - lr_).mean()), float(r.mean()), ess]
    if group.world > 1:  # the batch's means over the ranks' equal shares
        logged = [v / group.world for v in group.sum(logged)]
    entry = {
        "labels_used": B * n * group.world,
        "rows": B * group.world,
        "loss": logged[0],
        "kl": logged[1],  # sequence-level log pi/ref on the proposal's samples
        "reward_mean": logged[2],
        "target_ess": logged[3],  # effective sample size of the targets, 1 (one-hot) .. n (uniform)
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


def new_counts(**extra) -> dict:
    """The counts every online loop reports in ``metrics.online`` (zero), plus the loop's own ``extra`` ones."""
    counts = {"samples_generated": 0, "labels_requested": 0, "labels_used": 0, "ties_dropped": 0}
    counts.update(noise_flipped=0, judge_calls=0, judge_tokens=0, steps_without_pairs=0, **extra)
    return counts


def adamw(params, lr: float, train, steps: int):
    """(AdamW without weight decay, the run's learning-rate schedule with its warmup ratio of ``steps``): the
    optimizer of every online loop (``params``: parameters or parameter groups)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = math.ceil(float(train.warmup_ratio) * steps)
    return opt, get_scheduler(train.lr_scheduler, opt, num_warmup_steps=warm, num_training_steps=steps)


def frozen(*models) -> None:
    """Eval mode and no gradient for each model given (the reference, a guide)."""
    for m in models:
        if m is not None:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def labelled_pairs(xs, first, second, first_ids, second_ids, labels, counts: dict, details: dict) -> list[dict]:
    """The step's labelled pairs from the source's ``labels`` (a verdict per prompt: None drops the pair), with the
    counts it reports: labels requested, judge calls and tokens, verdicts the source failed to give
    (``labels_failed``: their pairs dropped, not counted as ties), ties, and the source's own counts (``details``).
    Each pair keeps its row, which side the second response is on and the sampled token ids, chosen first."""
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
    return pairs


def noisy(pairs: list[dict], noise: dict, noise_seed: int, counts: dict) -> list[dict]:
    """The ``noise`` group's flips of the step's pairs (``noise=flip``: round(rate x n) of them, drawn from
    ``noise_seed``); a flipped pair's token ids and second-response side follow its texts."""
    if noise.get("kind") != "flip" or not pairs:
        return pairs
    pairs, flipped = flip_labels(pairs, float(noise["rate"]), noise_seed)
    for i in flipped:
        pairs[i]["second_chosen"] = not pairs[i]["second_chosen"]
        pairs[i]["ids"] = pairs[i]["ids"][::-1]
    counts["noise_flipped"] += len(flipped)
    return pairs


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


@dataclass(frozen=True)
class LoopInputs:
    """What every online loop may read (an OnlineSpec's ``loop``, po_bench/training/online_losses.py LOOPS: each
    a function of one record), built once by the policy stage (po_bench/stages.py build_online_policy)."""

    policy: Any  # the model trained: the start checkpoint (OFS-DPO: the base its LoRA modules go on)
    tokenizer: Any  # the start checkpoint's tokenizer (generation sets its padding side; the stage restores it)
    prompts: list  # the source's preference prompts, the loop's training prompts
    function: str  # the online method (``loss.function``, a name in ONLINE_LOSSES)
    args: dict  # ``loss.args`` as given (each loop fills in the defaults: online_losses.online_args)
    beta: float  # ``loss.beta``
    lr: float  # ``loss.lr`` (OFS-DPO: the fast module's)
    train: Any  # the training config (batch_size, grad_accum, max_steps, epochs, max_length, schedule, ...)
    gen: Any  # the sampling config of the policy's samples (backend, temperature, top_p, max_new_tokens, ...)
    seed: int  # the run's seed (generation seeds, label and noise streams)
    labeller: Any = None  # the preference source (po_bench/training/labellers.py; RTO reads none: gold scores it)
    noise: dict = field(default_factory=dict)  # the label noise group ({} or kind none: no flips)
    prompts_spec: dict | None = None  # the prompts' source spec (COFS-DPO: the world's prompt families)
    gold: Callable[[str, str], float] | None = None  # the exact reward of one response (None: not logged)
    step_gains: Callable[[str, str], list[float]] | None = None  # the exact gain of each step of a response (OPRL)
    heldout: list | None = None  # held-out prompts (COFS-DPO's forgetting measure; None: none)
    # the second copy of the start checkpoint (OnlineSpec ``reference``): the fixed reference (XPO's second sampler;
    # OPRL: its implicit PRM); None where the spec loads none (OFS-DPO: the base with the adapters off)
    ref_model: Any = None
    guide: Any = None  # the guide policy (OnlineSpec ``guided``: RTO's DPO policy; None: not dense, or unguided)
    logging_steps: int = 5  # every logging_steps-th step's history is kept (and the last)
    # the policy's samples from a colocated vLLM engine (OnlineSpec ``engine`` under generation=vllm:
    # po_bench/generation/vllm_engine.py's PolicyEngine); None: HF generation
    engine: Any = None


def train_online(inp: LoopInputs) -> dict:
    """Run the online loop (module docstring) on ``inp.policy``; ``inp.ref_model`` is the fixed reference (and
    XPO's second sampler).  ``inp.gold``: the source's exact reward of one response, logged for the policy's
    samples of each step (None: not logged).  ``inp.engine``: the policy's samples from a colocated vLLM engine
    (po_bench/generation/vllm_engine.py's PolicyEngine, ``generation=vllm``), its weights synced to the policy's
    before the first draw after each optimizer step (the sync's time counts as generation); None: HF generation.
    Returns the trained model, the logged history, the counts and the phase times."""
    policy, ref_model, tokenizer, prompts = inp.policy, inp.ref_model, inp.tokenizer, inp.prompts
    function, args, beta, lr, train, gen_cfg = inp.function, inp.args, inp.beta, inp.lr, inp.train, inp.gen
    seed = inp.seed
    labeller, noise, gold, logging_steps, engine = inp.labeller, inp.noise, inp.gold, inp.logging_steps, inp.engine
    spec = ONLINE_LOSSES[function]
    a = online_args(function, args)
    hp = {k: a[k] for k in spec.defaults if k != "accumulate"}
    accumulate = bool(a.get("accumulate", False))
    group = Group()
    batch = int(train.batch_size) * int(train.grad_accum)  # one rank's share of the step's prompts
    steps = steps_of(train, len(prompts), group.world)
    max_length = int(train.max_length)
    frozen(ref_model)
    opt, sched = adamw([p for p in policy.parameters() if p.requires_grad], lr, train, steps)
    phases = Phases()
    counts = new_counts(labels_failed=0)
    details: dict = {}  # the source's own counts (Labels.details), summed
    history: list[dict] = []
    record: list[dict] = []
    pool: list[dict] = []  # XPO with accumulate: every labelled pair so far (the paper's growing preference set)
    label_rng = np.random.default_rng([int(seed), 43] if group.world == 1 else [int(seed), 43, group.rank])

    def logps_of(model, ps, ids):
        return sequence_logps(model, tokenizer, ps, ids, max_length)

    stale = [False]  # the engine's weights are the start's: the policy's until its first optimizer step

    def draw(model, xs_, seed_):
        if engine is None or model is not policy:
            return generate_hf(model, tokenizer, xs_, gen_cfg, seed_, "online samples", True)
        if stale[0]:
            engine.sync(policy)
            stale[0] = False
        return engine.generate(xs_, seed_)

    last_loss = None
    shard = slice(group.rank * batch, (group.rank + 1) * batch)
    for step, step_prompts in enumerate(prompt_batches(prompts, batch * group.world, steps, seed)):
        xs = step_prompts[shard]
        if spec.pairing == N_SAMPLES:
            entry, last_loss = _samples_step(
                policy, ref_model, tokenizer, xs, a, beta, draw, labeller, seed, step, max_length, group
            )
            entry["step"] = step + 1
            if gold is not None:
                proposal = entry.pop("samples")
                key = "gold_reward" if a["proposal"] == "policy" else "gold_reward_proposal"
                entry[key] = group.sum([float(np.mean([gold(x, y) for x, y in proposal]))])[0] / group.world
            else:
                entry.pop("samples")
            counts["samples_generated"] += entry["samples_generated"]  # this rank's (summed over the ranks at the end)
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
                stale[0] = True
            entry["learning_rate"] = float(sched.get_last_lr()[0])
            history.append(entry)
            continue
        with phases.timed("generate"):
            first, first_ids = draw(policy, xs, gen_seed(seed, step, 0, group.rank, group.world))
            second_model = ref_model if spec.pairing == POLICY_REFERENCE else policy
            second, second_ids = draw(second_model, xs, gen_seed(seed, step, 1, group.rank, group.world))
        counts["samples_generated"] += 2 * len(xs)
        policy.train()

        def implicit(which: int, xs=xs, ids=(first_ids, second_ids)) -> list[float]:
            with torch.no_grad():  # beta * log pi/ref of the first (0) or second (1) samples, under the current policy
                return (beta * (logps_of(policy, xs, ids[which])[0] - logps_of(ref_model, xs, ids[which])[0])).tolist()

        with phases.timed("label"):
            labels = labeller.label(LabelRequest(xs, first, second, label_rng, implicit))
        pairs = labelled_pairs(xs, first, second, first_ids, second_ids, labels, counts, details)
        noise_seed = int(seed) * 1_000_003 + step * group.world + group.rank  # one process: seed x 1000003 + step
        pairs = noisy(pairs, noise, noise_seed, counts)
        counts["labels_used"] += len(pairs)
        if step == 0 or step == steps - 1:
            kept = [{k: v for k, v in p.items() if k != "ids"} for p in pairs]
            record.append(
                {"step": step, "prompts": xs, "samples": [list(s) for s in zip(first, second)], "pairs": kept}
            )
        if accumulate:
            pool += pairs
        rows = pool if accumulate else pairs
        used, n_rows = (int(v) for v in group.sum([len(pairs), len(rows)]))
        entry: dict = {"step": step + 1, "labels_used": used, "rows": n_rows}
        if gold is not None:
            g = float(np.mean([gold(x, y) for x, y in zip(xs, first)]))
            entry["gold_reward"] = group.sum([g])[0] / group.world  # the ranks' shards are equal
        if not n_rows:
            counts["steps_without_pairs"] += 1
            sched.step()
            history.append(entry)
            continue
        with phases.timed("train"):
            k = len(rows)
            if k:
                ps = [r["prompt"] for r in rows]
                ys = [r["ids"][0] for r in rows] + [r["ids"][1] for r in rows]
                lp, n = logps_of(policy, ps + ps, ys)
                with torch.no_grad():
                    lr_, _ = logps_of(ref_model, ps + ps, ys)
                s = PairStats(lp[:k], lp[k:], n[:k], n[k:], lr_[:k], lr_[k:])
                if spec.pairing == POLICY_REFERENCE:  # the reference's sample: the second response, on its side
                    second_chosen = torch.tensor([r["second_chosen"] for r in rows], device=lp.device)
                    out = spec.fn(s, beta, ref_sample_logps=torch.where(second_chosen, lp[:k], lp[k:]), **hp)
                    from_policy = torch.where(second_chosen, s.rejected_logratio, s.chosen_logratio)
                else:
                    out = spec.fn(s, beta, **hp)
                    from_policy = torch.cat([s.chosen_logratio, s.rejected_logratio])
                margin = out.chosen_rewards - out.rejected_rewards
            if group.world == 1:
                loss = out.losses.mean()
                loss.backward()
                logged = [float(loss.detach()), float(from_policy.detach().mean()), float(margin.detach().mean())]
            else:  # the mean over every rank's rows: this rank's sum x world / all rows, its gradient averaged
                mine = [0.0, 0.0, 0.0, 0]
                if k:
                    mine = [
                        float(out.losses.detach().sum()),
                        float(from_policy.detach().sum()),
                        0.0,
                        from_policy.numel(),
                    ]
                    mine[2] = float(margin.detach().sum())
                sums = group.sum(mine)
                if k:
                    (out.losses.sum() * (group.world / n_rows)).backward()
                group.average_gradients(policy)
                logged = [sums[0] / n_rows, sums[1] / sums[3], sums[2] / n_rows]
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), MAX_GRAD_NORM)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            stale[0] = True
        last_loss = logged[0]
        entry.update(
            loss=last_loss,
            grad_norm=float(grad_norm),
            kl=logged[1],  # sequence-level KL(pi || ref) estimate on the policy's samples
            rewards_margin=logged[2],
            learning_rate=float(sched.get_last_lr()[0]),
        )
        history.append(entry)
    if details:
        counts["labeller"] = details
    if engine is not None:
        counts["weight_syncs"] = engine.syncs
    return loop_result(policy, history, last_loss, steps, batch, logging_steps, counts, phases, record, group)


def loop_result(policy, history, last_loss, steps, batch, logging_steps, counts, phases, record, group=None) -> dict:
    """What a loop on the online pieces returns to the policy stage (train_online, rto.train_rto): the policy in
    eval mode, every ``logging_steps``-th step's history (and the last), the batch layout, and the counts with the
    seconds per phase.  Under a process group (``group``, module docstring) the counts are summed over the ranks
    (``steps_without_pairs``: the group's steps, the same on every rank), the seconds the slowest rank's, and
    ``ranks`` / the record keep each rank's."""
    policy.eval()
    logged = [h for i, h in enumerate(history) if (i + 1) % max(1, logging_steps) == 0 or i == len(history) - 1]
    world = 1 if group is None else group.world
    seconds = {k: round(v, 6) for k, v in phases.seconds.items()}
    online: dict = {**counts, "seconds": seconds}
    if world > 1:
        mine = {**counts, "seconds": seconds, "weights_sha256": weights_digest(policy)}
        ranks = group.gather(mine)
        keys = dict.fromkeys(k for r in ranks for k in r if k not in ("seconds", "weights_sha256"))
        online = {k: _summed([r.get(k) for r in ranks]) for k in keys}
        online["steps_without_pairs"] = counts["steps_without_pairs"]
        online["seconds"] = {k: max(r["seconds"][k] for r in ranks) for k in seconds}
        online["ranks"] = ranks
        record = [{"rank": r, **rec} for r, recs in enumerate(group.gather(record)) for rec in recs]
    return {
        "model": policy,
        "train_loss_final": last_loss,
        "history": logged,
        "steps": steps,
        "per_device_batch": batch,
        "grad_accum": 1,
        "global_batch": batch * world,
        "world_size": world,
        "online": online,
        "online_record": record,
    }

"""OFS-DPO and COFS-DPO's loop (``loss=ofs_dpo``; Qi et al. 2024, "Online DPO: Online Direct Preference
Optimization with Fast-Slow Chasing", arXiv:2406.05534), on the online loop's pieces (po_bench/training/online.py).

The paper's method section was not available to us: what follows is a reconstruction from its abstract and
public summaries (docs/online.md says exactly what is reconstructed).

- Two LoRA modules (peft, ``loss.args.lora_r`` / ``lora_alpha``, every linear layer) on the same base, identical
  at the start: the fast one trained at ``loss.lr``, the slow one at ``loss.lr / loss.args.lr_ratio`` (one AdamW,
  one parameter group each, the TRL schedule on both).
- Each step: two samples per prompt of the current policy (the base with the fast module), labelled by the
  preference source, and one AdamW step on :func:`po_bench.training.online_losses.ofs_dpo` (both modules' DPO
  losses plus the chasing regulariser).  The reference is fixed: the base with the adapters disabled (the start
  checkpoint, as TRL does for PEFT).
- The swap rule (:func:`po_bench.training.online_losses.ofs_swaps`): when the slow module's DPO loss on the
  step's pairs (before the update) is below the fast one's, the modules exchange roles (their learning rates).
- The saved policy: the base with the fast module merged.
- COFS-DPO (``loss.args.domains`` = D > 0): the world's preference prompts split into D families by their
  number of keywords (:func:`families`, fewest first), presented in sequence; each family's modules start from
  the previous family's fast module, each finished fast module is kept, and the deployed policy is the base plus
  the linear combination sum_i w_i * dW_i of the finished fast modules (``loss.args.weights``, normalised over
  the families so far; null: uniform).  After each family the gold reward on every family's held-out prompts
  (the world's eval split, split the same way) is measured for the combination and for the fast module alone:
  ``online.cofs`` in run.json, with the forgetting of each earlier family.
"""

from __future__ import annotations

import numpy as np
import torch

from po_bench.data.world import parse_prompt
from po_bench.generation.generate import generate_hf
from po_bench.training.labellers import LabelRequest
from po_bench.training.losses import PairStats
from po_bench.training.online import (
    MAX_GRAD_NORM,
    LoopInputs,
    Phases,
    adamw,
    gen_seed,
    labelled_pairs,
    loop_result,
    new_counts,
    noisy,
    prompt_batches,
    sequence_logps,
    steps_of,
)
from po_bench.training.online_losses import dpo_losses, ofs_dpo, ofs_swaps, online_args

ADAPTERS = ("ofs_a", "ofs_b")  # the two modules' adapter names; which is fast changes at each swap


def family_of(prompt: str, min_keywords: int, max_keywords: int, domains: int) -> int:
    """A world prompt's family among ``domains``: its number of keywords, bucketed evenly over the world's range
    (fewest keywords: family 0)."""
    k = len(parse_prompt(prompt))
    return min(domains - 1, (k - int(min_keywords)) * domains // (int(max_keywords) - int(min_keywords) + 1))


def families(prompts: list, spec: dict, domains: int) -> list[list]:
    """The prompts of each family, in order (``spec``: the world prompt spec, its keyword range)."""
    out: list[list] = [[] for _ in range(domains)]
    for p in prompts:
        out[family_of(p, spec["min_keywords"], spec["max_keywords"], domains)].append(p)
    return out


def cofs_weights(weights, k: int) -> list[float]:
    """The combination weights of the fast modules of families 0..k: ``weights``' first k+1 normalised to sum 1
    (None: uniform)."""
    w = [1.0] * (k + 1) if weights is None else [float(x) for x in list(weights)[: k + 1]]
    total = sum(w)
    if total <= 0:
        raise ValueError(f"loss.args.weights={list(weights)}: the first {k + 1} sum to 0")
    return [x / total for x in w]


class FastSlow:
    """The two LoRA modules on one base (a peft model) and which of them is fast."""

    def __init__(self, base, r: int, alpha: float):
        from peft import LoraConfig, get_peft_model  # lazy: accelerate, huggingface_hub, ... (~5 s)

        self.config = LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear")
        self.model = get_peft_model(base, self.config, adapter_name=ADAPTERS[0])
        self.model.add_adapter(ADAPTERS[1], self.config)
        self.copy(ADAPTERS[0], ADAPTERS[1])  # identical modules at the start
        self.fast, self.slow = ADAPTERS
        self.use(self.fast)

    def params(self, name: str) -> dict:
        return {n: p for n, p in self.model.named_parameters() if f".{name}." in n and "lora_" in n}

    def copy(self, src: str, dst: str) -> None:
        with torch.no_grad():
            d = self.params(dst)
            for n, p in self.params(src).items():
                d[n.replace(f".{src}.", f".{dst}.")].copy_(p)

    def use(self, name: str) -> None:
        """Make ``name`` the active adapter; every module's parameters stay trainable (peft freezes the others)."""
        self.model.set_adapter(name)
        for a in ADAPTERS:
            for p in self.params(a).values():
                p.requires_grad_(True)

    def swap(self) -> None:
        self.fast, self.slow = self.slow, self.fast

    def snapshot(self, name: str) -> dict:
        """A module's weights, keyed by parameter name with ``{}`` for the adapter's name."""
        return {n.replace(f".{name}.", ".{}."): p.detach().clone() for n, p in self.params(name).items()}

    def combine(self, snapshots: list[dict], weights: list[float], name: str = "cofs") -> None:
        """Add adapter ``name`` = the base plus sum_i weights[i] * dW_i of the snapshots (each a fast module's
        weights); it becomes the active adapter."""
        names = []
        for i, snap in enumerate(snapshots):
            n = f"cofs_part{i}"
            self.model.add_adapter(n, self.config)
            with torch.no_grad():
                d = self.params(n)
                for k, v in snap.items():
                    d[k.format(n)].copy_(v)
            names.append(n)
        # "cat": the parts' A stacked and B side by side, each B times its weight and scaling: exactly sum_i w_i dW_i
        self.model.add_weighted_adapter(names, list(weights), name, combination_type="cat")
        for n in names:
            self.model.delete_adapter(n)
        self.model.set_adapter(name)

    def drop(self, name: str) -> None:
        self.model.delete_adapter(name)
        self.use(self.fast)

    def merged(self, name: str):
        """The base with adapter ``name`` merged (the others dropped): a plain transformers model."""
        self.model.set_adapter(name)
        return self.model.merge_and_unload(adapter_names=[name])


def _gold_of(model, tokenizer, prompts, gen_cfg, seed, gold) -> float | None:
    """The mean gold reward of the model's samples on held-out prompts (None: no prompt in the family)."""
    if not prompts:
        return None
    ys = generate_hf(model, tokenizer, prompts, gen_cfg, seed, "cofs held-out", False)
    return float(np.mean([gold(x, y) for x, y in zip(prompts, ys)]))


def train_ofs(inp: LoopInputs) -> dict:
    """Run OFS-DPO (``domains`` 0) or COFS-DPO (module docstring) from ``inp.policy`` (the start checkpoint, also
    the reference with the adapters off: ``inp.ref_model`` unread).  Returns what
    :func:`po_bench.training.online.loop_result` returns, the model being the base with the deployed module merged,
    ``online.swaps`` and (COFS) ``online.cofs``."""
    base, tokenizer, prompts, prompts_spec, args = inp.policy, inp.tokenizer, inp.prompts, inp.prompts_spec, inp.args
    beta, lr, train, gen_cfg, labeller, noise = inp.beta, inp.lr, inp.train, inp.gen, inp.labeller, inp.noise
    seed, gold, heldout, logging_steps = inp.seed, inp.gold, inp.heldout, inp.logging_steps
    a = online_args("ofs_dpo", args)
    fs = FastSlow(base, a["lora_r"], float(a["lora_alpha"]))
    model = fs.model
    batch = int(train.batch_size) * int(train.grad_accum)
    max_length = int(train.max_length)
    domains = int(a["domains"])
    parts = families(prompts, prompts_spec, domains) if domains else [list(prompts)]
    for d, fam in enumerate(parts):
        if not fam:
            raise ValueError(f"loss.args.domains={domains}: family {d} has no preference prompts")
    held = families(heldout or [], prompts_spec, domains) if domains else []
    phases = Phases()
    counts = new_counts(swaps=0, labels_failed=0)
    details: dict = {}  # the source's own counts (Labels.details), summed
    history: list[dict] = []
    record: list[dict] = []
    label_rng = np.random.default_rng([int(seed), 43])
    snapshots: list[dict] = []
    after: list[dict] = []
    last_loss = None
    total_steps = 0
    plans = [steps_of(train, len(fam)) for fam in parts]

    def logps(adapter, ps, ids):
        if adapter is None:
            with model.disable_adapter(), torch.no_grad():
                return sequence_logps(model, tokenizer, ps, ids, max_length)
        fs.use(adapter)
        return sequence_logps(model, tokenizer, ps, ids, max_length)

    for d, (fam, steps) in enumerate(zip(parts, plans)):
        if d > 0:  # the family's modules start from the last family's fast module
            fs.copy(fs.fast, fs.slow)
        groups = {fs.fast: float(lr), fs.slow: float(lr) / float(a["lr_ratio"])}
        opt, sched = adamw(
            [{"params": list(fs.params(n).values()), "lr": groups[n]} for n in ADAPTERS], lr, train, steps
        )
        for step, xs in enumerate(prompt_batches(fam, batch, steps, seed + 7919 * d)):
            gstep = total_steps + step
            fs.use(fs.fast)
            with phases.timed("generate"):
                first, first_ids = generate_hf(model, tokenizer, xs, gen_cfg, gen_seed(seed, gstep, 0), "ofs", True)
                second, second_ids = generate_hf(model, tokenizer, xs, gen_cfg, gen_seed(seed, gstep, 1), "ofs", True)
            counts["samples_generated"] += 2 * len(xs)
            model.train()

            def implicit(which: int, xs=xs, ids=(first_ids, second_ids)) -> list[float]:
                with torch.no_grad():  # beta * log pi/ref of the first (0) or second (1) samples, the fast module
                    return (beta * (logps(fs.fast, xs, ids[which])[0] - logps(None, xs, ids[which])[0])).tolist()

            with phases.timed("label"):
                labels = labeller.label(LabelRequest(xs, first, second, label_rng, implicit))
            pairs = labelled_pairs(xs, first, second, first_ids, second_ids, labels, counts, details)
            pairs = noisy(pairs, noise, int(seed) * 1_000_003 + gstep, counts)
            counts["labels_used"] += len(pairs)
            if gstep == 0 or (d == len(parts) - 1 and step == steps - 1):
                kept = [{k: v for k, v in p.items() if k != "ids"} for p in pairs]
                record.append(
                    {"step": gstep, "prompts": xs, "samples": [list(s) for s in zip(first, second)], "pairs": kept}
                )
            entry: dict = {"step": gstep + 1, "labels_used": len(pairs), "rows": len(pairs), "fast": fs.fast}
            if domains:
                entry["domain"] = d
            if gold is not None:
                entry["gold_reward"] = float(np.mean([gold(x, y) for x, y in zip(xs, first)]))
            if not pairs:
                counts["steps_without_pairs"] += 1
                sched.step()
                history.append(entry)
                continue
            with phases.timed("train"):
                ps = [r["prompt"] for r in pairs]
                ys = [r["ids"][0] for r in pairs] + [r["ids"][1] for r in pairs]
                k = len(pairs)
                ref, _ = logps(None, ps + ps, ys)
                lf, n = logps(fs.fast, ps + ps, ys)
                ls, _ = logps(fs.slow, ps + ps, ys)
                sf = PairStats(lf[:k], lf[k:], n[:k], n[k:], ref[:k], ref[k:])
                ss = PairStats(ls[:k], ls[k:], n[:k], n[k:], ref[:k], ref[k:])
                out = ofs_dpo(sf, ss, beta, float(a["chase"]))
                loss = out.losses.mean()
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    [p for g in opt.param_groups for p in g["params"]], MAX_GRAD_NORM
                )
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                fast_dpo = float(dpo_losses(sf, beta).mean().detach())
                slow_dpo = float(dpo_losses(ss, beta).mean().detach())
                swapped = ofs_swaps(fast_dpo, slow_dpo)
                if swapped:  # the slow module overtook the fast one: they exchange roles (learning rates)
                    swap_roles(fs, opt, sched)
                    counts["swaps"] += 1
            last_loss = float(loss.detach())
            entry.update(
                loss=last_loss,
                dpo_loss_fast=fast_dpo,
                dpo_loss_slow=slow_dpo,
                swapped=swapped,
                grad_norm=float(grad_norm),
                kl=float(torch.cat([sf.chosen_logratio, sf.rejected_logratio]).detach().mean()),
                rewards_margin=float((out.chosen_rewards - out.rejected_rewards).mean()),
                learning_rate=float(sched.get_last_lr()[0]),
            )
            history.append(entry)
        total_steps += steps
        if domains:  # keep the finished fast module; measure every family on the combination and on the fast one
            snapshots.append(fs.snapshot(fs.fast))
            model.eval()
            row = {"domain": d, "weights": cofs_weights(a["weights"], d), "combined": [], "fast": []}
            with phases.timed("generate"):
                fs.use(fs.fast)
                row["fast"] = [_gold_of(model, tokenizer, h, gen_cfg, seed + 5003, gold) for h in held]
                fs.combine(snapshots, row["weights"])
                row["combined"] = [_gold_of(model, tokenizer, h, gen_cfg, seed + 5003, gold) for h in held]
                fs.drop("cofs")
            after.append(row)
    if domains:
        fs.combine(snapshots, cofs_weights(a["weights"], len(parts) - 1))
        deployed = fs.merged("cofs")
    else:
        deployed = fs.merged(fs.fast)
    counts["deployed"] = "cofs" if domains else "fast"
    if details:
        counts["labeller"] = details
    res = loop_result(deployed, history, last_loss, total_steps, batch, logging_steps, counts, phases, record)
    if domains:
        res["online"]["cofs"] = cofs_report(after, [len(f) for f in parts], [len(h) for h in held])
    return res


def swap_roles(fs: FastSlow, opt, sched) -> None:
    """Exchange the fast and slow modules' roles: each parameter group takes the other's learning rate (the
    schedule's factor kept)."""
    factor = opt.param_groups[0]["lr"] / sched.base_lrs[0]
    sched.base_lrs = sched.base_lrs[::-1]
    for g, base in zip(opt.param_groups, sched.base_lrs):
        g["lr"] = base * factor
        g["initial_lr"] = base
    fs.swap()


def cofs_report(after: list[dict], n_prompts: list[int], n_heldout: list[int]) -> dict:
    """COFS-DPO's per-family record: after each family, the gold reward on every family's held-out prompts (the
    combination of the finished fast modules, and the fast module alone), and the forgetting of each earlier
    family i after the last one: its gold right after its own training minus at the end (positive: forgotten;
    None where the family has no held-out prompt)."""
    last = after[-1]

    def drop(i: int, kind: str):
        a, b = after[i][kind][i], last[kind][i]
        return None if a is None or b is None else a - b

    forgetting = {kind: [drop(i, kind) for i in range(len(after) - 1)] for kind in ("combined", "fast")}
    return {
        "families": "keyword count, fewest first",
        "prompts": n_prompts,
        "heldout_prompts": n_heldout,
        "after_domain": after,
        "forgetting": forgetting,
    }

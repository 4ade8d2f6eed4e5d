"""The unpaired family, on TRL's KTOTrainer: rows of (prompt, completion, label).

- ``MethodKind.UNPAIRED_TRL`` (KTO): :class:`StoreReferenceKTOTrainer`, TRL's KTOTrainer on rows ordered so
  that every KL row is a truly mismatched pair (:func:`kto_order`), its reference log-probs (rows and KL rows)
  precomputed through po-bench's store.
- ``MethodKind.UNPAIRED_CUSTOM`` (BCO): :class:`PureLossKTOTrainer`, TRL's KTO pipeline (KL rows off:
  loss_type apo_zero_unpaired) with the loss a pure function of ``training/losses.py`` over
  :class:`losses.UnpairedStats`.
"""

from __future__ import annotations

import logging
import random

import torch
from trl import KTOTrainer

from po_bench.training.losses import LossSpec, UnpairedStats, running_mean_update
from po_bench.training.trl.logps import sequence_logps

log = logging.getLogger(__name__)

__all__ = ["PureLossKTOTrainer", "StoreReferenceKTOTrainer", "kl_matched_rows", "kto_order", "unpaired_view"]


def unpaired_view(pairs: list[dict]) -> list[dict]:
    """KTO's view of pairwise data: each chosen response desirable, each rejected undesirable."""
    out = []
    for p in pairs:
        out.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        out.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    return out


def kto_order(rows: list[dict], batch_size: int, seed: int) -> list[dict]:
    """KTO's unpaired rows in an order where every KL row is a truly mismatched pair.

    TRL builds KTO's KL completions by rotating the completions one row within each chunk of
    ``batch_size`` consecutive rows (its batches: KTO samples sequentially): row i is scored with the
    completion of row i-1, the chunk's first row with its last.  The KTO paper's reference point z0 is
    estimated from completions of *other* prompts; the unpaired view puts each prompt's desirable and
    undesirable rows side by side, so half of TRL's KL rows would be matched pairs.  Here the rows are
    shuffled (seeded) and rearranged so that no row's predecessor within its chunk has the same
    prompt; a last chunk of one row (it would be its own KL row) is left out."""

    rows = list(rows)
    random.Random(seed).shuffle(rows)
    if len(rows) % batch_size == 1 and len(rows) > 1:
        log.info("KTO: one row left out (a last batch of one row has no mismatched KL completion)")
        rows = rows[:-1]
    n, B = len(rows), batch_size
    for i in range(n):
        start = i - i % B
        last = i == min(start + B, n) - 1

        def fits(prompt) -> bool:  # the row at i may have this prompt
            return (i == start or prompt != rows[i - 1]["prompt"]) and (not last or prompt != rows[start]["prompt"])

        if fits(rows[i]["prompt"]):
            continue
        for j in range(i + 1, n):  # swap in a later row that fits here
            if fits(rows[j]["prompt"]):
                rows[i], rows[j] = rows[j], rows[i]
                break
    return rows


def kl_matched_rows(dataset, batch_size: int) -> int:
    """How many of TRL's KL rows (the prompt of row i with the completion of row i-1 in its chunk)
    share the prompt of the completion's own row: 0 when every KL pair is mismatched."""
    prompts = dataset["prompt_ids"] if "prompt_ids" in dataset.column_names else dataset["prompt"]
    n, matched = len(prompts), 0
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        for i in range(start, end):
            j = i - 1 if i > start else end - 1
            matched += int(prompts[i] == prompts[j])  # a chunk of one row is its own KL row
    return matched


class StoreReferenceKTOTrainer(KTOTrainer):
    """TRL's KTOTrainer whose reference log-prob precomputation (``precompute_ref_log_probs``: each row's and
    each KL row's, in the training order) goes through po-bench's store (``ref_logps_cache`` = (load, save);
    None: TRL's reference scored each step).  The values are the ones TRL scores each step (same batches,
    same padding: KTO trains sequentially on the rows in their order), so a KTO run with the store's reference
    trains the same policy; KTO runs on the same rows share them (other beta, weights)."""

    def __init__(self, *a, ref_logps_cache=None, **kw):
        self.ref_logps_cache = ref_logps_cache  # set before TRL's __init__, which runs the reference pass
        super().__init__(*a, **kw)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.ref_logps_cache is None or name != "train":
            return super()._precompute_ref_logps(dataset, name, batch_size)
        load, save = self.ref_logps_cache
        cols = ["ref_logps", *(["ref_KL_logps"] if self.calculate_KL else [])]
        cached = load()
        if cached is not None and all(len(cached.get(c) or []) == len(dataset) for c in cols):
            log.info("reference log-probs (KTO rows): loaded from the artifact store")
            for c in cols:
                dataset = dataset.add_column(c, cached[c])
            return dataset
        out = super()._precompute_ref_logps(dataset, name, batch_size)
        if self.is_world_process_zero():  # one writer under a process group
            save({c: [float(x) for x in out[c]] for c in cols})
        return out


class PureLossKTOTrainer(KTOTrainer):
    """TRL's KTOTrainer (KL rows off: loss_type apo_zero_unpaired) whose loss is one of po-bench's unpaired
    functions (``spec`` from losses.UNPAIRED_LOSSES, called with ``hparams``) over per-sequence statistics of
    each row (:class:`losses.UnpairedStats`).  TRL's tokenisation and collation are reused; the reference
    log-probs are computed each step (no store cache: the unpaired rows are not the pairs the DPO reference
    artifact holds).  BCO's running mean delta is held here, over all processes (a gathered sum and count per
    step)."""

    def __init__(self, *a, spec: LossSpec, hparams: dict, **kw):
        self.loss_spec, self.hparams = spec, hparams
        super().__init__(*a, **kw)

    def _compute_loss(self, model, inputs, return_outputs):
        spec = self.loss_spec
        mode = "train" if self.model.training else "eval"
        logps, lens = sequence_logps(model, inputs)
        if "ref_logps" in inputs:
            ref = inputs["ref_logps"].to(logps.dtype)
        else:
            with torch.no_grad():
                ref, _ = sequence_logps(self.ref_model if self.ref_model is not None else model, inputs)
        labels = inputs["label"].to(device=logps.device, dtype=torch.bool)
        stats = UnpairedStats(logps, ref, lens, labels)
        state, m = {}, self._metrics[mode]
        if "delta" in spec.state:  # BCO: the running mean of the rewards (all rows), updated before the loss
            r = (self.beta * stats.logratio).detach().double()
            tot = self.accelerator.gather(torch.stack([r.sum(), r.new_tensor(float(r.numel()))]).unsqueeze(0))
            tot = tot.reshape(-1, 2).sum(0)
            if mode == "train":
                self._pob_delta = running_mean_update(
                    *getattr(self, "_pob_delta", (0.0, 0)), (tot[0] / tot[1].clamp(min=1)).reshape(1)
                )
            state["delta"] = getattr(self, "_pob_delta", (0.0, 0))[0]
            m["bco/delta"].append(state["delta"])
        out = spec.fn(stats, beta=self.beta, **self.hparams, **state)
        for k, v in (out.logs or {}).items():
            m[k].append(float(v))
        loss = out.losses.mean()
        if out.chosen_rewards.numel():
            m["rewards/chosen"].append(out.chosen_rewards.mean().item())
            m["logps/chosen"].append(logps[labels].detach().mean().item())
        if out.rejected_rewards.numel():
            m["rewards/rejected"].append(out.rejected_rewards.mean().item())
            m["logps/rejected"].append(logps[~labels].detach().mean().item())
        if out.chosen_rewards.numel() and out.rejected_rewards.numel():
            m["rewards/margins"].append(out.chosen_rewards.mean().item() - out.rejected_rewards.mean().item())
        return (loss, None) if return_outputs else loss

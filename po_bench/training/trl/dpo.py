"""The DPO family: TRL's DPOTrainer, its data pipeline (tokenisation, collation, the reference pass, logging)
reused for TRL's own DPO losses and for po-bench's pure pairwise functions.

- :class:`StoreReferenceDPOTrainer` (``MethodKind.PAIRWISE_TRL``): TRL's loss (``loss.args.loss_type``); the
  reference log-probs go through po-bench's store; Step-DPO's one-step completions stay open (no <eos>).
- :class:`PureLossDPOTrainer` (``PAIRWISE_CUSTOM``): the loss a pure function of ``training/losses.py`` over
  per-sequence statistics (:class:`losses.PairStats`); per-pair scores (MADPO, Sem-DPO) ride along.
- :class:`FusedReferenceDPOTrainer` (``FUSED_REFERENCE``): InfiFPO, the reference a fusion of source models.
- :class:`TokenLossDPOTrainer` (``TOKEN_LEVEL``): a pure function over per-token statistics (TGDPO), the
  reference and the guide policy scored each step.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader
from trl import DPOTrainer

from po_bench.training.losses import LossSpec, PairStats, TokenStats, fuse_reference, running_mean_update
from po_bench.training.trl.logps import sequence_logps, token_logps

log = logging.getLogger(__name__)

PAIR_SCORE = "pair_score"  # the per-pair score's column in the training rows and key in each batch


class StoreReferenceDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer whose reference log-prob precomputation goes through po-bench's store
    (``ref_logps_cache`` = (load, save); None: TRL's own pass), for completions that may not end the response.

    ``open_completions`` (pairs with a ``step``: Step-DPO's one-step completions): TRL appends <eos> to every
    completion; it is removed again after tokenisation, as the Step-DPO authors' trainer leaves it out
    (dvlab-research/Step-DPO stepdpo_trainer.py: the EOS lines commented out), so the step is scored as a
    continuation, not as the end of the answer."""

    def __init__(self, *a, ref_logps_cache=None, open_completions: bool = False, **kw):
        # set before TRL's __init__, which prepares the dataset and runs the reference pass
        self.ref_logps_cache = ref_logps_cache
        self.open_completions = open_completions
        super().__init__(*a, **kw)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        ds = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not self.open_completions:
            return ds
        eos = self._tokenizer.eos_token_id

        def strip(ex):
            return {
                k: ex[k][:-1] if len(ex[k]) > 1 and ex[k][-1] == eos else ex[k] for k in ("chosen_ids", "rejected_ids")
            }

        return ds.map(strip)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if self.ref_logps_cache is None:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        load, save = self.ref_logps_cache
        if name == "train":
            cached = load()
            if cached is not None and len(cached["ref_chosen_logps"]) == len(dataset):
                log.info("reference log-probs: loaded from the artifact store")
                return dataset.add_column("ref_chosen_logps", cached["ref_chosen_logps"]).add_column(
                    "ref_rejected_logps", cached["ref_rejected_logps"]
                )
        out = super()._precompute_ref_logps(dataset, name, batch_size)
        if name == "train" and self.is_world_process_zero():  # one writer under a process group
            save(
                {
                    "ref_chosen_logps": [float(x) for x in out["ref_chosen_logps"]],
                    "ref_rejected_logps": [float(x) for x in out["ref_rejected_logps"]],
                }
            )
        return out


class PureLossDPOTrainer(StoreReferenceDPOTrainer):
    """DPOTrainer whose loss is one of po-bench's pure functions (``spec``, a :class:`losses.LossSpec`, called with
    ``hparams``).  TRL's data pipeline (tokenisation, collation, reference precompute, logging) is reused; only
    the loss is replaced: per-sequence statistics are computed here and handed to the function.

    ``needs_ref=False`` (a reference-free loss): no reference log-probs at all.  ``pair_scores=True`` (a loss
    with per-pair weights): each row's ``pair_score`` column reaches the loss.  TRL 1.16's DPO pipeline keeps
    an extra column through tokenisation and the over-long filter (``Dataset.map`` keeps columns) but drops it
    twice after: ``remove_unused_columns`` keeps only its signature columns, and its DataCollatorForPreference
    builds the batch from ids and reference log-probs only.  Here the column joins the signature columns, the
    collator is wrapped to add it to the batch (a float tensor, in the batch's row order), and the reference
    log-prob pass, which hands the batch to the model, drops it."""

    def __init__(self, *a, spec: LossSpec, hparams: dict, needs_ref: bool, pair_scores: bool = False, **kw):
        self.loss_spec, self.hparams, self.needs_ref, self.pair_scores = spec, hparams, needs_ref, pair_scores
        super().__init__(*a, **kw)
        if pair_scores:
            inner = self.data_collator

            def collate(examples):
                batch = inner(examples)
                batch[PAIR_SCORE] = torch.tensor([float(e[PAIR_SCORE]) for e in examples], dtype=torch.float64)
                return batch

            self.data_collator = collate

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.pair_scores and PAIR_SCORE not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, PAIR_SCORE]

    def compute_ref_log_probs(self, model, inputs):
        if self.pair_scores:
            inputs = {k: v for k, v in inputs.items() if k != PAIR_SCORE}
        return super().compute_ref_log_probs(model, inputs)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if not self.needs_ref:
            return dataset  # reference-free: no reference log-probs at all
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _compute_loss(self, model, inputs, return_outputs):
        spec = self.loss_spec
        mode = "train" if self.model.training else "eval"
        logps, lens = sequence_logps(model, inputs)
        c, r = logps.chunk(2)
        nc, nr = lens.chunk(2)
        rc = rr = None
        if self.needs_ref:
            if "ref_chosen_logps" in inputs:
                rc, rr = inputs["ref_chosen_logps"].to(c.dtype), inputs["ref_rejected_logps"].to(c.dtype)
            else:
                with torch.no_grad():
                    ref = self.ref_model if self.ref_model is not None else model
                    ref_logps, _ = sequence_logps(ref, inputs)
                rc, rr = ref_logps.chunk(2)
        stats = PairStats(c, r, nc, nr, rc, rr)
        state = {}
        m = self._metrics[mode]
        if "delta" in spec.state:  # BCO: the running mean of the rewards, updated before the loss
            rewards = self.accelerator.gather(
                self.beta * torch.cat([stats.chosen_logratio, stats.rejected_logratio]).detach()
            )
            if mode == "train":
                self._pob_delta = running_mean_update(*getattr(self, "_pob_delta", (0.0, 0)), rewards)
            state["delta"] = getattr(self, "_pob_delta", (0.0, 0))[0]
            m["bco/delta"].append(state["delta"])
        if spec.init_state is not None:  # a loss with running state (beta-DPO): held here, pure in losses.py
            if getattr(self, "_pob_state", None) is None:
                self._pob_state = spec.init_state(self.args.seed)
            state.update(self._pob_state)
        if spec.per_pair:  # each pair's score, carried through TRL's data pipeline (pair_scores=True)
            state[spec.per_pair[0]] = inputs[PAIR_SCORE].to(device=c.device)
        out = spec.fn(stats, beta=self.beta, **self.hparams, **state)
        if out.state is not None and mode == "train":  # eval batches read the state, never move it
            self._pob_state = out.state
        for k, v in (out.logs or {}).items():
            m[k].append(float(v))
        loss = out.losses.mean()
        m["rewards/chosen"].append(out.chosen_rewards.mean().item())
        m["rewards/rejected"].append(out.rejected_rewards.mean().item())
        m["rewards/margins"].append((out.chosen_rewards - out.rejected_rewards).mean().item())
        m["rewards/accuracies"].append((out.chosen_rewards > out.rejected_rewards).float().mean().item())
        m["logps/chosen"].append(c.detach().mean().item())
        m["logps/rejected"].append(r.detach().mean().item())
        return (loss, None) if return_outputs else loss


def source_sequence_logps(trainer, model, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of completion log-probs, completion tokens) of every row's chosen and rejected completion under
    ``model``, with the trainer's own tokenisation and collation (rows in dataset order; shapes (2, n)).
    Every process scores every row (no sharding), so every process holds the same values."""

    device = trainer.accelerator.device
    model = model.to(device).eval()
    cols = [c for c in ("prompt_ids", "chosen_ids", "rejected_ids") if c in dataset.column_names]
    loader = DataLoader(
        dataset.select_columns(cols), batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False
    )
    sums, lens = [], []
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            s, n = (x.cpu().double() for x in sequence_logps(model, batch))
            sums.append(torch.stack(s.chunk(2)))
            lens.append(torch.stack(n.chunk(2)))
    return torch.cat(sums, 1), torch.cat(lens, 1)


class FusedReferenceDPOTrainer(PureLossDPOTrainer):
    """A pure-function trainer whose reference log-probs are InfiFPO's fused source model
    (losses.fuse_reference) of ``sources``: the initial pivot's log-probs (TRL's reference pass, through the
    store's cache) and each source model's, length-normalised, clipped and fused per response; the fused
    length-normalised log-prob times the completion length replaces ``ref_*_logps`` of each training row."""

    def __init__(self, *a, sources: list, **kw):
        self.sources = sources
        super().__init__(*a, **kw)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        out = super()._precompute_ref_logps(dataset, name, batch_size)
        if name != "train":
            return out
        sources = self.sources
        ref_w = torch.tensor(out["ref_chosen_logps"], dtype=torch.float64)
        ref_l = torch.tensor(out["ref_rejected_logps"], dtype=torch.float64)
        per_source = [source_sequence_logps(self, m, dataset, batch_size) for m in sources]
        n = per_source[0][1].clamp(min=1)  # completion tokens (the pivot's tokenisation, shared)
        src = torch.stack([s for s, _ in per_source])  # (N, 2, rows)
        fw, fl = fuse_reference(ref_w / n[0], ref_l / n[1], src[:, 0] / n[0], src[:, 1] / n[1])
        for m in sources:
            m.to("cpu")
        log.info(
            "InfiFPO: fused reference of %d source models on %d pairs (a source above the pivot on "
            "%.0f%% of the chosen, below it on %.0f%% of the rejected completions)",
            len(sources),
            len(dataset),
            100 * float((fw > ref_w / n[0]).double().mean()),
            100 * float((fl < ref_l / n[1]).double().mean()),
        )
        out = out.remove_columns(["ref_chosen_logps", "ref_rejected_logps"])
        return out.add_column("ref_chosen_logps", (fw * n[0]).tolist()).add_column(
            "ref_rejected_logps", (fl * n[1]).tolist()
        )


class TokenLossDPOTrainer(StoreReferenceDPOTrainer):
    """DPOTrainer whose loss is a pure function over per-token statistics (``losses.TOKEN_LOSSES``, TGDPO;
    :class:`losses.TokenStats`): per-token log-probs of the policy, the reference (each step, no precomputed
    sums) and the ``guide`` policy (frozen, no gradient), handed to the function."""

    def __init__(self, *a, spec: LossSpec, hparams: dict, guide=None, **kw):
        self.loss_spec, self.hparams, self.guide = spec, hparams, guide
        super().__init__(*a, **kw)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        tok, mask = token_logps(model, inputs)
        with torch.no_grad():
            ref = self.ref_model if self.ref_model is not None else model
            ref_tok, _ = token_logps(ref, inputs)
            guide_tok = None
            if self.guide is not None:
                if getattr(self, "_pob_guide_on", None) is None:  # once: the guide on this process's device
                    self._pob_guide_on = self.guide.to(self.accelerator.device).eval()
                guide_tok, _ = token_logps(self._pob_guide_on, inputs)
        c, r = tok.chunk(2)
        mc, mr = mask.chunk(2)
        rc, rr = ref_tok.chunk(2)
        gc, gr = guide_tok.chunk(2) if guide_tok is not None else (None, None)
        out = self.loss_spec.fn(TokenStats(c, r, mc, mr, rc, rr, gc, gr), beta=self.beta, **self.hparams)
        m = self._metrics[mode]
        for k, v in (out.logs or {}).items():
            m[k].append(float(v))
        m["rewards/chosen"].append(out.chosen_rewards.mean().item())
        m["rewards/rejected"].append(out.rejected_rewards.mean().item())
        m["rewards/margins"].append((out.chosen_rewards - out.rejected_rewards).mean().item())
        m["rewards/accuracies"].append((out.chosen_rewards > out.rejected_rewards).float().mean().item())
        m["logps/chosen"].append(c.detach().sum(-1).mean().item())
        m["logps/rejected"].append(r.detach().sum(-1).mean().item())
        loss = out.losses.mean()
        return (loss, None) if return_outputs else loss

"""The listwise family: rated lists (a prompt, k responses, their scores) on TRL's DPOTrainer (model and
reference handling, LoRA, logging, the reference sync of a moving anchor), with po-bench's own tokenisation
(TRL's, per response), :class:`ListCollator` and the loss a pure function of ``training/listwise.py`` over
:class:`listwise.ListStats` (``MethodKind.LISTWISE``: LiPO, IRPO, ADPO-list; TPO with per-step inputs)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import torch
from accelerate.utils import is_peft_model
from trl import DPOTrainer
from trl.data_utils import common_prefix_length

from po_bench.training.listwise import ListStats, ListwiseSpec
from po_bench.training.trl.logps import sequence_logps

log = logging.getLogger(__name__)


def list_view(rows: list[dict]) -> list[dict]:
    """The listwise trainer's rows: rated lists as they are (prompt, responses best first, scores, and any
    per-response extras); a preference pair is a list of two, scores (1, 0)."""
    if "responses" in rows[0]:
        return [{k: v for k, v in r.items() if k not in ("gold", "ranks", "row")} for r in rows]
    return [{"prompt": p["prompt"], "responses": [p["chosen"], p["rejected"]], "scores": [1.0, 0.0]} for p in rows]


@dataclasses.dataclass
class ListCollator:
    """Rated lists -> one padded batch of B*K sequences (row b's K responses at b*K .. b*K+K-1; K the
    longest list of the batch).  A list shorter than K is padded with placeholder sequences (prompt + one
    pad token, no completion tokens) that ``list_mask`` marks False.  Truncation keeps the start, as TRL's
    preference collator.  ``scores``, ``ref_logps`` and any per-response ``extras`` come as [B, K]."""

    pad_token_id: int
    max_length: int | None = None
    extras: tuple = ()

    def __call__(self, examples: list[dict]) -> dict:
        B, K = len(examples), max(len(e["response_ids"]) for e in examples)
        seqs, comp, real = [], [], []
        for e in examples:
            p = list(e["prompt_ids"])
            for j in range(K):
                ok = j < len(e["response_ids"])
                r = list(e["response_ids"][j]) if ok else [self.pad_token_id]
                ids, cm = p + r, [0] * len(p) + [int(ok)] * len(r)
                if self.max_length is not None:
                    ids, cm = ids[: self.max_length], cm[: self.max_length]
                seqs.append(ids)
                comp.append(cm)
                real.append(ok)
        T = max(len(x) for x in seqs)
        out = {
            "input_ids": torch.full((B * K, T), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((B * K, T), dtype=torch.long),
            "completion_mask": torch.zeros((B * K, T), dtype=torch.long),
            "list_mask": torch.tensor(real, dtype=torch.bool).view(B, K),
        }
        for i, (ids, cm) in enumerate(zip(seqs, comp)):
            out["input_ids"][i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            out["attention_mask"][i, : len(ids)] = 1
            out["completion_mask"][i, : len(cm)] = torch.tensor(cm, dtype=torch.long)

        def padded(key):
            t = torch.zeros((B, K), dtype=torch.float32)
            for b, e in enumerate(examples):
                t[b, : len(e[key])] = torch.tensor([float(x) for x in e[key]], dtype=torch.float32)
            return t

        for key in ("scores", "ref_logps", *self.extras):
            if key in examples[0]:
                out[key] = padded(key)
        if "step_ids" in examples[0]:  # per-token step index of each completion token (0: no step), [B*K, T]
            out["step_ids"] = torch.zeros((B * K, T), dtype=torch.long)
            for b, e in enumerate(examples):
                n_p = len(e["prompt_ids"])
                for j, st in enumerate(e["step_ids"]):
                    st = list(st)[: max(T - n_p, 0)]
                    out["step_ids"][b * K + j, n_p : n_p + len(st)] = torch.tensor(st, dtype=torch.long)
        return out


class ListwiseTrainer(DPOTrainer):
    """TRL's DPOTrainer over rated lists: the loss ``spec`` (a :class:`listwise.ListwiseSpec` of ``function``,
    called with ``fn_kwargs``), a reference pass that stores k log-probs per row (through po-bench's store when
    ``ref_logps_cache`` = (load, save) is given; none when ``needs_ref`` is False)."""

    def __init__(
        self,
        *a,
        spec: ListwiseSpec,
        function: str,
        fn_kwargs: dict,
        needs_ref: bool,
        ref_logps_cache=None,
        data_collator=None,
        **kw,
    ):
        # set before TRL's __init__, which prepares the dataset and runs the reference pass
        self.list_spec, self.function_name, self.fn_kwargs = spec, function, fn_kwargs
        self.needs_ref, self.ref_logps_cache = needs_ref, ref_logps_cache
        if data_collator is not None:
            data_collator.extras = tuple(spec.extras)
        super().__init__(*a, data_collator=data_collator, **kw)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        eos = self._tokenizer.eos_token
        spec, function = self.list_spec, self.function_name  # (the map function closes over these, not the trainer)

        def tok(x, **kw):
            if isinstance(x, list):  # conversational: the chat template, as TRL
                return processing_class.apply_chat_template(x, tokenize=True, return_dict=True, **kw)["input_ids"]
            return processing_class(text=x)["input_ids"]

        def tokenize(ex):
            conv = isinstance(ex["prompt"], list)
            prompt_ids = tok(ex["prompt"], add_generation_prompt=True) if conv else tok(ex["prompt"])
            full = [
                tok(ex["prompt"] + y) if conv else tok(ex["prompt"] + (y if y.endswith(eos) else y + eos))
                for y in ex["responses"]
            ]
            n = min(common_prefix_length(prompt_ids, f) for f in full)  # where the completions start
            out = {"prompt_ids": prompt_ids[:n], "response_ids": [f[n:] for f in full]}
            if spec.steps:  # each completion token's step (1..m; 0 after the last step, e.g. <eos>)
                if conv:
                    raise ValueError(f"loss.function={function}: step spans need plain-text prompts")
                ids = []
                for y, r, ends in zip(ex["responses"], out["response_ids"], ex["step_ends"]):
                    bounds = [min(max(len(tok(ex["prompt"] + y[:e])) - n, 0), len(r)) for e in ends]
                    st, lo = [0] * len(r), 0
                    for k, hi in enumerate(bounds, start=1):
                        st[lo:hi] = [k] * max(hi - lo, 0)
                        lo = max(lo, hi)
                    ids.append(st)
                out["step_ids"] = ids
            return out

        dataset = dataset.map(tokenize)
        if args.max_length is not None:  # a prompt that fills max_length leaves no completion token
            dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < args.max_length)
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [
                "prompt_ids",
                "response_ids",
                "scores",
                "ref_logps",
                *self.list_spec.extras,
                *(["step_ids"] if self.list_spec.steps else []),
            ]

    def _reference(self, model):
        """The reference model and the context it runs in (LoRA: the policy with its adapters off)."""
        if self.ref_model is None and is_peft_model(self.model):
            return model, self.accelerator.unwrap_model(self.model).disable_adapter()
        return (self.ref_model if self.ref_model is not None else model), contextlib.nullcontext()

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if not self.needs_ref or self.list_spec.steps:  # per-step losses: per-token reference log-probs each batch
            return dataset
        if self.ref_logps_cache is not None and name == "train":
            cached = self.ref_logps_cache[0]()
            if cached is not None and len(cached["ref_logps"]) == len(dataset):
                log.info("reference log-probs (lists): loaded from the artifact store")
                return dataset.add_column("ref_logps", cached["ref_logps"])
        ref, ctx = self._reference(self.model)
        device = next(ref.parameters()).device
        out: list[list[float]] = []
        with torch.no_grad(), ctx:
            for start in range(0, len(dataset), batch_size):
                rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                batch = {k: v.to(device) for k, v in self.data_collator(rows).items()}
                logps, _ = sequence_logps(ref, batch)
                logps = logps.view(batch["list_mask"].shape).float().cpu()
                out += [logps[b, : len(r["response_ids"])].tolist() for b, r in enumerate(rows)]
        if self.ref_logps_cache is not None and name == "train" and self.is_world_process_zero():
            self.ref_logps_cache[1]({"ref_logps": out})
        return dataset.add_column("ref_logps", out)

    def _step_stats(self, model, inputs, lm):
        """Per-step inputs (TPO): each step's mean token log-ratio and mean last-layer hidden state
        (the policy's, with gradient), [B, K, S(, H)].  Steps past the list's shortest response's last
        step are merged into it, as the authors' dataset clamps step indices to the list's minimum."""
        ids, attn = inputs["input_ids"], inputs["attention_mask"]
        out = model(input_ids=ids, attention_mask=attn, use_cache=False, output_hidden_states=True)
        tok = torch.log_softmax(out.logits[:, :-1].float(), -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        hid = out.hidden_states[-1][:, 1:].float()  # token t's state, aligned with its log-prob
        rm, ctx = self._reference(model)
        with torch.no_grad(), ctx:
            rl = rm(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
            ref_tok = torch.log_softmax(rl, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        cm = inputs["completion_mask"][:, 1:].to(tok.dtype)
        st = inputs["step_ids"][:, 1:] * cm.long()
        big = st.new_full((), 1 << 30)
        last = torch.where(lm, st.amax(1).view(lm.shape), big).amin(-1, keepdim=True)  # [B, 1]
        st = torch.minimum(st, last.expand(lm.shape).reshape(-1, 1))
        S = max(int(st.max()), 1)
        oh = (st.unsqueeze(-1) == torch.arange(1, S + 1, device=st.device)).to(tok.dtype)  # [N, T-1, S]
        cnt = oh.sum(1)
        lr = ((tok - ref_tok) * cm).unsqueeze(-1)
        m = (oh * lr).sum(1) / cnt.clamp(min=1)
        e = torch.einsum("nts,nth->nsh", oh, hid) / cnt.clamp(min=1).unsqueeze(-1)
        B, K = lm.shape
        extra = {
            "step_logratio": m.view(B, K, S),
            "step_hidden": e.view(B, K, S, -1),
            "step_mask": (cnt > 0).view(B, K, S),
        }
        return ((tok * cm).sum(1).view(B, K), cm.sum(1).view(B, K), (ref_tok * cm).sum(1).view(B, K), extra)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        lm = inputs["list_mask"].bool()
        step_extra = {}
        if self.list_spec.steps:
            logps, lens, ref, step_extra = self._step_stats(model, inputs, lm)
        else:
            logps, lens = sequence_logps(model, inputs)
            logps, lens = logps.view(lm.shape), lens.view(lm.shape)
        ref = ref if self.list_spec.steps else None
        if self.needs_ref and not self.list_spec.steps:
            if "ref_logps" in inputs:
                ref = inputs["ref_logps"].to(logps.dtype)
            else:  # a moving anchor (or no precompute): the reference's log-probs now
                rm, ctx = self._reference(model)
                with torch.no_grad(), ctx:
                    ref = sequence_logps(rm, inputs)[0].view(lm.shape)
        scores = inputs["scores"].to(logps.dtype)
        stats = ListStats(
            logps,
            ref,
            lens,
            scores,
            lm,
            {**{n: inputs[n].to(logps.dtype) for n in self.list_spec.extras}, **step_extra},
        )
        state = {}
        if self.list_spec.init_state is not None:  # a loss with running state: held here, pure in listwise.py
            if getattr(self, "_pob_state", None) is None:
                self._pob_state = self.list_spec.init_state(self.args.seed)
            state.update(self._pob_state)
        out = self.list_spec.fn(stats, beta=self.beta, **self.fn_kwargs, **state)
        if out.state is not None and mode == "train":
            self._pob_state = out.state
        m = self._metrics[mode]
        for k, v in (out.logs or {}).items():
            m[k].append(float(v))
        # the best and the worst response of each list (by score) as "chosen" / "rejected"
        r = out.rewards.detach()
        best = scores.masked_fill(~lm, float("-inf")).argmax(-1, keepdim=True)
        worst = scores.masked_fill(~lm, float("inf")).argmin(-1, keepdim=True)
        rc, rr = r.gather(-1, best).squeeze(-1), r.gather(-1, worst).squeeze(-1)
        m["rewards/chosen"].append(rc.mean().item())
        m["rewards/rejected"].append(rr.mean().item())
        m["rewards/margins"].append((rc - rr).mean().item())
        m["rewards/accuracies"].append((rc > rr).float().mean().item())
        ordered = (scores.unsqueeze(-1) > scores.unsqueeze(-2)) & lm.unsqueeze(-1) & lm.unsqueeze(-2)
        agree = (r.unsqueeze(-1) > r.unsqueeze(-2)) & ordered
        m["rewards/pair_accuracy"].append((agree.sum() / ordered.sum().clamp(min=1)).item())
        m["logps/chosen"].append(logps.detach().gather(-1, best).mean().item())
        m["logps/rejected"].append(logps.detach().gather(-1, worst).mean().item())
        m["list/size"].append(lm.sum(-1).float().mean().item())
        loss = out.losses.mean()
        return (loss, None) if return_outputs else loss

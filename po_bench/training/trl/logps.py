"""The log-prob passes po-bench's trainers share: per-token and per-sequence completion log-probs of a
collated batch (TRL's ``input_ids`` / ``attention_mask`` / ``completion_mask``)."""

from __future__ import annotations

import torch


def token_logps(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token completion log-probs (0 off the completion) and the completion mask of every sequence of a
    batch (TRL's collated ``input_ids`` / ``attention_mask`` / ``completion_mask``), next-token aligned."""
    ids, attn = inputs["input_ids"], inputs["attention_mask"]
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
    tok = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = inputs["completion_mask"][:, 1:].to(tok.dtype)
    return tok * mask, mask


def sequence_logps(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion-token log-probs and completion token counts of every sequence of a batch."""
    tok, mask = token_logps(model, inputs)
    return tok.sum(1), mask.sum(1)

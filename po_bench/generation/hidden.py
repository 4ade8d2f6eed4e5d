"""Hidden-state statistics of preference pairs: CHES, the centered hidden embedding similarity of Razin et
al., "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization" (ICLR 2025;
code: princeton-nlp/unintentional-unalignment, ``ches/ches.py::compute_ches_scores``).

For a pair (x, y+, y-), h_k are the model's last-layer hidden states at the positions that *predict* the
response tokens: the last prompt token through the second-to-last response token (the response includes
its EOS token, as the trainers score it), so one position per response token.  With S+ = sum_k h_k(x, y+)
and S- = sum_k h_k(x, y-):

    CHES(x, y+, y-)     = <S+, S->  -  ||S+||^2
    CHES_ln(x, y+, y-)  = <S+/|y+|, S-/|y-|>  -  ||S+||^2 / |y+|^2      (|y|: response tokens)

A high CHES means the two responses look alike to the model; the paper finds such pairs displace the
chosen response's likelihood under DPO and filters the highest-CHES pairs out (it keeps the lowest
length-normalised scores).  The positions are those of ``ches.py`` (the authors' per-example script
includes one more); tokenisation is the trainers' (:func:`po_bench.generation.logprobs.tokenize_completion`).
"""

from __future__ import annotations

import torch

from po_bench.generation.logprobs import MAX_BATCH_TOKENS, right_padded, token_batches, tokenize_completion


def ches_from_sums(s_pos: torch.Tensor, s_neg: torch.Tensor, n_pos, n_neg) -> tuple[torch.Tensor, torch.Tensor]:
    """(CHES, length-normalised CHES) per pair from the summed hidden states ``[N, H]`` and the response
    lengths in tokens ``[N]`` (the formulas of the module docstring)."""
    s_pos, s_neg = s_pos.double(), s_neg.double()
    n_pos = torch.as_tensor(n_pos, dtype=torch.float64)
    n_neg = torch.as_tensor(n_neg, dtype=torch.float64)
    cross = (s_pos * s_neg).sum(-1)
    own = (s_pos * s_pos).sum(-1)
    return cross - own, cross / (n_pos * n_neg) - own / n_pos**2


@torch.no_grad()
def response_hidden_sums(
    model,
    tokenizer,
    prompts,
    completions,
    batch_size: int = 32,
    max_length: int | None = None,
    max_tokens: int = MAX_BATCH_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the last-layer hidden states at the positions that predict each completion's tokens ``[N, H]``
    in float64, the number of those positions ``[N]``), in right-padded batches of at most ``batch_size``
    sequences and ``max_tokens`` padded tokens; a sequence is cut at ``max_length`` tokens as in training."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [tokenize_completion(tokenizer, p, c) for p, c in zip(prompts, completions)]
    seqs = [(p + c)[:max_length] if max_length else p + c for p, c in encoded]
    sums: list[torch.Tensor] = [torch.empty(0)] * len(seqs)
    counts = torch.zeros(len(seqs), dtype=torch.long)
    for idx in token_batches([len(s) for s in seqs], batch_size, max_tokens):
        ids, attn = right_padded([seqs[i] for i in idx], pad)
        out = model(input_ids=ids.to(device), attention_mask=attn.to(device), output_hidden_states=True)
        h = out.hidden_states[-1].double().cpu()
        for row, i in enumerate(idx):
            start, end = len(encoded[i][0]) - 1, len(seqs[i]) - 1  # predicting positions [P-1, len-2]
            if end <= start:
                raise ValueError(f"pair {i}: no response token left within max_length={max_length}")
            sums[i] = h[row, start:end].sum(0)
            counts[i] = end - start
    return torch.stack(sums), counts


def ches_scores(model, tokenizer, pairs: list[dict], **kw) -> dict[str, list[float]]:
    """Per pair (``prompt``, ``chosen``, ``rejected``): ``ches`` and ``ches_ln`` (length-normalised) under
    ``model``, and the response lengths they used; ``kw`` as :func:`response_hidden_sums`."""
    prompts = [p["prompt"] for p in pairs]
    s_pos, n_pos = response_hidden_sums(model, tokenizer, prompts, [p["chosen"] for p in pairs], **kw)
    s_neg, n_neg = response_hidden_sums(model, tokenizer, prompts, [p["rejected"] for p in pairs], **kw)
    ches, ches_ln = ches_from_sums(s_pos, s_neg, n_pos, n_neg)
    return {
        "ches": ches.tolist(),
        "ches_ln": ches_ln.tolist(),
        "chosen_tokens": n_pos.tolist(),
        "rejected_tokens": n_neg.tolist(),
    }


def ches_keep(scores: list[float], quantile: float) -> list[int]:
    """The indices of the pairs a CHES filter keeps: the ``quantile`` share with the lowest scores (the
    authors keep the lowest length-normalised CHES), ties broken by index, in their original order;
    ``round(quantile * n)`` pairs, at least one."""
    if not 0 < quantile <= 1:
        raise ValueError(f"CHES filter quantile {quantile}: allowed (0, 1]")
    n_keep = max(1, round(quantile * len(scores)))
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    return sorted(order[:n_keep])

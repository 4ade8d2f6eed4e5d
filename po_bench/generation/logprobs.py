"""Sequence log-probabilities of completions under a causal LM (policy or reference).

Tokenisation mirrors TRL's preference trainers: the completion is what follows the common prefix
of ``tok(prompt)`` and ``tok(prompt + completion + eos)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def render_prompt(tokenizer, prompt) -> str:
    """A prompt as text: strings pass through; message lists go through the chat template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_completion(tokenizer, prompt, completion) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids).  A message-list completion ([{"role": "assistant", ...}]) is
    rendered with the chat template together with its prompt, as TRL does for conversational data."""
    text = render_prompt(tokenizer, prompt)
    if isinstance(completion, str):
        if not isinstance(prompt, str):
            completion = completion.lstrip()
        eos = tokenizer.eos_token or ""
        full_text = text + completion
        if eos and not full_text.endswith(eos):
            full_text += eos
    else:
        full_text = tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=False)
    p_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    f_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    n = _common_prefix(p_ids, f_ids)
    return f_ids[:n], f_ids[n:]


# Scoring batches are bounded by tokens (padded batch size x longest sequence), not sequences: a
# batch of 2,048-token answers from an 8B model holds a few sequences, a batch of world answers
# many.  Log-softmax runs over chunks of positions in fp32, so no fp32 copy of the whole batch's
# vocabulary logits is ever made (the model's own logits stay in its dtype).
MAX_BATCH_TOKENS = 16384
LOGSOFTMAX_CHUNK_TOKENS = 4096


def token_batches(lengths: list[int], max_sequences: int, max_tokens: int) -> list[list[int]]:
    """Consecutive index batches with at most ``max_sequences`` sequences and at most ``max_tokens``
    padded tokens (n x longest); a single sequence longer than the budget gets a batch of its own."""
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i, n in enumerate(lengths):
        if cur and (len(cur) >= max_sequences or (len(cur) + 1) * max(longest, n) > max_tokens):
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    return batches


def right_padded(seqs: list[list[int]], pad: int):
    """(input_ids, attention_mask) of token sequences, right-padded to the longest (CPU tensors)."""
    import torch  # lazy: as token_logps

    L = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), L), dtype=torch.long)
    for row, x in enumerate(seqs):
        ids[row, : len(x)] = torch.tensor(x)
        attn[row, : len(x)] = 1
    return ids, attn


def token_logps(
    logits: torch.Tensor, targets: torch.Tensor, chunk_tokens: int = LOGSOFTMAX_CHUNK_TOKENS
) -> torch.Tensor:
    """log softmax(logits)[target] per position, computed in fp32 over chunks of positions."""
    import torch  # lazy: torch (~1 s): not for render_prompt (generation, data statistics, a cached run)

    B, L, _ = logits.shape
    rows = max(1, chunk_tokens // max(B, 1))
    out = []
    for start in range(0, L, rows):
        chunk = logits[:, start : start + rows].float()
        out.append(
            torch.log_softmax(chunk, dim=-1).gather(-1, targets[:, start : start + rows].unsqueeze(-1)).squeeze(-1)
        )
    return torch.cat(out, dim=1)


def completion_logps(
    model,
    tokenizer,
    prompts,
    completions,
    batch_size: int = 64,
    max_length: int | None = None,
    max_tokens: int = MAX_BATCH_TOKENS,
):
    """(sum of completion-token log-probs, number of completion tokens) per example, as tensors.
    Runs on the model's device, in batches of at most ``batch_size`` sequences and ``max_tokens``
    padded tokens."""
    import torch  # lazy: as token_logps

    with torch.no_grad():
        model.eval()
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        encoded = [tokenize_completion(tokenizer, p, c) for p, c in zip(prompts, completions)]
        seqs_all = [(p + c)[:max_length] if max_length else p + c for p, c in encoded]
        sums, counts = [], []
        for idx in token_batches([len(s) for s in seqs_all], batch_size, max_tokens):
            batch, seqs = [encoded[i] for i in idx], [seqs_all[i] for i in idx]
            L = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), L), pad, dtype=torch.long)
            attn = torch.zeros((len(seqs), L), dtype=torch.long)
            cmask = torch.zeros((len(seqs), L), dtype=torch.float32)
            for i, ((p, _c), s) in enumerate(zip(batch, seqs)):
                ids[i, : len(s)] = torch.tensor(s)
                attn[i, : len(s)] = 1
                cmask[i, len(p) : len(s)] = 1.0
            ids, attn, cmask = ids.to(device), attn.to(device), cmask.to(device)
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
            tok_logps = token_logps(logits, ids[:, 1:])
            m = cmask[:, 1:]
            sums.append((tok_logps * m).sum(-1).cpu())
            counts.append(m.sum(-1).cpu())
        return torch.cat(sums), torch.cat(counts)

"""Sequence log-probabilities of completions under a causal LM (policy or reference).

Tokenisation mirrors TRL's preference trainers: the completion is what follows the common prefix
of ``tok(prompt)`` and ``tok(prompt + completion + eos)``.
"""

from __future__ import annotations

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


@torch.no_grad()
def completion_logps(model, tokenizer, prompts, completions, batch_size: int = 64, max_length: int | None = None):
    """(sum of completion-token log-probs, number of completion tokens) per example, as tensors."""
    model.eval()
    device = next(model.parameters()).device
    sums, counts = [], []
    for start in range(0, len(prompts), batch_size):
        batch = [tokenize_completion(tokenizer, p, c) for p, c in
                 zip(prompts[start:start + batch_size], completions[start:start + batch_size])]
        seqs = [p + c for p, c in batch]
        if max_length:
            seqs = [s[:max_length] for s in seqs]
        L = max(len(s) for s in seqs)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(seqs), L), pad, dtype=torch.long)
        attn = torch.zeros((len(seqs), L), dtype=torch.long)
        cmask = torch.zeros((len(seqs), L), dtype=torch.float32)
        for i, ((p, c), s) in enumerate(zip(batch, seqs)):
            ids[i, : len(s)] = torch.tensor(s)
            attn[i, : len(s)] = 1
            cmask[i, len(p): len(s)] = 1.0
        ids, attn, cmask = ids.to(device), attn.to(device), cmask.to(device)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
        tok_logps = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        m = cmask[:, 1:]
        sums.append((tok_logps * m).sum(-1).cpu())
        counts.append(m.sum(-1).cpu())
    return torch.cat(sums), torch.cat(counts)

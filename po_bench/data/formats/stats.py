"""Counts and token-length statistics of preference pairs under a tokenizer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from po_bench.generation.logprobs import render_prompt


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _lengths(tokenizer, prompt, response) -> tuple[int, int]:
    """(prompt tokens, response tokens) as a preference trainer sees them: plain prompts as text,
    responses with EOS appended; conversational ones through the chat template, the response being
    what the template adds after the generation prompt (end-of-turn tokens included)."""
    p_text = render_prompt(tokenizer, prompt)
    n_p = _n_tokens(tokenizer, p_text)
    if isinstance(prompt, str):
        eos = tokenizer.eos_token or ""
        return n_p, _n_tokens(tokenizer, response) + (1 if eos else 0)
    full = tokenizer.apply_chat_template(list(prompt) + list(response), tokenize=False)
    if full.startswith(p_text):
        return n_p, _n_tokens(tokenizer, full[len(p_text) :])
    return n_p, max(0, _n_tokens(tokenizer, full) - n_p)


def _pct(values: Sequence[int]) -> dict:
    if not len(values):
        return {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    a = np.asarray(values, dtype=float)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p99": float(np.percentile(a, 99)),
        "max": int(a.max()),
        "mean": float(a.mean()),
    }


def data_stats(pairs: Sequence[dict], tokenizer, max_length: int) -> dict:
    """Counts and token-length statistics of preference pairs under ``tokenizer``.

    Percentiles (p50/p90/p99/max/mean, numpy's linear interpolation) of prompt, chosen and rejected
    lengths; the mean chosen-minus-rejected length gap; and how many pairs exceed ``max_length``
    (prompt + the longer response), i.e. would be truncated by the trainer.
    """
    lp, lc, lr = [], [], []
    for p in pairs:
        n_p, n_c = _lengths(tokenizer, p["prompt"], p["chosen"])
        _, n_r = _lengths(tokenizer, p["prompt"], p["rejected"])
        lp.append(n_p)
        lc.append(n_c)
        lr.append(n_r)
    n_trunc = sum(1 for a, b, c in zip(lp, lc, lr) if a + max(b, c) > max_length)
    n = len(pairs)
    return {
        "n_pairs": n,
        "conversational": sum(1 for p in pairs if not isinstance(p["prompt"], str)),
        "prompt_tokens": _pct(lp),
        "chosen_tokens": _pct(lc),
        "rejected_tokens": _pct(lr),
        "response_tokens": _pct(lc + lr),
        "chosen_minus_rejected_tokens": (sum(lc) - sum(lr)) / n if n else 0.0,
        "chosen_longer_fraction": sum(1 for c, r in zip(lc, lr) if c > r) / n if n else 0.0,
        "max_length": int(max_length),
        "n_truncated": n_trunc,
        "truncated_fraction": n_trunc / n if n else 0.0,
    }

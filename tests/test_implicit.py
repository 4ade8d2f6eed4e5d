"""The implicit judges (po_bench/judges/implicit.py) against exact answers: kl_and_length against the exact KL sum over every completion of a tiny Markov language model, implicit_reward_accuracy with ties."""

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.generation.logprobs import tokenize_completion
from po_bench.judges.implicit import implicit_reward_accuracy, kl_and_length


class MarkovLM(torch.nn.Module):
    """next-token log-probs depend on the current token only: ``table[prev][next] = probability``
    (rows not given: uniform).  completion_logps works in float32, so values agree to ~1e-7.  The interface completion_logps uses: ``model(input_ids=...).logits``."""

    def __init__(self, vocab_size: int, table: dict[int, dict[int, Fraction]]):
        super().__init__()
        lp = torch.full((vocab_size, vocab_size), -math.log(vocab_size), dtype=torch.float64)
        for prev, row in table.items():
            assert sum(row.values()) == 1
            lp[prev] = -1e4  # probability exp(-1e4) == 0 exactly in float32 / float64 (and no -inf * 0 = nan)
            for nxt, pr in row.items():
                lp[prev, nxt] = math.log(pr)
        self.register_buffer("lp", lp)
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.table = table

    def forward(self, input_ids, attention_mask=None, **kw):
        return NS(logits=self.lp[input_ids])


@pytest.fixture(scope="module")
def markov(tokenizer):
    ids = lambda w: tokenizer.convert_tokens_to_ids(w)
    end, apple, river, stone, eos = ids("=>"), ids("apple"), ids("river"), ids("stone"), tokenizer.eos_token_id
    F = Fraction
    policy = {
        end: {apple: F(1, 2), river: F(1, 4), stone: F(1, 4)},
        apple: {eos: F(1, 2), river: F(1, 2)},
        river: {eos: F(1)},
        stone: {eos: F(1)},
    }
    ref = {
        end: {apple: F(3, 4), river: F(1, 8), stone: F(1, 8)},
        apple: {eos: F(1, 4), river: F(3, 4)},
        river: {eos: F(1)},
        stone: {eos: F(1)},
    }
    V = len(tokenizer)
    return NS(
        policy=MarkovLM(V, policy),
        ref=MarkovLM(V, ref),
        start=end,
        eos=eos,
        words={apple: "apple", river: "river", stone: "stone"},
    )


def _enumerate(m, start, eos, max_len=6):
    """Every completion (token list ending in EOS) with its exact probability under the Markov model."""
    out = []

    def walk(prev, seq, pr):
        if len(seq) > max_len:
            return
        for nxt, q in m.table[prev].items():
            if nxt == eos:
                out.append((seq + [nxt], pr * q))
            else:
                walk(nxt, seq + [nxt], pr * q)

    walk(start, [], Fraction(1))
    return out


def test_kl_estimator_equals_the_exact_kl_sum(markov, tokenizer):
    prompt = "write about apple river =>"
    seqs = _enumerate(markov.policy, markov.start, markov.eos)
    assert sum(p for _, p in seqs) == 1 and len(seqs) == 4
    ref_p = {tuple(s): p for s, p in _enumerate(markov.ref, markov.start, markov.eos)}
    exact_kl = sum(float(p) * math.log(p / ref_p[tuple(s)]) for s, p in seqs)
    # by hand: sequences apple / apple river / river / stone, each 1/4 under pi; 3/16, 9/16, 1/8, 1/8 under ref
    assert exact_kl == pytest.approx(0.25 * (math.log(4 / 3) + math.log(4 / 9) + 2 * math.log(2)), abs=1e-12)
    exact_len = sum(float(p) * len(s) for s, p in seqs)
    # The Monte-Carlo estimator's expectation: every completion repeated in proportion to its probability
    # (all probabilities are multiples of 1/4 here), so the sample mean IS the expectation.
    samples = []
    for s, p in seqs:
        text = " " + " ".join(markov.words[t] for t in s[:-1])
        assert tokenize_completion(tokenizer, prompt, text)[1] == s  # the completion is exactly these tokens
        samples += [text] * int(p * 4)
    out = kl_and_length(markov.policy, markov.ref, tokenizer, [prompt] * len(samples), samples)
    assert out["kl_to_ref"] == pytest.approx(exact_kl, abs=1e-6)
    assert out["mean_length"] == pytest.approx(exact_len) == 2.25
    # KL(ref || ref) = 0 exactly
    assert kl_and_length(markov.ref, markov.ref, tokenizer, [prompt] * 4, samples)["kl_to_ref"] == 0.0


def test_implicit_reward_accuracy_with_ties(markov, tokenizer):
    P = "write about apple =>"
    # log pi/ref: apple ln(4/3), apple river ln(4/9), river ln 2, stone ln 2 (a tie between different texts)
    pairs = [
        ("river", "apple"),
        ("apple", "river"),
        ("river", "stone"),
        ("apple", "apple river"),
        ("apple river", "stone"),
    ]
    rows = [{"prompt": P, "chosen": " " + c, "rejected": " " + r} for c, r in pairs]
    acc = implicit_reward_accuracy(markov.policy, markov.ref, tokenizer, rows, kind="logratio", beta=0.5)
    assert acc == (1 + 0 + 0.5 + 1 + 0) / 5
    # mean token log pi: apple ln(1/4)/2, apple river ln(1/4)/3, river = stone ln(1/4)/2 (ties again)
    acc = implicit_reward_accuracy(markov.policy, markov.ref, tokenizer, rows, kind="avg_logp", beta=0.5)
    assert acc == (0.5 + 0.5 + 0.5 + 0 + 1) / 5
    assert math.isnan(implicit_reward_accuracy(markov.policy, markov.ref, tokenizer, [], "logratio", 0.1))

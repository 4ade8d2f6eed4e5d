"""po_bench/judges/credit.py: token credit (beta * per-token log-ratio) against the world's exact token gains,
each number against a hand transcription on a tiny model."""

from __future__ import annotations

import pytest
import torch

from po_bench.data import world
from po_bench.generation.logprobs import tokenize_completion
from po_bench.judges.credit import completion_token_logps, reward_tokens, token_credit
from po_bench.training.models import build_tiny_model

PROMPTS = ["write about apple river =>", "write about apple river =>", "list sun stone cloud tree =>"]
RESPONSES = ["apple the apple river", "apple apple sun", "tree cloud the"]


def by_hand_logps(model, tokenizer, prompt, response) -> list[float]:
    p, c = tokenize_completion(tokenizer, prompt, response)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + c])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return [float(logp[len(p) - 1 + t, tok]) for t, tok in enumerate(c)]  # position k predicts token k + 1


def ranks(xs):  # average ranks, 1-based (Spearman's, ties averaged)
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5


def test_reward_tokens_by_hand():
    gains = world.token_gains(PROMPTS[0], RESPONSES[0])  # apple (keyword), the (length only), apple (repeat), river
    assert gains == pytest.approx([1.04, 0.04, -0.21, 1.04])
    assert reward_tokens(PROMPTS[0], RESPONSES[0], gains) == [True, False, True, True]
    assert reward_tokens(PROMPTS[1], RESPONSES[1], world.token_gains(PROMPTS[1], RESPONSES[1])) == [True, True, False]


def test_token_credit_equals_its_hand_transcription(tokenizer):
    policy, ref = build_tiny_model(tokenizer, seed=1).eval(), build_tiny_model(tokenizer, seed=2).eval()
    beta = 0.1
    got = completion_token_logps(policy, tokenizer, PROMPTS, RESPONSES, batch_size=2)
    for prompt, response, lp in zip(PROMPTS, RESPONSES, got):
        assert lp == pytest.approx(by_hand_logps(policy, tokenizer, prompt, response), abs=1e-5)
        assert len(lp) == len(response.split()) + 1  # the words and the EOS
    credit, truth, flags = [], [], []
    for prompt, response in zip(PROMPTS, RESPONSES):
        a, b = by_hand_logps(policy, tokenizer, prompt, response), by_hand_logps(ref, tokenizer, prompt, response)
        gains = world.token_gains(prompt, response)
        credit += [beta * (x - y) for x, y in zip(a, b)][: len(gains)]
        truth += gains
        flags += reward_tokens(prompt, response, gains)
    m = token_credit(policy, ref, tokenizer, PROMPTS, RESPONSES, beta)
    assert m["token_credit_tokens"] == 10
    assert m["token_credit_spearman"] == pytest.approx(pearson(ranks(credit), ranks(truth)), abs=1e-4)
    on = sum(abs(c) for c, f in zip(credit, flags) if f) / sum(abs(c) for c in credit)
    assert m["token_credit_on_reward_tokens"] == pytest.approx(on, abs=1e-4)
    assert m["reward_token_share"] == pytest.approx(sum(flags) / 10)


def test_a_policy_equal_to_its_reference_assigns_no_credit(tokenizer):
    model = build_tiny_model(tokenizer, seed=1).eval()
    m = token_credit(model, model, tokenizer, PROMPTS, RESPONSES, 0.1)
    assert m["token_credit_spearman"] != m["token_credit_spearman"]  # NaN: constant credit has no ranking

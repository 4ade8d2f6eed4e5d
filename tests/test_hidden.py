"""po_bench/generation/hidden.py: CHES (Razin et al. 2025) against a hand computation, on numbers and on a
tiny model, both variants; and the CHES filter's quantile."""

from __future__ import annotations

import pytest
import torch

from po_bench.generation.hidden import ches_from_sums, ches_keep, ches_scores, response_hidden_sums
from po_bench.generation.logprobs import tokenize_completion
from po_bench.training.models import build_tiny_model


def test_the_formulas_by_hand():
    # S+ = (1, 2), S- = (3, 0), |y+| = 2, |y-| = 3
    # CHES = <S+, S-> - ||S+||^2 = 3 - 5 = -2;  CHES_ln = <(0.5, 1), (1, 0)> - 5 / 4 = 0.5 - 1.25 = -0.75
    ches, ln = ches_from_sums(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]]), [2], [3])
    assert ches.tolist() == [-2.0] and ln.tolist() == [-0.75]
    # identical responses: CHES = 0 (as alike as can be); orthogonal ones: -||S+||^2
    s = torch.tensor([[1.0, -2.0, 0.5]])
    assert ches_from_sums(s, s, [4], [4])[0].item() == 0.0
    assert ches_from_sums(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]]), [1], [1])[0].item() == -1.0


PAIRS = [
    {"prompt": "write about apple river =>", "chosen": " apple river", "rejected": " the the the river"},
    {"prompt": "write about sun =>", "chosen": " sun", "rejected": " sun sun"},
    {"prompt": "write about cloud stone tree =>", "chosen": " cloud stone tree", "rejected": " tree"},
]


def test_ches_on_a_tiny_model_equals_a_sum_over_positions_by_hand(tokenizer):
    """One unpadded forward pass per sequence, the predicting positions summed in a Python loop, the formulas
    written out: equal to the batched (right-padded, mixed lengths) computation."""
    model = build_tiny_model(tokenizer, seed=3).eval()
    by_hand = []
    for pair in PAIRS:
        sums, lengths = [], []
        for response in (pair["chosen"], pair["rejected"]):
            p, c = tokenize_completion(tokenizer, pair["prompt"], response)
            assert c[-1] == tokenizer.eos_token_id  # the response is scored with its EOS, as in training
            with torch.no_grad():
                h = model(input_ids=torch.tensor([p + c]), output_hidden_states=True).hidden_states[-1][0].double()
            total = torch.zeros(h.shape[-1], dtype=torch.float64)
            for k in range(len(p) - 1, len(p) + len(c) - 1):  # last prompt token .. second-to-last response token
                total += h[k]
            sums.append(total)
            lengths.append(len(c))
        sp, sn = sums
        own = float(sp @ sp)
        by_hand.append((float(sp @ sn) - own, float(sp @ sn) / (lengths[0] * lengths[1]) - own / lengths[0] ** 2))
    got = ches_scores(model, tokenizer, PAIRS, batch_size=2)
    assert got["ches"] == pytest.approx([c for c, _ in by_hand], rel=1e-5)
    assert got["ches_ln"] == pytest.approx([ln for _, ln in by_hand], rel=1e-5)
    assert got["chosen_tokens"] == [len(tokenize_completion(tokenizer, p["prompt"], p["chosen"])[1]) for p in PAIRS]


def test_max_length_cuts_the_response_as_training_does(tokenizer):
    model = build_tiny_model(tokenizer, seed=0)
    prompts, responses = [PAIRS[0]["prompt"]], [PAIRS[0]["rejected"]]
    p, c = tokenize_completion(tokenizer, prompts[0], responses[0])
    _, n = response_hidden_sums(model, tokenizer, prompts, responses, max_length=len(p) + 2)
    assert n.tolist() == [2] and len(c) > 2
    with pytest.raises(ValueError, match="no response token left"):
        response_hidden_sums(model, tokenizer, prompts, responses, max_length=len(p))


def test_the_filter_keeps_exactly_the_quantile_with_the_lowest_scores():
    scores = [0.5, -1.0, 3.0, -1.0, 2.0, 0.0, 7.0, -3.0]
    assert ches_keep(scores, 0.25) == [1, 7]  # the two lowest (-3 at 7, -1 at 1: ties by index), in order
    assert ches_keep(scores, 0.5) == [1, 3, 5, 7]
    assert ches_keep(scores, 1.0) == list(range(8))
    assert ches_keep(scores, 0.01) == [7]  # at least one
    for q in (0.0, 1.5):
        with pytest.raises(ValueError, match="allowed \\(0, 1\\]"):
            ches_keep(scores, q)

"""The log-prob passes of po-bench's trainers (po_bench/training/trl/logps.py) on a tiny model's real forward
pass, against an explicit loop over a collated batch's tokens: next-token aligned, completion tokens only,
padding and prompt tokens contributing nothing."""

import torch

from po_bench.training import models
from po_bench.training.trl.logps import sequence_logps, token_logps


def _batch():
    """Two sequences, the second right-padded: (input_ids, attention_mask, completion_mask)."""
    ids = torch.tensor([[5, 9, 14, 3, 7, 2], [11, 4, 8, 6, 0, 0]])
    attn = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    completion = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0]])
    return {"input_ids": ids, "attention_mask": attn, "completion_mask": completion}


def test_token_and_sequence_logps_are_the_completion_tokens_log_probs(tokenizer):
    torch.manual_seed(0)
    model = models.build_tiny_model(tokenizer, hidden_size=32, num_layers=1, intermediate_size=64).eval()
    batch = _batch()
    with torch.no_grad():
        tok, mask = token_logps(model, batch)
        seq, lens = sequence_logps(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    ids, cm = batch["input_ids"], batch["completion_mask"]
    assert tok.shape == mask.shape == (2, ids.shape[1] - 1)
    for b in range(2):
        want = 0.0
        for t in range(1, ids.shape[1]):  # token t is predicted from position t - 1
            expected = torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]] if cm[b, t] else torch.tensor(0.0)
            assert mask[b, t - 1] == cm[b, t]
            assert torch.allclose(tok[b, t - 1], expected, atol=1e-5), (b, t)
            want += float(expected)
        assert abs(float(seq[b]) - want) < 1e-4
    assert lens.tolist() == [4.0, 3.0]  # completion tokens, the prompt's and the padding's left out
    assert (tok[1, 3:] == 0).all() and tok[0, 0] == 0  # the padding and the prompt add nothing

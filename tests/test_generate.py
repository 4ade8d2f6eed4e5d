"""po_bench.generation.generate: the HF backend (batched ``model.generate``, seeded per batch from the run
seed) and the choice of backend; it stops at the chat template's end of turn (tests/test_chat.py)."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.generation import generate


def test_hf_backend_stops_at_both(llama3_tok):
    seen = {}

    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, attention_mask, **kw):
            seen.update(kw)
            return torch.cat([input_ids, input_ids[:, :1]], 1)

    gen = NS(batch_size=4, temperature=0.0, top_p=1.0, max_new_tokens=3, progress=False)
    generate.generate_hf(Fake(), llama3_tok, ["hello world"], gen, seed=0)
    assert llama3_tok.convert_ids_to_tokens(seen["eos_token_id"]) == ["<|end_of_text|>", "<|eot_id|>"]


def test_generate_hf_is_reproducible_from_the_seed_alone(tokenizer):
    """Each batch draws from a generator seeded by (run seed, batch index): the same seed gives the same
    samples whatever the process drew before, another seed other samples."""
    from po_bench.data import world
    from po_bench.training.models import build_tiny_model

    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, intermediate_size=64, seed=0)
    prompts = world.make_prompts(world.WorldSpec(n_eval=6), "eval")
    gen = NS(batch_size=2, temperature=1.0, top_p=1.0, max_new_tokens=6, progress=False)
    first = generate.generate_hf(model, tokenizer, prompts, gen, seed=0)
    torch.manual_seed(1234)  # what ran before in the process does not leak in
    torch.rand(7)
    assert generate.generate_hf(model, tokenizer, prompts, gen, seed=0) == first
    assert generate.generate_hf(model, tokenizer, prompts, gen, seed=1) != first
    assert len(first) == len(prompts) and all(s.startswith(" ") and s == " " + s.strip() for s in first)


def test_sampled_ids_end_at_the_first_stop_token():
    assert generate.sampled_ids([5, 6, 1, 0, 0], [1]) == [5, 6, 1]  # the stop token kept, the padding after it not
    assert generate.sampled_ids([5, 6, 7], [1]) == [5, 6, 7]  # cut at the budget: every sampled token
    assert generate.sampled_ids([5, 9, 6], [1, 9]) == [5, 9]


def test_generate_hf_with_ids_returns_the_sampled_tokens_of_the_same_samples(tokenizer):
    """The online loop scores exactly what was sampled: the ids decode to the texts (special tokens skipped, as the
    texts), end at a stop token or run to the budget, and the texts are those of the call without ids."""
    from po_bench.data import world
    from po_bench.generation.chat import stop_token_ids
    from po_bench.training.models import build_tiny_model

    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, intermediate_size=64, seed=0)
    prompts = world.make_prompts(world.WorldSpec(n_eval=8), "eval")
    gen = NS(batch_size=3, temperature=1.0, top_p=1.0, max_new_tokens=6, progress=False)
    texts, ids = generate.generate_hf(model, tokenizer, prompts, gen, seed=2, with_ids=True)
    assert texts == generate.generate_hf(model, tokenizer, prompts, gen, seed=2) and len(ids) == len(prompts)
    stops = stop_token_ids(tokenizer)
    for t, row in zip(texts, ids):
        assert " " + tokenizer.decode(row, skip_special_tokens=True).strip() == t
        assert (len(row) == 6 and not set(row[:-1]) & set(stops)) or (
            row[-1] in stops and not set(row[:-1]) & set(stops)
        )
    assert any(row[-1] in stops for row in ids) or all(len(row) == 6 for row in ids)


def test_generate_picks_the_backend_and_refuses_an_unknown_one(monkeypatch):
    calls = []
    monkeypatch.setattr(generate, "generate_hf", lambda *a: calls.append(a) or ["x"])
    assert generate.generate("m", "t", ["p"], NS(backend="hf"), 3, "d") == ["x"]
    assert calls == [("m", "t", ["p"], NS(backend="hf"), 3, "d")]
    with pytest.raises(ValueError, match=r"generation=vllm needs the model's checkpoint folder \(model_path\)"):
        generate.generate("m", "t", ["p"], NS(backend="vllm"), 0)
    with pytest.raises(ValueError, match=r"generation backend 'tgi' is not available; valid: hf, vllm"):
        generate.generate("m", "t", ["p"], NS(backend="tgi"), 0, model_path="/m")

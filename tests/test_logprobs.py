"""po_bench.generation.logprobs: sequence log-probs of completions as TRL's trainers tokenise them, against
a token-by-token loop on a tiny Llama, in batches bounded by tokens rather than sequences."""

from __future__ import annotations

import pytest
import torch

from po_bench.generation.logprobs import completion_logps, tokenize_completion
from po_bench.training import models


@pytest.fixture(scope="module")
def llama(tokenizer):
    return models.build_tiny_model(tokenizer, hidden_size=64, num_layers=2, intermediate_size=128, seed=1).eval()


def _loop_logps(model, tokenizer, prompt, completion, max_length=None):
    p, c = tokenize_completion(tokenizer, prompt, completion)
    seq = (p + c)[:max_length] if max_length else p + c
    total, n = 0.0, 0
    with torch.no_grad():
        for t in range(len(p), len(seq)):  # one forward per completion token, on the bare prefix
            logits = model(input_ids=torch.tensor([seq[:t]])).logits[0, -1].double()
            total += float(torch.log_softmax(logits, -1)[seq[t]])
            n += 1
    return total, n


def test_completion_logps_equal_a_token_by_token_loop(llama, tokenizer):
    prompts = [
        "write about apple =>",
        "write about river stone cloud =>",
        "list apple river stone cloud forest =>",
        "write about ember =>",
        "write about candle mirror =>",
    ]
    completions = [
        " apple the apple",
        " river",
        " the stone is very old and near the cloud with a bright river",
        " ember ember",
        "",
    ]
    sums, counts = completion_logps(llama, tokenizer, prompts, completions, batch_size=3)  # padded batches
    for i, (p, c) in enumerate(zip(prompts, completions)):
        want, n = _loop_logps(llama, tokenizer, p, c)
        assert counts[i] == n == len(c.split()) + 1  # words + EOS
        assert float(sums[i]) == pytest.approx(want, abs=2e-5), (p, c)
    # truncation to max_length keeps the prompt and cuts the completion
    sums, counts = completion_logps(llama, tokenizer, prompts[2:3], completions[2:3], max_length=12)
    want, n = _loop_logps(llama, tokenizer, prompts[2], completions[2], max_length=12)
    assert counts[0] == n == 12 - len(tokenize_completion(tokenizer, prompts[2], completions[2])[0])
    assert float(sums[0]) == pytest.approx(want, abs=2e-5)


def test_scoring_batches_are_bounded_by_tokens_not_sequences(tokenizer):
    from po_bench.generation.logprobs import completion_logps, token_batches
    from po_bench.training.models import build_tiny_model

    assert token_batches([10, 10, 50, 10], max_sequences=64, max_tokens=99) == [[0, 1], [2], [3]]
    model = build_tiny_model(tokenizer, hidden_size=32, num_layers=1, seed=0)
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["input_ids"].numel()), with_kwargs=True)
    prompts = ["write about river cloud ."] * 40
    completions = [" the river and the cloud"] * 40
    full, _ = completion_logps(model, tokenizer, prompts, completions, batch_size=64)
    for n in (8, 40):  # more sequences: more batches, never a bigger one
        seen.clear()
        part, _ = completion_logps(model, tokenizer, prompts[:n], completions[:n], batch_size=64, max_tokens=48)
        assert max(seen) <= 48 and len(seen) >= n // 4
        assert torch.allclose(part, full[:n], atol=1e-5)


def test_tokenize_completion_splits_where_trl_does(tokenizer, llama3_tok):
    """The completion is what follows the common prefix of tok(prompt) and tok(prompt + completion + EOS):
    EOS is added once; a conversational prompt drops the completion's leading space and a message-list
    completion goes through the chat template with its prompt (ending its turn as the template does)."""
    to = tokenizer.convert_ids_to_tokens
    p, c = tokenize_completion(tokenizer, "write about apple =>", " the apple")
    assert (to(p), to(c)) == (["write", "about", "apple", "=>"], ["the", "apple", "<eos>"])
    assert to(tokenize_completion(tokenizer, "write about apple =>", " the apple<eos>")[1]) == ["the", "apple", "<eos>"]
    assert to(tokenize_completion(tokenizer, "write about apple =>", "")[1]) == ["<eos>"]

    conv = [{"role": "user", "content": "q"}]
    header = ["<|begin_of_text|>", "<|start_header_id|>", "user", "<|end_header_id|>", "q", "<|eot_id|>"]
    header += ["<|start_header_id|>", "assistant", "<|end_header_id|>"]
    to = llama3_tok.convert_ids_to_tokens
    p, c = tokenize_completion(llama3_tok, conv, "  hello world")
    assert (to(p), to(c)) == (header, ["hello", "world", "<|end_of_text|>"])
    p, c = tokenize_completion(llama3_tok, conv, [{"role": "assistant", "content": "hello world"}])
    assert (to(p), to(c)) == (header, ["hello", "world", "<|eot_id|>"])


def test_right_padded_pads_to_the_longest_and_masks_the_padding():
    from po_bench.generation.logprobs import right_padded

    ids, attn = right_padded([[5, 6, 7], [8]], pad=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and attn.tolist() == [[1, 1, 1], [1, 0, 0]]

"""po_bench.generation.chat: where an assistant turn ends, read off the chat template: the tokenizer's EOS
and the end-of-turn token(s) of its template (SimPO's Llama-3 configs: stop_token_ids 128001;128009 =
<|end_of_text|>, <|eot_id|>).  The backends stopping there: tests/test_generate.py, tests/test_vllm_engine.py."""

from __future__ import annotations

from po_bench.generation import chat


def test_stop_tokens_include_the_templates_end_of_turn(llama3_tok):
    ids = chat.stop_token_ids(llama3_tok)
    names = llama3_tok.convert_ids_to_tokens(ids)
    assert names == ["<|end_of_text|>", "<|eot_id|>"]


def test_no_template_stops_at_eos_only(tokenizer):
    assert chat.stop_token_ids(tokenizer) == [tokenizer.eos_token_id]

"""Generation stops where the papers' eval configs stop: the tokenizer's EOS and the end-of-turn
token(s) of its chat template (SimPO's Llama-3 configs: stop_token_ids 128001;128009 =
<|end_of_text|>, <|eot_id|>), derived from the tokenizer + template, for both backends."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.generation import chat, generate

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def llama3_tok():
    """A Llama-3-style tokenizer built offline: EOS <|end_of_text|>, turns end with <|eot_id|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    words = ["user", "assistant", "q", "hello", "world", "[UNK]"]
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        unk_token="[UNK]",
        additional_special_tokens=specials[2:],
    )
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def test_stop_tokens_include_the_templates_end_of_turn(llama3_tok):
    ids = chat.stop_token_ids(llama3_tok)
    names = llama3_tok.convert_ids_to_tokens(ids)
    assert names == ["<|end_of_text|>", "<|eot_id|>"]


def test_no_template_stops_at_eos_only(tokenizer):
    assert chat.stop_token_ids(tokenizer) == [tokenizer.eos_token_id]


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


def test_vllm_sampling_params_stop_at_both(llama3_tok):
    pytest.importorskip("vllm")
    from po_bench.generation.vllm_engine import sampling_params

    gen = NS(temperature=0.9, top_p=1.0, max_new_tokens=4096)
    sp = sampling_params(gen, 0, chat.stop_token_ids(llama3_tok))
    assert llama3_tok.convert_ids_to_tokens(list(sp.stop_token_ids)) == ["<|end_of_text|>", "<|eot_id|>"]
    assert sp.max_tokens == 4096 and sp.temperature == 0.9


def test_mt_bench_answers_use_fastchats_per_category_temperatures():
    from po_bench.judges.client import load_judge_config
    from po_bench.judges.mt_bench import MTBenchJudge

    from .conftest import SHARED

    q = SHARED / "data" / "mt_bench" / "question.jsonl"
    if not q.is_file():
        pytest.skip("MT-Bench questions not in ../shared")
    cfg = load_judge_config(
        "mt_bench",
        base_url="http://127.0.0.1:9/v1",
        model="x",
        api_key_env=None,
        questions_path=str(q),
        reference_path=str(q.parent / "reference_answer_gpt-4.jsonl"),
        judge_prompts_path=str(q.parent / "judge_prompts.jsonl"),
        question_ids=[81, 111, 131],
    )
    judge = MTBenchJudge(cfg)
    cats = {x["question_id"]: x["category"] for x in judge.questions()}
    calls = []

    def answer(convs, temperature=None):
        calls.append((temperature, len(convs)))
        return [f"a{temperature}"] * len(convs)

    out = judge.generate_answers(answer)
    want = {
        "writing": 0.7,
        "roleplay": 0.7,
        "extraction": 0.0,
        "math": 0.0,
        "coding": 0.0,
        "reasoning": 0.0,
        "stem": 0.1,
        "humanities": 0.1,
    }
    for (a1, a2), q in zip(out, judge.questions()):
        assert a1 == a2 == f"a{want[q['category']]}", (q["question_id"], cats)
    assert {t for t, _ in calls} == {want[c] for c in cats.values()}

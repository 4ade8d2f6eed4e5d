"""po_bench/data/formats/hh.py: the HH-RLHF transcript parser, on hand-made rows and on
every row of the real harmless-base test file, and a DPO step on that file with the SmolLM2 tokenizer."""

import copy
import gzip
import json
import os
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.data.formats.hh import parse_hh
from po_bench.data.formats.paired import load_pairs
from po_bench.data.formats.stats import data_stats

from .conftest import SHARED
from .conftest import compose as _compose

HH_FILE = SHARED / "data" / "hh_rlhf" / "harmless-base_test.jsonl.gz"


needs_hh = pytest.mark.skipif(not HH_FILE.is_file(), reason=f"HH-RLHF test file not present: {HH_FILE}")


def _hh_cfg():
    return _compose(["dataset=hh_rlhf", f"dataset.path={HH_FILE}", "dataset.eval_split=null"])


def test_parse_hh():
    t = "\n\nHuman: hi there\n\nAssistant: hello!\n\nHuman: how are you?\n\nAssistant:  fine, thanks"
    prompt, answer = parse_hh(t)
    assert prompt == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": "how are you?"},
    ]
    assert answer == "fine, thanks"
    with pytest.raises(ValueError):
        parse_hh("\n\nHuman: no answer yet")
    with pytest.raises(ValueError):
        parse_hh("just text")


@needs_hh
def test_hh_rlhf_real_file_every_row_parses():
    cfg = _hh_cfg()
    raw = [json.loads(line) for line in gzip.open(HH_FILE, "rt", encoding="utf-8")]
    pairs, report = load_pairs(cfg.dataset)
    assert len(raw) == 2312
    assert report["rows"] == 2312 and report["pairs"] == 2312 and report["skipped"] == {}, report
    mark = "\n\nAssistant:"
    naive = 0
    for r, p in zip(raw, pairs):
        # independent check: the prompt is the transcripts' longest common prefix cut at its last
        # "\n\nAssistant:", the responses are what follows that marker in each transcript
        n = len(os.path.commonprefix([r["chosen"], r["rejected"]]))
        cut = r["chosen"].rfind(mark, 0, n)
        shared = r["chosen"][:cut]
        assert r["rejected"].startswith(shared + mark)
        assert p["prompt"] == parse_hh(shared + mark + " x")[0]
        assert p["prompt"][0]["role"] == "user"
        assert p["chosen"] == [{"role": "assistant", "content": r["chosen"][cut + len(mark) :].strip()}]
        assert p["rejected"] == [{"role": "assistant", "content": r["rejected"][cut + len(mark) :].strip()}]
        # and, where both transcripts only differ in their final assistant turn, the responses are
        # exactly those final turns and the prompt is both transcripts' shared history
        (pc, c), (pr, rj) = parse_hh(r["chosen"]), parse_hh(r["rejected"])
        if pc == pr:
            naive += 1
            assert (p["prompt"], p["chosen"][0]["content"], p["rejected"][0]["content"]) == (pc, c, rj)
    assert naive >= 2300  # a handful of HH rows continue the conversation in one transcript
    assert report["notes"]["empty_chosen_kept"] == 4  # real HH rows whose chosen answer is empty


@needs_hh
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_hh_rlhf_dpo_step_with_smollm2_tokenizer(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from po_bench.training.smollm2 import smollm2_tokenizer
    from po_bench.training.trl.preference import train_preference

    tok = smollm2_tokenizer()
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    cfg = _compose(
        ["dataset=hh_rlhf", f"dataset.path={HH_FILE}", "dataset.eval_split=null", "dataset.max_rows=200", "loss=dpo"]
    )
    pairs, _ = load_pairs(cfg.dataset)
    sample = sorted(pairs, key=lambda p: len(json.dumps(p)))[:8]  # short ones: fast and untruncated
    stats = data_stats(sample, tok, max_length=128)
    assert stats["n_pairs"] == 8 and stats["conversational"] == 8 and stats["n_truncated"] == 0
    rendered = tok.apply_chat_template(sample[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")

    mcfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(mcfg)
    ref = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(
        **{**cfg.train, "max_steps": 2, "batch_size": 4, "logging_steps": 1, "progress": False, "max_length": 128}
    )
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    res = train_preference(model, ref, tok, sample, loss_cfg, train, tmp_path / "trainer", 0)
    assert res["steps"] == 2
    assert res["train_loss_final"] is not None and torch.isfinite(torch.tensor(res["train_loss_final"]))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())

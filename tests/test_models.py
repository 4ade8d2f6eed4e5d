"""po_bench.training.models: the world's word-level tokenizer and tiny Llama built locally, and
checkpoints loaded as every stage loads them (tokenizer settings, dtype, where a model comes from)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import torch

from po_bench.data import world
from po_bench.training import models, smollm2


def test_tokenizer_round_trips_world_text(tokenizer):
    text = "write about apple river => the apple and river"
    ids = tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(tokenizer) == len(world.vocabulary())


TINY = NS(kind="tiny", hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, max_position_embeddings=32)


def test_tiny_models_follow_their_config_and_seed():
    model, tok = models.load_model_and_tokenizer(TINY, seed=3)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (32, 1, 4, 64)
    assert c.max_position_embeddings == 32 and c.vocab_size == len(tok) == len(world.vocabulary())
    assert (c.pad_token_id, c.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    same = models.load_model_and_tokenizer(TINY, seed=3)[0].state_dict()
    other = models.load_model_and_tokenizer(TINY, seed=4)[0].state_dict()
    assert all(torch.equal(v, same[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, other[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_loads_with_the_stages_tokenizer_settings_and_dtype(tmp_path):
    tok = models.train_world_tokenizer()
    model = models.build_tiny_model(tok, hidden_size=32, num_layers=1, intermediate_size=64)
    tok.pad_token = None  # a checkpoint whose tokenizer has no pad token
    tok.padding_side = "right"
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = models.load_tokenizer(tmp_path)
    assert loaded.pad_token == loaded.eos_token == "<eos>" and loaded.padding_side == "left"
    assert loaded.chat_template is None
    assert models.load_tokenizer(tmp_path, chat_template="{{ messages }}").chat_template == "{{ messages }}"
    half, tok2 = models.load_pretrained(tmp_path, dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and tok2.padding_side == "left"
    w = "model.embed_tokens.weight"
    assert torch.equal(half.state_dict()[w].cpu(), model.state_dict()[w].to(torch.bfloat16))
    assert models.load_checkpoint(tmp_path, device="cpu").dtype == torch.float32


def test_model_path_is_the_hub_id_or_the_offline_smollm2_folder(monkeypatch):
    assert models.model_path(NS(kind="hub", name_or_path="org/model")) == "org/model"
    monkeypatch.setattr(smollm2, "smollm2_path", lambda: Path("/cache/smollm2"))  # not built here
    assert models.model_path(NS(kind="smollm2", name_or_path=None)) == "/cache/smollm2"

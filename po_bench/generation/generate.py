"""Generation stage: sample completions for prompts from a model.

``generation=hf`` is a batched ``model.generate`` backend.  Each batch draws from a generator
seeded by (run seed, batch index), so a run is reproducible from its seed and independent of
what ran before it in the same process.

A generation config with ``num_beams`` (the beam samples of ``diagnostics.beams``; no run's own samples
carry it) decodes deterministically instead of sampling: beam search of that width keeping the best beam
(``generate(num_beams=b, do_sample=False, num_return_sequences=1)``; width 1 is greedy decoding), or vLLM's
beam search (:func:`po_bench.generation.vllm_engine.generate_vllm`).
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from po_bench.choices import GenerationBackend
from po_bench.generation.chat import stop_token_ids
from po_bench.generation.logprobs import render_prompt
from po_bench.generation.vllm_engine import generate_vllm


def num_beams(gen_cfg) -> int | None:
    """The beam width of a generation config (None: it samples, as every run's own samples do)."""
    b = gen_cfg.get("num_beams") if hasattr(gen_cfg, "get") else getattr(gen_cfg, "num_beams", None)
    return None if b is None else int(b)


def sampled_ids(new_tokens: list[int], stops: list[int]) -> list[int]:
    """The tokens a sequence of ``generate`` really sampled: up to and including the first stop token (what
    follows it is padding), all of them when generation stopped at its budget."""
    for i, t in enumerate(new_tokens):
        if t in stops:
            return new_tokens[: i + 1]
    return new_tokens


def generate_hf(model, tokenizer, prompts, gen_cfg, seed: int, desc: str = "generate", with_ids: bool = False):
    """Samples for prompts (texts).  ``with_ids``: (texts, the sampled token ids of each, :func:`sampled_ids`),
    for a caller that scores exactly what was sampled (the online loop: a decoded text drops special tokens and
    cannot say whether the sample stopped or ran out of budget)."""
    import torch  # lazy: torch (~1 s): not for a run whose samples all come from the store

    with torch.no_grad():
        model.eval()
        device = next(model.parameters()).device
        tokenizer.padding_side = "left"
        outs: list[str] = []
        ids: list[list[int]] = []
        bs = gen_cfg.batch_size
        for b, start in enumerate(tqdm(range(0, len(prompts), bs), desc=desc, disable=not gen_cfg.progress)):
            texts = [render_prompt(tokenizer, p) for p in prompts[start : start + bs]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            torch.manual_seed(hash((int(seed), b)) % (2**31))
            beams = num_beams(gen_cfg)
            do_sample = beams is None and gen_cfg.temperature > 0
            kw = dict(
                max_new_tokens=gen_cfg.max_new_tokens,
                do_sample=do_sample,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=stop_token_ids(tokenizer),
            )
            if do_sample:
                kw.update(temperature=gen_cfg.temperature, top_p=gen_cfg.top_p, top_k=0)
            if beams is not None:  # deterministic: the best of `beams` beams (1: greedy)
                kw.update(num_beams=beams, num_return_sequences=1)
            out = model.generate(**enc, **kw)
            new = out[:, enc["input_ids"].shape[1] :]
            outs += [" " + t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
            if with_ids:
                ids += [sampled_ids(row, kw["eos_token_id"]) for row in new.tolist()]
        return (outs, ids) if with_ids else outs


def generate(model, tokenizer, prompts, gen_cfg, seed: int, desc: str = "generate", model_path=None) -> list[str]:
    """Samples for prompts: ``generation=hf`` uses the loaded model, ``generation=vllm`` serves the
    checkpoint at ``model_path`` with vLLM's offline engine (one seed per prompt)."""
    if gen_cfg.backend == GenerationBackend.HF:
        return generate_hf(model, tokenizer, prompts, gen_cfg, seed, desc)
    if gen_cfg.backend == GenerationBackend.VLLM:
        if model_path is None:
            raise ValueError("generation=vllm needs the model's checkpoint folder (model_path)")

        return generate_vllm(model_path, tokenizer, prompts, gen_cfg, seed, desc)
    raise ValueError(f"generation backend {gen_cfg.backend!r} is not available; valid: hf, vllm")


def release() -> None:
    """Free a vLLM engine (if one was started) before training needs the memory."""

    if "po_bench.generation.vllm_engine" in sys.modules:
        sys.modules["po_bench.generation.vllm_engine"].close_engine()

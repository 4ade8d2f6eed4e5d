"""Generation with vLLM's offline engine (``generation=vllm``).

Same contract as :func:`po_bench.generation.generate.generate_hf`: one completion per prompt, returned as
``" " + text.strip()`` where ``text`` is the decoded new tokens without special tokens.

* **prompts**: rendered exactly as the HF backend does (:func:`po_bench.generation.logprobs.render_prompt`:
  strings pass through, message lists go through the tokenizer's chat template with
  ``add_generation_prompt``), tokenised with the same tokenizer (``add_special_tokens=False``) and
  handed to vLLM as token ids, so both backends see identical inputs.
* **sampling**: ``SamplingParams`` from the generation config (temperature, top_p, max_new_tokens,
  n; temperature 0 is greedy), stopping at the tokenizer's EOS as the HF backend does.
* **beam search** (a config with ``num_beams``, the beam samples of ``diagnostics.beams``): width 1 is greedy
  decoding (temperature 0, as HF's ``num_beams=1``); a wider beam is ``LLM.beam_search`` with
  ``BeamSearchParams(beam_width=num_beams, max_tokens=max_new_tokens)``, the best beam per prompt.  It is not
  HF's beam search token for token: vLLM keeps every beam that ended among the 2 x width candidates of a step
  and ranks beams by cumulative log-prob over the length of prompt and response (HF: over the response), and
  it ends a beam at the tokenizer's EOS only (the beam is cut at the first other stop id, a chat template's
  end of turn, afterwards).
* **seeds**: one seed per prompt, derived from (run seed, prompt index): a run is reproducible,
  and identical prompts still get different samples (a single fixed seed would make every
  sample of a batch the same).
* **engine**: ``vllm.LLM`` built from the config's engine options (dtype, max_model_len,
  gpu_memory_utilization or kv_cache_memory_gib, enforce_eager, max_num_seqs,
  tensor_parallel_size, multiprocessing, engine_args) and kept for the next call on the same
  model; :func:`close_engine` frees it.  The engine spawns processes, so a script that uses it
  needs an ``if __name__ == "__main__":`` guard.

Greedy decoding gives the HF backend's tokens (tests/test_vllm_engine.py); ``python -m
po_bench.generation.vllm_engine compare --model DIR`` checks a model and reports where the two part.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from po_bench.generation.chat import stop_token_ids
from po_bench.generation.logprobs import render_prompt

log = logging.getLogger("po_bench")

_ENGINE: dict = {"key": None, "llm": None}


def _opt(cfg: Any, name: str, default: Any = None) -> Any:
    try:
        v = cfg.get(name, default) if isinstance(cfg, dict) else getattr(cfg, name, default)
    except AttributeError:
        v = default
    return default if v is None else v


def prompt_seed(seed: int, index: int) -> int:
    """The sampling seed of prompt ``index`` in a run with seed ``seed`` (stable across processes)."""
    h = hashlib.sha256(f"po-bench:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def prompt_token_ids(tokenizer, prompts: Sequence) -> list[list[int]]:
    texts = [render_prompt(tokenizer, p) for p in prompts]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def engine_kwargs(model_path: str | os.PathLike, gen_cfg: Any) -> dict:
    """Arguments of ``vllm.LLM`` from the generation config."""
    kw: dict = {
        "model": str(model_path),
        "dtype": str(_opt(gen_cfg, "dtype", "auto")),
        "enforce_eager": bool(_opt(gen_cfg, "enforce_eager", True)),
        "tensor_parallel_size": int(_opt(gen_cfg, "tensor_parallel_size", 1)),
        "seed": 0,
    }
    if _opt(gen_cfg, "max_model_len"):
        kw["max_model_len"] = int(_opt(gen_cfg, "max_model_len"))
    if _opt(gen_cfg, "max_num_seqs"):
        kw["max_num_seqs"] = int(_opt(gen_cfg, "max_num_seqs"))
    if _opt(gen_cfg, "kv_cache_memory_gib"):
        kw["kv_cache_memory_bytes"] = int(float(_opt(gen_cfg, "kv_cache_memory_gib")) * 2**30)
    elif _opt(gen_cfg, "gpu_memory_utilization"):
        kw["gpu_memory_utilization"] = float(_opt(gen_cfg, "gpu_memory_utilization"))
    extra = _opt(gen_cfg, "engine_args", {}) or {}
    try:
        from omegaconf import OmegaConf  # lazy: omegaconf (~0.1 s)

        if OmegaConf.is_config(extra):
            extra = OmegaConf.to_container(extra, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    kw.update(dict(extra))
    return kw


def get_engine(model_path: str | os.PathLike, gen_cfg: Any):
    """The vLLM engine for ``model_path`` (reused while the model and engine options stay the same)."""
    kw = engine_kwargs(model_path, gen_cfg)
    mp = bool(_opt(gen_cfg, "multiprocessing", True))
    key = json.dumps({"kw": kw, "mp": mp, "mtime": _mtime(model_path)}, sort_keys=True, default=str)
    if _ENGINE["key"] == key:
        return _ENGINE["llm"]
    close_engine()
    # In-process engine core (no extra processes: starts in seconds instead of a minute on CPU,
    # but vLLM's CPU worker then pins this process's OpenMP threads).
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if mp else "0"
    from vllm import LLM  # lazy: accelerate, huggingface_hub, numpy, openai, ... (~8.2 s)

    t0 = time.perf_counter()
    llm = LLM(**kw)
    log.info("vLLM engine for %s ready in %.1fs", model_path, time.perf_counter() - t0)
    _ENGINE.update(key=key, llm=llm)
    return llm


def _mtime(path) -> float:
    p = Path(path)
    files = [f for f in p.glob("*.safetensors")] + [p / "config.json"] if p.is_dir() else []
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


def close_engine() -> None:
    """Shut the cached engine down (its processes and memory)."""
    llm = _ENGINE.get("llm")
    _ENGINE.update(key=None, llm=None)
    if llm is None:
        return
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # best effort: older/newer vLLM internals
        pass
    del llm
    gc.collect()


def sampling_params(gen_cfg: Any, seed: int, eos_token_id, n: int = 1):
    """``eos_token_id``: one id or the list of stop ids (generate.stop_token_ids: EOS + end of turn)."""
    from vllm import SamplingParams  # lazy: accelerate, huggingface_hub, numpy, openai, ... (~6.8 s)

    temp = float(_opt(gen_cfg, "temperature", 1.0))
    kw = dict(n=n, max_tokens=int(_opt(gen_cfg, "max_new_tokens", 24)), detokenize=False)
    if temp > 0:
        kw.update(temperature=temp, top_p=float(_opt(gen_cfg, "top_p", 1.0)), top_k=0, seed=int(seed))
    else:
        kw.update(temperature=0.0)
    if eos_token_id is not None:
        kw["stop_token_ids"] = [
            int(x) for x in (eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])
        ]
    return SamplingParams(**kw)


def generate_vllm_ids(
    model_path,
    tokenizer,
    prompts: Sequence,
    gen_cfg: Any,
    seed: int,
    desc: str = "generate (vllm)",
    keep_stop: bool = False,
) -> list[list[list[int]]]:
    """Generated token ids: per prompt, ``n`` samples (the stop token excluded; ``keep_stop``: kept, as
    po_bench/generation/generate.py's ``sampled_ids`` keeps it, for a caller that scores what was sampled)."""
    from vllm.inputs import TokensPrompt  # lazy: numpy, torch, vllm (~3.3 s)

    if not prompts:
        return []
    llm = get_engine(model_path, gen_cfg)
    n = int(_opt(gen_cfg, "n", 1))

    stops = stop_token_ids(tokenizer)  # EOS and the chat template's end-of-turn token(s)
    ids = prompt_token_ids(tokenizer, prompts)
    params = [sampling_params(gen_cfg, prompt_seed(seed, i), stops, n) for i in range(len(ids))]
    outs = llm.generate(
        [TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=bool(_opt(gen_cfg, "progress", False))
    )
    result = []
    for o in outs:
        samples = []
        for c in sorted(o.outputs, key=lambda c: c.index):
            t = list(c.token_ids)
            if t and t[-1] in stops and not keep_stop:
                t = t[:-1]
            samples.append(t)
        result.append(samples)
    return result


def beam_search_ids(model_path, tokenizer, prompts: Sequence, gen_cfg: Any) -> list[list[int]]:
    """The best beam's new token ids per prompt (stop ids excluded): vLLM's beam search of width
    ``num_beams``."""
    from vllm.inputs import TokensPrompt  # lazy: numpy, torch, vllm (~3.3 s)
    from vllm.sampling_params import BeamSearchParams  # lazy: as above

    if not prompts:
        return []
    llm = get_engine(model_path, gen_cfg)
    stops = stop_token_ids(tokenizer)
    ids = prompt_token_ids(tokenizer, prompts)
    params = BeamSearchParams(
        beam_width=int(_opt(gen_cfg, "num_beams")), max_tokens=int(_opt(gen_cfg, "max_new_tokens", 24))
    )
    outs = llm.beam_search(
        [TokensPrompt(prompt_token_ids=x) for x in ids], params, use_tqdm=bool(_opt(gen_cfg, "progress", False))
    )
    result = []
    for x, o in zip(ids, outs):
        t = list(o.sequences[0].tokens[len(x) :])  # a beam's tokens start with its prompt's
        cut = next((i for i, tok in enumerate(t) if tok in stops), len(t))
        result.append(t[:cut])
    return result


class PolicyEngine:
    """A vLLM engine colocated with a policy that trains (the online loop, ``generation=vllm``): built once on the
    start checkpoint ``model_path`` in this process (no engine-core process: the loop reaches the engine's model),
    its weights replaced by the policy's after every optimizer step (:meth:`sync`), and samples drawn as
    :func:`po_bench.generation.generate.generate_hf` with ``with_ids`` returns them (texts, sampled ids).

    The weights go in through the model runner's in-place reload (``reload_weights(weights_iterator=...)``, the
    layer-wise reload that re-runs each layer's post-load processing, as TRL's colocate mode streams
    ``load_weights``; plain ``load_weights`` fails on vLLM's CPU backend, whose packed linear layers keep no
    ``weight_loader``: "'Parameter' object has no attribute 'weight_loader'").  A tied LM head is re-tied and
    re-processed after the reload (on the CPU backend it keeps a packed copy of the embedding that the reload
    leaves stale), and the prefix cache is cleared."""

    def __init__(self, model_path, tokenizer, gen_cfg: Any):
        self.path, self.tokenizer = model_path, tokenizer
        self.gen_cfg = {**_plain(gen_cfg), "multiprocessing": False, "n": 1}
        self.llm = get_engine(model_path, self.gen_cfg)
        self.syncs, self.sync_seconds = 0, 0.0

    def _runner(self):
        return self.llm.llm_engine.model_executor.driver_worker.model_runner

    def sync(self, model) -> None:
        """The engine's weights := ``model``'s (an HF causal LM of the engine's architecture)."""
        t0 = time.perf_counter()
        runner = self._runner()
        runner.reload_weights(weights_iterator=((n, p.detach()) for n, p in model.named_parameters()))
        vm = runner.get_model()
        head, inner = getattr(vm, "lm_head", None), getattr(vm, "model", None)
        if getattr(model.config, "tie_word_embeddings", False) and head is not None and hasattr(inner, "embed_tokens"):
            head.tie_weights(inner.embed_tokens)
            head.quant_method.process_weights_after_loading(head)
        self.llm.reset_prefix_cache()
        self.syncs += 1
        self.sync_seconds += time.perf_counter() - t0

    def generate(self, prompts: Sequence, seed: int) -> tuple[list[str], list[list[int]]]:
        """One sample per prompt at the engine's current weights: (texts, the sampled token ids, a stop token
        included as generate_hf's ``with_ids`` includes it)."""
        ids = [s[0] for s in generate_vllm_ids(self.path, self.tokenizer, prompts, self.gen_cfg, seed, keep_stop=True)]
        return [" " + t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)], ids


def _plain(cfg: Any) -> dict:
    try:
        from omegaconf import OmegaConf  # lazy: omegaconf (~0.1 s)

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def generate_vllm(
    model_path, tokenizer, prompts: Sequence, gen_cfg: Any, seed: int, desc: str = "generate (vllm)"
) -> list:
    """One completion per prompt (``n`` = 1: a list of str, as generate_hf) or ``n`` per prompt
    (a list of lists of str); with ``num_beams``: the best beam per prompt."""
    width = _opt(gen_cfg, "num_beams")
    if width is not None and int(width) > 1:
        beams = beam_search_ids(model_path, tokenizer, prompts, gen_cfg)
        return [" " + t.strip() for t in tokenizer.batch_decode(beams, skip_special_tokens=True)]
    if width is not None:  # width 1: greedy decoding (vLLM's beam search of width 1 also keeps ended runner-ups)
        gen_cfg = {**{k: v for k, v in gen_cfg.items() if k != "num_beams"}, "temperature": 0.0}
    ids = generate_vllm_ids(model_path, tokenizer, prompts, gen_cfg, seed, desc)
    texts = [[" " + t.strip() for t in tokenizer.batch_decode(s, skip_special_tokens=True)] for s in ids]
    return [t[0] for t in texts] if int(_opt(gen_cfg, "n", 1)) == 1 else texts


# ---- HF vs vLLM comparison (python -m po_bench.generation.vllm_engine compare) --------------------------------


def hf_greedy_ids(model, tokenizer, prompts: Sequence, max_new_tokens: int, batch_size: int = 32) -> list[list[int]]:
    """Greedy new-token ids from transformers' generate, batched and left-padded exactly like
    :func:`po_bench.generation.generate.generate_hf` (EOS and padding removed)."""
    import torch  # lazy: numpy, torch (~0.9 s)

    model.eval()
    tokenizer.padding_side = "left"
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    out: list[list[int]] = []
    with torch.no_grad():
        for s in range(0, len(prompts), batch_size):
            texts = [render_prompt(tokenizer, p) for p in prompts[s : s + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            gen = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, eos_token_id=eos
            )
            for row in gen[:, enc["input_ids"].shape[1] :].tolist():
                if eos in row:
                    row = row[: row.index(eos)]
                out.append(row)
    return out


def first_divergence(model, tokenizer, prompt, hf_ids: list[int], vllm_ids: list[int]) -> dict:
    """Where two greedy continuations part: position, both tokens, and the HF log-prob gap
    log p(hf token) - log p(vllm token) at that position (a near-tie when small)."""
    import torch  # lazy: numpy, torch (~0.9 s)

    t = next((i for i, (a, b) in enumerate(zip(hf_ids, vllm_ids)) if a != b), min(len(hf_ids), len(vllm_ids)))
    ctx = prompt_token_ids(tokenizer, [prompt])[0] + hf_ids[:t]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ctx])).logits[0, -1].float()
    lp = torch.log_softmax(logits, -1)
    eos = tokenizer.eos_token_id
    a = hf_ids[t] if t < len(hf_ids) else eos  # a shorter side stopped with EOS there
    b = vllm_ids[t] if t < len(vllm_ids) else eos
    top2 = torch.topk(lp, 2).values
    return {
        "position": t,
        "hf_token": int(a),
        "vllm_token": int(b),
        "hf_token_text": tokenizer.decode([a]),
        "vllm_token_text": tokenizer.decode([b]),
        "logprob_gap": float(lp[a] - lp[b]),
        "top2_gap": float(top2[0] - top2[1]),
    }


def compare(
    model_path, prompts: Sequence, max_new_tokens: int, gen_cfg: dict | None = None, batch_size: int = 32
) -> dict:
    """Greedy HF vs vLLM on ``prompts``: agreement and, where they part, the near-tie gaps.
    HF runs first (the vLLM CPU engine pins this process's threads)."""
    import torch  # lazy: numpy, torch (~0.9 s)
    from transformers import (  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.9 s)
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    tok = AutoTokenizer.from_pretrained(str(model_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    t0 = time.perf_counter()
    hf = hf_greedy_ids(model, tok, prompts, max_new_tokens, batch_size)
    t_hf = time.perf_counter() - t0
    cfg = {
        "temperature": 0.0,
        "max_new_tokens": max_new_tokens,
        "dtype": "float32",
        "enforce_eager": True,
        "multiprocessing": False,
        "kv_cache_memory_gib": 1,
        **(gen_cfg or {}),
    }
    get_engine(model_path, cfg)
    t0 = time.perf_counter()
    vl = [s[0] for s in generate_vllm_ids(model_path, tok, prompts, cfg, seed=0)]
    t_vl = time.perf_counter() - t0
    same = [a == b for a, b in zip(hf, vl)]
    div = [
        dict(first_divergence(model, tok, p, a, b), prompt_index=i)
        for i, (p, a, b, s) in enumerate(zip(prompts, hf, vl, same))
        if not s
    ]
    texts_hf = [" " + x.strip() for x in tok.batch_decode(hf, skip_special_tokens=True)]
    texts_vl = [" " + x.strip() for x in tok.batch_decode(vl, skip_special_tokens=True)]
    return {
        "model": str(model_path),
        "n_prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "n_identical": int(sum(same)),
        "agreement": float(sum(same) / max(1, len(same))),
        "n_identical_text": int(sum(a == b for a, b in zip(texts_hf, texts_vl))),
        "divergences": div,
        "max_logprob_gap": max((abs(d["logprob_gap"]) for d in div), default=0.0),
        "hf_tokens": int(sum(map(len, hf))),
        "vllm_tokens": int(sum(map(len, vl))),
        "hf_seconds": t_hf,
        "vllm_seconds": t_vl,
        "hf_ids": hf,
        "vllm_ids": vl,
    }


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="python -m po_bench.generation.vllm_engine")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="greedy HF vs vLLM token agreement on a model")
    c.add_argument("--model", required=True)
    c.add_argument("--prompts", required=True, help="a JSON list of prompts (strings or message lists)")
    c.add_argument("--max-new-tokens", type=int, default=32)
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument(
        "--sampling-prompts",
        default=None,
        help="also sample these prompts (temperature 1) twice with seed 0 and once with seed 1",
    )
    c.add_argument("--out", default=None, help="write the report (JSON) here")
    a = ap.parse_args(argv)
    prompts = json.loads(Path(a.prompts).read_text())
    try:
        rep = compare(a.model, prompts, a.max_new_tokens, batch_size=a.batch_size)
        if a.sampling_prompts:
            from transformers import AutoTokenizer  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.8 s)

            sp = json.loads(Path(a.sampling_prompts).read_text())
            tok = AutoTokenizer.from_pretrained(a.model)
            cfg = {
                "temperature": 1.0,
                "top_p": 1.0,
                "max_new_tokens": a.max_new_tokens,
                "dtype": "float32",
                "enforce_eager": True,
                "multiprocessing": False,
                "kv_cache_memory_gib": 1,
            }
            rep["sampling"] = {
                "seed0": generate_vllm(a.model, tok, sp, cfg, 0),
                "seed0_again": generate_vllm(a.model, tok, sp, cfg, 0),
                "seed1": generate_vllm(a.model, tok, sp, cfg, 1),
            }
    finally:
        close_engine()
    text = json.dumps(rep, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generation throughput: the HF backend (po_bench.generation.generate.generate_hf) vs vLLM (po_bench.generation.vllm_engine).

    .venv/bin/python scripts/bench/gen_throughput.py                     # tiny world model + SmolLM2-135M-Instruct
    .venv/bin/python scripts/bench/gen_throughput.py --models tiny --n-prompts 512 --max-new-tokens 24
    .venv/bin/python scripts/bench/gen_throughput.py --models smollm2 --n-prompts 256 --max-new-tokens 64 --json out.json

Prints generated tokens per second (EOS excluded) of each backend on the same prompts, greedy and
sampled (temperature 1), the greedy agreement between the two, and vLLM's engine start-up time
(not counted in the throughput).  Every HF measurement runs before any vLLM engine starts:
vLLM's CPU worker pins this process's OpenMP threads.  Numbers, not assertions: run it on an idle
machine and say which machine.

* tiny: the world's 2-layer, 128-wide Llama (random N(0, 0.1) weights, so greedy continuations
  vary) on world eval prompts;
* smollm2: SmolLM2-135M-Instruct (po_bench.training.smollm2, float32) on chat prompts through its template.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TOPICS = [
    "the ocean",
    "a small village",
    "winter mornings",
    "learning to code",
    "the moon",
    "coffee",
    "a lost key",
    "friendship",
    "trains",
    "volcanoes",
    "honey bees",
    "a rainy day",
    "the history of bread",
    "chess",
    "gardening",
    "the color blue",
    "mountains",
    "libraries",
    "bicycles",
    "the desert",
    "music",
    "owls",
    "a city at night",
    "sailing",
    "tea",
    "robots",
    "the first snow",
    "lighthouses",
    "maps",
    "bridges",
    "the forest",
    "clocks",
]
TASKS = [
    "Write one sentence about {}.",
    "Give two facts about {}.",
    "Describe {} in a short paragraph.",
    "Write a haiku about {}.",
    "Explain {} to a child.",
    "List three words related to {}.",
    "Tell a very short story about {}.",
    "Why do people like {}?",
]


def tiny_model(out: Path):
    import torch

    from po_bench.training.models import build_tiny_model, train_world_tokenizer

    tok = train_world_tokenizer()
    model = build_tiny_model(
        tok, hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, max_position_embeddings=64, seed=0
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def prompts_for(name: str, n: int):
    if name == "tiny":
        from po_bench.data import world

        return world.make_prompts(world.WorldSpec(n_eval=n), "eval")
    base = [[{"role": "user", "content": t.format(x)}] for t in TASKS for x in TOPICS]
    return (base * (n // len(base) + 1))[:n]


def count_tokens(tok, texts) -> int:
    return sum(len(tok(t.strip(), add_special_tokens=False)["input_ids"]) for t in texts)


def bench_hf(path: Path, prompts, max_new: int, batch_size: int, temperature: float) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from po_bench.generation.generate import generate_hf
    from po_bench.generation.vllm_engine import hf_greedy_ids

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    if temperature == 0:  # token ids (for the agreement check) with generate_hf's batching
        t0 = time.perf_counter()
        ids = hf_greedy_ids(model, tok, prompts, max_new, batch_size)
        dt = time.perf_counter() - t0
        return {"seconds": dt, "tokens": sum(map(len, ids)), "ids": ids}
    cfg = SimpleNamespace(
        backend="hf", temperature=temperature, top_p=1.0, max_new_tokens=max_new, batch_size=batch_size, progress=False
    )
    t0 = time.perf_counter()
    out = generate_hf(model, tok, prompts, cfg, seed=0)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "tokens": None, "texts": out}


def bench_vllm(path: Path, prompts, max_new: int, temperature: float, engine: dict) -> dict:
    from transformers import AutoTokenizer

    from po_bench.generation.vllm_engine import generate_vllm_ids, get_engine

    tok = AutoTokenizer.from_pretrained(str(path))
    cfg = {"temperature": temperature, "top_p": 1.0, "max_new_tokens": max_new, "dtype": "float32", **engine}
    t0 = time.perf_counter()
    get_engine(path, cfg)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = [s[0] for s in generate_vllm_ids(path, tok, prompts, cfg, seed=0)]
    dt = time.perf_counter() - t0
    return {"seconds": dt, "tokens": sum(map(len, ids)), "ids": ids, "startup_seconds": startup}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,smollm2")
    ap.add_argument("--n-prompts", type=int, default=None, help="default: 512 (tiny), 256 (smollm2)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: 24 (tiny), 64 (smollm2)")
    ap.add_argument("--hf-batch-size", type=int, default=None, help="default: 128 (tiny), 32 (smollm2)")
    ap.add_argument("--no-sampling", action="store_true", help="greedy only")
    ap.add_argument("--multiprocessing", action="store_true", help="vLLM engine core in its own processes")
    ap.add_argument("--kv-cache-gib", type=float, default=2.0)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    defaults = {"tiny": (512, 24, 128), "smollm2": (256, 64, 32)}
    engine = {"enforce_eager": True, "multiprocessing": a.multiprocessing, "kv_cache_memory_gib": a.kv_cache_gib}
    temps = [0.0] if a.no_sampling else [0.0, 1.0]
    tmp = Path(tempfile.mkdtemp(prefix="po_bench_bench_"))
    setups = []
    for name in a.models.split(","):
        n, mx, bs = defaults[name]
        n, mx, bs = a.n_prompts or n, a.max_new_tokens or mx, a.hf_batch_size or bs
        if name == "tiny":
            path = tiny_model(tmp / "tiny")
        else:
            from po_bench.training.smollm2 import smollm2_path

            path = smollm2_path()
        setups.append({"name": name, "path": path, "prompts": prompts_for(name, n), "max_new": mx, "bs": bs})

    results = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_avg_start": os.getloadavg(),
        },
        "runs": [],
    }
    # all HF runs first (see the docstring)
    for s in setups:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(s["path"]))
        for t in temps:
            r = bench_hf(s["path"], s["prompts"], s["max_new"], s["bs"], t)
            if r["tokens"] is None:
                r["tokens"] = count_tokens(tok, r.pop("texts"))  # re-tokenised sampled text (approximate)
            s[f"hf_{t}"] = r
            print(
                f"[hf]   {s['name']:8s} T={t:g}: {r['tokens']} tokens in {r['seconds']:.1f}s = "
                f"{r['tokens'] / r['seconds']:.0f} tok/s",
                flush=True,
            )
    for s in setups:
        for t in temps:
            r = bench_vllm(s["path"], s["prompts"], s["max_new"], t, engine)
            s[f"vllm_{t}"] = r
            print(
                f"[vllm] {s['name']:8s} T={t:g}: {r['tokens']} tokens in {r['seconds']:.1f}s = "
                f"{r['tokens'] / r['seconds']:.0f} tok/s (engine start {r['startup_seconds']:.1f}s)",
                flush=True,
            )
        from po_bench.generation.vllm_engine import close_engine

        close_engine()
    print()
    print(
        f"{'model':8s} {'prompts':>7s} {'max_new':>7s} {'T':>3s} {'HF tok/s':>9s} {'vLLM tok/s':>10s} {'speed-up':>8s} {'greedy agreement':>16s}"
    )
    for s in setups:
        for t in temps:
            h, v = s[f"hf_{t}"], s[f"vllm_{t}"]
            hs, vs = h["tokens"] / h["seconds"], v["tokens"] / v["seconds"]
            agree = ""
            if t == 0:
                same = sum(x == y for x, y in zip(h["ids"], v["ids"]))
                agree = f"{same}/{len(h['ids'])}"
            print(
                f"{s['name']:8s} {len(s['prompts']):7d} {s['max_new']:7d} {t:3g} {hs:9.0f} {vs:10.0f} {vs / hs:7.1f}x {agree:>16s}"
            )
            results["runs"].append(
                {
                    "model": s["name"],
                    "n_prompts": len(s["prompts"]),
                    "max_new_tokens": s["max_new"],
                    "temperature": t,
                    "hf_tokens": h["tokens"],
                    "hf_seconds": h["seconds"],
                    "hf_tok_s": hs,
                    "vllm_tokens": v["tokens"],
                    "vllm_seconds": v["seconds"],
                    "vllm_tok_s": vs,
                    "vllm_startup_seconds": v["startup_seconds"],
                    "greedy_agreement": agree or None,
                }
            )
    results["machine"]["load_avg_end"] = os.getloadavg()
    print(
        f"\nload average (1/5/15 min) at start {results['machine']['load_avg_start']}, end {results['machine']['load_avg_end']}"
        f" on {results['machine']['cpus']} CPUs"
    )
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The online step of scripts/gpu_check.sh: SmolLM2-135M-Instruct (model=smollm2_135m's checkpoint) trained by
po-bench's online loop (po_bench/training/online.py, loss=online_dpo) for a few steps, its samples drawn by a vLLM
engine colocated with the policy (po_bench/generation/vllm_engine.py's PolicyEngine, weights synced in place after
each optimizer step), labelled by the world's gold reward of its continuations of the world's prompts (a mechanics check: the CLI's online
methods run on dataset=world, which needs model=tiny).  Prints the loop's counts and phase seconds, the sync
time, the peak GPU memory, and whether the synced engine samples what an engine built on the trained weights
samples (greedy).  Usage: python scripts/gpu_online_check.py OUT_DIR [steps] [max_new_tokens]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from po_bench.data import world
from po_bench.generation import vllm_engine
from po_bench.training import smollm2
from po_bench.training.labellers import labeller_for
from po_bench.training.models import load_checkpoint, load_tokenizer
from po_bench.training.online import LoopInputs, train_online


def main() -> None:
    out = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    max_new = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    path = smollm2.smollm2_path()
    tok = load_tokenizer(path)
    policy, ref = load_checkpoint(path), load_checkpoint(path)
    prompts = world.make_prompts(world.WorldSpec(n_pref=64), "pref")  # plain text (the gold reward parses them)
    gen = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": max_new, "batch_size": 64, "progress": False}
    gen.update(dtype="float32", max_model_len=1024, gpu_memory_utilization=0.3, enforce_eager=True, n=1)
    gen.update(kv_cache_memory_gib=None if torch.cuda.is_available() else 0.5)
    train = OmegaConf.create(
        {"batch_size": 8, "grad_accum": 1, "max_steps": steps, "epochs": 1.0, "max_length": 1024}
        | {"lr_scheduler": "constant", "warmup_ratio": 0.0}
    )
    t0 = time.perf_counter()
    engine = vllm_engine.PolicyEngine(path, tok, gen)
    built = time.perf_counter() - t0
    gold = labeller_for({"kind": "gold", "temperature": 0.0})
    gen_cfg = OmegaConf.create(gen)
    inp = LoopInputs(
        policy, tok, prompts, "online_dpo", {}, 0.1, 1e-5, train, gen_cfg, 0, gold, ref_model=ref, engine=engine
    )
    res = train_online(inp)
    engine.sync(res["model"])  # the last step's weights, then greedy from the synced and from a fresh engine
    greedy = {**gen, "temperature": 0.0}
    synced = vllm_engine.generate_vllm_ids(path, tok, prompts[:16], {**engine.gen_cfg, **greedy}, 0)
    res["model"].save_pretrained(str(out / "trained"))
    tok.save_pretrained(str(out / "trained"))
    vllm_engine.close_engine()
    fresh = vllm_engine.generate_vllm_ids(out / "trained", tok, prompts[:16], {**engine.gen_cfg, **greedy}, 0)
    report = {
        "engine_build_s": round(built, 1),
        "steps": res["steps"],
        "online": res["online"],
        "weight_syncs": engine.syncs,
        "sync_seconds": round(engine.sync_seconds, 3),
        "loss": [h.get("loss") for h in res["history"]],
        "greedy_synced_equals_fresh": sum(a == b for a, b in zip(synced, fresh)),
        "of": len(fresh),
        "gpu_peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    print(json.dumps(report))
    (out / "online_check.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()

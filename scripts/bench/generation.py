"""Generation: vLLM against the HF backend, tokens per second on the same prompts and greedy agreement, for
the world's tiny model and for SmolLM2-135M-Instruct at 256 prompts x 128 new tokens (the target's size).
Each model runs in its own process (scripts/bench/gen_throughput.py: every HF measurement before any vLLM
engine starts, since vLLM's CPU worker pins the process's OpenMP threads).  Generation inside online
training (HF vs vLLM colocated) comes with the online methods (issue 24)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import PY, ROOT, Report, Target, timed_run, write

NAME = "generation"
TITLE = "Generation: vLLM vs HF tokens/s, greedy agreement"


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--smollm2-prompts", type=int, default=256)
    p.add_argument("--smollm2-new-tokens", type=int, default=128)
    p.add_argument("--tiny-prompts", type=int, default=512)
    a = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as d:
        for model, args in (
            ("tiny", ["--n-prompts", str(a.tiny_prompts)]),
            (
                "smollm2",
                ["--n-prompts", str(a.smollm2_prompts), "--max-new-tokens", str(a.smollm2_new_tokens), "--no-sampling"],
            ),
        ):
            out = Path(d) / f"{model}.json"
            timed_run(
                [
                    PY,
                    str(ROOT / "scripts" / "bench" / "gen_throughput.py"),
                    "--models",
                    model,
                    *args,
                    "--json",
                    str(out),
                ]
            )
            runs += json.loads(out.read_text())["runs"]
    table = [
        {
            "model": r["model"],
            "prompts x new tokens": f"{r['n_prompts']} x {r['max_new_tokens']}",
            "temperature": r["temperature"],
            "HF tok/s": f"{r['hf_tok_s']:.0f}",
            "vLLM tok/s": f"{r['vllm_tok_s']:.0f}",
            "speed-up": f"{r['vllm_tok_s'] / r['hf_tok_s']:.1f}x",
            "greedy agreement": r["greedy_agreement"] or "",
            "vLLM engine start s": f"{r['vllm_startup_seconds']:.0f}",
        }
        for r in runs
    ]
    smol = next((r for r in runs if r["model"] == "smollm2" and r["temperature"] == 0), None)
    speedup = smol["vllm_tok_s"] / smol["hf_tok_s"] if smol else None
    agree = smol["greedy_agreement"] if smol else None
    return Report(
        NAME,
        TITLE,
        "python scripts/bench/run.py generation",
        table,
        [
            Target(
                f"vLLM / HF tokens/s, SmolLM2 greedy {a.smollm2_prompts} x {a.smollm2_new_tokens}",
                speedup,
                ">= 5",
                speedup is not None and speedup >= 5,
            )
        ],
        [
            f"SmolLM2 greedy agreement (identical token sequences): {agree}.",
            "Tokens counted without EOS; vLLM's engine start-up is not in its throughput (column on the right).",
        ],
        {"runs": runs},
    )


if __name__ == "__main__":
    print(write(main()).read_text())

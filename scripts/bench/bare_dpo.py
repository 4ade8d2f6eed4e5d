"""A bare TRL DPO script: the baseline of scripts/bench/overhead.py.  What a TRL user writes by hand: load the
checkpoint twice (policy and reference), the pairs as a ``datasets.Dataset``, ``DPOConfig(**arguments)``,
``DPOTrainer(...).train()``, save the policy.  No po-bench import: the arguments come in as JSON (the
benchmark derives them from po-bench's own mapping and compares them with the project's config).

    python scripts/bench/bare_dpo.py --checkpoint DIR --pairs pairs.json --args args.json --out DIR --result r.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True, help="the start checkpoint (model and tokenizer)")
    p.add_argument("--pairs", required=True, help="JSON list of {prompt, chosen, rejected}")
    p.add_argument("--args", required=True, help="JSON object: DPOConfig's arguments")
    p.add_argument("--out", required=True, help="where the trained policy is saved")
    p.add_argument("--result", required=True, help="where this run's facts are written (JSON)")
    a = p.parse_args()
    t0 = time.perf_counter()
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    kwargs = json.loads(Path(a.args).read_text())
    set_seed(kwargs["seed"])
    tokenizer = AutoTokenizer.from_pretrained(a.checkpoint)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(a.checkpoint, dtype=torch.float32)
    rows = json.loads(Path(a.pairs).read_text())
    trainer = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=DPOConfig(**kwargs),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    t_train = time.perf_counter()
    out = trainer.train()
    train_s = time.perf_counter() - t_train
    policy.save_pretrained(a.out)
    tokenizer.save_pretrained(a.out)
    Path(a.result).write_text(
        json.dumps(
            {
                "train_runtime": out.metrics.get("train_runtime"),
                "train_s": train_s,
                "steps": trainer.state.global_step,
                "in_process_s": time.perf_counter() - t0,
            }
        )
    )


if __name__ == "__main__":
    main()

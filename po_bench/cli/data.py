"""``po-bench-data``: build and inspect preference data.

``po-bench-data onpolicy``: SimPO-style on-policy data.  Sample k responses per prompt from a
model, score each with a scorer (the world's gold reward, or a reward model: a local
``AutoModelForSequenceClassification`` folder), and write

* ``<name>.ranked.jsonl``: prompt, responses (k), scores (k), one line per prompt;
* ``<name>.pairs.jsonl``: the best-vs-worst view (prompt, chosen, rejected; ties skipped, counted);
* ``<name>.recipe.json``: k, sampling settings, seeds, scorer, model, prompt source, counts, wall times.

Prompts come from the world (``--world pref`` / ``--world eval``) or a file (``--prompts``: a
.jsonl/.json/.parquet with a prompt column, or a .txt file with one prompt per line).  Sample j of
every prompt is drawn with its own seed ``sample_seeds[j]`` (generation seeds each batch from
(sample seed, batch index)), so the k samples of a prompt differ and the files are reproducible.

    po-bench-data onpolicy --model runs/sft --world pref --n 1600 -k 4 --scorer gold --out data/onpolicy
    po-bench-data onpolicy --model ~/.cache/po-bench/smollm2-135m-instruct --prompts prompts.jsonl --chat \\
        --scorer path/to/reward-model --out data/smol

``po-bench-data inspect``: load a dataset config (``--dataset ultrafeedback --path ...``), convert it,
and print the conversion report, token statistics (``--tokenizer``) and eval-prompt leakage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from po_bench.data.formats.base import DataError
from po_bench.data.formats.leakage import SHARED_DATA, eval_sets, leakage
from po_bench.data.formats.paired import to_pairs
from po_bench.data.formats.read import load_rows, source_name
from po_bench.data.formats.stats import data_stats
from po_bench.data.formats.unpaired import to_unpaired
from po_bench.data.onpolicy_files import OnPolicyError, file_prompts, make_scorer, sample_seeds, world_prompts
from po_bench.data.schema import dataset_config
from po_bench.store import atomic_write_json, atomic_write_text
from po_bench.training import models

log = logging.getLogger("po_bench.data")


BENCHMARKS = ("alpaca_eval", "mt_bench", "arena_hard")  # eval_sets' benchmark sets


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def onpolicy(a: argparse.Namespace) -> dict:
    import torch  # lazy: torch, transformers and the model code (~3 s): not for --help or inspect
    import transformers  # lazy: huggingface_hub, transformers (~0.8 s)

    from po_bench.generation import generate  # lazy: its module (~0.0 s)

    t_start = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.scorer == "gold" and not a.world:
        if not a.allow_world_scorer:
            raise SystemExit(
                "po-bench-data: --scorer gold is the embedded world's reward r*, which scores only the "
                "world's prompts (--world pref/eval); for --prompts pass a reward-model folder as --scorer, "
                "or --allow-world-scorer to score them with r* anyway"
            )
        log.warning("--scorer gold is the embedded world's reward: meaningful for world prompts only")
    if a.world:
        prompts = world_prompts(a.world, a.n, a.world_seed)
        source = {"world": a.world, "world_seed": a.world_seed, "n": len(prompts)}
    else:
        prompts = file_prompts(a.prompts, a.prompt_column, a.n)
        source = {"file": str(Path(a.prompts).resolve()), "column": a.prompt_column, "n": len(prompts)}
    if a.chat:
        prompts = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
    if a.k < 2:
        raise SystemExit("po-bench-data: -k must be >= 2 (best vs worst)")

    t0 = time.perf_counter()
    model, tok = models.load_pretrained(a.model, dtype=a.dtype)
    if torch.cuda.is_available():
        model.to("cuda")
    t_load = time.perf_counter() - t0
    gen_cfg = SimpleNamespace(
        backend="hf",
        temperature=a.temperature,
        top_p=a.top_p,
        max_new_tokens=a.max_new_tokens,
        batch_size=a.batch_size,
        progress=a.progress,
    )
    seeds = sample_seeds(a.seed, a.k)
    t0 = time.perf_counter()
    samples = [
        generate.generate(model, tok, prompts, gen_cfg, s, f"samples ({j + 1}/{a.k})") for j, s in enumerate(seeds)
    ]
    t_gen = time.perf_counter() - t0
    del model
    conversational = [not isinstance(p, str) for p in prompts]
    responses = [
        [samples[j][i].strip() if conversational[i] else samples[j][i] for j in range(a.k)] for i in range(len(prompts))
    ]

    t0 = time.perf_counter()
    scorer = make_scorer(a.scorer, a.score_batch_size)
    flat_p = [p for p, rs in zip(prompts, responses) for _ in rs]
    flat_r = [r for rs in responses for r in rs]
    flat_s = scorer(flat_p, flat_r)
    t_score = time.perf_counter() - t0
    ranked = [
        {"prompt": p, "responses": rs, "scores": flat_s[i * a.k : (i + 1) * a.k]}
        for i, (p, rs) in enumerate(zip(prompts, responses))
    ]

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "ranked": out / f"{a.name}.ranked.jsonl",
        "pairs": out / f"{a.name}.pairs.jsonl",
        "recipe": out / f"{a.name}.recipe.json",
    }
    pairs, report = to_pairs(ranked, "ranked", source=str(files["ranked"]))
    _write_jsonl(files["ranked"], ranked)
    _write_jsonl(files["pairs"], pairs)
    scores = np.asarray(flat_s, dtype=float)
    distinct = [len({r.strip() for r in rs}) for rs in responses]
    recipe = {
        "kind": "onpolicy",
        "model": str(a.model),
        "prompt_source": source,
        "chat": bool(a.chat),
        "k": a.k,
        "generation": {
            "backend": "hf",
            "temperature": a.temperature,
            "top_p": a.top_p,
            "max_new_tokens": a.max_new_tokens,
            "batch_size": a.batch_size,
            "dtype": a.dtype,
        },
        "seed": a.seed,
        "sample_seeds": seeds,
        "seeding": "sample j of every prompt uses sample_seeds[j]; po_bench.generation.generate seeds each batch of "
        "batch_size prompts with hash((sample_seeds[j], batch_index))",
        "scorer": scorer.desc,
        "counts": {
            "prompts": len(prompts),
            "responses": len(flat_r),
            "pairs": len(pairs),
            "ties_skipped": report["skipped"].get("tie", 0),
            "skipped": report["skipped"],
            "prompts_with_all_samples_identical": sum(1 for d in distinct if d == 1),
            "mean_distinct_samples": float(np.mean(distinct)),
        },
        "scores": {
            "mean": float(scores.mean()),
            "std": float(scores.std()),
            "mean_best": float(np.mean([max(r["scores"]) for r in ranked])),
            "mean_worst": float(np.mean([min(r["scores"]) for r in ranked])),
        },
        "wall_seconds": {
            "load_model": round(t_load, 3),
            "generate": round(t_gen, 3),
            "score": round(t_score, 3),
            "total": round(time.perf_counter() - t_start, 3),
        },
        "files": {k: v.name for k, v in files.items()},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": ["po-bench-data", *a.argv],
    }
    atomic_write_json(files["recipe"], recipe)
    print(
        f"po-bench-data: {len(prompts)} prompts x {a.k} samples -> {len(pairs)} pairs "
        f"({recipe['counts']['ties_skipped']} ties) in {recipe['wall_seconds']['total']:.1f}s: {out}"
    )
    return recipe


# ---------------------------------------------------------------------------------------------
# inspect
# ---------------------------------------------------------------------------------------------


def inspect(a: argparse.Namespace) -> dict:

    overrides = {
        k: v
        for k, v in (("path", a.path), ("hub_id", a.hub_id), ("format", a.format), ("max_rows", a.max_rows))
        if v is not None
    }
    dcfg = dataset_config(a.dataset, **overrides)
    for item in a.column or []:
        k, _, v = item.partition("=")
        dcfg.columns[k] = v
    split = a.split or dcfg.split
    rows = load_rows(dcfg, split)
    src = source_name(dcfg, split)
    if dcfg.format == "unpaired":
        items, report = to_unpaired(rows, dcfg.format, dict(dcfg.columns), src)
        prompts = [x["prompt"] for x in items]
    else:
        items, report = to_pairs(rows, dcfg.format, dict(dcfg.columns), src)
        prompts = [x["prompt"] for x in items]
    out: dict = {"report": report}
    if a.tokenizer and dcfg.format != "unpaired":
        from transformers import AutoTokenizer  # lazy: as in onpolicy

        tok = AutoTokenizer.from_pretrained(a.tokenizer)
        out["stats"] = data_stats(items, tok, a.max_length)
    shared = a.shared_data or SHARED_DATA
    sets = eval_sets(shared_data=shared)
    if sets:  # a benchmark whose file is absent is named, not left out (absent would read as "no leakage")
        out["leakage"] = {
            **leakage(prompts, sets),
            **{b: "not checked (benchmark file absent)" for b in BENCHMARKS if b not in sets},
        }
    else:
        out["leakage"] = "not checked (benchmark files absent)"
        out["leakage_files"] = f"looked for AlpacaEval, MT-Bench and Arena-Hard prompts under {shared}"
    print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    return out


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="po-bench-data", description="Build and inspect preference data.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    o = sub.add_parser("onpolicy", help="sample k responses per prompt, score them, write ranked + pairs + recipe")
    src = o.add_mutually_exclusive_group(required=True)
    src.add_argument("--world", choices=["pref", "eval"], help="prompts from the embedded world's split")
    src.add_argument("--prompts", help="prompt file: .jsonl/.json/.parquet (see --prompt-column) or .txt")
    o.add_argument("--prompt-column", default="prompt")
    o.add_argument("--world-seed", type=int, default=0, help="dataset.seed of the world")
    o.add_argument("--n", type=int, default=0, help="use the first N prompts (0: all)")
    o.add_argument("--chat", action="store_true", help="wrap text prompts as a user message (chat template)")
    o.add_argument("--model", required=True, help="policy: a local model folder or a Hub id")
    o.add_argument("--dtype", default="float32")
    o.add_argument("-k", type=int, default=4, help="samples per prompt")
    o.add_argument("--temperature", type=float, default=1.0)
    o.add_argument("--top-p", type=float, default=1.0)
    o.add_argument("--max-new-tokens", type=int, default=24)
    o.add_argument("--batch-size", type=int, default=64)
    o.add_argument("--seed", type=int, default=0)
    o.add_argument(
        "--scorer", default="gold", help="'gold' (world reward; world prompts only) or a reward-model folder"
    )
    o.add_argument(
        "--allow-world-scorer",
        action="store_true",
        help="score --prompts (non-world prompts) with the world's reward anyway",
    )
    o.add_argument("--score-batch-size", type=int, default=16)
    o.add_argument("--out", required=True, help="output folder")
    o.add_argument("--name", default="onpolicy", help="file stem: <name>.ranked.jsonl, .pairs.jsonl, .recipe.json")
    o.add_argument("--threads", type=int, default=0)
    o.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    o.set_defaults(func=onpolicy)

    i = sub.add_parser("inspect", help="convert a dataset config and print report, token stats, leakage")
    i.add_argument("--dataset", required=True, help="a conf/dataset/*.yaml name (ultrafeedback, hh_rlhf, file, ...)")
    i.add_argument("--path")
    i.add_argument("--hub-id")
    i.add_argument("--format")
    i.add_argument("--split")
    i.add_argument("--max-rows", type=int)
    i.add_argument("--column", action="append", help="FIELD=COLUMN (repeatable)")
    i.add_argument("--tokenizer", help="tokenizer folder or id for token statistics")
    i.add_argument("--max-length", type=int, default=1024)
    i.add_argument(
        "--shared-data",
        default=None,
        help="folder with the benchmarks' prompt files for the leakage check (default: ../shared/data)",
    )
    i.set_defaults(func=inspect)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    a = build_parser().parse_args(argv)
    a.argv = argv
    try:
        a.func(a)
    except DataError as e:
        print(f"po-bench-data: {e}", file=sys.stderr)
        return 2
    except OnPolicyError as e:
        raise SystemExit(f"po-bench-data: {e}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

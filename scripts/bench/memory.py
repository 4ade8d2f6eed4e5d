"""Memory: the peak resident memory (and peak GPU memory where there is a GPU) of a preference training run of
SmolLM2-135M-Instruct (model=smollm2_135m, converted offline by the project) with DPO, its reference log-probs
precomputed (the store's path), in two cases, each in its own process:

- reference resident: the reference model stays loaded for the whole run, as TRL 1.16's DPOTrainer kept it;
- reference freed: po-bench's trainer releases it once its log-probs are computed (training/trl/fit.py's
  release_reference) and nothing else holds it.

Both run po-bench's own training stage code (training/trl/preference.py's train_preference on the same pairs,
steps and arguments); the resident case only keeps its own reference to the model.  The peak is the
process's high-water mark (getrusage ru_maxrss, VmHWM), read at the end of the run; the saving is set
beside the reference model's size (its parameters and buffers)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import PY, ROOT, Report, Target, alternate, median, spread, timed_run, write

NAME = "memory"
TITLE = "Memory: peak RSS with the reference model resident vs released after its log-probs are precomputed"
CASES = {"reference resident": "resident", "reference freed": "freed"}


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2", help="tiny: the world's model (tests)")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", choices=sorted(CASES.values()), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a)
        return None
    work = Path(tempfile.mkdtemp(prefix="po-bench-bench-memory-"))
    sizes = ["--model", a.model, "--pairs", str(a.pairs), "--steps", str(a.steps), "--batch-size", str(a.batch_size)]
    sizes += ["--max-length", str(a.max_length), "--threads", str(a.threads)]

    def case(kind: str):
        def go(r):
            out = work / f"{kind}-{r}.json"
            wall, _ = timed_run([PY, str(Path(__file__).resolve()), "--child", kind, "--out", str(out), *sizes])
            return {**json.loads(out.read_text()), "wall": wall}

        return go

    res = alternate({name: case(kind) for name, kind in CASES.items()}, a.repeats)
    gib = lambda b: b / 2**30
    table = []
    for name, rs in res.items():
        row = {
            "case": name,
            "peak RSS GiB (min / median / max)": spread([gib(x["peak_rss"]) for x in rs], 3),
            "RSS after loading both models GiB (median)": f"{gib(median([x['rss_loaded'] for x in rs])):.3f}",
            "steps": rs[0]["steps"],
            "wall s (median)": f"{median([x['wall'] for x in rs]):.1f}",
        }
        if rs[0].get("gpu_peak") is not None:
            row["peak GPU memory GiB (median)"] = f"{gib(median([x['gpu_peak'] for x in rs])):.3f}"
        table.append(row)
    ref_bytes = res["reference freed"][0]["reference_bytes"]
    saved = median([x["peak_rss"] for x in res["reference resident"]]) - median(
        [x["peak_rss"] for x in res["reference freed"]]
    )
    table.append(
        {
            "case": "saved by releasing the reference",
            "peak RSS GiB (min / median / max)": f"{gib(saved):.3f}",
            "RSS after loading both models GiB (median)": f"reference model: {gib(ref_bytes):.3f} GiB",
        }
    )
    targets = [
        Target("peak RSS saved / the reference model's size", saved / ref_bytes, ">= 0.9", saved >= 0.9 * ref_bytes)
    ]
    if res["reference freed"][0].get("gpu_peak") is not None:
        gpu_saved = median([x["gpu_peak"] for x in res["reference resident"]]) - median(
            [x["gpu_peak"] for x in res["reference freed"]]
        )
        targets.append(
            Target("peak GPU memory saved / the reference model's size", gpu_saved / ref_bytes, ">= 0.9", None)
        )
    model = "SmolLM2-135M-Instruct (fp32)" if a.model == "smollm2" else "the world's tiny model"
    return Report(
        NAME,
        TITLE,
        f"python scripts/bench/run.py memory --model {a.model} --pairs {a.pairs} --steps {a.steps} "
        f"--batch-size {a.batch_size} --max-length {a.max_length} --repeats {a.repeats}",
        table,
        targets,
        [
            f"{model}, loss=dpo, {a.pairs} world pairs, {a.steps} optimizer steps of {a.batch_size} pairs, "
            f"max_length {a.max_length}, {a.threads} threads; each case in its own process, alternated.",
            "Both cases precompute the reference log-probs in the run (the store's path, an empty store); the "
            "resident case keeps a reference to the reference model, as TRL's trainer did before po-bench "
            "released it.",
            "Peak RSS: the process's high-water mark (ru_maxrss) at the end of the run; it includes the Python "
            "runtime and the imported libraries, the same in both cases.",
        ],
        {"runs": res, "reference_bytes": ref_bytes},
    )


def child(a) -> None:
    """One training run; writes its memory facts as JSON to ``a.out``."""
    import resource

    import torch
    from omegaconf import OmegaConf

    from po_bench import stages
    from po_bench.training import models
    from po_bench.training.trl.preference import train_preference

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as d:
        if a.model == "smollm2":
            from po_bench.training.smollm2 import smollm2_path

            path = str(smollm2_path())
        else:  # the world's tiny model, saved first so that both models load from disk as in the pipeline
            tok = models.train_world_tokenizer()
            models.build_tiny_model(tok).save_pretrained(d)
            tok.save_pretrained(d)
            path = d
        tokenizer = models.load_tokenizer(path)
        policy = models.load_checkpoint(path, "float32")
        ref = models.load_checkpoint(path, "float32")
        ref_bytes = sum(t.numel() * t.element_size() for t in [*ref.parameters(), *ref.buffers()])
        rss_loaded = _rss()
        cfg = _config(a)
        train = OmegaConf.create({**_pref_train(cfg), **stages.train_opts({}), "launch": {}})
        out = Path(d) / "trainer"
        cache = (lambda: None, lambda obj: None)  # an empty store: the reference log-probs computed in the run
        pairs = _pairs(a.pairs)
        if a.child == "resident":  # this name keeps the reference model alive for the whole run
            res = train_preference(
                policy, ref, tokenizer, pairs, cfg.loss, train, out, 0, ref_logps_cache=cache, model_cfg=cfg.model
            )
        else:  # no name holds it (and no *args / **kwargs call, whose argument tuple the caller keeps)
            held = [ref]
            del ref
            res = train_preference(
                policy,
                held.pop(),
                tokenizer,
                pairs,
                cfg.loss,
                train,
                out,
                0,
                ref_logps_cache=cache,
                model_cfg=cfg.model,
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    Path(a.out).write_text(
        json.dumps(
            {
                "peak_rss": peak,
                "rss_loaded": rss_loaded,
                "reference_bytes": ref_bytes,
                "gpu_peak": gpu,
                "steps": res["steps"],
                "case": a.child,
            }
        )
    )


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _config(a):
    """The run's config as po-bench composes it: loss=dpo on the model, the bench's sizes."""
    from hydra import compose, initialize_config_dir

    from po_bench.config import register

    register()  # the structured schema the config composes onto
    model = "smollm2_135m" if a.model == "smollm2" else "tiny"
    overrides = [
        "loss=dpo",
        f"model={model}",
        f"train.max_steps={a.steps}",
        f"train.batch_size={a.batch_size}",
        f"train.max_length={a.max_length}",
        "train.warmup_ratio=0.0",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _pref_train(cfg) -> dict:
    from po_bench.specs import pref_train

    return pref_train(cfg)


def _pairs(n: int) -> list[dict]:
    """``n`` labelled world pairs (two demonstrations per prompt, the default annotator, seed 0)."""
    import numpy as np

    from po_bench.data import world

    spec = world.WorldSpec(n_pref=n)
    prompts = world.make_prompts(spec, "pref")
    rng = np.random.default_rng(0)
    samples = [[" " + world.demonstrate(spec, p, rng), " " + world.demonstrate(spec, p, rng)] for p in prompts]
    return world.label_pairs(prompts, samples, world.Annotator(), seed=0)


if __name__ == "__main__":
    import sys

    report = main(sys.argv[1:])
    if report is not None:
        print(write(report).read_text())

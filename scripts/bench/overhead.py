"""Framework overhead: po-bench's preference training stage against a bare TRL script (scripts/bench/bare_dpo.py)
on the same checkpoint, pairs and arguments.  The store is built once by a default world run (loss=dpo, no
generation; not timed); then, alternating, each side trains the policy in its own process from the SFT
checkpoint on the run's pairs:

- po-bench: ``python -m po_bench.stages policy spec.json --store <copy>``, the policy stage as the pipeline
  runs it (a copy of the store without the policy and the reference log-probs: it computes both);
- bare TRL: DPOConfig + DPOTrainer, its arguments derived here from po-bench's fields through the project's own
  mapping (training/trl/args.py's TRAIN_FIELD_MAP, the loss's beta, lr and args) plus what any TRL script sets
  itself (output folder, seed, device, no checkpoints, no reporting, TRL's precomputed reference); every field
  where they differ from the config the project builds (build_trl_config) is listed in the report.

Compared: each process's wall time, the time of ``Trainer.train`` as TRL reports it (train_runtime), and the
sha256 of the trained policy's weights."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from common import PY, ROOT, Report, Target, alternate, env, median, po_bench, spread, timed_run, write

NAME = "overhead"
TITLE = "Framework overhead: po-bench's training stage vs a bare TRL script"
# po-bench fields -> the TRL value, where the mapping's TRL field takes a converted value (args.common_args)
CONVERT = {
    "max_steps": lambda v: v if v > 0 else -1,  # 0: no cap
    "warmup_ratio": float,  # transformers 5: a float in [0, 1) is a ratio of the run's steps
    "precision": lambda v: v == "bf16-mixed",  # bf16=True: autocast over fp32 weights
    "progress": lambda v: not v,  # disable_tqdm
}
# what a TRL script sets itself (not po-bench fields); the seed and the device are the run's
SCRIPT_OWN = {"save_strategy": "no", "report_to": "none", "precompute_ref_log_probs": True}


def main(argv=None) -> Report:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--overrides", nargs="*", default=[], help="extra overrides for the run (default: the default run)")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="po-bench-bench-overhead-"))
    overrides = ["loss=dpo", *a.overrides]
    store = work / "store"
    build_s, _ = po_bench(
        [
            *overrides,
            "stages.generate=false",
            "tracking=none",
            f"threads={a.threads}",
            "train.progress=false",
            "generation.progress=false",
            f"cache_dir={store}",
            f"hydra.run.dir={work / 'build'}",
        ]
    )
    spec, checkpoint, rows, seed = _inputs(overrides, store)
    (work / "spec.json").write_text(json.dumps(spec))
    (work / "pairs.json").write_text(json.dumps(rows))
    bare_args, differ = _arguments(spec, rows, work / "bare-trainer")
    (work / "args.json").write_text(json.dumps(bare_args))
    threads = env(OMP_NUM_THREADS=a.threads, MKL_NUM_THREADS=a.threads)

    def pobench(r):
        copy = work / f"store-{r}"
        shutil.copytree(store, copy, ignore=lambda d, names: [n for n in names if n in ("policy", "ref_logps")])
        wall, _ = timed_run(
            [PY, "-m", "po_bench.stages", "policy", str(work / "spec.json"), "--store", str(copy)], env=threads
        )
        from po_bench.store import Store

        folder = Store(copy).path("policy", spec)
        metrics = json.loads((folder / "train_metrics.json").read_text())
        runtime = next((h["train_runtime"] for h in metrics["history"] if "train_runtime" in h), None)
        return {"wall": wall, "train_runtime": runtime, "steps": metrics["steps"], "weights": _weights(folder)}

    def bare(r):
        out, result = work / f"bare-{r}", work / f"bare-{r}.json"
        cmd = [PY, str(Path(__file__).with_name("bare_dpo.py")), "--checkpoint", str(checkpoint)]
        cmd += ["--pairs", str(work / "pairs.json"), "--args", str(work / "args.json")]
        wall, _ = timed_run([*cmd, "--out", str(out), "--result", str(result)], env=threads)
        res = json.loads(result.read_text())
        return {"wall": wall, "train_runtime": res["train_runtime"], "steps": res["steps"], "weights": _weights(out)}

    res = alternate({"po-bench policy stage": pobench, "bare TRL script": bare}, a.repeats)
    table = [
        {
            "case": name,
            "process wall s (min / median / max)": spread([x["wall"] for x in rs]),
            "Trainer.train s (TRL's train_runtime)": spread([x["train_runtime"] for x in rs]),
            "steps": rs[0]["steps"],
            "policy weights sha256": rs[0]["weights"][:16],
        }
        for name, rs in res.items()
    ]
    po, tr = res["po-bench policy stage"], res["bare TRL script"]
    ratio = median([x["wall"] for x in po]) / median([x["wall"] for x in tr])
    train_ratio = median([x["train_runtime"] for x in po]) / median([x["train_runtime"] for x in tr])
    same = len({x["weights"] for x in po + tr}) == 1
    notes = [
        f"The store was built once before timing ({build_s:.0f} s, not counted); overrides: {' '.join(overrides)}; "
        f"{len(rows)} pairs, seed {seed}, {a.threads} thread(s) on both sides.",
        "Process wall: from the process's start to its exit (Python, imports, loading, training, saving; po-bench "
        "also locks, hashes and publishes the artifact).  Trainer.train: TRL's own train_runtime on each side.",
        "Arguments: the bare script's DPOConfig equals the project's in every field"
        if not differ
        else "Arguments that differ between the bare script and the project's DPOConfig (bare / project): "
        + "; ".join(f"{k}: {b!r} / {p_!r}" for k, (b, p_) in sorted(differ.items())),
    ]
    return Report(
        NAME,
        TITLE,
        f"python scripts/bench/run.py overhead --repeats {a.repeats} --threads {a.threads}"
        + (f" --overrides {' '.join(a.overrides)}" if a.overrides else ""),
        table,
        [
            Target("training overhead: po-bench stage / bare TRL (process wall)", ratio, "<= 1.02", ratio <= 1.02),
            Target("Trainer.train: po-bench / bare TRL", train_ratio, "<= 1.02", train_ratio <= 1.02),
            Target("same policy weights (sha256) on every run of both sides", float(same), "= 1 (yes)", same),
        ],
        notes,
        {"runs": res, "arguments": bare_args, "differ": {k: list(v) for k, v in differ.items()}},
    )


def _inputs(overrides: list[str], store: Path):
    """The policy stage's spec (as the run's plan has it), its start checkpoint's folder, the training rows
    the stage trains on, and the seed."""
    from hydra import compose, initialize_config_dir

    from po_bench.config import register
    from po_bench.specs import plan
    from po_bench.stages import checkpoint_dir
    from po_bench.store import Store

    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "stages.generate=false"])
    p = plan(cfg)
    s = Store(store)
    pairs = s.load_json("pairs", p.pairs)["train"]
    rows = [{"prompt": x["prompt"], "chosen": x["chosen"], "rejected": x["rejected"]} for x in pairs]
    return p.policy, checkpoint_dir(s, p.start), rows, int(cfg.seed)


def _arguments(spec: dict, rows: list, out_dir: Path) -> tuple[dict, dict]:
    """(the bare script's DPOConfig arguments, the fields whose values differ between the bare DPOConfig and the
    project's: name -> (bare, project))."""
    from omegaconf import OmegaConf
    from trl import DPOConfig

    from po_bench.stages import train_opts
    from po_bench.training.trl.args import TRAIN_FIELD_MAP, build_trl_config

    train = {**spec["train"], **train_opts({})}  # the stage's run options: stages.DEFAULT_OPTS
    loss = spec["loss"]
    kw = {}
    for field, value in train.items():
        target = TRAIN_FIELD_MAP.get(field)
        if target and target.isidentifier():  # one TRL field (not the process group's, not the stage's)
            kw[target] = CONVERT.get(field, lambda v: v)(value)
    kw.update(learning_rate=loss["lr"], beta=loss["beta"], **loss["args"])
    kw.update(SCRIPT_OWN, output_dir=str(out_dir), seed=spec["seed"], data_seed=spec["seed"])
    import torch

    kw["use_cpu"] = not torch.cuda.is_available()
    kw.pop("save_steps", None)  # no checkpoints (save_strategy no)
    project = build_trl_config(
        OmegaConf.create(loss),
        OmegaConf.create({**train, "launch": {}}),
        out_dir,
        spec["seed"],
        precompute_ref=True,
        n_rows=len(rows),
    )
    bare = DPOConfig(**kw)
    b, p = bare.to_dict(), project.to_dict()
    skip = {"output_dir", "logging_dir"}
    differ = {k: (b.get(k), p.get(k)) for k in sorted((set(b) | set(p)) - skip) if b.get(k) != p.get(k)}
    return kw, differ


def _weights(folder: Path) -> str:
    """sha256 over the saved policy's tensors (name, dtype, shape, bytes, in name order)."""
    import torch
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, t in sorted(load_file(str(Path(folder) / "model.safetensors")).items()):
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


if __name__ == "__main__":
    print(write(main()).read_text())

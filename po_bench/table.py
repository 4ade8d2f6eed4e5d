"""Table stage: ``po-bench-table SWEEP_DIR`` gathers every ``run.json`` under a sweep folder.

Rows are methods and the hyperparameters that vary across the sweep (seed excluded); columns are
metrics as mean and std over seeds.  Writes ``results.csv`` and ``results.md`` in the sweep folder
(or ``--out DIR --name NAME``), lists failed runs under the table, and prints the markdown.
``--plot`` also draws gold reward against KL, one point per run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .store import atomic_write_text

METRICS = (
    "gold_reward", "gold_reward_sft", "win_rate_vs_sft", "kl_to_ref", "mean_length",
    "implicit_reward_accuracy", "implicit_reward_accuracy_ood", "train_loss_final",
)
IGNORED_KEYS = {"seed", "cache_dir", "threads", "generation.progress", "train.progress", "loss.citation",
                "train.logging_steps"}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def load_runs(sweep_dir: str | Path) -> list[dict]:
    runs = []
    def natural(p: Path):  # multirun job folders "0_...", "1_...", "10_..." in job order
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]

    for path in sorted(Path(sweep_dir).rglob("run.json"), key=natural):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            rec = {"status": "failed", "error": f"unreadable run.json: {e}", "config": {}}
        rec["_path"] = str(path.parent)
        runs.append(rec)
    return runs


def _method(flat: dict) -> str:
    return str(flat.get("loss.label") or flat.get("loss.name") or "?")


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


JUDGE_PREFIXES = ("alpaca_eval_", "mt_bench_", "arena_hard_", "rm_")


def metric_columns(runs: list[dict]) -> list[str]:
    """The standard metrics plus every numeric judge score the runs report (e.g. mt_bench_score)."""
    extra = []
    for r in runs:
        for k, v in r.get("metrics", {}).items():
            if k.startswith(JUDGE_PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool) \
                    and not k.split("_")[-1] in ("questions", "judgments", "scored", "failures") and k not in extra:
                extra.append(k)
    return list(METRICS) + extra


def build_table(runs: list[dict]) -> tuple[list[str], list[dict], list[dict]]:
    """(hyperparameter columns, rows, failed runs)."""
    done = [r for r in runs if r.get("status") == "done"]
    metrics = metric_columns(done)
    failed = [r for r in runs if r.get("status") != "done"]
    flats = [_flatten(r.get("config", {})) for r in done]
    keys = sorted({k for f in flats for k in f})
    varying = [k for k in keys if k not in IGNORED_KEYS and len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    # Columns that only restate the method are dropped (loss.name/backend vary with the method).
    hp_cols = [k for k in varying if not k.startswith(("loss.name", "loss.label", "loss.backend", "loss.args",
                                                         "loss.reference_free", "loss.paired", "loss.formula",
                                                         "loss.function", "loss.implicit_reward"))]
    if any(k.startswith("loss.args") for k in varying):
        per_method: dict[str, set] = {}
        for f in flats:
            per_method.setdefault(_method(f), set()).add(json.dumps({k: f[k] for k in f if k.startswith("loss.args")}))
        if any(len(v) > 1 for v in per_method.values()):
            hp_cols += [k for k in varying if k.startswith("loss.args")]
    groups: "OrderedDict[tuple, list[dict]]" = OrderedDict()
    for r, f in zip(done, flats):
        key = (_method(f),) + tuple(json.dumps(f.get(k), default=str) for k in hp_cols)
        groups.setdefault(key, []).append(r)
    rows = []
    order = {m: i for i, m in enumerate(dict.fromkeys(_method(f) for f in flats))}
    for key, members in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1:])):
        row: dict[str, Any] = {"method": key[0]}
        for k, v in zip(hp_cols, key[1:]):
            row[k] = json.loads(v)
        row["n_seeds"] = len(members)
        for m in metrics:
            mean, sd = _mean_std([r.get("metrics", {}).get(m) for r in members])
            row[f"{m}_mean"], row[f"{m}_std"] = mean, sd
        row["seconds_mean"] = _mean_std([r.get("metrics", {}).get("seconds", {}).get("total") for r in members])[0]
        rows.append(row)
    return hp_cols, rows, failed


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3f}"
    return str(x)


def _metrics_of(rows: list[dict]) -> list[str]:
    """The metric columns of built rows (every ``<metric>_mean`` key, in order)."""
    return [k[: -len("_mean")] for k in (rows[0] if rows else {m + "_mean": 0 for m in METRICS})
            if k.endswith("_mean") and k != "seconds_mean"]


def _fmt_hp(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def to_csv(hp_cols: list[str], rows: list[dict]) -> str:
    cols = ["method"] + hp_cols + ["n_seeds"] + [f"{m}_{s}" for m in _metrics_of(rows) for s in ("mean", "std")] + ["seconds_mean"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in cols})
    return buf.getvalue()


def to_markdown(hp_cols: list[str], rows: list[dict], failed: list[dict], title: str = "") -> str:
    metrics = _metrics_of(rows)
    head = ["method"] + hp_cols + ["seeds"] + metrics
    lines = []
    if title:
        lines += [f"## {title}", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        cells = [r["method"]] + [_fmt_hp(r[k]) for k in hp_cols] + [str(r["n_seeds"])]
        for m in metrics:
            mean, sd = r[f"{m}_mean"], r[f"{m}_std"]
            cells.append(_fmt(mean) if r["n_seeds"] < 2 or math.isnan(sd) else f"{_fmt(mean)} ± {_fmt(sd)}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean ± std over seeds. gold_reward: mean r* of policy samples on held-out prompts; "
                 "win_rate_vs_sft: policy sample beats the SFT sample under r* (ties half); kl_to_ref: "
                 "Monte-Carlo sequence KL to the SFT reference; mean_length in tokens (incl. EOS).")
    if failed:
        lines += ["", f"**Failed runs ({len(failed)}):**", ""]
        for r in failed:
            lines.append(f"- `{Path(r['_path']).name}`: {r.get('error') or 'no error message'}")
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: str | Path, x: str = "kl_to_ref", y: str = "gold_reward") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    by_method: dict[str, list[tuple[float, float]]] = {}
    sft_level = []
    for r in runs:
        if r.get("status") != "done":
            continue
        m = r.get("metrics", {})
        if m.get(x) is None or m.get(y) is None:
            continue
        by_method.setdefault(_method(_flatten(r.get("config", {}))), []).append((m[x], m[y]))
        if m.get("gold_reward_sft") is not None:
            sft_level.append(m["gold_reward_sft"])
    many = len(by_method) > 10
    for name, pts in sorted(by_method.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=name, s=36, alpha=0.85)
        if many:  # too many for a legend: label the points
            for px, py in pts:
                ax.annotate(name, (px, py), fontsize=6, xytext=(3, 2), textcoords="offset points")
    xs = [p[0] for pts in by_method.values() for p in pts]
    if xs and max(xs) > 20 * max(1e-9, sorted(xs)[len(xs) // 2]):
        ax.set_xscale("symlog", linthresh=1.0)  # an outlier would squash the rest
    if sft_level and y == "gold_reward":
        ax.axhline(sum(sft_level) / len(sft_level), color="grey", ls="--", lw=1, label="SFT (mean)")
    ax.set_xlabel("KL(policy || SFT reference), nats per sequence" if x == "kl_to_ref" else x)
    ax.set_ylabel("gold reward r* (held-out prompts)" if y == "gold_reward" else y)
    ax.set_title("po-bench: gold reward vs KL, one point per run")
    ax.grid(alpha=0.3)
    if not many:
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_tables(sweep_dir: str | Path | list, out_dir: str | Path | None = None, name: str = "results",
                 make_plot: bool = False, title: str = "") -> dict[str, Path]:
    """Tabulate one sweep folder, or several merged (a list: e.g. a sweep and its relaunch)."""
    dirs = [Path(d) for d in (sweep_dir if isinstance(sweep_dir, (list, tuple)) else [sweep_dir])]
    runs, seen = [], {}
    for r in (r for d in dirs for r in load_runs(d)):  # a run present in several folders counts once
        key = json.dumps(r.get("config", {}), sort_keys=True, default=str) if r.get("status") == "done" else None
        if key is not None and key in seen:
            runs[seen[key]] = r
            continue
        if key is not None:
            seen[key] = len(runs)
        runs.append(r)
    if not runs:
        raise FileNotFoundError(f"no run.json under {', '.join(map(str, dirs))}")
    sweep_dir = dirs[0]
    hp_cols, rows, failed = build_table(runs)
    out = Path(out_dir) if out_dir else Path(sweep_dir)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md"}
    atomic_write_text(paths["csv"], to_csv(hp_cols, rows))
    md = to_markdown(hp_cols, rows, failed, title)
    atomic_write_text(paths["md"], md)
    if make_plot:
        paths["png"] = out / f"{name}.png"
        plot(runs, paths["png"])
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="po-bench-table", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", nargs="+", help="multirun folder(s), searched recursively for run.json; several are merged")
    ap.add_argument("--out", default=None, help="output folder (default: the sweep folder)")
    ap.add_argument("--name", default="results", help="file stem (default: results)")
    ap.add_argument("--plot", action="store_true", help="also write NAME.png (gold reward vs KL)")
    ap.add_argument("--title", default="")
    ap.add_argument("--wandb", action="store_true", help="also log the table as a wandb Table (offline without WANDB_API_KEY)")
    a = ap.parse_args(argv)
    for d in a.sweep_dir:
        if not Path(d).is_dir():
            print(f"po-bench-table: {d}: no such folder", file=sys.stderr)
            return 2
    try:
        paths = write_tables(a.sweep_dir, a.out, a.name, a.plot, a.title)
    except FileNotFoundError as e:
        print(f"po-bench-table: {e}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    if a.wandb:
        from .tracking import log_table

        sweep = Path(a.sweep_dir[0]).resolve()
        print("wandb:", log_table(paths["csv"], f"{sweep.parent.name}/{sweep.name}", out_dir=paths["csv"].parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())

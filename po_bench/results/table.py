"""Computing a sweep's table: every ``run.json`` under one or more sweep folders, grouped into rows.

Rows are methods and the hyperparameters that vary across the sweep (seed excluded); columns are
metrics as mean and std over seeds, with the comparative analysis (:mod:`po_bench.results.analysis`),
a preset's best-of-grid selection and the papers' reference columns.  :func:`tabulate` returns it
all as a :class:`Tabulated`; :mod:`po_bench.results.writers` writes it as Markdown and CSV,
:mod:`po_bench.results.plots` draws its figures and :mod:`po_bench.results.report` renders it as HTML.
"""

from __future__ import annotations

import csv
import json
import math
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import scipy.stats as sst
import yaml

from po_bench.judges.api import metric_prefixes
from po_bench.results import analysis

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


def flatten_config(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, key + "."))
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


def method_of(flat: dict) -> str:
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
    flats = [flatten_config(r.get("config", {})) for r in done]
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
            len({json.dumps(f.get(k), default=str) for f in flats if method_of(f) == m}) > 1
            for m in {method_of(f) for f in flats}
        )

    # a loss setting that is one value per method (each loss config's own beta, lr) restates the method
    hp_cols = [k for k in hp_cols if not k.startswith("loss.") or within(k)]
    if any(k.startswith("loss.args") for k in varying):
        per_method: dict[str, set] = {}
        for f in flats:
            per_method.setdefault(method_of(f), set()).add(
                json.dumps({k: f[k] for k in f if k.startswith("loss.args")})
            )
        if any(len(v) > 1 for v in per_method.values()):
            hp_cols += [k for k in varying if k.startswith("loss.args") and within(k)]
    # tables that mix models or datasets are grouped by them: those columns first, rows sorted by them
    group_by = [k for k in ("model.name", "dataset.name") if k in hp_cols]
    hp_cols = group_by + [k for k in hp_cols if k not in group_by]
    shared = _shared_overrides(done)
    groups: OrderedDict[tuple, list[dict]] = OrderedDict()
    for r, f in zip(done, flats):
        key = (method_of(f),) + tuple(json.dumps(f.get(k), default=str) for k in hp_cols)
        groups.setdefault(key, []).append(r)
    rows = []
    order = {m: i for i, m in enumerate(dict.fromkeys(method_of(f) for f in flats))}
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
        lf = flatten_config(members[0].get("config", {}))
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
    """Spearman's rank correlation (average ranks for ties); nan under 3 points or for a constant side."""
    if len(xs) < 3:
        return float("nan")
    with warnings.catch_warnings():  # a constant side: nan, as scipy says in a warning
        warnings.simplefilter("ignore")
        return float(sst.spearmanr(xs, ys).statistic)


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


def metrics_of(rows: list[dict]) -> list[str]:
    """The metric columns of built rows (every ``<metric>_mean`` key, in order)."""
    return [
        k[: -len("_mean")]
        for k in (rows[0] if rows else {m + "_mean": 0 for m in METRICS})
        if k.endswith("_mean") and k != "seconds_mean"
    ]


def fmt_hp(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


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

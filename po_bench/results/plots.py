"""A sweep's figures (matplotlib, Agg): gold reward against KL (one point per run), a metric
against a config value (one line per method), ours against the paper, and the significance matrix."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import numpy as np

from po_bench.results.table import Tabulated, flatten_config, method_of, metrics_of, spearman


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib  # lazy: matplotlib only when a figure is drawn (po-bench-table --plot, po-bench-report)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: matplotlib (~0.3 s)

    return plt


def _wrap(text: str, width: int = 80) -> str:
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
    by_method: dict[str, list[tuple[float, float]]] = {}
    sft_level: dict[str, list[float]] = {}
    for r in runs:
        if r.get("status") != "done":
            continue
        m = r.get("metrics", {})
        if m.get(x) is None or m.get(y) is None:
            continue
        by_method.setdefault(method_of(flatten_config(r.get("config", {}))), []).append((m[x], m[y]))
        if m.get("gold_reward_sft") is not None:
            sft_level.setdefault(json.dumps(r.get("config", {}).get("seed")), []).append(m["gold_reward_sft"])
    many = len(by_method) > 10
    if color_by:
        from matplotlib.colors import LogNorm, Normalize  # lazy: as in pyplot

        cs, xs_, ys_ = [], [], []
        for r in runs:
            m = r.get("metrics", {})
            if r.get("status") == "done" and m.get(x) is not None and m.get(y) is not None:
                cs.append(float(flatten_config(r.get("config", {})).get(color_by)))
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


def plot_matrix(an, path: str | Path, title: str = "") -> None:
    """The wins / ties / losses matrix as a heatmap: colour (wins - losses) / comparisons of the
    row against the column; text w/t/l, or the difference when there is one setting."""
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
    pts: dict[str, dict[float, list[float]]] = {}
    for r in runs:
        if r.get("status") != "done" or r.get("metrics", {}).get(y) is None:
            continue
        f = flatten_config(r.get("config", {}))
        pts.setdefault(method_of(f), {}).setdefault(float(f.get(x, float("nan"))), []).append(r["metrics"][y])
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

"""The diagnostics of a sweep (``diagnostics=full``; issue 25), finding by finding, per method with the
method-level intervals of :mod:`po_bench.results.stats` (training seeds are the blocks: an interval here
carries the seed-to-seed variance, so it is a claim about the *method*, not about one checkpoint).

Each :class:`Finding` reads one number from a run's ``metrics["diagnostics"]`` (absent: the run did not
measure it, and the finding's cell says so with the count); :func:`write_diagnostics` writes
``<name>.csv`` (one row per method and finding: mean, interval, seeds), ``<name>.md`` (the same, with the
papers' reference points beside ours) and ``<name>.png`` (the figures: log-prob trajectories per method,
CHES against displacement, DPORM vs EXRM by shift, token credit, gold and KL against beam width).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from po_bench.results.plots import pyplot
from po_bench.results.stats import fit_methods, method_mean
from po_bench.results.table import build_table, merged_runs


@dataclass(frozen=True)
class Finding:
    key: str  # the CSV's finding column
    part: str  # the diagnostics part it reads (metrics["diagnostics"][part])
    what: str  # one line for the table
    read: Callable[[dict], float | None]  # the part's dict -> the number (None: not measured)
    paper: str = ""  # the paper's reference point, where it states one


def _get(d: dict, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _shift(name: str, model: str) -> Callable[[dict], float | None]:
    return lambda d: _get(d, "shifts", name, model)


def _drop(name: str, model: str) -> Callable[[dict], float | None]:
    return lambda d: _get(d, "shifts", name, f"{model}_drop")


FINDINGS: list[Finding] = [
    Finding(
        "delta_chosen",
        "probe",
        "change of summed log pi(y+) over training (nats)",
        lambda d: d.get("delta_chosen"),
        "Razin et al.: negative under DPO (likelihood displacement)",
    ),
    Finding(
        "delta_rejected",
        "probe",
        "change of summed log pi(y-) (nats)",
        lambda d: d.get("delta_rejected"),
        "Yan et al.: drastic drop",
    ),
    Finding(
        "delta_unseen",
        "probe",
        "change of summed log pi on unseen responses (nats)",
        lambda d: d.get("delta_unseen"),
        "Yan et al.: dispersion onto unseen responses",
    ),
    Finding(
        "ches_spearman",
        "ches",
        "Spearman(CHES_ln, change of log pi(y+)) over the probe pairs",
        lambda d: _get(d, "correlation", "ches_ln", "spearman"),
        "Razin et al.: negative (high CHES displaces)",
    ),
    Finding("dporm_id", "reward_models", "DPORM accuracy in distribution", _shift("id", "dporm")),
    Finding("exrm_id", "reward_models", "EXRM accuracy in distribution", _shift("id", "exrm")),
    Finding(
        "dporm_drop_mean",
        "reward_models",
        "DPORM mean accuracy drop from ID over the shifts",
        lambda d: d.get("dporm_drop_mean"),
        "Lin et al.: 3% mean",
    ),
    Finding(
        "exrm_drop_mean",
        "reward_models",
        "EXRM mean accuracy drop from ID over the shifts",
        lambda d: d.get("exrm_drop_mean"),
    ),
    Finding(
        "exrm_minus_dporm_shifted",
        "reward_models",
        "EXRM minus DPORM accuracy, mean over the shifted sets",
        lambda d: d.get("exrm_minus_dporm_mean"),
        "Lin et al.: DPORM loses 3% on average (7% at most) out of distribution",
    ),
    Finding(
        "token_spearman",
        "token_credit",
        "Spearman(token credit, exact token gain)",
        lambda d: d.get("token_credit_spearman"),
        "Rafailov et al. (From r to Q*): positive",
    ),
    Finding(
        "token_share_excess",
        "token_credit",
        "credit share on reward-carrying tokens minus their share of tokens (chance)",
        lambda d: (
            None
            if d.get("token_credit_on_reward_tokens") is None or d.get("reward_token_share") is None
            else d["token_credit_on_reward_tokens"] - d["reward_token_share"]
        ),
    ),
    Finding(
        "beam_gold_gain",
        "beams",
        "gold reward at the best beam width minus width 1 (greedy)",
        lambda d: (
            None
            if not d.get("gold_reward") or 1 not in d.get("widths", [])
            else max(d["gold_reward"]) - d["gold_reward"][d["widths"].index(1)]
        ),
        "Rafailov et al.: beam search helps, then over-optimises",
    ),
]


def diagnostics_of(run: dict) -> dict:
    return ((run.get("metrics") or {}).get("diagnostics")) or {}


def row_labels(rows: list[dict], hp_cols: list[str]) -> list[str]:
    """Each row's method, with the settings where it departs from the rows' most common value (a mitigation in
    the data: ``DPO (filter.keep=0.5)``); the section prefix (``dataset.``) is left out."""
    cols = [k for k in hp_cols if k != "seed"]
    modal = {}
    for k in cols:
        vals = [json.dumps(r.get(k), default=str) for r in rows]
        modal[k] = max(set(vals), key=vals.count)
    out = []
    for r in rows:
        extra = ", ".join(
            f"{k.split('.', 1)[-1]}={r[k]}"
            for k in cols
            if r.get(k) is not None and json.dumps(r.get(k), default=str) != modal[k]
        )
        out.append(f"{r['method']} ({extra})" if extra else r["method"])
    return out


def seed_of(run: dict):
    return json.dumps((run.get("config") or {}).get("seed"))


def estimates(runs: list[dict], findings: list[Finding] = FINDINGS) -> tuple[list[str], list[dict]]:
    """(row labels in table order, one dict per (row, finding): mean, 95% method-level interval, seeds)."""
    hp_cols, rows, _ = build_table(runs)
    labels = row_labels(rows, hp_cols)
    out = []
    for f in findings:
        values = {}
        for label, row in zip(labels, rows):
            by_seed = {}
            for run in row["_runs"]:
                part = diagnostics_of(run).get(f.part)
                v = f.read(part) if isinstance(part, dict) else None
                if v is not None and math.isfinite(float(v)):
                    by_seed[seed_of(run)] = float(v)
            values[label] = by_seed
        fit = fit_methods(values)
        for label in labels:
            est = method_mean(fit, label) if values[label] else None
            out.append(
                {
                    "method": label,
                    "finding": f.key,
                    "what": f.what,
                    "mean": None if est is None else est.mean,
                    "lo": None if est is None or not est.has_interval else est.lo,
                    "hi": None if est is None or not est.has_interval else est.hi,
                    "n_seeds": len(values[label]),
                    "paper": f.paper,
                }
            )
    return labels, out


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3g}"


def to_markdown(labels: list[str], ests: list[dict], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "Mean over training seeds with the 95% method-level interval (seeds as blocks, "
        "po_bench/results/stats.py); – : not measured.",
        "",
    ]
    by = {(e["method"], e["finding"]): e for e in ests}
    for f in FINDINGS:
        if not any(by[(m, f.key)]["n_seeds"] for m in labels):
            continue
        lines += [f"## {f.key}: {f.what}", ""]
        if f.paper:
            lines += [f"Paper: {f.paper}.", ""]
        lines += ["| method | mean | 95% interval | seeds |", "|---|---|---|---|"]
        for m in labels:
            e = by[(m, f.key)]
            iv = "–" if e["lo"] is None else f"[{_fmt(e['lo'])}, {_fmt(e['hi'])}]"
            lines.append(f"| {m} | {_fmt(e['mean'])} | {iv} | {e['n_seeds']} |")
        lines.append("")
    return "\n".join(lines)


def to_csv(ests: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["method", "finding", "mean", "lo", "hi", "n_seeds", "what", "paper"])
    w.writeheader()
    for e in ests:
        w.writerow(e)
    return buf.getvalue()


def _trajectories(rows_runs: dict[str, list[dict]], key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method: (fraction of training, mean over seeds of the probe's ``key``) on a common grid."""
    grid = np.linspace(0, 1, 11)
    out = {}
    for label, runs in rows_runs.items():
        curves = []
        for run in runs:
            hist = _get(diagnostics_of(run), "probe", "history") or []
            pts = [(h["step"], h[key]) for h in hist if h.get(key) is not None]
            if len(pts) < 2:
                continue
            steps = np.array([p[0] for p in pts], dtype=float)
            curves.append(np.interp(grid, steps / max(steps[-1], 1), [p[1] for p in pts]))
        if curves:
            out[label] = (grid, np.mean(curves, axis=0))
    return out


def plot_diagnostics(runs: list[dict], path: str | Path, title: str = "") -> None:
    plt = pyplot()
    hp_cols, rows, _ = build_table(runs)
    rows_runs = dict(zip(row_labels(rows, hp_cols), (r["_runs"] for r in rows)))
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), dpi=110)
    for ax, key in zip(axes[0][:2], ("delta_chosen", "delta_rejected")):
        for label, (x, y) in _trajectories(rows_runs, key).items():
            ax.plot(x, y, label=label)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("fraction of training")
        ax.set_ylabel(f"{key} (nats, mean over seeds)")
        ax.set_title(f"probe: {key}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    plot_ches(axes[0][2], rows_runs)
    plot_shifts(axes[1][0], rows_runs)
    plot_token_credit(axes[1][1], rows_runs)
    plot_beams(axes[1][2], rows_runs)
    fig.suptitle(title or "po-bench diagnostics", fontsize=11)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_ches(ax, rows_runs: dict[str, list[dict]]) -> None:
    for label, runs in rows_runs.items():
        xs, ys = [], []
        for run in runs:
            pairs = _get(diagnostics_of(run), "ches", "probe_pairs") or {}
            xs += list(pairs.get("ches_ln") or [])
            ys += list(pairs.get("delta_chosen") or [])
        if xs:
            ax.scatter(xs, ys, s=6, alpha=0.5, label=label)
    ax.set_xlabel("length-normalised CHES at the start")
    ax.set_ylabel("change of log pi(y+) (nats)")
    ax.set_title("CHES vs likelihood displacement (probe pairs, all seeds)", fontsize=10)
    ax.grid(alpha=0.3)


def plot_shifts(ax, rows_runs: dict[str, list[dict]]) -> None:
    names, models = None, ("dporm", "exrm")
    means: dict[str, dict[str, list[float]]] = {}
    for label, runs in rows_runs.items():
        for run in runs:
            shifts = _get(diagnostics_of(run), "reward_models", "shifts") or {}
            names = names or list(shifts)
            for s, v in shifts.items():
                for m in models:
                    if isinstance(v, dict) and v.get(m) is not None:
                        means.setdefault(f"{m}:{s}", {}).setdefault(label, []).append(v[m])
    if not names:
        ax.set_axis_off()
        return
    labels = list(rows_runs)
    width = 0.8 / (2 * len(labels))
    for i, label in enumerate(labels):
        for j, m in enumerate(models):
            ys = [np.mean(means.get(f"{m}:{s}", {}).get(label, [np.nan])) for s in names]
            ax.bar(
                np.arange(len(names)) + (2 * i + j) * width,
                ys,
                width,
                label=f"{label} {m.upper()}",
                hatch="//" if m == "exrm" else None,
            )
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.set_ylabel("accuracy against gold")
    ax.set_ylim(0.4, 1.0)
    ax.set_title("DPORM (plain) vs EXRM (hatched), in distribution and under shifts", fontsize=10)
    ax.legend(fontsize=5, ncol=2, loc="upper right", framealpha=0.6)


def plot_token_credit(ax, rows_runs: dict[str, list[dict]]) -> None:
    labels, ys = [], []
    for label, runs in rows_runs.items():
        v = [_get(diagnostics_of(r), "token_credit", "token_credit_spearman") for r in runs]
        v = [x for x in v if x is not None]
        if v:
            labels.append(label)
            ys.append(v)
    if not labels:
        ax.set_axis_off()
        return
    ax.boxplot(ys, tick_labels=labels, orientation="horizontal")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("Spearman(token credit, exact token gain), per seed")
    ax.set_title("token credit (From r to Q*)", fontsize=10)
    ax.tick_params(axis="y", labelsize=7)


def plot_beams(ax, rows_runs: dict[str, list[dict]]) -> None:
    drawn = False
    ax2 = ax.twinx()
    for label, runs in rows_runs.items():
        by_w: dict[int, list[tuple[float, float]]] = {}
        for run in runs:
            b = _get(diagnostics_of(run), "beams") or {}
            for i, w in enumerate(b.get("widths") or []):
                if b.get("gold_reward"):
                    by_w.setdefault(int(w), []).append((b["gold_reward"][i], b["kl_to_ref"][i]))
        if not by_w:
            continue
        ws = sorted(by_w)
        line = ax.plot(ws, [np.mean([g for g, _ in by_w[w]]) for w in ws], marker="o", label=label)[0]
        ax2.plot(ws, [np.mean([k for _, k in by_w[w]]) for w in ws], ls="--", color=line.get_color())
        drawn = True
    if not drawn:
        ax.set_axis_off()
        ax2.set_axis_off()
        return
    ax.set_xscale("log", base=2)
    ax.set_xlabel("beam width")
    ax.set_ylabel("gold reward (solid)")
    ax2.set_ylabel("KL to the reference (dashed)")
    ax.set_title("beam search on the policy: gold and KL", fontsize=10)
    ax.legend(fontsize=6)


def write_diagnostics(sweep_dirs, out: str | Path, name: str, title: str = "") -> dict[str, Path]:
    _, runs = merged_runs(sweep_dirs)
    labels, ests = estimates(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md", "png": out / f"{name}.png"}
    title = title or "po-bench diagnostics"
    paths["csv"].write_text(to_csv(ests))
    paths["md"].write_text(to_markdown(labels, ests, title) + "\n")
    plot_diagnostics(runs, paths["png"], title)
    return paths

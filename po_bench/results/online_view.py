"""Online and iterative methods against offline DPO at equal labels (issue 24; ``make table-online``).

Reads the runs of one or more sweeps (experiment=online_table: every method at about the offline DPO run's label
budget; experiment=online_curve: the same methods at fractions of it) and writes

- ``<name>.csv``: one row per method and budget: the labels it used (mean over seeds; the preference source's and
  the auxiliary ones apart), the gold reward with its method-level 95% interval, the seeds;
- ``<name>.md``: the table at the full budget with each method's difference from offline DPO (method level:
  paired over the training seeds, the seed-to-seed variance included, so a claim about the *method*), the seeds a
  difference of the observed size needs at 80% power, and the curve's numbers;
- ``<name>.png``: gold reward against labels used, one line per method with its interval band; the SFT start at
  0 labels.

**A label** is one answer of the preference source: a verdict on a pair (offline DPO's annotator pairs, online DPO,
XPO) or the reward of one sample (BRAIn, RTO, OPRL, iterative DPO's scored samples).  Labels a method spends
before its loop are counted apart as *auxiliary*: RTO's DPO guide (the pairs it was trained on), iterative DPO's
explicit reward model (the start's annotator pairs).  ``labels`` is their sum.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from po_bench.results.plots import pyplot
from po_bench.results.stats import MethodEstimate, fit_methods, method_diff, method_mean, method_seeds_needed
from po_bench.results.table import flatten_config, merged_runs

BASELINE = "DPO"  # the offline method every row is compared with (its loss.label)
# config fields that set a row's label budget (not its method)
BUDGET_FIELDS = ("train.epochs", "train.max_steps", "dataset.n_pref")


def labels_of(run: dict) -> dict:
    """``{"source": n, "auxiliary": n, "total": n}``: the labels a run used (module docstring).  An offline
    run's source labels are its labelled pairs (metrics.data.n_pairs)."""
    m = run.get("metrics") or {}
    online = m.get("online")
    if online is None:
        source, aux = int((m.get("data") or {}).get("n_pairs") or 0), 0
    else:
        source = int(online.get("labels_requested") or 0)
        aux = int((online.get("guide") or {}).get("pairs") or 0) + int(online.get("reward_model_pairs") or 0)
    return {"source": source, "auxiliary": aux, "total": source + aux}


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def method_names(runs: list[dict]) -> list[str]:
    """Each run's method: its loss label, plus the ``loss.args`` that differ among the runs of the same loss
    (XPO's alpha, iterative DPO's labeller, RTO's dense), in the runs' order."""
    flats = [flatten_config(r.get("config") or {}) for r in runs]
    by_loss: dict[str, list[dict]] = defaultdict(list)
    for f in flats:
        by_loss[str(f.get("loss.name"))].append(f)
    varying = {
        name: sorted(
            k for k in {k for f in fs for k in f if k.startswith("loss.args.")} if len({repr(f.get(k)) for f in fs}) > 1
        )
        for name, fs in by_loss.items()
    }
    out = []
    for f in flats:
        label = str(f.get("loss.label") or f.get("loss.name"))
        args = [f"{k.removeprefix('loss.args.')}={_fmt(f.get(k))}" for k in varying[str(f.get("loss.name"))]]
        out.append(f"{label} ({', '.join(args)})" if args else label)
    return out


def collect(runs: list[dict]) -> tuple[dict, dict, dict, dict]:
    """(points, labels, kl, sft): ``points[method][budget] = {seed: gold}``, ``labels[method][budget] = [label
    counts]``, ``kl`` as points for kl_to_ref, ``sft = {seed: gold of the SFT start}``; a budget is the tuple of
    the run's :data:`BUDGET_FIELDS`."""
    done = [r for r in runs if r.get("status") == "done" and (r.get("metrics") or {}).get("gold_reward") is not None]
    points: dict = defaultdict(lambda: defaultdict(dict))
    labels: dict = defaultdict(lambda: defaultdict(list))
    kl: dict = defaultdict(lambda: defaultdict(dict))
    sft: dict = {}
    for run, method in zip(done, method_names(done)):
        f = flatten_config(run.get("config") or {})
        budget = tuple(f.get(k) for k in BUDGET_FIELDS)
        seed = str(f.get("seed"))
        m = run["metrics"]
        points[method][budget][seed] = float(m["gold_reward"])
        if m.get("kl_to_ref") is not None:
            kl[method][budget][seed] = float(m["kl_to_ref"])
        labels[method][budget].append(labels_of(run))
        if m.get("gold_reward_sft") is not None:
            sft.setdefault(seed, float(m["gold_reward_sft"]))
    return points, labels, kl, sft


def _mean_labels(xs: list[dict], part: str = "total") -> float:
    return float(np.mean([x[part] for x in xs])) if xs else float("nan")


def tiers(points: dict, labels: dict) -> dict[str, list[tuple]]:
    """Each method's budgets, fewest labels first (the last: its full budget, the table's row)."""
    return {m: sorted(points[m], key=lambda b: _mean_labels(labels[m][b])) for m in points}


def estimates(runs: list[dict]):
    """The table (each method at its full budget: gold and KL with intervals, the difference from offline DPO)
    and the curve (each method and budget: labels and gold with intervals)."""
    points, labels, kl, sft = collect(runs)
    if not points:
        raise FileNotFoundError("no finished run with a gold reward (the online table reads the embedded world's)")
    order = tiers(points, labels)
    names = list(points)
    base = BASELINE if BASELINE in names else None
    full = {m: points[m][order[m][-1]] for m in names}
    fit = fit_methods(full)
    kfit = fit_methods({m: kl[m][order[m][-1]] for m in names})
    table = []
    for m in names:
        b = order[m][-1]
        row = {
            "method": m,
            "labels": _mean_labels(labels[m][b]),
            "labels_source": _mean_labels(labels[m][b], "source"),
            "labels_auxiliary": _mean_labels(labels[m][b], "auxiliary"),
            "gold": method_mean(fit, m),
            "kl": method_mean(kfit, m),
            "seeds": fit.n_seeds(m),
        }
        if base is not None and m != base:
            d = method_diff(fit, m, base)
            row["diff"] = d
            row["seeds_needed"] = method_seeds_needed(fit, abs(d.mean)) if math.isfinite(d.mean) else None
        table.append(row)
    curve = []
    if sft:  # the start: every method's 0-label point
        f0 = fit_methods({"SFT": sft})
        curve.append({"method": "SFT (start)", "labels": 0.0, "gold": method_mean(f0, "SFT"), "seeds": len(sft)})
    n_tiers = max(len(v) for v in order.values())
    for t in range(n_tiers):  # one fit per tier: methods at comparable budgets share the pooled variance
        at = {m: points[m][order[m][t - n_tiers + len(order[m])]] for m in names if t - n_tiers + len(order[m]) >= 0}
        ft = fit_methods(at)
        for m in at:
            b = order[m][t - n_tiers + len(order[m])]
            curve.append(
                {"method": m, "labels": _mean_labels(labels[m][b]), "gold": method_mean(ft, m), "seeds": ft.n_seeds(m)}
            )
    return table, curve, base


def _ci(e: MethodEstimate | None, digits: int = 3) -> str:
    if e is None or not math.isfinite(e.mean):
        return "n/a"
    if not e.has_interval:
        return f"{e.mean:.{digits}f}"
    return f"{e.mean:.{digits}f} [{e.lo:.{digits}f}, {e.hi:.{digits}f}]"


def verdict(d: MethodEstimate | None) -> str:
    if d is None or not d.has_interval:
        return "no interval"
    if d.lo > 0:
        return "beats DPO"
    if d.hi < 0:
        return "below DPO"
    return "not separated"


def to_csv(table: list[dict], curve: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["part", "method", "labels", "labels_source", "labels_auxiliary", "seeds"] + _est_cols("gold"))
    for r in table:
        w.writerow(
            ["table", r["method"], f"{r['labels']:.0f}", f"{r['labels_source']:.0f}", f"{r['labels_auxiliary']:.0f}"]
            + [r["seeds"]]
            + _est_vals(r["gold"])
        )
    for r in curve:
        w.writerow(["curve", r["method"], f"{r['labels']:.0f}", "", "", r["seeds"]] + _est_vals(r["gold"]))
    return buf.getvalue()


def _est_cols(metric: str) -> list[str]:
    return [f"{metric}_mean", f"{metric}_lo", f"{metric}_hi"]


def _est_vals(e: MethodEstimate) -> list[str]:
    return [f"{x:.6g}" if math.isfinite(x) else "" for x in (e.mean, e.lo, e.hi)]


def to_markdown(table: list[dict], curve: list[dict], base: str | None, title: str) -> str:
    out = [f"# {title}", ""]
    out.append(
        "Each method at about the offline DPO run's label budget (a label: one verdict on a pair, or the reward "
        "of one sample; *auxiliary*: labels spent before the loop, RTO's DPO guide and iterative DPO's explicit "
        "reward model). Gold reward on the held-out eval prompts; intervals are method-level 95% (training "
        "seeds are the blocks: the seed-to-seed variance is in them). The difference from DPO is paired over "
        "the shared seeds. The seeds a difference of the observed size needs at 80% power use the seed-by-method "
        "variance pooled over the table (a row flagged for its own spread, e.g. a diverging one, needs more)."
    )
    out += [
        "",
        "| method | labels (source + auxiliary) | seeds | gold reward | KL to ref | vs DPO | p | verdict | "
        "seeds for 80% power (pooled sigma_e) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        d = r.get("diff")
        need = r.get("seeds_needed")
        lab = f"{r['labels']:.0f} ({r['labels_source']:.0f} + {r['labels_auxiliary']:.0f})"
        out.append(
            f"| {r['method']} | {lab} | {r['seeds']} | {_ci(r['gold'])} | {_ci(r['kl'], 2)} | "
            + (
                f"{_ci(d)} | {d.p:.3g} | {verdict(d)} | {need if need is not None else '> 1000 or n/a'} |"
                if d
                else "(baseline) | | | |"
            )
        )
    if base is None:
        out += ["", "No offline DPO row: no differences."]
    out += [
        "",
        "## Gold reward against labels used",
        "",
        "| method | labels | seeds | gold reward |",
        "|---|---|---|---|",
    ]
    for r in curve:
        out.append(f"| {r['method']} | {r['labels']:.0f} | {r['seeds']} | {_ci(r['gold'])} |")
    return "\n".join(out)


def _draw(ax, by: dict, start: dict | None, colors: dict, bands: bool) -> None:
    for m, rs in by.items():
        rs = sorted(rs, key=lambda r: r["labels"])
        if len(rs) == 1:  # a row at the full budget only (no curve sweep): a point with its interval
            r, e = rs[0], rs[0]["gold"]
            err = [[e.mean - e.lo], [e.hi - e.mean]] if e.has_interval and bands else None
            ax.errorbar([r["labels"]], [e.mean], yerr=err, fmt="D", ms=5, color=colors[m], label=m, capsize=3)
            continue
        rs = ([start] if start else []) + rs
        x = np.array([r["labels"] for r in rs])
        y = np.array([r["gold"].mean for r in rs])
        lo = np.array([r["gold"].lo if r["gold"].has_interval else r["gold"].mean for r in rs])
        hi = np.array([r["gold"].hi if r["gold"].has_interval else r["gold"].mean for r in rs])
        base = m == BASELINE
        ax.plot(x, y, "--" if base else "-", marker="o", ms=3, color=colors[m], label=m, lw=2.2 if base else 1.3)
        if bands:
            ax.fill_between(x, lo, hi, color=colors[m], alpha=0.10)


def plot_curve(curve: list[dict], path: Path, title: str) -> None:
    """Two panels: every method over the whole range (lines only), and the methods that end above the SFT
    start, zoomed, with their interval bands."""
    plt = pyplot()
    fig, (ax_all, ax_zoom) = plt.subplots(1, 2, figsize=(14, 6.6))
    start = next((r for r in curve if r["labels"] == 0.0), None)
    by: dict[str, list[dict]] = defaultdict(list)
    for r in curve:
        if r is not start:
            by[r["method"]].append(r)
    cmap = plt.get_cmap("tab20")
    colors = {m: ("black" if m == BASELINE else cmap(i % 20)) for i, m in enumerate(sorted(by))}
    _draw(ax_all, dict(sorted(by.items())), start, colors, bands=False)
    floor = start["gold"].mean if start else -math.inf
    up = {m: rs for m, rs in sorted(by.items()) if max(rs, key=lambda r: r["labels"])["gold"].mean > floor}
    _draw(ax_zoom, up, start, colors, bands=True)
    means = [r["gold"].mean for rs in up.values() for r in rs] + ([floor] if start else [])
    if means:  # the means in view; a diverging seed's band is cut at the frame
        ax_zoom.set_ylim(min(means) - 0.25, max(means) + 0.25)
    ax_all.set_title("every method", fontsize=9)
    ax_zoom.set_title("methods that end above the SFT start (95% method-level bands)", fontsize=9)
    for ax in (ax_all, ax_zoom):
        if start:
            ax.axhline(start["gold"].mean, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("labels used (preference source + auxiliary)")
        ax.set_ylabel("gold reward (held-out prompts)")
        ax.grid(alpha=0.3)
    handles, names = ax_all.get_legend_handles_labels()  # one legend for both panels (every method)
    fig.legend(handles, names, loc="lower center", ncol=5, fontsize=7.5, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_online(sweep_dirs, out: str | Path, name: str, title: str = "") -> dict[str, Path]:
    _, runs = merged_runs(sweep_dirs)
    table, curve, base = estimates(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    title = title or "Online and iterative methods vs offline DPO at equal labels"
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md", "png": out / f"{name}.png"}
    paths["csv"].write_text(to_csv(table, curve))
    paths["md"].write_text(to_markdown(table, curve, base, title) + "\n")
    plot_curve(curve, paths["png"], title)
    return paths

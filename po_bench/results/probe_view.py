"""The probe's trajectories in ``po-bench-report`` (diagnostics.probe, issue 25): for each run whose run.json
carries ``metrics.diagnostics.probe``, a small table of its measurements (step, mean summed log pi(y+), and the
mean changes from the start of log pi(y+), log pi(y-) and of the unseen responses) and an inline SVG plot of the
three changes against the optimizer step (likelihood displacement: delta chosen below zero)."""

from __future__ import annotations

import html

COLUMNS = ("step", "logp_chosen", "delta_chosen", "delta_rejected", "delta_unseen", "margin")
LINES = (("delta_chosen", "#1d6f42"), ("delta_rejected", "#a61b1b"), ("delta_unseen", "#4a6fa5"))


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _cell(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return ""
    return f"{v:d}" if isinstance(v, int) else f"{v:+.3f}" if abs(v) < 1e4 else f"{v:.3g}"


def svg(history: list[dict], w: int = 360, h: int = 160) -> str:
    """The changes from the start against the step, one line each (an empty string for fewer than two points)."""
    pts = [hh for hh in history if isinstance(hh.get("step"), (int, float))]
    if len(pts) < 2:
        return ""
    xs = [p["step"] for p in pts]
    ys = [p[k] for p in pts for k, _ in LINES if isinstance(p.get(k), (int, float))] + [0.0]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0 or y1 == y0:
        return ""

    def x(v):
        return 36 + (w - 44) * (v - x0) / (x1 - x0)

    def y(v):
        return 8 + (h - 28) * (y1 - v) / (y1 - y0)

    out = [f'<svg class="probe-plot" width="{w}" height="{h}" role="img" aria-label="probe trajectory">']
    out.append(f'<line x1="36" x2="{w - 8}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#aaa" stroke-dasharray="3,3"/>')
    out.append(
        f'<text x="2" y="12" font-size="10">{y1:+.2f}</text><text x="2" y="{h - 20}" font-size="10">{y0:+.2f}</text>'
    )
    out.append(f'<text x="36" y="{h - 4}" font-size="10">step {x0:g}</text>')
    out.append(f'<text x="{w - 60}" y="{h - 4}" font-size="10">step {x1:g}</text>')
    for i, (k, color) in enumerate(LINES):
        line = [(p["step"], p[k]) for p in pts if isinstance(p.get(k), (int, float))]
        if len(line) < 2:
            continue
        d = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in line)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{d}"/>')
        out.append(f'<text x="{w - 110}" y="{14 + 12 * i}" font-size="10" fill="{color}">{k}</text>')
    out.append("</svg>")
    return "".join(out)


def run_table(probe: dict) -> str:
    cols = [c for c in COLUMNS if any(c in hh for hh in probe["history"])]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f'<td class="num">{_cell(hh.get(c))}</td>' for c in cols) + "</tr>" for hh in probe["history"]
    )
    return f'<table class="probe"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def probe_html(runs: list[dict], label) -> str:
    """The report's diagnostics section for the probe: one block per run with a trajectory (``label``: a run's
    label in the page); a line saying none when no run has one."""
    items = []
    for r in runs:
        probe = ((r.get("metrics") or {}).get("diagnostics") or {}).get("probe")
        if not probe:
            continue
        if "absent" in probe:
            items.append(f"<p>{_e(label(r))}: no probe ({_e(probe['absent'])})</p>")
            continue
        facts = f"{probe.get('n_pairs', '?')} probe pairs, {probe.get('n_unseen', '?')} unseen responses"
        if isinstance(probe.get("unseen_gold"), (int, float)):
            facts += f" (mean gold {probe['unseen_gold']:.3f})"
        items.append(
            f'<details class="probe-run" open><summary>{_e(label(r))}: {_e(facts)}</summary>'
            f'<div style="display:flex;gap:18px;align-items:flex-start">{run_table(probe)}{svg(probe["history"])}</div>'
            "</details>"
        )
    if not items:
        return '<p id="probe-none">No run carries a probe trajectory (diagnostics.probe).</p>'
    return "".join(items)


# The other diagnostics in the report: one row per run, one column per number (absent: empty)
SUMMARY = (
    ("CHES_ln ρ", ("ches", "correlation", "ches_ln", "spearman")),
    ("DPORM id", ("reward_models", "shifts", "id", "dporm")),
    ("EXRM id", ("reward_models", "shifts", "id", "exrm")),
    ("DPORM drop", ("reward_models", "dporm_drop_mean")),
    ("EXRM drop", ("reward_models", "exrm_drop_mean")),
    ("token credit ρ", ("token_credit", "token_credit_spearman")),
)


def _path(d, keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summary_html(runs: list[dict], label) -> str:
    """The report's table of each run's other diagnostics (CHES's rank correlation with displacement, DPORM vs EXRM
    in distribution and their mean drop under shift, token credit, gold reward per beam width); a line saying
    none when no run measured any."""
    rows = []
    for r in runs:
        diag = (r.get("metrics") or {}).get("diagnostics") or {}
        vals = [_path(diag, keys) for _, keys in SUMMARY]
        beams = diag.get("beams") or {}
        gold = beams.get("gold_reward") or beams.get("implicit_reward")
        beam_cell = (
            " ".join(f"{w}:{g:+.2f}" for w, g in zip(beams.get("widths", []), gold)) if isinstance(gold, list) else ""
        )
        if all(v is None for v in vals) and not beam_cell:
            continue
        cells = "".join(f'<td class="num">{_cell(v)}</td>' for v in vals)
        rows.append(f"<tr><td>{_e(label(r))}</td>{cells}<td>{_e(beam_cell)}</td></tr>")
    if not rows:
        return '<p id="diagnostics-none">No run measured CHES, reward models, token credit or beams.</p>'
    head = "".join(f"<th>{_e(c)}</th>" for c, _ in SUMMARY)
    return (
        f'<table class="diagnostics"><thead><tr><th>run</th>{head}<th>beams (width: gold, else implicit)</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )

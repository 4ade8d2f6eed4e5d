"""``po-bench-report SWEEP_DIR... --out DIR``: one static, self-contained HTML file per sweep.

No network: the styles and the script are inline, the figures are PNG data URIs, and a
Content-Security-Policy forbids every fetch.  The page holds the sortable leaderboard (95% intervals
as error bars), the significance matrix (paired tests, Holm), ours vs the paper, the sweep's plots,
a samples viewer (prompt, policy and SFT answers, their scores; from each run's samples.jsonl), and
each run's resolved config and failures.  ``--wandb`` logs the same tables and figures, and the page,
to the sweep's wandb group.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from po_bench.results import analysis, table
from po_bench.results.plots import write_plots
from po_bench.results.probe_view import probe_html, summary_html
from po_bench.results.writers import footer, matrix_csv, pairs_csv, to_csv
from po_bench.store import atomic_write_text

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 18px 40px;color:#1d232a}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dde3;padding-bottom:4px}
nav a{margin-right:14px}code{background:#f2f4f7;padding:0 3px;border-radius:3px}
table{border-collapse:collapse;font-size:12.5px}th,td{border:1px solid #d8dde3;padding:3px 6px;text-align:left;vertical-align:top}
#leaderboard th{cursor:pointer;background:#f5f7fa;user-select:none;white-space:nowrap}
#leaderboard th[aria-sort=ascending]::after{content:" \\25B2"}#leaderboard th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.bar svg{display:block}.win{background:#cfe8d5}.loss{background:#f4d0cf}.tie{background:#f3f3f3}
.failed{color:#a61b1b}.note{max-width:1100px}img{max-width:100%;border:1px solid #e3e6ea}
pre{background:#f7f8fa;padding:8px;overflow:auto;max-height:380px;font-size:12px}
.samples td{max-width:420px;white-space:pre-wrap}
"""

JS = """
(function(){
  function key(td){var v=td.getAttribute('data-sort');if(v===null)v=td.textContent;var f=parseFloat(v);return isNaN(f)?v.toLowerCase():f;}
  var t=document.getElementById('leaderboard');
  if(t){var ths=t.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths,function(th,i){th.addEventListener('click',function(){
      var desc=th.getAttribute('aria-sort')!=='descending';
      Array.prototype.forEach.call(ths,function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',desc?'descending':'ascending');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        if(typeof x!==typeof y){x=String(x);y=String(y);}
        var c=x<y?-1:(x>y?1:0);return desc?-c:c;});
      rows.forEach(function(r){body.appendChild(r);});});});}
  var data=JSON.parse(document.getElementById('samples-data').textContent);
  var sel=document.getElementById('sample-run'),out=document.getElementById('samples-body');
  function esc(s){return String(s===null||s===undefined?'':s).replace(/[&<>"]/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
  function num(x){return typeof x==='number'?x.toFixed(3):esc(x);}
  function show(){var rows=data[sel.value]||[];var h='';
    rows.forEach(function(r,i){h+='<tr><td>'+i+'</td><td>'+esc(r.prompt)+'</td><td>'+esc(r.policy)+'</td><td>'+esc(r.sft)+
      '</td><td class="num">'+num(r.gold_policy)+'</td><td class="num">'+num(r.gold_sft)+'</td></tr>';});
    out.innerHTML=h||'<tr><td colspan="6">no samples.jsonl in this run</td></tr>';}
  if(sel){sel.addEventListener('change',show);show();}
  document.body.setAttribute('data-ready','1');
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _md_inline(text: str) -> str:
    """The few Markdown bits the table notes use: `code`, **bold**, '- ' list lines."""
    out = []
    for line in text.split("\n"):
        t = _e(line)
        t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
        t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
        out.append(("&bull; " + t[2:]) if t.startswith("- ") else t)
    return "<br>".join(out)


def _img(path: Path | None, alt: str, id_: str) -> str:
    if path is None or not Path(path).is_file():
        return ""
    b64 = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img id="{id_}" alt="{_e(alt)}" src="data:image/png;base64,{b64}">'


def _num(x) -> str:
    return "" if not isinstance(x, (int, float)) or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def _bar(r: dict, m: str, lo_all: float, hi_all: float, w: int = 160, h: int = 16) -> str:
    """An inline SVG: the cell's interval as a line with a dot at the mean, on the column's scale."""
    mean, lo, hi = r.get(f"{m}_mean"), r.get(f"{m}_lo"), r.get(f"{m}_hi")
    if not analysis.finite(mean) or hi_all <= lo_all:
        return ""
    x = lambda v: 4 + (w - 8) * (v - lo_all) / (hi_all - lo_all)  # noqa: E731
    parts = [f'<svg class="errbar" width="{w}" height="{h}" role="img" aria-label="interval">']
    if analysis.finite(lo) and analysis.finite(hi):
        parts.append(
            f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="8" y2="8" stroke="#4a6fa5" stroke-width="2"/>'
            f'<line x1="{x(lo):.1f}" x2="{x(lo):.1f}" y1="4" y2="12" stroke="#4a6fa5"/>'
            f'<line x1="{x(hi):.1f}" x2="{x(hi):.1f}" y1="4" y2="12" stroke="#4a6fa5"/>'
        )
    parts.append(f'<circle cx="{x(mean):.1f}" cy="8" r="3.5" fill="#1d3f72"/></svg>')
    return "".join(parts)


def leaderboard(t: table.Tabulated) -> str:
    an = t.an
    metrics = table.metrics_of(t.rows)
    if t.ours:
        metrics = [m for m in t.ours if m in metrics] + [m for m in metrics if m not in t.ours]
    H = an.metric
    cols = ["method"] + t.shown + ["seeds"] + metrics
    extra = [
        c
        for c, k in (
            ("rank", "rank"),
            ("Δ SFT", "delta_sft"),
            (f"Δ {an.baseline}", "delta_base"),
            ("Δ rate 0", "delta_rate0"),
        )
        if any(k in r for r in t.rows)
    ]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols[: len(cols) - len(metrics)])
    head += "".join(f'<th data-metric="{_e(m)}">{_e(m)}</th>' for m in metrics)
    if H:
        head += f"<th>{_e(H)} (95% interval)</th>"
    head += "".join(f"<th>{_e(c)}</th>" for c in extra + t.ref_cols)
    scale = {}
    if H:
        vals = [
            v for r in t.rows for v in (r.get(f"{H}_lo"), r.get(f"{H}_hi"), r.get(f"{H}_mean")) if analysis.finite(v)
        ]
        scale = (min(vals), max(vals)) if vals else (0.0, 0.0)
    body = []
    for r in t.rows:
        cells = [f"<td>{_e(r.get('_label', r['method']))}</td>"]
        cells += [f'<td data-sort="{_e(r.get(k))}">{_e(table.fmt_hp(r.get(k)))}</td>' for k in t.shown]
        cells.append(f'<td class="num">{r["n_seeds"]}</td>')
        for m in metrics:
            txt = analysis.fmt_cell(r, m) + (analysis.mark(r) if m == H else "")
            cells.append(f'<td class="num" data-sort="{_num(r.get(f"{m}_mean"))}">{_e(txt)}</td>')
        if H:
            cells.append(f'<td class="bar" data-sort="{_num(r.get(f"{H}_mean"))}">{_bar(r, H, *scale)}</td>')
        for c in extra:
            if c == "rank":
                cells.append(
                    f'<td class="num" data-sort="{_num(r.get("rank"))}">'
                    + (f"{r['rank']:g} [{r['rank_lo']}–{r['rank_hi']}]" if "rank" in r else "")
                    + "</td>"
                )
                continue
            k = {"Δ SFT": "delta_sft", "Δ rate 0": "delta_rate0"}.get(c, "delta_base")
            d = r.get(k)
            txt = "ref" if k == "delta_base" and r.get("delta_base_ref") else (d.fmt() if d else "")
            cells.append(f'<td class="num" data-sort="{_num(d.mean if d else None)}">{_e(txt)}</td>')
        cells += [
            f'<td class="num" data-sort="{_num(r.get(c))}">{_e("" if not analysis.finite(r.get(c)) else f"{r[c]:g}")}</td>'
            for c in t.ref_cols
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="leaderboard"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def matrix_html(an) -> str:
    if not an.pairs:
        return "<p>No paired comparisons (fewer than two rows in every setting, or no shared seeds).</p>"
    labels = list(an.matrix)
    diff = {(p["a"], p["b"]): p["delta"] for p in an.pairs}
    head = "".join(f"<th>{_e(b)}</th>" for b in labels)
    rows = []
    for a in labels:
        cells = [f"<th>{_e(a)}</th>"]
        for b in labels:
            w, t_, l = an.matrix[a][b]
            if a == b or w + t_ + l == 0:
                cells.append("<td></td>")
                continue
            cls = "win" if w > l else ("loss" if l > w else "tie")
            d = diff.get((a, b))
            title = ""
            if d is None and (b, a) in diff:
                o = diff[(b, a)]
                d = o.negated()
            if d is not None and len({p["setting"] for p in an.pairs}) == 1:
                title = f"{d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}], p={d.p:.3g}, Holm p={d.p_holm:.3g}"
            cells.append(
                f'<td class="{cls}" title="{_e(title)}">{w}/{t_}/{l}'
                + (f"<br><small>{d.mean:+.3f}</small>" if title else "")
                + "</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table id="matrix"><thead><tr><th>{_e(an.metric)}: row vs column (wins/ties/losses)</th>{head}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _samples(runs: list[dict]) -> dict[str, list[dict]]:
    out = {}
    for r in runs:
        p = Path(r.get("_path", "")) / "samples.jsonl"
        rows = []
        if p.is_file():
            try:
                rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
            except (OSError, json.JSONDecodeError):
                rows = []
        out[Path(r.get("_path", "?")).name] = rows
    return out


def _run_label(r: dict) -> str:
    c = r.get("config") or {}
    loss = (c.get("loss") or {}).get("label") or (c.get("loss") or {}).get("name") or "?"
    return f"{loss}, seed {c.get('seed')} ({Path(r.get('_path', '?')).name})"


def runs_html(runs: list[dict]) -> str:
    items = []
    for r in runs:
        status = r.get("status", "?")
        err = f'<div class="failed">{_e(r.get("error") or "")}</div>' if status != "done" else ""
        cfg = json.dumps(r.get("config") or {}, indent=1, sort_keys=True, default=str)
        items.append(
            f'<details class="run" data-status="{_e(status)}"><summary>{_e(_run_label(r))}: '
            f'<b class="{"" if status == "done" else "failed"}">{_e(status)}</b></summary>{err}'
            f"<pre>{_e(cfg)}</pre></details>"
        )
    return "".join(items)


def render(t: table.Tabulated, figs: dict[str, Path], foot: str = "") -> str:
    an = t.an
    title = t.title or f"po-bench report: {', '.join(str(d) for d in t.dirs)}"
    notes = analysis.summary_notes(an, t.rows) + t.notes
    samples = _samples([r for r in t.runs])
    options = "".join(
        f'<option value="{_e(k)}">{_e(_run_label(r))}</option>'
        for k, r in ((Path(r.get("_path", "?")).name, r) for r in t.runs)
    )
    failed = "".join(
        f'<li class="failed"><code>{_e(Path(r.get("_path", "?")).name)}</code>: '
        f"{_e(r.get('error') or 'no error message')}</li>"
        for r in t.failed
    )
    paper = ""
    if t.ref_cols:
        paper = (
            f'<h2 id="paper">Ours vs the paper</h2>{_img(figs.get("vs_paper"), "ours vs the paper", "fig-vs-paper")}'
            + "".join(f'<p class="note">{_md_inline(n)}</p>' for n in t.notes if "paper" in n.lower())
        )
    data = json.dumps(samples, default=str).replace("</", "<\\/")
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "connect-src 'none'; font-src 'none'; form-action 'none'; base-uri 'none'"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><link rel="icon" href="data:,"><style>{CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p>{len(t.runs)} runs ({len(t.failed)} failed) from {_e(", ".join(str(d) for d in t.dirs))}.</p>
<nav><a href="#board">Leaderboard</a><a href="#significance">Significance</a>{'<a href="#paper">Paper</a>' if t.ref_cols else ""}<a href="#plots">Plots</a><a href="#diagnostics">Diagnostics</a><a href="#samples">Samples</a><a href="#runs">Runs</a></nav>
<h2 id="board">Leaderboard</h2>
<p>Click a column header to sort.</p>
{leaderboard(t)}
{"".join(f'<p class="note">{_md_inline(n)}</p>' for n in notes)}
<h2 id="significance">Significance matrix</h2>
{matrix_html(an)}
<p>{_img(figs.get("matrix_png"), "significance matrix", "fig-matrix")}</p>
{paper}
<h2 id="plots">Plots</h2>
<p>{_img(figs.get("png"), "sweep plot", "fig-main")}</p>
<h2 id="diagnostics">Diagnostics</h2>
<h3 id="probe">Probe: log-probability trajectories (change from the start)</h3>
{probe_html(t.runs, _run_label)}
<h3 id="diagnostics-summary">CHES, reward models, token credit, beam search</h3>
{summary_html(t.runs, _run_label)}
<h2 id="samples">Samples</h2>
<p><label>Run: <select id="sample-run">{options}</select></label></p>
<table class="samples"><thead><tr><th>#</th><th>prompt</th><th>policy</th><th>SFT</th><th>gold (policy)</th><th>gold (SFT)</th></tr></thead>
<tbody id="samples-body"></tbody></table>
<h2 id="runs">Runs: resolved configs and failures</h2>
{f'<ul id="failures">{failed}</ul>' if failed else '<p id="failures">No failed runs.</p>'}
{runs_html(t.runs)}
<hr><p class="note">{_md_inline(foot)}</p>
<script type="application/json" id="samples-data">{data}</script>
<script>{JS}</script>
</body></html>
"""


def write_report(
    sweep_dirs: list[str | Path],
    out_dir: str | Path,
    name: str = "report",
    title: str = "",
    baseline: str = "DPO",
    best_by: str | None = None,
    plot_x: str = "kl_to_ref",
    plot_y: str = "gold_reward",
    color_by: str | None = None,
    wall_seconds: float | None = None,
    claims: str = "method",
    effect: float = 0.05,
) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.html``; returns its path and the figures' (kept in a temp folder)."""
    t = table.tabulate(list(sweep_dirs), title, best_by, baseline, claims, effect)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="po-bench-report-"))  # figures and CSVs (for --wandb); not kept in OUT
    figs = write_plots(t, work, name, plot_x, plot_y, color_by)
    path = out / f"{name}.html"
    atomic_write_text(path, render(t, figs, footer(t.runs, wall_seconds)))
    files = {"csv": work / f"{name}.csv"}
    files["csv"].write_text(to_csv(t.hp_cols, t.rows, t.ref_cols, baseline))
    if t.an.pairs:
        files["pairs"], files["matrix"] = work / f"{name}-pairs.csv", work / f"{name}-matrix.csv"
        files["pairs"].write_text(pairs_csv(t.an))
        files["matrix"].write_text(matrix_csv(t.an))
    return {"html": path, **{f"fig_{k}": v for k, v in figs.items() if Path(v).is_file()}, **files}

"""`po-bench-report` (po_bench/cli/report.py) over tests/fixtures/world_sweep (tests/conftest.py's ``sweep``):
the page is self-contained, and ``--wandb`` logs the tables, figures and page to an offline run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from po_bench.results import writers

from .conftest import ROOT


def test_report_is_self_contained(sweep, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "po_bench.cli.report", str(sweep), "--out", str(tmp_path), "--name", "rep"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    page = (tmp_path / "rep.html").read_text()
    assert "http://" not in page and "https://" not in page and '<link rel="stylesheet"' not in page
    assert page.count("data:image/png;base64,") >= 2 and "planted failure for the report test" in page


def test_report_wandb_logs_the_tables_figures_and_page_offline(sweep, tmp_path):
    """po-bench-report --wandb without an API key: one offline run named report in the sweep's group, with the
    results / pairs / matrix tables, the figures and the page itself, read back from the files wandb wrote."""
    from po_bench.results.tracking import read_offline_run

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "po_bench.cli.report", str(sweep), "--out", str(out), "--name", "rep", "--wandb"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "WANDB_API_KEY": ""},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (folder,) = sorted((out / "wandb").glob("offline-run-*"))
    assert f"wandb: {folder}" in r.stdout.splitlines()
    rd = read_offline_run(folder)
    assert (rd["group"], rd["name"]) == (f"{sweep.parent.name}/{sweep.name}", "report")
    # the tables are the CSVs po-bench-table writes for the same sweep
    paths = writers.write_tables(sweep, tmp_path / "table", "t")
    for key, name in (("results", "csv"), ("pairs", "pairs"), ("matrix", "matrix")):
        logged = rd["tables"][key]
        assert [logged["columns"], *logged["data"]] == list(csv.reader(open(paths[name]))), key
    assert [row[0] for row in rd["tables"]["results"]["data"]] == ["SFT", "DPO", "IPO", "SimPO"]
    # the page as written to --out, and the figures
    (page,) = (folder / "files" / "media" / "html").glob("report_*.html")
    assert page.read_bytes() == (out / "rep.html").read_bytes()
    pngs = sorted(p.name.split("_0_")[0] for p in (folder / "files" / "media" / "images").glob("*.png"))
    assert pngs == ["matrix_png", "png"], pngs
    (step,) = rd["history"]
    assert step["report/_type"] == "html-file" and step["results/_type"] == "table-file"

"""po_bench.results.analysis through the pipeline: the A/A check.  The same loss trained under two
names over different seeds, run by the real CLI and tabulated by po-bench-table, is not flagged at the
method level: no ▲ / ▼, the pair's method-level p above 0.05 (an unpaired comparison: no shared seed)."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from .conftest import ROOT, SMALL, run_cli


@pytest.mark.slow
def test_a_a_check_the_same_loss_under_two_names_is_not_a_method_difference(tmp_path):
    cache = tmp_path / "cache"
    for name, seeds in (("A", "0,1,2"), ("B", "3,4,5")):
        r = run_cli(
            [
                "-m",
                "loss=dpo",
                f"loss.label=DPO-{name}",
                f"seed={seeds}",
                *SMALL,
                f"cache_dir={cache}",
                f"hydra.sweep.dir={tmp_path / name}",
            ],
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "table"
    t = subprocess.run(
        [
            sys.executable,
            "-m",
            "po_bench.cli.table",
            str(tmp_path / "A"),
            str(tmp_path / "B"),
            "--out",
            str(out),
            "--name",
            "aa",
            "--baseline",
            "DPO-A",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert t.returncode == 0, t.stderr[-3000:]
    md = (out / "aa.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| DPO-")]
    # the marks live in the table's cells; the legend under the table names them whatever the outcome
    assert len(rows) == 2 and "◆" in rows[0], md
    assert not any("▲" in row or "▼" in row for row in rows), md
    assert "survives the method-level test" in md, md
    assert "Method-level claims" in md and "Power (method level" in md
    (pair,) = list(csv.DictReader(open(out / "aa-pairs.csv")))
    print(
        f"A/A: DPO-A - DPO-B = {pair['diff']} [{pair['diff_lo']}, {pair['diff_hi']}], method-level p = "
        f"{pair['p']} ({pair['basis']}, df {pair['df']})"
    )
    # no seed is shared: an unpaired comparison, with Welch's variance ("own") where the F test flags one of the two
    # rows' seed spread (with two rows it does so about one time in ten under the null: DPO-A at these seeds)
    assert pair["claim"] == "method" and pair["basis"] in ("unpaired", "own") and pair["outcome"] == "tie"
    assert float(pair["p"]) > 0.05 and float(pair["diff_lo"]) < 0 < float(pair["diff_hi"])

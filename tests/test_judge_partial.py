"""Judging failures are never hidden: a run whose judge still lacks answers after retries is recorded
``partial`` (not ``done``) with the counts, and the table shows a ``judged`` column and marks it;
best-of-grid selection on a metric some grid points lack is one clear error."""

from __future__ import annotations

import json

import pytest

from po_bench.results import table, writers

from .conftest import ROOT, run_cli
from .helpers import FakeOpenAI, alpaca_verdict, judge_run_args, judge_run_data


def _write(tmp, name, status, method="DPO", judged=None, metrics=None, lr=2e-4):
    d = tmp / name
    d.mkdir(parents=True)
    m = {"win_rate_vs_sft": 0.6, **(metrics or {})}
    if judged:
        m["judged"] = {
            "judge": "alpaca_eval",
            "n_judged": judged[0],
            "n_asked": judged[1],
            "n_request_failures": judged[1] - judged[0],
            "n_parse_failures": 0,
        }
    cfg = {
        "loss": {"name": method.lower(), "label": method, "beta": 0.1, "lr": lr, "args": {}},
        "model": {"name": "tiny"},
        "judge": {"name": "alpaca_eval"},
        "seed": 0,
    }
    (d / "run.json").write_text(json.dumps({"status": status, "config": cfg, "metrics": m}))


def test_table_shows_judged_counts_and_marks_partial_rows(tmp_path):
    _write(tmp_path, "a", "done", "DPO", judged=(805, 805))
    _write(tmp_path, "b", "partial", "SimPO", judged=(803, 805))
    t = table.tabulate(tmp_path)
    md = writers.to_markdown(t.shown, t.rows, t.failed, an=None)
    head, _, *body = ([c.strip() for c in line.strip("|").split("|")] for line in md.split("\n\n")[0].splitlines())
    assert {row[0]: row[head.index("judged")] for row in body} == {"DPO": "805/805", "SimPO †": "803/805 (partial)"}
    assert "† partial" in md
    assert not t.failed  # a partial run is a row, not a failed run
    csv = writers.to_csv(t.shown, t.rows)
    assert "judged" in csv.splitlines()[0] and "803/805" in csv


def test_select_best_on_a_missing_metric_is_one_clear_error():
    rows = [
        {"method": "DPO", "loss.lr": 1e-6, "lc_win_rate_mean": 0.3},
        {"method": "DPO", "loss.lr": 5e-7, "lc_win_rate_mean": float("nan")},
    ]
    with pytest.raises(ValueError, match="select_best by lc_win_rate: 1 of 2 grid points have no lc_win_rate"):
        table.select_best(["loss.lr"], rows, "lc_win_rate")


@pytest.mark.slow
def test_permanent_judge_failures_record_the_run_partial_and_the_table_shows_it(tiny_chat_model, tmp_path):
    """A loopback OpenAI-compatible judge answers the first judgment's request and its retry with 500s
    (one request at a time): that judgment is missing after retries, the run is recorded partial with
    the counts, and po-bench-table shows 2/3 and marks the row."""
    data = judge_run_data(tmp_path, 3)
    with FakeOpenAI(alpaca_verdict, script=["500", "500", "500"]) as srv:
        args = [
            *judge_run_args(tiny_chat_model, data, srv.url, tmp_path / "cache"),
            "tracking=none",
            "judge.api_key_env=null",
            "judge.max_concurrency=1",
            "judge.backoff_base=0.01",
            "judge.backoff_max=0.02",
        ]
        r = run_cli([*args, f"hydra.run.dir={tmp_path}/sweep/run"], ROOT)
        assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "sweep" / "run" / "run.json").read_text())
    j = rec["metrics"]["judged"]
    assert rec["status"] == "partial", rec.get("error")
    # one request at a time, one retry: judgment 1 gets 500 and 500 (failed), judgment 2 gets 500 then its answer
    assert (j["n_asked"], j["n_request_failures"], j["n_judged"], len(srv.requests)) == (3, 1, 2, 5)
    assert "still failed after retries" in rec["error"] and "run recorded partial" in r.stdout + r.stderr
    t = table.tabulate(tmp_path / "sweep")
    md = writers.to_markdown(t.shown, t.rows, t.failed)
    assert "2/3 (partial)" in md and "†" in md

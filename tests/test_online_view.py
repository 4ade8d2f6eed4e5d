"""po_bench/results/online_view.py and po-bench-online: online and iterative methods against offline DPO at equal
labels (issue 24).  The run records are written here with numbers chosen by hand (the view reads nothing else);
the pipeline's own online counts are tested in test_online.py, test_rto.py and test_iterative.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sst

from po_bench.results import online_view as V


def _run(loss, seed, gold, *, label=None, args=None, online=None, pairs=1600, epochs=1.0, n_pref=1600, sft=0.3):
    m = {"gold_reward": gold, "gold_reward_sft": sft, "kl_to_ref": 1.0 + seed, "data": {"n_pairs": pairs}}
    if online is not None:
        m["online"] = online
    return {
        "status": "done",
        "config": {
            "loss": {"name": loss, "label": label or loss.upper(), "args": args or {}},
            "train": {"epochs": epochs, "max_steps": 0},
            "dataset": {"n_pref": n_pref},
            "seed": seed,
        },
        "metrics": m,
    }


def _write(root, runs):
    for i, r in enumerate(runs):
        d = root / str(i)
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps(r))
    return root


def test_labels_count_the_source_and_the_auxiliary_labels():
    assert V.labels_of(_run("dpo", 0, 0.5, pairs=1598)) == {"source": 1598, "auxiliary": 0, "total": 1598}
    rto = _run("rto", 0, 0.5, online={"labels_requested": 1600, "guide": {"pairs": 1600, "policy": "k"}})
    assert V.labels_of(rto) == {"source": 1600, "auxiliary": 1600, "total": 3200}
    it = _run("iterative_dpo", 0, 0.5, online={"labels_requested": 1600, "reward_model_pairs": 400})
    assert V.labels_of(it) == {"source": 1600, "auxiliary": 400, "total": 2000}


def test_a_method_is_its_label_plus_the_arguments_that_differ_among_its_runs():
    runs = [
        _run("xpo", 0, 0.5, label="XPO", args={"alpha": 0.0, "accumulate": False}),
        _run("xpo", 0, 0.5, label="XPO", args={"alpha": 0.01, "accumulate": False}),
        _run("online_dpo", 0, 0.5, label="Online DPO", args={"labeller": "gold"}),
    ]
    assert V.method_names(runs) == ["XPO (alpha=0)", "XPO (alpha=0.01)", "Online DPO"]


def test_the_table_compares_each_method_with_dpo_paired_over_seeds(tmp_path):
    dpo = [0.50, 0.55, 0.45, 0.60, 0.52]
    onl = [0.62, 0.70, 0.58, 0.71, 0.66]
    runs = [_run("dpo", s, g, label="DPO") for s, g in enumerate(dpo)]
    runs += [_run("online_dpo", s, g, label="Online DPO", online={"labels_requested": 1600}) for s, g in enumerate(onl)]
    # the same method at a quarter of the budget: a curve point, not a table row
    runs += [
        _run("online_dpo", s, g, label="Online DPO", epochs=0.25, online={"labels_requested": 400})
        for s, g in enumerate([0.4, 0.42, 0.38, 0.41, 0.45])
    ]
    table, curve, base = V.estimates(runs)
    assert base == "DPO"
    row = next(r for r in table if r["method"] == "Online DPO")
    assert row["labels"] == 1600 and row["seeds"] == 5
    d = row["diff"]
    # two rows, five shared seeds: the pooled interaction variance is the paired differences' own, so the
    # method-level difference is the paired t test's
    t = sst.ttest_rel(onl, dpo)
    assert d.mean == pytest.approx(np.mean(np.subtract(onl, dpo)))
    assert d.p == pytest.approx(t.pvalue, rel=1e-6)
    assert V.verdict(d) == "beats DPO"
    pts = [(r["method"], r["labels"]) for r in curve]
    assert pts == [("SFT (start)", 0.0), ("Online DPO", 400.0), ("DPO", 1600.0), ("Online DPO", 1600.0)]
    out = V.write_online([_write(tmp_path / "s", runs)], tmp_path / "o", "ol", "t")
    md = out["md"].read_text()
    assert "| Online DPO | 1600 (1600 + 0) | 5 |" in md and "beats DPO" in md
    rows = out["csv"].read_text().splitlines()
    assert rows[0].startswith("part,method,labels") and len(rows) == 1 + 2 + 4

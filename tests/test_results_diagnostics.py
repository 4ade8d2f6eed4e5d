"""po_bench/results/diagnostics.py: a sweep's diagnostics finding by finding, per method, with the
method-level intervals of po_bench/results/stats.py.  The run records are written here with numbers chosen
by hand (the aggregation under test reads nothing else); the pipeline's own records of each part are tested
in test_probe_set.py, test_ches.py, test_reward_models.py and test_r_to_q.py."""

from __future__ import annotations

import json

import pytest

from po_bench.results import diagnostics as D
from po_bench.results.stats import fit_methods, method_mean


def _run(loss: str, seed: int, diag: dict, **cfg) -> dict:
    return {
        "status": "done",
        "config": {"loss": {"name": loss, "label": loss.upper()}, "seed": seed, **cfg},
        "metrics": {"gold_reward": 0.1 * seed, "diagnostics": diag},
    }


def _diag(dc: float, spearman: float | None = None, with_rm: bool = True) -> dict:
    d = {
        "probe": {
            "delta_chosen": dc,
            "delta_rejected": 2 * dc,
            "delta_unseen": dc / 2,
            "history": [
                {"step": 0, "delta_chosen": 0.0, "delta_rejected": 0.0},
                {"step": 4, "delta_chosen": dc / 2, "delta_rejected": dc},
                {"step": 8, "delta_chosen": dc, "delta_rejected": 2 * dc},
            ],
        },
        "beams": {"widths": [1, 2, 4], "gold_reward": [0.1, 0.3, 0.2], "kl_to_ref": [1.0, 2.0, 3.0]},
        "token_credit": {"token_credit_spearman": 0.4, "token_credit_on_reward_tokens": 0.5, "reward_token_share": 0.2},
    }
    if spearman is not None:
        d["ches"] = {
            "correlation": {"ches_ln": {"n": 3, "spearman": spearman, "p_value": 0.5}},
            "probe_pairs": {"ches_ln": [1.0, 2.0, 3.0], "delta_chosen": [0.0, -1.0, -2.0]},
        }
    if with_rm:
        d["reward_models"] = {
            "shifts": {"id": {"dporm": 0.8, "exrm": 0.82}, "prompt": {"dporm": 0.7, "exrm": 0.8}},
            "dporm_drop_mean": 0.1,
            "exrm_drop_mean": 0.02,
        }
    return d


def _write(tmp_path, runs):
    for i, r in enumerate(runs):
        d = tmp_path / f"{i}"
        d.mkdir()
        (d / "run.json").write_text(json.dumps(r))
    return tmp_path


RUNS = [
    *[_run("dpo", s, _diag(dc, spearman=-0.5)) for s, dc in zip((0, 1, 2), (-1.0, -2.0, -3.0))],
    *[_run("ipo", s, _diag(dc, with_rm=False)) for s, dc in zip((0, 1, 2), (-0.5, -0.7, -0.6))],
]


def test_each_finding_is_the_mean_over_seeds_with_the_method_level_interval():
    labels, ests = D.estimates(RUNS)
    assert labels == ["DPO", "IPO"]
    by = {(e["method"], e["finding"]): e for e in ests}
    assert by[("DPO", "delta_chosen")]["mean"] == pytest.approx(-2.0)
    assert by[("IPO", "delta_chosen")]["mean"] == pytest.approx(-0.6)
    # the interval is the block model's over both methods (seeds as blocks), not a per-method t interval
    fit = fit_methods({"DPO": {"0": -1.0, "1": -2.0, "2": -3.0}, "IPO": {"0": -0.5, "1": -0.7, "2": -0.6}})
    want = method_mean(fit, "DPO")
    assert (by[("DPO", "delta_chosen")]["lo"], by[("DPO", "delta_chosen")]["hi"]) == pytest.approx((want.lo, want.hi))
    assert by[("DPO", "delta_chosen")]["n_seeds"] == 3
    # parts a run did not measure are counted as absent, never as zeros
    assert by[("IPO", "dporm_id")]["n_seeds"] == 0 and by[("IPO", "dporm_id")]["mean"] is None
    assert by[("IPO", "ches_spearman")]["n_seeds"] == 0
    assert by[("DPO", "ches_spearman")]["mean"] == pytest.approx(-0.5)
    assert by[("DPO", "token_share_excess")]["mean"] == pytest.approx(0.3)
    assert by[("DPO", "beam_gold_gain")]["mean"] == pytest.approx(0.2)  # best width 2 (0.3) minus greedy (0.1)


def test_a_mitigation_in_the_data_is_a_method_row_of_its_own():
    runs = [_run("dpo", s, _diag(-1.0 - s)) for s in (0, 1)] + [
        _run("dpo", s, _diag(-0.2 - s), dataset={"filter": {"kind": "ches_ln", "keep": 0.5}}) for s in (0, 1)
    ]
    runs[0]["config"]["dataset"] = runs[1]["config"]["dataset"] = {"filter": {"kind": "none", "keep": 0.95}}
    labels, ests = D.estimates(runs)
    runs.append(_run("ipo", 0, _diag(-1.0), dataset={"filter": {"kind": "none", "keep": 0.95}}))
    labels, ests = D.estimates(runs)
    # only where a row departs from the rows' most common setting
    assert sorted(labels) == ["DPO", "DPO (filter.keep=0.5)", "IPO"]
    by = {(e["method"], e["finding"]): e["mean"] for e in ests}
    assert by[("DPO (filter.keep=0.5)", "delta_chosen")] == pytest.approx(-0.7)


def test_the_writer_makes_csv_markdown_and_the_figure(tmp_path):
    (tmp_path / "sweep").mkdir()
    sweep = _write(tmp_path / "sweep", RUNS)
    paths = D.write_diagnostics([sweep], tmp_path / "out", "diag", "t")
    rows = paths["csv"].read_text().splitlines()
    assert rows[0].startswith("method,finding,mean,lo,hi,n_seeds")
    assert len(rows) == 1 + 2 * len(D.FINDINGS)
    md = paths["md"].read_text()
    assert "## delta_chosen" in md and "Lin et al.: 3% mean" in md
    assert "| IPO | – | – | 0 |" in md  # IPO measured no reward models: shown as absent
    assert paths["png"].stat().st_size > 10_000

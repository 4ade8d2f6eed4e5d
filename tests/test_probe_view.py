"""po_bench/results/probe_view.py: each run's probe trajectory (diagnostics.probe) in po-bench-report's page, over
tests/fixtures/world_sweep (tests/conftest.py's ``sweep``)."""

from __future__ import annotations

import json

from po_bench.results.probe_view import svg
from po_bench.results.report import write_report


def test_report_shows_each_runs_probe_trajectory(sweep, tmp_path):
    """A run with metrics.diagnostics.probe (diagnostics.probe, issue 25) gets its trajectory in the page: a table of
    its measurements and an inline plot of the changes; a run without one gets none."""
    path = sweep / "2_loss=dpo_s0" / "run.json"
    rec = json.loads(path.read_text())
    history = [
        {"step": 0, "logp_chosen": -60.0, "delta_chosen": 0.0, "delta_rejected": 0.0, "delta_unseen": 0.0},
        {"step": 5, "logp_chosen": -61.25, "delta_chosen": -1.25, "delta_rejected": -4.5, "delta_unseen": 0.75},
    ]
    rec["metrics"]["diagnostics"] = {"probe": {**history[-1], "n_pairs": 32, "n_unseen": 16, "history": history}}
    path.write_text(json.dumps(rec))
    page = write_report([sweep], tmp_path, name="rep")["html"].read_text()
    section = page[page.index('<h2 id="diagnostics">') : page.index('<h2 id="samples">')]
    assert section.count('class="probe-run"') == 1 and "32 probe pairs, 16 unseen responses" in section
    assert "-1.250" in section and "-4.500" in section and "+0.750" in section  # the table's last row
    assert section.count("<polyline") == 3  # delta chosen, rejected, unseen against the step
    assert "No run carries a probe trajectory" not in page


def test_no_trajectory_says_so_and_one_point_draws_no_plot(sweep, tmp_path):
    page = write_report([sweep], tmp_path, name="rep")["html"].read_text()
    assert '<p id="probe-none">' in page and 'class="probe-run"' not in page
    assert svg([{"step": 0, "delta_chosen": 0.0}]) == ""


def test_report_shows_the_other_diagnostics_per_run(sweep, tmp_path):
    """CHES's correlation, DPORM vs EXRM, token credit and the beams of a run with them; the line saying none
    otherwise."""
    page = write_report([sweep], tmp_path / "a", name="rep")["html"].read_text()
    assert "No run measured CHES, reward models, token credit or beams." in page
    path = sweep / "2_loss=dpo_s0" / "run.json"
    rec = json.loads(path.read_text())
    rec["metrics"]["diagnostics"] = {
        "ches": {"correlation": {"ches_ln": {"n": 32, "spearman": -0.375, "p_value": 0.03}}},
        "reward_models": {"shifts": {"id": {"dporm": 0.625, "exrm": 0.5}}, "dporm_drop_mean": 0.0625},
        "token_credit": {"token_credit_spearman": 0.25},
        "beams": {"widths": [1, 4], "gold_reward": [0.5, -1.25]},
    }
    path.write_text(json.dumps(rec))
    page = write_report([sweep], tmp_path / "b", name="rep")["html"].read_text()
    section = page[page.index('<h3 id="diagnostics-summary">') : page.index('<h2 id="samples">')]
    assert section.count("<tr><td>") == 1
    for text in ("-0.375", "+0.625", "+0.500", "+0.062", "+0.250", "1:+0.50 4:-1.25"):
        assert text in section, text

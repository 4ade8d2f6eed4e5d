"""The reward_models diagnostic's sets and report (po_bench/judges/reward_shift.py): every number a recount of
the stored per-pair margins; the label-shift set from the annotator's own labels.  A real run:
tests/test_reward_models.py."""

from __future__ import annotations

import numpy as np

from po_bench.data import world
from po_bench.judges import reward_shift


def test_report_recounts_accuracy_drops_and_gaps():
    art = {
        "sets": {
            "id": {"dporm_margin": [1.0, 1.0, 1.0, -1.0], "exrm_margin": [1.0, 1.0, 1.0, 1.0]},
            "prompt": {"dporm_margin": [1.0, -1.0, 0.0, -1.0], "exrm_margin": [1.0, 1.0, -1.0, 1.0], "n_prompts": 5},
            "empty": {"dporm_margin": [], "exrm_margin": []},
        }
    }
    r = reward_shift.report(art)
    s = r["shifts"]
    assert (s["id"]["dporm"], s["id"]["exrm"]) == (0.75, 1.0)
    assert (s["prompt"]["dporm"], s["prompt"]["exrm"]) == (0.375, 0.75)  # a tie counts half
    assert (s["prompt"]["dporm_drop"], s["prompt"]["exrm_drop"], s["prompt"]["dporm_minus_exrm"]) == (
        0.375,
        0.25,
        -0.375,
    )
    assert s["prompt"]["n_prompts"] == 5 and s["empty"]["dporm"] is None and s["empty"]["dporm_drop"] is None
    assert r["n_shifts"] == 1 and r["exrm_minus_dporm_mean"] == r["exrm_minus_dporm_max"] == 0.375
    assert r["paper"] == {"mean_drop": 0.03, "max_drop": 0.07}


def test_label_shift_keeps_the_pairs_the_annotator_gets_wrong_in_gold_order():
    prompts = world.make_prompts(world.WorldSpec(n_eval=200), "eval")
    rng = np.random.default_rng(0)
    spec = world.WorldSpec()
    samples = [[world.demonstrate(spec, p, rng), world.demonstrate(spec, p, rng)] for p in prompts]
    ann = {"temperature": 0.5, "length_bias": 0.03}
    kept, counts = reward_shift.label_shift(prompts, samples, ann, 7)
    labelled = world.label_pairs(prompts, samples, world.Annotator(0.5, 0.03), 7)
    assert counts["n_labelled"] == len(labelled) and 0 < len(kept) < len(labelled)
    assert len(kept) == sum(p["gold_margin"] < 0 for p in labelled)
    assert all(
        world.gold_reward(p["prompt"], p["chosen"]) > world.gold_reward(p["prompt"], p["rejected"]) for p in kept
    )
    # the annotator's own label was the other side on every kept pair
    by = {(p["prompt"], p["chosen"], p["rejected"]) for p in labelled}
    assert all((p["prompt"], p["rejected"], p["chosen"]) in by for p in kept)

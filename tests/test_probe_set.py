"""po_bench/training/probe_set.py: the probe set of diagnostics.probe (which training pairs, which unseen responses)
and what run.json reports of it.  (The probe wired into real training: tests/test_probe.py.)"""

from __future__ import annotations

from types import SimpleNamespace as NS

from po_bench.training import probe_set


def test_the_probe_set_is_drawn_by_the_seed_and_reads_pairs_and_lists():
    rows = [{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(10)]
    idx, probe = probe_set.draw(rows, 4, seed=3)
    assert idx == sorted(idx) and len(set(idx)) == 4 and probe == [rows[i] for i in idx]
    assert probe_set.draw(rows, 4, seed=3)[0] == idx and probe_set.draw(rows, 4, seed=4)[0] != idx
    assert probe_set.draw(rows, 50, seed=0)[0] == list(range(10))  # fewer pairs than asked: all of them
    lists = [{"prompt": "p", "responses": ["best", "mid", "worst"], "scores": [3, 2, 1]}]
    assert probe_set.draw(lists, 1, 0)[1] == [{"prompt": "p", "chosen": "best", "rejected": "worst"}]
    assert probe_set.probe_absent(rows) is None and probe_set.probe_absent(lists) is None
    assert "unpaired" in probe_set.probe_absent([{"prompt": "p", "completion": "y", "label": True}])
    # unseen: responses in no training pair of their prompt, no repeats
    prompts = probe_set.unseen_prompts(probe[:2], 5)
    assert prompts == [probe[0]["prompt"], probe[1]["prompt"]] * 2 + [probe[0]["prompt"]]
    kept = probe_set.keep_unseen(["p1", "p1", "p1", "p2"], ["a1", "new", "new", "a1"], rows)
    assert kept == [{"prompt": "p1", "response": "new"}, {"prompt": "p2", "response": "a1"}]
    # conversational prompts (message lists, as HH-RLHF's): compared exactly, not by their last turn only
    conv = [{"role": "user", "content": "hi"}]
    other = [
        {"role": "user", "content": "yo"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "hi"},
    ]
    kept = probe_set.keep_unseen(
        [conv, conv, other], ["a", "b", "a"], [{"prompt": conv, "chosen": "a", "rejected": "c"}]
    )
    assert kept == [{"prompt": conv, "response": "b"}, {"prompt": other, "response": "a"}]


def test_the_report_is_the_last_measurement_and_the_history_with_gold_on_the_world():
    hist = [
        {"step": 0, "logp_chosen": -5.0, "delta_chosen": 0.0},
        {"step": 4, "logp_chosen": -6.0, "delta_chosen": -1.0},
    ]
    rec = {"every": 4, "history": hist, "indices": [1, 3], "unseen": [{"prompt": "p", "response": "a b"}]}
    out = probe_set.report(rec, gold=lambda p, y: float(len(y)))
    assert out == {**hist[-1], "every": 4, "n_pairs": 2, "n_unseen": 1, "history": hist, "unseen_gold": 3.0}
    assert probe_set.report(None) is None and probe_set.report({"absent": "why"}) == {"absent": "why"}
    on, off = NS(diagnostics=NS(probe=True)), NS(diagnostics=NS(probe=False))
    real = NS(gold=None)
    assert probe_set.run_report(off, {"probe": {}}, {"probe": rec}, real) is None  # off: nothing
    assert probe_set.run_report(on, None, {}, real) is None  # no preference stage: nothing
    assert "unpaired" in probe_set.run_report(on, {"seed": 0}, {}, real)["absent"]  # no probe fields: unpaired rows
    assert "unseen_gold" not in probe_set.run_report(on, {"probe": {}}, {"probe": rec}, real)  # no gold: real data

"""po_bench/data/formats/unpaired.py: the unpaired view (prompt, completion, desirable / undesirable label)
for KTO-like losses, from unpaired rows and from any paired format."""

from __future__ import annotations

from po_bench.data.formats.unpaired import to_unpaired


def test_unpaired_rows_take_their_labels_in_every_spelling_and_skip_the_rest():
    labels = [True, 0, 1, " Desirable ", "no", "chosen", "maybe", 2]
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": v} for i, v in enumerate(labels)]
    out, rep = to_unpaired(rows, "unpaired")
    assert [(x["prompt"], x["label"]) for x in out] == [
        ("q0", True),
        ("q1", False),
        ("q2", True),
        ("q3", True),
        ("q4", False),
        ("q5", True),
    ]
    assert out[0]["completion"] == "a0"
    assert rep["skipped"] == {"bad_label": 2} and (rep["desirable"], rep["undesirable"]) == (4, 2)


def test_a_paired_format_gives_its_chosen_answer_as_desirable_and_its_rejected_as_undesirable():
    rows = [{"prompt": "q", "chosen": "good", "rejected": "bad"}, {"prompt": "r", "chosen": "x", "rejected": "y"}]
    out, rep = to_unpaired(rows, "pairs")
    assert out == [
        {"prompt": "q", "completion": "good", "label": True},
        {"prompt": "q", "completion": "bad", "label": False},
        {"prompt": "r", "completion": "x", "label": True},
        {"prompt": "r", "completion": "y", "label": False},
    ]
    assert rep["unpaired"] == 4

"""po_bench/results/plots.py: the figures of po-bench-table --plot and po-bench-report (drawn on
matplotlib's Agg backend)."""

from __future__ import annotations

import json

from po_bench.results.plots import sft_lines


def test_sft_lines_draw_one_line_per_seed_at_that_seeds_mean():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    sft_lines(ax, {json.dumps(1): [5.0], json.dumps(0): [1.0, 3.0]})
    assert [(ln.get_ydata()[0], ln.get_label()) for ln in ax.get_lines()] == [
        (2.0, "SFT, seed 0"),
        (5.0, "SFT, seed 1"),
    ]
    fig2, ax2 = plt.subplots()
    sft_lines(ax2, {json.dumps(s): [float(s)] for s in range(7)})  # more seeds than a legend names
    labels = [ln.get_label() for ln in ax2.get_lines()]
    assert len(labels) == 7 and labels[0] == "SFT, per seed" and not [x for x in labels[1:] if not x.startswith("_")]
    plt.close(fig)
    plt.close(fig2)

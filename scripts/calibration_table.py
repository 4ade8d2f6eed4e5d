"""The method-level statistics' calibration, before and after issue 21, from one simulation.

For each scenario of ``tests/test_results_stats.py`` (equal, unequal and diverging seed variances, the world's
measured variance components) and 2, 3, 5 and 10 seeds: the false-positive rate at 0.05 and the 95%
coverage of differences and means of the project's method-level estimator ("after") and of the
policy-level item test applied to a method claim ("before": prompts within seeds flipped and
resampled, what every table did below 6 seeds).  Prints one line per cell; ~10 minutes on 2 cores.

    .venv/bin/python scripts/calibration_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_results_stats import SCENARIOS, calibrate, method_level, mutant_seed_component_dropped  # noqa: E402


def main() -> None:
    for seeds in (2, 3, 5, 10):
        for sc in SCENARIOS:
            a = calibrate(method_level, sc, seeds)
            b = calibrate(mutant_seed_component_dropped, sc, seeds, tables=40, items=128)
            print(
                f"{sc:9s} {seeds:2d} seeds | before (prompts within seeds): FPR {b['fpr']:.3f} cover diff "
                f"{b['cover_diff']:.3f} mean {b['cover_mean']:.3f} | after (method level): FPR {a['fpr']:.3f} "
                f"cover diff {a['cover_diff']:.3f} mean {a['cover_mean']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

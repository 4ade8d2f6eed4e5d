"""Label noise: flip exactly round(rate * N) preference labels, chosen by the seed."""

from __future__ import annotations

import numpy as np


def flip_labels(pairs: list[dict], rate: float, seed: int) -> tuple[list[dict], list[int]]:
    """Return (new pairs, sorted indices of flipped rows).  Nothing is dropped or duplicated."""
    if not 0.0 <= rate < 0.5:
        raise ValueError(f"noise rate {rate} must be in [0, 0.5)")
    n = len(pairs)
    k = int(round(rate * n))
    rng = np.random.default_rng([int(seed), 31337])
    idx = sorted(int(i) for i in rng.choice(n, size=k, replace=False)) if k else []
    flipped = set(idx)
    out = []
    for i, p in enumerate(pairs):
        q = dict(p)
        if i in flipped:
            q["chosen"], q["rejected"] = p["rejected"], p["chosen"]
            q["flipped"] = True
        out.append(q)
    return out, idx

"""The reward_models diagnostic in a run (``diagnostics.reward_models``): the EXRM and the DPORM/EXRM scores
on every evaluation set through the store (``specs.exrm_spec``, ``specs.reward_models_spec``; stage
``reward_models``), then the report of :mod:`po_bench.judges.reward_shift` from the stored margins."""

from __future__ import annotations

import logging
import time

from po_bench import stages
from po_bench.judges import reward_shift
from po_bench.specs import reward_models_spec

log = logging.getLogger("po_bench")


def diagnostic(cfg, store, p, ckpt, opts: dict) -> dict | None:
    """``metrics["diagnostics"]["reward_models"]`` of a run (None, with a warning, where the run has nothing
    to compare: no preference-trained policy with generations and judges, or pairs that are not pairs).
    ``ckpt`` (the pipeline's Checkpoints) hands the loaded policy, reference and tokenizer to a build."""
    spec = reward_models_spec(cfg, p)
    pairs = stages.get(store, "pairs", p.pairs)["train"] if spec is not None else []
    if spec is None or not pairs or "chosen" not in pairs[0]:
        log.warning(
            "diagnostics.reward_models: not measured (it needs a preference-trained policy on chosen/rejected "
            "pairs with stages.generate and stages.judge)"
        )
        return None
    loaded = {}
    if not store.exists("reward_models", spec):
        loaded = {"policy": ckpt.policy, "reference": ckpt.sft, "tokenizer": ckpt.tokenizer}
    t0 = time.perf_counter()
    rep = reward_shift.report(stages.get(store, "reward_models", spec, opts, **loaded))
    acc = lambda a: "-" if a is None else f"{a:.3f}"  # noqa: E731
    log.info(
        "diagnostics.reward_models (%.1f s): %s",
        time.perf_counter() - t0,
        "; ".join(
            f"{k}: DPORM {acc(v['dporm'])} EXRM {acc(v['exrm'])} ({v['n']} pairs)" for k, v in rep["shifts"].items()
        ),
    )
    return rep

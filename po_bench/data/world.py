"""The embedded world: a small, fully known preference problem.

A *prompt* asks the model to write about a handful of keywords; a *response* is a short
sequence of words.  The gold reward ``r*(prompt, response)`` is exact and cheap and mimics the
structure of real preference data:

* **quality**: covering the prompt's keywords is good, off-topic content words are bad;
* **length**: a small true benefit for longer answers that saturates at ``length_cap`` tokens
  (annotators over-reward length beyond that; see :class:`Annotator`);
* **degeneration**: immediate repetitions and repeated content words are penalised.

Everything here is pure Python/NumPy, deterministic given a seed, and independent of torch.
The README documents the definition; ``gold_reward`` is the single source of truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

CONTENT_WORDS: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "forest", "candle", "mirror", "garden",
    "engine", "violin", "harbor", "desert", "lantern", "meadow", "castle", "pepper",
    "rocket", "falcon", "marble", "island", "thunder", "copper", "glacier", "orchid",
    "compass", "saddle", "beacon", "canyon", "walnut", "anchor", "ember", "quartz",
)
FILLER_WORDS: tuple[str, ...] = ("the", "a", "and", "is", "very", "with", "of", "near", "bright", "old")
ID_TEMPLATE = "write about"
OOD_TEMPLATE = "list"
PROMPT_END = "=>"
SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")


def vocabulary() -> list[str]:
    """Every word the world can produce (specials first)."""
    words = list(SPECIAL_TOKENS)
    words += ID_TEMPLATE.split() + OOD_TEMPLATE.split() + [PROMPT_END]
    words += list(FILLER_WORDS) + list(CONTENT_WORDS)
    return words


@dataclass(frozen=True)
class RewardWeights:
    coverage: float = 2.0  # reward for covering all prompt keywords (scaled by fraction covered)
    offtopic: float = 0.3  # penalty per off-topic content word
    length: float = 0.04  # true reward per token, up to length_cap
    length_cap: int = 14
    immediate_repeat: float = 0.5  # penalty per token equal to its predecessor
    content_repeat: float = 0.25  # penalty per repeated occurrence of a content word


def parse_prompt(prompt: str) -> list[str]:
    """Keywords of a world prompt ("write about k1 k2 =>" or "list k1 k2 k3 k4 =>")."""
    words = prompt.replace(PROMPT_END, " ").split()
    return [w for w in words if w in _CONTENT_SET]


_CONTENT_SET = frozenset(CONTENT_WORDS)


def gold_reward(prompt: str, response: str, w: RewardWeights = RewardWeights()) -> float:
    """The exact gold reward r*(prompt, response)."""
    keywords = parse_prompt(prompt)
    toks = response.split()
    parts = reward_parts(keywords, toks, w)
    return parts["quality"] + parts["length"] - parts["degeneration"]


def reward_parts(keywords: Sequence[str], toks: Sequence[str], w: RewardWeights = RewardWeights()) -> dict:
    kw = set(keywords)
    present = {t for t in toks if t in kw}
    coverage = len(present) / max(1, len(kw))
    offtopic = sum(1 for t in toks if t in _CONTENT_SET and t not in kw)
    quality = w.coverage * coverage - w.offtopic * offtopic
    length = w.length * min(len(toks), w.length_cap)
    imm = sum(1 for a, b in zip(toks, toks[1:]) if a == b)
    seen: set[str] = set()
    crep = 0
    for t in toks:
        if t in _CONTENT_SET:
            if t in seen:
                crep += 1
            seen.add(t)
    degeneration = w.immediate_repeat * imm + w.content_repeat * crep
    return {"quality": quality, "length": length, "degeneration": degeneration, "coverage": coverage}


@dataclass(frozen=True)
class WorldSpec:
    """Parameters that define the world (and hence every derived artifact)."""

    seed: int = 0
    n_sft: int = 3000  # demonstrations for the SFT stage
    n_pref: int = 1600  # prompts for the on-policy preference set
    n_eval: int = 128  # held-out in-distribution prompts
    n_ood: int = 128  # distribution-shifted prompts
    min_keywords: int = 1
    max_keywords: int = 3
    ood_keywords: tuple[int, int] = (4, 5)
    demo_cover_prob: float = 0.55  # demonstrator mentions each keyword with this probability
    demo_offtopic_rate: float = 0.9  # Poisson rate of off-topic content words in demonstrations
    demo_degenerate_prob: float = 0.2  # chance a demonstration contains a repetition burst
    weights: RewardWeights = field(default_factory=RewardWeights)


HELDOUT_SHARE = 4  # one keyword set in 4 is held out: only eval / OOD prompts use it


def heldout_keywords(keywords: Iterable[str], seed: int) -> bool:
    """Whether a keyword set belongs to the held-out part of the world (a fixed, seeded partition of
    all keyword sets): eval and OOD prompts are drawn from it, SFT and preference prompts from the
    rest, so no held-out prompt shares its keyword set (let alone its text) with a training prompt."""
    import zlib

    return zlib.crc32(f"{seed}:{' '.join(sorted(set(keywords)))}".encode()) % HELDOUT_SHARE == 0


def _prompt(rng: np.random.Generator, k: int, template: str, heldout: bool, seed: int) -> str:
    for _ in range(10_000):  # rejection sampling into this split's side of the partition
        kws = [CONTENT_WORDS[i] for i in rng.choice(len(CONTENT_WORDS), size=k, replace=False)]
        if heldout_keywords(kws, seed) == heldout:
            return f"{template} {' '.join(kws)} {PROMPT_END}"
    raise ValueError(f"no {'held-out' if heldout else 'training'} keyword set of size {k}")


def make_prompts(spec: WorldSpec, split: str) -> list[str]:
    """Prompts for a split: 'sft', 'pref', 'eval' (in-distribution) or 'ood'.  Eval and OOD prompts use
    only held-out keyword sets (:func:`heldout_keywords`), SFT and preference prompts only the others."""
    offsets = {"sft": 1, "pref": 2, "eval": 3, "ood": 4}
    n = {"sft": spec.n_sft, "pref": spec.n_pref, "eval": spec.n_eval, "ood": spec.n_ood}[split]
    rng = np.random.default_rng([spec.seed, offsets[split]])
    if split == "ood":
        lo, hi = spec.ood_keywords
        return [_prompt(rng, int(rng.integers(lo, hi + 1)), OOD_TEMPLATE, True, spec.seed) for _ in range(n)]
    held = split == "eval"
    return [_prompt(rng, int(rng.integers(spec.min_keywords, spec.max_keywords + 1)), ID_TEMPLATE, held, spec.seed)
            for _ in range(n)]


def demonstrate(spec: WorldSpec, prompt: str, rng: np.random.Generator) -> str:
    """A mediocre human demonstration: partial coverage, off-topic drift, occasional degeneration."""
    kws = parse_prompt(prompt)
    pieces: list[list[str]] = []
    for k in kws:
        if rng.random() < spec.demo_cover_prob:
            pieces.append([str(rng.choice(FILLER_WORDS)), k])
    others = [c for c in CONTENT_WORDS if c not in kws]
    for _ in range(int(rng.poisson(spec.demo_offtopic_rate))):
        pieces.append([str(rng.choice(FILLER_WORDS)), str(rng.choice(others))])
    for _ in range(int(rng.integers(0, 3))):
        pieces.append([str(rng.choice(FILLER_WORDS))])
    if rng.random() < spec.demo_degenerate_prob:
        word = str(rng.choice(kws + list(FILLER_WORDS)))
        pieces.append([word] * int(rng.integers(2, 5)))
    order = rng.permutation(len(pieces))
    toks = [t for i in order for t in pieces[i]]
    if not toks:
        toks = [str(rng.choice(FILLER_WORDS))]
    return " ".join(toks)


def sft_examples(spec: WorldSpec) -> list[dict]:
    rng = np.random.default_rng([spec.seed, 11])
    return [{"prompt": p, "completion": " " + demonstrate(spec, p, rng)} for p in make_prompts(spec, "sft")]


@dataclass(frozen=True)
class Annotator:
    """Bradley-Terry annotator on r* with a temperature and a length bias (reward per token)."""

    temperature: float = 0.5
    length_bias: float = 0.03
    deterministic: bool = False  # True: always prefer the higher (biased) score

    def p_first(self, r_a: float, r_b: float, len_a: int, len_b: int) -> float:
        score = (r_a - r_b) + self.length_bias * (len_a - len_b)
        if self.temperature <= 0:
            return 1.0 if score > 0 else (0.0 if score < 0 else 0.5)
        return 1.0 / (1.0 + math.exp(-score / self.temperature))


def label_pairs(
    prompts: Sequence[str],
    samples: Sequence[Sequence[str]],
    annotator: Annotator,
    seed: int,
    weights: RewardWeights = RewardWeights(),
) -> list[dict]:
    """Turn two on-policy samples per prompt into a labelled preference pair.

    Pairs whose two responses are identical carry no preference and are skipped (counted by the
    caller as ``len(prompts) - len(pairs)``).
    """
    rng = np.random.default_rng([seed, 21])
    pairs = []
    for i, (p, (a, b)) in enumerate(zip(prompts, samples)):
        u = rng.random()
        if a.strip() == b.strip():
            continue
        ra, rb = gold_reward(p, a, weights), gold_reward(p, b, weights)
        pa = annotator.p_first(ra, rb, len(a.split()), len(b.split()))
        a_wins = u < pa if not annotator.deterministic else pa >= 0.5
        chosen, rejected = (a, b) if a_wins else (b, a)
        pairs.append({
            "prompt": p,
            "chosen": chosen,
            "rejected": rejected,
            "gold_margin": (ra - rb) if a_wins else (rb - ra),
            "row": i,
        })
    return pairs


def gold_pairs(prompts: Sequence[str], samples: Sequence[Sequence[str]], weights: RewardWeights = RewardWeights()) -> list[dict]:
    """Held-out pairs labelled by the gold reward itself (ties dropped): ground truth for
    implicit-reward accuracy."""
    out = []
    for p, (a, b) in zip(prompts, samples):
        ra, rb = gold_reward(p, a, weights), gold_reward(p, b, weights)
        if ra == rb:
            continue
        out.append({"prompt": p, "chosen": a if ra > rb else b, "rejected": b if ra > rb else a})
    return out


def corpus(spec: WorldSpec) -> Iterable[str]:
    """Text for the tokenizer: every vocabulary word at least once."""
    yield " ".join(vocabulary())


# ---------------------------------------------------------------------------------------------
# k samples per prompt: a ranking by the annotator, and several pairs per prompt (Curry-DPO)
# ---------------------------------------------------------------------------------------------

PAIR_STRATEGIES = ("best_vs_rest", "adjacent", "best_worst", "all")
CURRICULA = ("none", "easy_to_hard")


def rate_samples(prompt: str, samples: Sequence[str], annotator: Annotator, rng: np.random.Generator,
                 weights: RewardWeights = RewardWeights()) -> list[dict]:
    """The annotator's ratings of k responses to one prompt, best first (identical responses kept once).

    A rating is the annotator's biased score s = r* + length_bias * |y| plus temperature * Gumbel noise:
    ranking by it is a Plackett-Luce draw whose pairwise marginals are exactly the Bradley-Terry
    annotator's, P(a above b) = sig((s_a - s_b) / T) (:meth:`Annotator.p_first`); T = 0 ranks by s."""
    seen, out = set(), []
    for y in samples:
        if y.strip() in seen:
            continue
        seen.add(y.strip())
        g = gold_reward(prompt, y, weights)
        s = g + annotator.length_bias * len(y.split())
        noise = annotator.temperature * float(rng.gumbel()) if annotator.temperature > 0 else 0.0
        out.append({"response": y, "rating": s + noise, "gold": g})
    return sorted(out, key=lambda d: -d["rating"])


def ranked_pairs(prompt: str, rated: list[dict], strategy: str, row: int) -> list[dict]:
    """Preference pairs from one prompt's rated responses (best first).

    ``best_vs_rest``: the top-rated response against each other one (Curry-DPO's multiple pairs, k-1);
    ``adjacent``: consecutive ranks (k-1); ``best_worst``: the top against the bottom (1);
    ``all``: every ordered pair of ranks (k(k-1)/2).  ``gap`` is the rating difference (the
    curriculum's criterion), ``gold_margin`` the gold reward difference."""
    n = len(rated)
    if n < 2:
        return []
    if strategy == "best_vs_rest":
        idx = [(0, j) for j in range(1, n)]
    elif strategy == "adjacent":
        idx = [(i, i + 1) for i in range(n - 1)]
    elif strategy == "best_worst":
        idx = [(0, n - 1)]
    elif strategy == "all":
        idx = [(i, j) for i in range(n) for j in range(i + 1, n)]
    else:
        raise ValueError(f"pair strategy {strategy!r}: allowed {', '.join(PAIR_STRATEGIES)}")
    return [{"prompt": prompt, "chosen": rated[i]["response"], "rejected": rated[j]["response"],
             "gap": rated[i]["rating"] - rated[j]["rating"], "gold_margin": rated[i]["gold"] - rated[j]["gold"],
             "row": row, "ranks": [i, j]} for i, j in idx]


def label_ranked(prompts: Sequence[str], samples: Sequence[Sequence[str]], annotator: Annotator, seed: int,
                 strategy: str, curriculum: str = "none", weights: RewardWeights = RewardWeights()) -> list[dict]:
    """k on-policy samples per prompt -> the annotator's ranking -> pairs by ``strategy``; with
    ``curriculum="easy_to_hard"`` the pairs are sorted by rating gap, largest (easiest) first (Curry-DPO's
    ordering; ties keep prompt order), else they stay in prompt order."""
    rng = np.random.default_rng([seed, 22])
    pairs = []
    for i, (p, ys) in enumerate(zip(prompts, samples)):
        pairs += ranked_pairs(p, rate_samples(p, ys, annotator, rng, weights), strategy, i)
    if curriculum == "easy_to_hard":
        pairs = sorted(pairs, key=lambda d: -d["gap"])
    elif curriculum != "none":
        raise ValueError(f"curriculum {curriculum!r}: allowed {', '.join(CURRICULA)}")
    return pairs

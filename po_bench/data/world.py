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
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

CONTENT_WORDS: tuple[str, ...] = (
    "apple",
    "river",
    "stone",
    "cloud",
    "forest",
    "candle",
    "mirror",
    "garden",
    "engine",
    "violin",
    "harbor",
    "desert",
    "lantern",
    "meadow",
    "castle",
    "pepper",
    "rocket",
    "falcon",
    "marble",
    "island",
    "thunder",
    "copper",
    "glacier",
    "orchid",
    "compass",
    "saddle",
    "beacon",
    "canyon",
    "walnut",
    "anchor",
    "ember",
    "quartz",
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


def gold_metrics(prompts, policy_samples, sft_samples, weights: RewardWeights = RewardWeights()) -> dict:
    """The gold judge's run-level numbers: mean r* of policy and SFT samples on the same held-out prompts,
    the policy sample's win rate over the SFT sample (ties count half), mean length in words."""
    rp = np.array([gold_reward(p, y, weights) for p, y in zip(prompts, policy_samples)])
    rs = np.array([gold_reward(p, y, weights) for p, y in zip(prompts, sft_samples)])
    wins = (rp > rs).astype(float) + 0.5 * (rp == rs)
    return {
        "gold_reward": float(rp.mean()),
        "gold_reward_sft": float(rs.mean()),
        "win_rate_vs_sft": float(wins.mean()),
        "mean_length_words": float(np.mean([len(y.split()) for y in policy_samples])),
    }


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
    return [
        _prompt(rng, int(rng.integers(spec.min_keywords, spec.max_keywords + 1)), ID_TEMPLATE, held, spec.seed)
        for _ in range(n)
    ]


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
        pairs.append(
            {
                "prompt": p,
                "chosen": chosen,
                "rejected": rejected,
                "gold_margin": (ra - rb) if a_wins else (rb - ra),
                "row": i,
            }
        )
    return pairs


def gold_pairs(
    prompts: Sequence[str], samples: Sequence[Sequence[str]], weights: RewardWeights = RewardWeights()
) -> list[dict]:
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

# "list" builds no pairs: one row per prompt with its k rated responses, for listwise losses (label_lists)
LIST_STRATEGY = "list"
PAIR_STRATEGIES = ("best_vs_rest", "adjacent", "best_worst", "all", LIST_STRATEGY)
CURRICULA = ("none", "easy_to_hard")


def rate_samples(
    prompt: str,
    samples: Sequence[str],
    annotator: Annotator,
    rng: np.random.Generator,
    weights: RewardWeights = RewardWeights(),
) -> list[dict]:
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
    return [
        {
            "prompt": prompt,
            "chosen": rated[i]["response"],
            "rejected": rated[j]["response"],
            "gap": rated[i]["rating"] - rated[j]["rating"],
            "gold_margin": rated[i]["gold"] - rated[j]["gold"],
            "row": row,
            "ranks": [i, j],
        }
        for i, j in idx
    ]


def label_ranked(
    prompts: Sequence[str],
    samples: Sequence[Sequence[str]],
    annotator: Annotator,
    seed: int,
    strategy: str,
    curriculum: str = "none",
    weights: RewardWeights = RewardWeights(),
) -> list[dict]:
    """k on-policy samples per prompt -> the annotator's ranking -> pairs by ``strategy``; with
    ``curriculum="easy_to_hard"`` the pairs are sorted by rating gap, largest (easiest) first (Curry-DPO's
    ordering; ties keep prompt order), else they stay in prompt order."""
    if strategy == LIST_STRATEGY:
        if curriculum != "none":
            raise ValueError(f"curriculum {curriculum!r}: rated lists (pair strategy list) have no pair order")
        return label_lists(prompts, samples, annotator, seed, weights)
    rng = np.random.default_rng([seed, 22])
    pairs = []
    for i, (p, ys) in enumerate(zip(prompts, samples)):
        pairs += ranked_pairs(p, rate_samples(p, ys, annotator, rng, weights), strategy, i)
    if curriculum == "easy_to_hard":
        pairs = sorted(pairs, key=lambda d: -d["gap"])
    elif curriculum != "none":
        raise ValueError(f"curriculum {curriculum!r}: allowed {', '.join(CURRICULA)}")
    return pairs


def label_scored(
    prompts: Sequence[str],
    samples: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]],
    strategy: str,
    curriculum: str = "none",
    weights: RewardWeights = RewardWeights(),
) -> list[dict]:
    """k samples per prompt with a labeller's scalar score each (the gold reward, a reward model's, an implicit
    reward) -> a ranking by score (identical responses kept once) -> pairs by ``strategy`` (:func:`ranked_pairs`),
    pairs whose two scores tie dropped (no preference: RLHFlow's rule); ``curriculum`` as :func:`label_ranked`.
    ``gold_margin`` is r*'s difference as for every world pair."""
    if strategy == LIST_STRATEGY or strategy not in PAIR_STRATEGIES:
        raise ValueError(f"pair strategy {strategy!r}: allowed {', '.join(s for s in PAIR_STRATEGIES if s != 'list')}")
    pairs = []
    for i, (p, ys, ss) in enumerate(zip(prompts, samples, scores)):
        seen, rated = set(), []
        for y, sc in zip(ys, ss):
            if y.strip() in seen:
                continue
            seen.add(y.strip())
            rated.append({"response": y, "rating": float(sc), "gold": gold_reward(p, y, weights)})
        rated.sort(key=lambda d: -d["rating"])
        pairs += [q for q in ranked_pairs(p, rated, strategy, i) if q["gap"] > 0]
    if curriculum == "easy_to_hard":
        pairs = sorted(pairs, key=lambda d: -d["gap"])
    elif curriculum != "none":
        raise ValueError(f"curriculum {curriculum!r}: allowed {', '.join(CURRICULA)}")
    return pairs


# ---------------------------------------------------------------------------------------------
# steps: a response as a sequence of clauses with a gold signal per step (Step-DPO), and per token
# ---------------------------------------------------------------------------------------------


def split_steps(response: str) -> list[str]:
    """A response's steps (its "reasoning steps"): each step is a clause that runs up to and including
    the next content word (fillers, then the content word they lead to); fillers after the last content
    word form a final step.  ``" ".join(split_steps(y)) == " ".join(y.split())``."""
    steps: list[str] = []
    cur: list[str] = []
    for t in response.split():
        cur.append(t)
        if t in _CONTENT_SET:
            steps.append(" ".join(cur))
            cur = []
    if cur:
        steps.append(" ".join(cur))
    return steps


def step_ends(response: str) -> list[int]:
    """Where each of :func:`split_steps`'s steps ends in ``response`` (character offsets, one per step):
    ``response[:step_ends(response)[k]]`` holds steps 0..k (TPO's step spans, dataset.steps with lists)."""
    words = [(m.end(), m.group()) for m in re.finditer(r"\S+", response)]
    ends, n = [], 0
    for step in split_steps(response):
        n += len(step.split())
        ends.append(words[n - 1][0])
    return ends


def step_gains(prompt: str, steps: Sequence[str], w: RewardWeights = RewardWeights()) -> list[float]:
    """The gold signal of each step: r*(prompt, prefix + step) - r*(prompt, prefix), the prefix being the
    steps before it.  The gains telescope: their sum is r*(prompt, whole response) (r* of nothing is 0).
    A step that covers a new keyword gains 2/n (+ length); an off-topic word, a repeated content word or
    an immediate repetition makes the gain negative."""
    out, prefix, before = [], [], gold_reward(prompt, "", w)
    for s in steps:
        prefix += s.split()
        after = gold_reward(prompt, " ".join(prefix), w)
        out.append(after - before)
        before = after
    return out


def token_gains(prompt: str, response: str, w: RewardWeights = RewardWeights()) -> list[float]:
    """A token-level gold reward: each word's gain r*(prefix + word) - r*(prefix) (the world's tokenizer is
    word-level, so one word is one token).  Sums to r*(prompt, response)."""
    return step_gains(prompt, response.split(), w)


ERROR_GAIN = 0.0  # a step whose gold gain is below this is erroneous (it lowers r*); at or above, correct


def first_error(gains: Sequence[float], threshold: float = ERROR_GAIN) -> int | None:
    """The index of the first erroneous step (gain < threshold), or None when every step is correct."""
    return next((i for i, g in enumerate(gains) if g < threshold), None)


def step_pairs(
    prompts: Sequence[str],
    samples: Sequence[Sequence[str]],
    continue_fn,
    n_candidates: int,
    weights: RewardWeights = RewardWeights(),
) -> tuple[list[dict], dict]:
    """Step-DPO's data (Lai et al. 2024, arXiv:2406.18629, sec. 3.2) in the world.

    For each prompt, the first sampled response with an erroneous step gives the step-wise pair: the
    first erroneous step k (:func:`first_error` of :func:`step_gains`) is the rejected step, the steps
    before it the shared correct prefix; the policy then continues prompt + prefix ``n_candidates`` times
    (``continue_fn(prompts, n) -> n continuations per prompt``: the SFT policy) and the first continuation
    whose first step is correct (gain >= 0 given the prefix) and differs from the rejected one is the
    chosen step.  A pair: prompt' = prompt + prefix, chosen / rejected = one step each (a leading space,
    as every world completion).  Prompts whose samples have no error, or whose candidates no correct
    step, give no pair (counted)."""
    todo = []  # (row, prompt, prefix steps, rejected step, its gain)
    n_steps, n_err = [], 0
    for i, (p, ys) in enumerate(zip(prompts, samples)):
        found = None
        for y in ys:
            steps = split_steps(y)
            gains = step_gains(p, steps, weights)
            n_steps.append(len(steps))
            k = first_error(gains)
            if k is not None:
                n_err += 1
                if found is None:
                    found = (i, p, steps[:k], steps[k], gains[k])
        if found is not None:
            todo.append(found)
    contexts = [(p + " " + " ".join(prefix)).rstrip() for _, p, prefix, _, _ in todo]
    conts = continue_fn(contexts, n_candidates) if todo else []
    pairs, no_correct = [], 0
    for (i, p, prefix, bad, g_bad), ctx, cands in zip(todo, contexts, conts):
        base = gold_reward(p, " ".join(prefix), weights)
        chosen = None
        for c in cands:
            first = split_steps(c)[:1]
            if not first or first[0] == bad:
                continue
            g = gold_reward(p, " ".join(prefix + [first[0]]), weights) - base
            if g >= ERROR_GAIN:
                chosen = (first[0], g)
                break
        if chosen is None:
            no_correct += 1
            continue
        pairs.append(
            {
                "prompt": ctx,
                "chosen": " " + chosen[0],
                "rejected": " " + bad,
                "gold_margin": chosen[1] - g_bad,
                "row": i,
                "step": len(prefix),
                "source_prompt": p,
            }
        )
    n_resp = len(n_steps)
    stats = {
        "n_pairs": len(pairs),
        "n_prompts": len(prompts),
        "step_pairs_per_prompt": len(pairs) / max(1, len(prompts)),
        "steps_per_response": float(np.mean(n_steps)) if n_steps else 0.0,
        "responses_with_error": n_err / max(1, n_resp),
        "prompts_without_error": len(prompts) - len(todo),
        "prompts_without_correct_step": no_correct,
        "step_candidates": int(n_candidates),
        "mean_error_step": float(np.mean([q["step"] for q in pairs])) if pairs else float("nan"),
    }
    return pairs, stats


# ---------------------------------------------------------------------------------------------
# PUGC (Tan et al. 2025, arXiv:2506.04463): user-generated content as the scorer's reference
# ---------------------------------------------------------------------------------------------

PAIR_SOURCES = ("annotator", "pugc")
DEFAULT_UGC_NOISE = 0.3  # dataset.ugc_noise: the chance the UGC drops each keyword


def user_content(prompt: str, noise: float, rng: np.random.Generator) -> str:
    """A user-generated text on a prompt's topic: its writer knows the topic and mentions every keyword
    (each after a filler, plus 0-2 fillers, in any order); at ``noise`` each keyword is dropped with that
    probability and Poisson(2 * noise) off-topic content words creep in (UGC is not written as an answer)."""
    kws = parse_prompt(prompt)
    pieces = [[str(rng.choice(FILLER_WORDS)), k] for k in kws if rng.random() >= noise]
    others = [c for c in CONTENT_WORDS if c not in kws]
    for _ in range(int(rng.poisson(2.0 * noise))):
        pieces.append([str(rng.choice(FILLER_WORDS)), str(rng.choice(others))])
    for _ in range(int(rng.integers(0, 3))):
        pieces.append([str(rng.choice(FILLER_WORDS))])
    order = rng.permutation(len(pieces))
    toks = [t for i in order for t in pieces[i]] or [str(rng.choice(FILLER_WORDS))]
    return " ".join(toks)


def user_contents(prompts: Sequence[str], noise: float, world_seed: int) -> list[str]:
    """One UGC text per prompt: part of the world (``dataset.seed``), the same for every run seed."""
    rng = np.random.default_rng([world_seed, 31])
    return [user_content(p, noise, rng) for p in prompts]


def reference_score(reference: str, response: str, w: RewardWeights = RewardWeights()) -> float:
    """The reference-guided scorer: r*'s form with the reference's content words standing in for the
    prompt's keywords (what the UGC mentions counts as on-topic, any other content word as off-topic)."""
    parts = reward_parts([t for t in reference.split() if t in _CONTENT_SET], response.split(), w)
    return parts["quality"] + parts["length"] - parts["degeneration"]


def label_pugc(
    prompts: Sequence[str],
    samples: Sequence[Sequence[str]],
    references: Sequence[str],
    annotator: Annotator,
    seed: int,
    strategy: str = "best_worst",
    curriculum: str = "none",
    weights: RewardWeights = RewardWeights(),
) -> list[dict]:
    """PUGC's pairs: k on-policy samples per prompt rated by the annotator's judge *given the UGC as the
    reference* (:func:`reference_score` + the annotator's length bias and Gumbel noise, so the ranking is
    the same Plackett-Luce draw as :func:`rate_samples`, on the reference's reward instead of r*), pairs
    by ``strategy`` (the paper: best vs worst).  ``reference_margin``: the reference score difference.
    The judge's noise is :func:`label_ranked`'s stream: with a noiseless UGC (the reference score is then r*)
    the pairs are exactly the annotator's, so a comparison isolates what the reference changes."""
    rng = np.random.default_rng([seed, 22])
    pairs = []
    for i, (p, ys, ref) in enumerate(zip(prompts, samples, references)):
        seen, rated = set(), []
        for y in ys:
            if y.strip() in seen:
                continue
            seen.add(y.strip())
            s = reference_score(ref, y, weights) + annotator.length_bias * len(y.split())
            noise = annotator.temperature * float(rng.gumbel()) if annotator.temperature > 0 else 0.0
            rated.append({"response": y, "rating": s + noise, "gold": gold_reward(p, y, weights)})
        rated.sort(key=lambda d: -d["rating"])
        for pair in ranked_pairs(p, rated, strategy, i):
            pair["reference_margin"] = reference_score(ref, pair["chosen"], weights) - reference_score(
                ref, pair["rejected"], weights
            )
            pairs.append(pair)
    if curriculum == "easy_to_hard":
        pairs = sorted(pairs, key=lambda d: -d["gap"])
    elif curriculum != "none":
        raise ValueError(f"curriculum {curriculum!r}: allowed {', '.join(CURRICULA)}")
    return pairs


# ---------------------------------------------------------------------------------------------
# More is Less (Wang et al. 2025, arXiv:2504.02193): chosen and rejected from different models
# ---------------------------------------------------------------------------------------------

PAIR_MODELS = ("single", "multi", "strong_chosen")
STRONG_STYLE = "very"  # the strong model's house style: it opens every answer with this word (r* ignores it)


def strong_sft_examples(spec: WorldSpec) -> list[dict]:
    """SFT data of a stronger "model family": a better demonstrator (covers each keyword with probability
    0.9, Poisson 0.3 off-topic words, 5% repetition bursts) with a style of its own, every answer opening
    with :data:`STRONG_STYLE`: a superficial cue that tells its answers from the target model's."""

    strong = replace(spec, demo_cover_prob=0.9, demo_offtopic_rate=0.3, demo_degenerate_prob=0.05)
    rng = np.random.default_rng([spec.seed, 12])
    out = []
    for p in make_prompts(spec, "sft"):
        y = demonstrate(strong, p, rng)
        out.append({"prompt": p, "completion": " " + (y if y.split()[0] == STRONG_STYLE else f"{STRONG_STYLE} {y}")})
    return out


def label_multi_model(
    prompts: Sequence[str],
    own: Sequence[Sequence[str]],
    strong: Sequence[Sequence[str]],
    annotator: Annotator,
    seed: int,
    mode: str,
    weights: RewardWeights = RewardWeights(),
    ranking: dict | None = None,
) -> list[dict]:
    """Pairs from two models' samples on the same prompts (``own``: the target SFT policy's, ``strong``: the
    stronger model's).  ``strong_chosen``: the strong model's sample is chosen, the target's own sample
    rejected, no annotator (the paper's GPT-4o-chosen / self-rejected data); ``multi``: a multi-model pool
    (the first sample of each model; with ``ranking``, all k of each) labelled by the annotator as the
    single-model data is.  Every pair records ``chosen_model`` / ``rejected_model`` (own | strong)."""
    if mode == "strong_chosen":
        pairs = []
        for i, (p, a, b) in enumerate(zip(prompts, own, strong)):
            if a[0].strip() == b[0].strip():
                continue
            pairs.append(
                {
                    "prompt": p,
                    "chosen": b[0],
                    "rejected": a[0],
                    "row": i,
                    "gold_margin": gold_reward(p, b[0], weights) - gold_reward(p, a[0], weights),
                }
            )
    elif mode == "multi" and ranking:
        pool = [list(a) + list(b) for a, b in zip(own, strong)]
        pairs = label_ranked(prompts, pool, annotator, seed, ranking["pair_strategy"], ranking["curriculum"], weights)
    elif mode == "multi":
        pairs = label_pairs(prompts, [[a[0], b[0]] for a, b in zip(own, strong)], annotator, seed, weights)
    else:
        raise ValueError(f"pair models {mode!r}: allowed {', '.join(PAIR_MODELS[1:])} (single: label_pairs)")
    for pair in pairs:
        theirs = {y.strip() for y in strong[pair["row"]]}
        for side in ("chosen", "rejected"):
            pair[f"{side}_model"] = "strong" if pair[side].strip() in theirs else "own"
    return pairs


def pair_feature_accuracy(pairs: Sequence[dict], feature) -> float:
    """How well a trivial feature of a response alone tells chosen from rejected: the share of pairs whose
    chosen response has the larger value (ties count half).  0.5: no signal; 1.0: perfectly separable."""
    if not pairs:
        return float("nan")
    a = np.array([float(feature(p["chosen"])) for p in pairs])
    b = np.array([float(feature(p["rejected"])) for p in pairs])
    return float(np.mean((a > b) + 0.5 * (a == b)))


def starts_with_style(response: str) -> bool:
    toks = response.split()
    return bool(toks) and toks[0] == STRONG_STYLE


def label_lists(
    prompts: Sequence[str],
    samples: Sequence[Sequence[str]],
    annotator: Annotator,
    seed: int,
    weights: RewardWeights = RewardWeights(),
    steps: bool = False,
) -> list[dict]:
    """k on-policy samples per prompt -> one listwise row per prompt: ``responses`` best first by the
    annotator's rating (:func:`rate_samples`, the same draw as the pair strategies'), their ``scores``
    (the ratings, higher is better), ``ranks`` (0 = best), ``gold`` (r* of each) and ``row``.  A prompt
    whose samples are all identical carries no preference and is skipped (counted by the caller).
    ``steps``: each row also carries ``step_ends``, every response's :func:`step_ends` (TPO's step spans)."""
    rng = np.random.default_rng([seed, 22])
    rows = []
    for i, (p, ys) in enumerate(zip(prompts, samples)):
        rated = rate_samples(p, ys, annotator, rng, weights)
        if len(rated) < 2:
            continue
        rows.append(
            {
                "prompt": p,
                "responses": [d["response"] for d in rated],
                "scores": [d["rating"] for d in rated],
                "ranks": list(range(len(rated))),
                "gold": [d["gold"] for d in rated],
                "row": i,
            }
        )
        if steps:
            rows[-1]["step_ends"] = [step_ends(y) for y in rows[-1]["responses"]]
    return rows

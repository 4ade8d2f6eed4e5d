"""po-bench's listwise preference losses: pure functions over per-response statistics of k responses.

One training example is one prompt with k responses and their annotator scores (``dataset.pair_strategy=list``:
the world rates k on-policy samples, po_bench/data/world.py ``label_lists``; files: the ``ranked`` format,
formats.to_lists).  The trainer (``training/trl/listwise.py``'s ListwiseTrainer, on TRL's DPOTrainer) computes every
response's summed completion log-probs under the policy and the reference ([B, k]) and hands a
:class:`ListStats` to the function named by ``loss.function``; the function returns :class:`ListOutput`.

Adding a listwise loss = one function + one :data:`LISTWISE` entry + one yaml (``backend: listwise``) + a
formula test in ``tests/test_training_listwise.py``.  A loss that needs a per-response quantity besides the scores
(e.g. step rewards of a tree of responses) names the row fields in ``ListwiseSpec.extras``: the trainer
collates them into ``ListStats.extra[name]`` ([B, k] floats).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from po_bench.training.losses import LazyModule, check_arg_names, fmt_range, in_range

torch = LazyModule("torch")  # lazy: torch (~1 s): not for validation or planning (they read LISTWISE)
F = LazyModule("torch.nn.functional")


@dataclass
class ListStats:
    logps: torch.Tensor  # [B, k] policy: sum of completion-token log-probs of each response
    ref_logps: torch.Tensor | None  # [B, k] the reference (or ADPO's anchor); None for reference-free losses
    lengths: torch.Tensor  # [B, k] completion tokens
    scores: torch.Tensor  # [B, k] annotator scores, higher is better (rows come best first)
    mask: torch.Tensor  # [B, k] bool: True for a real response, False for padding (lists of fewer than k)
    extra: dict = field(default_factory=dict)  # name -> [B, k] per-response tensors (ListwiseSpec.extras)

    @property
    def logratio(self) -> torch.Tensor:
        """log pi/ref of each response (0 at padded entries)."""
        return torch.where(self.mask, self.logps - self.ref_logps, torch.zeros_like(self.logps))


@dataclass
class ListOutput:
    losses: torch.Tensor  # [B] one loss per list
    rewards: torch.Tensor  # [B, k] the implicit rewards the trainer logs (detached)
    state: dict | None = None  # as losses.LossOutput: a running state the trainer keeps between steps
    logs: dict | None = None


def win_rate_labels(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each response's share of the other responses of its list it beats on the scores (a tie counts
    1/2): psi_i = mean_{j != i} [1(s_i > s_j) + 1/2 * 1(s_i = s_j)], in [0, 1] (1 for the best, 0 for
    the worst).  LiPO's label construction (the average win rate against the list's other responses),
    here with the annotator's drawn ranking as the judge.  0 at padded entries."""
    s_i, s_j = scores.unsqueeze(-1), scores.unsqueeze(-2)
    valid = (
        mask.unsqueeze(-1) & mask.unsqueeze(-2) & ~torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    )
    wins = ((s_i > s_j).to(scores.dtype) + 0.5 * (s_i == s_j).to(scores.dtype)) * valid
    n_other = (mask.sum(-1, keepdim=True) - 1).clamp(min=1).to(scores.dtype)
    return torch.where(mask, wins.sum(-1) / n_other, torch.zeros_like(scores))


def rank_positions(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1-based positions of the entries of each list sorted by ``values``, highest first (ties: the
    earlier entry first; padded entries after every real one).  No gradient."""
    v = values.detach().masked_fill(~mask, float("-inf"))
    order = torch.sort(v, dim=-1, descending=True, stable=True).indices
    pos = torch.empty_like(order)
    ar = torch.arange(1, v.shape[-1] + 1, device=v.device).expand_as(order)
    pos.scatter_(-1, order, ar)
    return pos.to(values.dtype)


def _labels(s: ListStats, label: str) -> torch.Tensor:
    if label == "win_rate":
        return win_rate_labels(s.scores, s.mask)
    if label == "score":
        return torch.where(s.mask, s.scores, torch.zeros_like(s.scores))
    raise ValueError(f"label={label!r}: allowed win_rate, score")


def lipo(s: ListStats, beta: float, label: str) -> ListOutput:
    """LiPO-lambda (Liu et al. 2024, "LiPO: Listwise Preference Optimization through Learning-to-Rank",
    arXiv:2402.01878): the LambdaLoss over every pair of the list whose labels differ,

        L = sum_{psi_i > psi_j} Delta_ij * log(1 + exp(-(s_i - s_j))),   s = beta * log pi/ref
        Delta_ij = |G_i - G_j| * |1/D(tau_i) - 1/D(tau_j)|,  G = 2^psi - 1,  D(tau) = log(1 + tau)

    tau_i the 1-based rank of response i in the list sorted by the policy's rewards s (no gradient through
    it; ties in the order the list comes, best label first).  psi: ``label=win_rate`` (LiPO's average win
    rate against the list, :func:`win_rate_labels`) or ``label=score`` (the raw annotator scores)."""
    psi = _labels(s, label)
    r = beta * s.logratio
    tau = rank_positions(r, s.mask)
    G = torch.pow(2.0, psi) - 1
    D = torch.log1p(tau)
    delta = (G.unsqueeze(-1) - G.unsqueeze(-2)).abs() * (1 / D.unsqueeze(-1) - 1 / D.unsqueeze(-2)).abs()
    pairs = (psi.unsqueeze(-1) > psi.unsqueeze(-2)) & s.mask.unsqueeze(-1) & s.mask.unsqueeze(-2)
    per_pair = delta * F.softplus(-(r.unsqueeze(-1) - r.unsqueeze(-2)))
    losses = (per_pair * pairs).sum((-1, -2))
    return ListOutput(losses, r.detach())


def irpo(s: ListStats, beta: float, label: str, position: str) -> ListOutput:
    """IRPO (Wu et al. 2025, "In-context Ranking Preference Optimization", arXiv:2504.15477), as the
    authors' released code computes it (its ``rdpo_loss``; the paper's equations were not available here):
    each response i of the list is preferred over all the others with the positional probability

        p_i = sig(-log[ 1/(n-1) * sum_{j != i} exp(beta * (r_j - r_i)) ]),   r = log pi/ref

    and the loss aggregates them with DCG weights,  L = -1/n * sum_i w_i log p_i,
    w_i = (2^psi_i - 1) / log2(1 + pos_i).  psi: ``label`` as for LiPO (win_rate | score); pos_i the
    1-based position of response i in the list: ``position=policy`` the list ranked by the policy's
    rewards r (no gradient; the IRPO list is the one the model ranks), ``position=label`` the annotator's
    order.  Assumed, not from the paper: the world's k sampled responses stand for IRPO's in-context list
    items, and the sum excludes j = i exactly (the authors' code subtracts 100 from the diagonal)."""
    psi = _labels(s, label)
    r = s.logratio
    if position == "policy":
        pos = rank_positions(r, s.mask)
    elif position == "label":
        pos = rank_positions(s.scores, s.mask)
    else:
        raise ValueError(f"position={position!r}: allowed policy, label")
    w = (torch.pow(2.0, psi) - 1) / torch.log2(1 + pos)
    k = r.shape[-1]
    other = s.mask.unsqueeze(-2) & ~torch.eye(k, dtype=torch.bool, device=r.device)  # [B, i, j]: j a real other
    diffs = (beta * (r.unsqueeze(-2) - r.unsqueeze(-1))).masked_fill(~other, float("-inf"))  # [B, i, j]: r_j - r_i
    n = s.mask.sum(-1, keepdim=True).to(r.dtype)
    lse = torch.logsumexp(diffs, dim=-1) - torch.log((n - 1).clamp(min=1))
    per_item = torch.where(s.mask, w * F.logsigmoid(-lse), torch.zeros_like(r))
    losses = -per_item.sum(-1) / n.squeeze(-1)
    return ListOutput(losses, beta * r.detach())


def adpo_list(s: ListStats, beta: float, tau: float) -> ListOutput:
    """ADPO, listwise (Wang 2025, "ADPO: Anchored Direct Preference Optimization", arXiv:2510.18913):
    KL(q || softmax((l - l_anc) / tau_anc)) over the list's k responses, beta = 1/tau_anc, l the summed
    log-probs, l_anc the anchor's (``ListStats.ref_logps``: the reference model for ``anchor=fixed``, a
    moving average of the policy for ``anchor=dynamic``, kept by the trainer).  Soft target
    q = softmax(scores / tau).  Zero where the anchored policy distribution equals q; over a pair with
    scores (1, 0) it is the pairwise ``adpo`` with q = sig(1/tau)."""
    logits = (beta * s.logratio).masked_fill(~s.mask, float("-inf"))
    log_p = torch.log_softmax(logits, dim=-1)
    log_q = torch.log_softmax((s.scores / tau).masked_fill(~s.mask, float("-inf")), dim=-1)
    q = log_q.exp()
    kl = torch.where(s.mask, q * (log_q - log_p), torch.zeros_like(log_p))
    return ListOutput(kl.sum(-1), beta * s.logratio.detach())


def adaptive_step_weights(hidden: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """TPO's adaptive step weights (the authors' code, loss.py ``compute_step_weights``): for step k of
    response n, w_nk = 1 + cos(e_nk, e_0k), e the mean last-layer hidden state of the step's tokens, response
    0 the list's best (rows come best first; its own weights are 2).  A step that either response lacks
    gets weight 0.  ``hidden`` [B, k, S, H], ``step_mask`` [B, k, S] bool.  Not detached (as the code)."""
    cos = F.cosine_similarity(hidden, hidden[:, :1].expand_as(hidden), dim=-1)
    both = step_mask & step_mask[:, :1]
    return torch.where(both, 1 + cos, torch.zeros_like(cos))


def tpo(s: ListStats, beta: float, label: str, pair_weight: str) -> ListOutput:
    """TPO (Liao et al. 2024, "TPO: Aligning Large Language Models with Multi-branch & Multi-step
    Preference Trees", arXiv:2410.12854), as the authors' released code computes its reward (loss.py,
    ``compute_step_weights`` / ``compute_weighted_logits``): the adaptive step reward of response n is the
    weighted mean over its steps k of the step's mean token log-ratio,

        rhat_n = sum_k w_nk * m_nk / sum_k w_nk,   m_nk = mean_{t in step k} log pi/ref(y_t),
        w_nk = 1 + cos(e_nk, e_0k)   (:func:`adaptive_step_weights`; 0 where a step is missing)

    and the list is ranked on r = beta * rhat.  ``pair_weight=uniform``: the code's ``lambda_rank_loss``,
    L = 1/(n(n-1)) * sum_{i != j} -log sig((r_i - r_j) * sign(v_i - v_j)) (equal labels give log 2);
    ``pair_weight=lambda``: LambdaLoss weights as LiPO-lambda (:func:`lipo`),
    L = sum_{v_i > v_j} Delta_ij * -log sig(r_i - r_j), Delta_ij = |G_i - G_j| * |1/D(tau_i) - 1/D(tau_j)|.
    v: ``label`` (score: the annotator's ratings, as the code's score_list; win_rate as LiPO).  Per-step
    inputs come from the trainer (``ListwiseSpec.steps``): ``extra['step_logratio']`` (m) and
    ``extra['step_hidden']`` (e), ``extra['step_mask']``, shaped [B, k, S(, H)]."""
    v = _labels(s, label)
    m = s.extra["step_logratio"]
    w = adaptive_step_weights(s.extra["step_hidden"], s.extra["step_mask"].bool())
    tot = w.sum(-1)
    rhat = torch.where(tot > 0, (w * m).sum(-1) / tot.clamp(min=1e-12), torch.zeros_like(tot))
    r = torch.where(s.mask, beta * rhat, torch.zeros_like(rhat))
    both = s.mask.unsqueeze(-1) & s.mask.unsqueeze(-2)
    diff = r.unsqueeze(-1) - r.unsqueeze(-2)  # [B, i, j]: r_i - r_j
    if pair_weight == "uniform":
        k = r.shape[-1]
        off = both & ~torch.eye(k, dtype=torch.bool, device=r.device)
        sign = torch.sign(v.unsqueeze(-1) - v.unsqueeze(-2))
        n = s.mask.sum(-1).to(r.dtype)
        losses = (-F.logsigmoid(diff * sign) * off).sum((-1, -2)) / (n * (n - 1)).clamp(min=1)
    elif pair_weight == "lambda":
        tau = rank_positions(r, s.mask)
        G, D = torch.pow(2.0, v) - 1, torch.log1p(tau)
        delta = (G.unsqueeze(-1) - G.unsqueeze(-2)).abs() * (1 / D.unsqueeze(-1) - 1 / D.unsqueeze(-2)).abs()
        pairs = (v.unsqueeze(-1) > v.unsqueeze(-2)) & both
        losses = (delta * F.softplus(-diff) * pairs).sum((-1, -2))
    else:
        raise ValueError(f"pair_weight={pair_weight!r}: allowed uniform, lambda")
    return ListOutput(losses, r.detach())


@dataclass(frozen=True)
class ListwiseSpec:
    fn: Callable[..., ListOutput]
    needs_ref: bool = True
    # numeric hyperparameter -> (low, high, low_inclusive, high_inclusive); None = unbounded
    ranges: dict = field(default_factory=dict)
    # string hyperparameter -> allowed values
    choices: dict = field(default_factory=dict)
    # loss.args the trainer reads itself (not passed to fn): name -> allowed values (tuple of str) or a range
    trainer_args: dict = field(default_factory=dict)
    # per-response row fields the trainer collates into ListStats.extra (e.g. step rewards)
    extras: tuple = ()
    # seed -> initial running state (as losses.LossSpec.init_state): passed in, returned updated in ListOutput.state
    init_state: Callable[[int], dict] | None = None
    # per-step inputs (TPO): rows carry ``step_ends`` (each response's step end offsets, in characters); the
    # trainer runs the reference per batch and fills ListStats.extra step_logratio / step_hidden / step_mask
    steps: bool = False


LABELS = ("win_rate", "score")
ANCHORS = ("fixed", "dynamic")
LISTWISE: dict[str, ListwiseSpec] = {
    "lipo": ListwiseSpec(lipo, choices={"label": LABELS}),
    "irpo": ListwiseSpec(irpo, choices={"label": LABELS, "position": ("policy", "label")}),
    "adpo_list": ListwiseSpec(
        adpo_list,
        ranges={"tau": (0.0, None, False, False)},
        trainer_args={"anchor": ANCHORS, "anchor_rate": (0.0, 1.0, False, True)},
    ),
    "tpo": ListwiseSpec(tpo, choices={"label": LABELS, "pair_weight": ("lambda", "uniform")}, steps=True),
}


def step_inputs(function: str) -> bool:
    """Whether the loss reads per-step inputs (TPO): step spans in the rows, the reference run per batch."""
    return function in LISTWISE and LISTWISE[function].steps


def moving_anchor(function: str, args: dict) -> bool:
    """Whether the loss's reference moves during training (ADPO's dynamic anchor): nothing to precompute."""
    return function in LISTWISE and args.get("anchor") == "dynamic"


def check_hparams(function: str, hparams: dict) -> None:
    """Raise ValueError naming the hyperparameter and what is allowed (as losses.check_hparams)."""

    if function not in LISTWISE:
        raise ValueError(f"loss.function={function!r}: allowed listwise functions {', '.join(sorted(LISTWISE))}")
    spec = LISTWISE[function]
    state = tuple(spec.init_state(0)) if spec.init_state else ()
    check_arg_names(function, spec.fn, state, hparams, tuple(spec.trainer_args))
    allowed = {**spec.choices, **{k: v for k, v in spec.trainer_args.items() if isinstance(v[0], str)}}
    for k, values in allowed.items():
        if hparams[k] not in values:
            raise ValueError(f"loss.args.{k}={hparams[k]!r} for {function}: allowed {', '.join(values)}")
    ranges = {**spec.ranges, **{k: v for k, v in spec.trainer_args.items() if not isinstance(v[0], str)}}
    for k, (lo, hi, lo_inc, hi_inc) in ranges.items():
        v = hparams[k]
        if (
            not isinstance(v, (int, float))
            or isinstance(v, bool)
            or not math.isfinite(float(v))
            or not in_range(float(v), lo, hi, lo_inc, hi_inc)
        ):
            raise ValueError(f"loss.args.{k}={v} for {function}: allowed {fmt_range(lo, hi, lo_inc, hi_inc)}")


def fn_args(function: str, hparams: dict) -> dict:
    """The loss arguments the pure function takes (the trainer's own ones removed)."""
    return {k: v for k, v in hparams.items() if k not in LISTWISE[function].trainer_args}

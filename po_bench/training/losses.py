"""po-bench's own preference losses: small pure functions over per-sequence statistics.

Each function takes :class:`PairStats` (policy and reference log-probs of the chosen and rejected
completions, summed over completion tokens, and their token counts) plus its hyperparameters, and
returns :class:`LossOutput`: per-example losses and the implicit rewards it logs.  They are called by
the trainers of ``training/trl/dpo.py`` and ``training/trl/unpaired.py`` (subclasses of TRL's DPOTrainer
and KTOTrainer; the Method record, ``training/methods.py``, says which) and tested against
transcriptions of the papers' equations in ``tests/test_losses.py``.

TRL-backed methods (dpo, ipo, simpo, ...) are not here: their yaml maps them onto a TRL trainer
and loss_type.  Adding a loss = one function + one ``LOSSES`` entry + one yaml + one test row.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


class LazyModule:
    """A module imported on its first attribute access.  The loss registries (names, ranges, signatures)
    are read by config validation and run planning, which compute nothing and so need no torch."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str):
        self._name, self._module = name, None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


torch = LazyModule("torch")  # lazy: torch (~1 s): not for validation or planning (they read the registries)
F = LazyModule("torch.nn.functional")


@dataclass
class PairStats:
    chosen_logps: torch.Tensor  # sum of completion-token log-probs under the policy
    rejected_logps: torch.Tensor
    chosen_len: torch.Tensor  # completion tokens
    rejected_len: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None

    @property
    def chosen_logratio(self) -> torch.Tensor:
        return self.chosen_logps - self.ref_chosen_logps

    @property
    def rejected_logratio(self) -> torch.Tensor:
        return self.rejected_logps - self.ref_rejected_logps

    @property
    def chosen_avg(self) -> torch.Tensor:
        return self.chosen_logps / self.chosen_len.clamp(min=1)

    @property
    def rejected_avg(self) -> torch.Tensor:
        return self.rejected_logps / self.rejected_len.clamp(min=1)


@dataclass
class LossOutput:
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    # losses that carry state across steps (LossSpec.init_state): the updated state, which the trainer
    # keeps and hands back at the next training step; and scalars to log (name -> float)
    state: dict | None = None
    logs: dict | None = None


def cdpo(s: PairStats, beta: float, eps: float) -> LossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): DPO with label
    smoothing eps, L = -(1-eps) log sig(beta*h) - eps log sig(-beta*h), h the log-ratio margin."""
    h = s.chosen_logratio - s.rejected_logratio
    losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    return LossOutput(losses, beta * s.chosen_logratio.detach(), beta * s.rejected_logratio.detach())


def r_dpo(s: PairStats, beta: float, alpha: float) -> LossOutput:
    """R-DPO (Park et al. 2024, arXiv:2403.19159): DPO with an explicit length regulariser,
    L = -log sig(beta*h + alpha*(|y_w| - |y_l|)); a longer chosen answer earns less credit."""
    h = s.chosen_logratio - s.rejected_logratio
    losses = -F.logsigmoid(beta * h + alpha * (s.chosen_len - s.rejected_len))
    return LossOutput(losses, beta * s.chosen_logratio.detach(), beta * s.rejected_logratio.detach())


def rrhf(s: PairStats, beta: float, lam: float) -> LossOutput:
    """RRHF (Yuan et al. 2023, arXiv:2304.05302), two responses: ranking hinge on length-normalised
    log-probs plus an SFT term on the best response,
    L = max(0, p_l - p_w) - lam * p_w, with p = log pi(y|x)/|y| (token-mean NLL, as RRHF's code)."""
    pw, pl = s.chosen_avg, s.rejected_avg
    losses = torch.relu(pl - pw) - lam * pw
    return LossOutput(losses, beta * pw.detach(), beta * pl.detach())


def slic_hf(s: PairStats, beta: float, delta: float, lam: float) -> LossOutput:
    """SLiC-HF (Zhao et al. 2023, arXiv:2305.10425), as the DPO survey's eq. 9 writes it:
    L = max(0, delta - log pi(y_w|x) + log pi(y_l|x)) - lam * log pi(y_w|x)."""
    losses = torch.relu(delta - s.chosen_logps + s.rejected_logps) - lam * s.chosen_logps
    return LossOutput(losses, beta * s.chosen_avg.detach(), beta * s.rejected_avg.detach())


def asft(s: PairStats, beta: float, lam: float) -> LossOutput:
    """ASFT (Wang et al. 2024, arXiv:2409.10571): SFT plus an absolute-likelihood alignment term on
    each response, with ORPO's odds of the length-normalised likelihood P = exp(log pi / |y|):
    L = -log pi(y_w|x)/|y_w| + lam * [-log sig(log odds(y_w)) - log sig(-log odds(y_l))].
    Since sig(log odds(P)) = P, the alignment term is -log P_w - log(1 - P_l).  No reference."""
    pw, pl = s.chosen_avg, s.rejected_avg
    log_odds_w = pw - torch.log1p(-torch.exp(pw).clamp(max=1 - 1e-6))
    log_odds_l = pl - torch.log1p(-torch.exp(pl).clamp(max=1 - 1e-6))
    losses = -pw + lam * (-F.logsigmoid(log_odds_w) - F.logsigmoid(-log_odds_l))
    return LossOutput(losses, beta * pw.detach(), beta * pl.detach())


def adpo(s: PairStats, beta: float, q: float) -> LossOutput:
    """ADPO, pairwise anchored Soft-DPO (Wang 2025, "ADPO: Anchored Direct Preference
    Optimization", arXiv:2510.18913): KL(q || softmax((l - l_ref) / tau_anc)) over the two
    completions, with beta = 1/tau_anc and the soft target q = (q, 1-q) on (y_w, y_l).
    Over a pair the softmax is sig(beta*h) for y_w, so
    L = q log q + (1-q) log(1-q) - q log sig(beta*h) - (1-q) log sig(-beta*h) >= 0, zero where
    the policy's anchored preference equals q.  With a constant q its gradient is cDPO's with
    eps = 1-q (the constant is the target's negative entropy); q = 1 is DPO."""
    h = s.chosen_logratio - s.rejected_logratio
    neg_entropy = sum(p * torch.log(torch.tensor(p, dtype=h.dtype)) for p in (q, 1 - q) if p > 0)
    losses = neg_entropy - q * F.logsigmoid(beta * h) - (1 - q) * F.logsigmoid(-beta * h)
    return LossOutput(losses, beta * s.chosen_logratio.detach(), beta * s.rejected_logratio.detach())


def _dpo(s: PairStats, beta: float) -> torch.Tensor:
    return -F.logsigmoid(beta * (s.chosen_logratio - s.rejected_logratio))


def _bco(s: PairStats, beta: float, delta) -> torch.Tensor:
    rw, rl = beta * s.chosen_logratio, beta * s.rejected_logratio
    return -F.logsigmoid(rw - delta) - F.logsigmoid(-(rl - delta))


def _rewards(s: PairStats, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    return beta * s.chosen_logratio.detach(), beta * s.rejected_logratio.detach()


def rpo(s: PairStats, beta: float, alpha: float) -> LossOutput:
    """RPO (Pang et al. 2024, "Iterative Reasoning Preference Optimization", arXiv:2404.19733, eq. 1):
    L = -log sig(beta*h) - alpha * log pi(y_w|x) / |y_w|, the NLL of each chosen completion normalised by
    its own length (TRL's "sft" term is instead one token mean over the whole batch)."""
    losses = _dpo(s, beta) - alpha * s.chosen_avg
    return LossOutput(losses, *_rewards(s, beta))


def flex_dpo(s: PairStats, beta: float, w_chosen: float, w_rejected: float) -> LossOutput:
    """DPO with separate coefficients on the chosen and rejected terms, the regulariser Yan et al. propose
    against the 3D-properties ("3D-Properties: Identifying Challenges in DPO and Charting a Path Forward",
    ICLR 2025: the rejected likelihood drops drastically and drags the chosen one down):
    L = -log sig(beta_w * logratio_w - beta_l * logratio_l), beta_w = w_chosen * beta, beta_l = w_rejected * beta.
    A smaller beta_l scales the push on the rejected response down (d L / d logratio_l = beta_l sig(-z)).
    Reconstructed from the paper's abstract and a summary of its method ("Flex-DPO", separate betas); its
    exact schedule for the two coefficients was not available to us (docs/diagnostics.md).  w_chosen =
    w_rejected = 1 is DPO."""
    bw, bl = beta * w_chosen, beta * w_rejected
    losses = -F.logsigmoid(bw * s.chosen_logratio - bl * s.rejected_logratio)
    return LossOutput(losses, bw * s.chosen_logratio.detach(), bl * s.rejected_logratio.detach())


def bco_pair(s: PairStats, beta: float, delta: float) -> LossOutput:
    """BCO, paired form (Jung et al. 2024, arXiv:2404.04656, eq. 7): binary cross-entropy on the
    implicit rewards r = beta*log pi/ref shifted by delta, the running mean of the rewards
    (:func:`running_mean_update`, kept by the trainer across steps; TRL 1.16 dropped it):
    L = -log sig(r_w - delta) - log sig(-(r_l - delta))."""
    return LossOutput(_bco(s, beta, delta), *_rewards(s, beta))


def mpo(s: PairStats, beta: float, w_pref: float, w_bco: float, w_sft: float, delta: float) -> LossOutput:
    """MPO (Wang et al. 2024, arXiv:2411.10442, eqs. 2-5): w_p * DPO + w_q * BCO (with the running-mean
    shift delta) + w_g * SFT, the SFT term -log pi(y_w|x)/|y_w| per example."""
    losses = w_pref * _dpo(s, beta) + w_bco * _bco(s, beta, delta) - w_sft * s.chosen_avg
    return LossOutput(losses, *_rewards(s, beta))


def fdpo_alpha(s: PairStats, beta: float, alpha: float) -> LossOutput:
    """f-DPO with the alpha-divergence (Wang et al. 2023, arXiv:2309.16240, Table 1 and eq. 8), in the
    paper's parameterisation: f'(u) = (1 - u^(-alpha)) / alpha, u = pi/ref, and
    L = -log sig(beta * (f'(u_w) - f'(u_l))).  (TRL's f_alpha_divergence_coef is 1 - alpha.)
    alpha -> 0 is reverse KL (DPO), alpha = 1 forward KL."""

    def fprime(logratio):
        return (1 - torch.exp(-alpha * logratio)) / alpha

    losses = -F.logsigmoid(beta * (fprime(s.chosen_logratio) - fprime(s.rejected_logratio)))
    return LossOutput(losses, *_rewards(s, beta))


def running_mean_update(mean: float, count: int, batch_rewards: torch.Tensor) -> tuple[float, int]:
    """BCO's reward shift delta: the running mean over steps of each batch's mean reward (the chosen
    and rejected rewards together), updated before the step's loss, as BCO's code (TRL's
    RunningMoments with one value per step).  Returns (new mean, new count)."""
    x = float(batch_rewards.detach().double().mean())
    count += 1
    return mean + (x - mean) / count, count


def gaussian_keep_mask(margins: torch.Tensor, center: float, sigma: float, rho: float, seed: int) -> torch.Tensor:
    """beta-DPO's data filter: draw floor(rho * B) of the B pairs without replacement with probability
    proportional to p(M_i) = exp(-(M_i - M_0)^2 / (2 sigma^2)) (the Gaussian density; its constant
    cancels).  Deterministic in ``seed`` (a CPU generator: the result does not depend on the device).
    sigma <= 1e-12 (every margin equal, e.g. the first step from policy = reference): uniform weights."""
    m = margins.detach().double().cpu().reshape(-1)
    n = m.numel()
    k = max(1, min(n, int(rho * n + 1e-9)))  # the authors' int(B * (1 - filter ratio))
    w = torch.ones_like(m) if sigma <= 1e-12 else torch.exp(-0.5 * ((m - center) / sigma) ** 2)
    if not torch.isfinite(w).all() or float(w.sum()) <= 0:
        w = torch.ones_like(m)
    w = w.clamp(min=1e-300)  # a far outlier keeps a tiny chance, so k draws without replacement always exist
    idx = torch.multinomial(w, k, replacement=False, generator=torch.Generator().manual_seed(int(seed)))
    keep = torch.zeros(n, dtype=torch.bool)
    keep[idx] = True
    return keep.to(margins.device)


def beta_dpo(
    s: PairStats,
    beta: float,
    alpha: float,
    rho: float,
    momentum: float,
    margin_mean: float,
    margin_std: float,
    step: int,
    seed: int,
) -> LossOutput:
    """beta-DPO (Wu et al. 2024, "beta-DPO: Direct Preference Optimization with Dynamic beta",
    arXiv:2407.08639), batch level, with its beta-guided data filtering.  Pure: the running statistics
    come in and the updated ones go out (``LossOutput.state``); the trainer keeps them across steps.

    M_i = h_i = log pi/ref(y_w) - log pi/ref(y_l)  (the authors' code: the margin without beta_0)
    M_0 <- m M_0 + (1-m) mean_batch(M_i),  sigma <- m sigma + (1-m) std_batch(M_i)   (before the loss)
    keep rho*B pairs drawn without replacement with p(M_i) ~ exp(-(M_i - M_0)^2 / (2 sigma^2))
    beta_batch = beta_0 [1 + alpha (mean_kept(M_i) - M_0)], clamped at 1e-3, no gradient through it
    L = mean over kept pairs of -log sig(beta_batch * h_i)

    ``losses`` is per pair: 0 for a filtered pair, B/|kept| times the DPO loss for a kept one, so that
    its mean (what the trainer minimises) is the mean over the kept pairs.  The draw is seeded by
    ``seed + step`` (deterministic, resumable).  Initial state: M_0 = sigma = 0 (the authors' code)."""
    h = s.chosen_logratio - s.rejected_logratio
    hd = h.detach().double()
    batch_std = float(hd.std()) if hd.numel() > 1 else 0.0
    m0 = momentum * margin_mean + (1 - momentum) * float(hd.mean())
    sd = momentum * margin_std + (1 - momentum) * batch_std
    keep = gaussian_keep_mask(hd, m0, sd, rho, seed + step)
    beta_b = max(1e-3, beta * (1 + alpha * (float(hd[keep].mean()) - m0)))
    kept = keep.to(h.dtype)
    losses = -F.logsigmoid(beta_b * h) * kept * (h.numel() / kept.sum())
    return LossOutput(
        losses,
        *_rewards(s, beta),
        state={"margin_mean": m0, "margin_std": sd, "step": step + 1, "seed": seed},
        logs={
            "beta_dpo/beta": beta_b,
            "beta_dpo/margin_mean": m0,
            "beta_dpo/margin_std": sd,
            "beta_dpo/kept": float(keep.sum()),
        },
    )


def beta_dpo_init(seed: int) -> dict:
    return {"margin_mean": 0.0, "margin_std": 0.0, "step": 0, "seed": int(seed)}


# ---- per-pair weights from a score computed before training (LossSpec.per_pair) -------------------


def madpo_weight(rm_margin, c_max: float, c_min: float, lam: float, tau: float) -> torch.Tensor:
    """MADPO's instance weight (Rho 2025, arXiv:2510.05342; the authors' MADPOLoss.coef/forward) from the
    reward model's margin h = r(x, y_w) - r(x, y_l):
    c(h) = c_min + (c_max - c_min) / (1 + (c_max - 1)/(1 - c_min) * exp(lam (|h| - tau)))   (c(tau) = 1)
    w(h) = sig(c(h) h) / sig(h) for h > -tau, 1 otherwise.
    For |h| < tau (hard pairs) c > 1 and w > 1 where h > 0; for |h| > tau (easy pairs) c < 1 and w < 1."""
    h = torch.as_tensor(rm_margin, dtype=torch.float64)
    c = c_min + (c_max - c_min) / (1 + (c_max - 1) / (1 - c_min) * torch.exp(lam * (h.abs() - tau)))
    w = torch.sigmoid(c * h) / torch.sigmoid(h)
    return torch.where(h > -tau, w, torch.ones_like(w))


def madpo(s: PairStats, beta: float, c_max: float, c_min: float, lam: float, tau: float, rm_margin) -> LossOutput:
    """MADPO (Rho 2025, "Margin Adaptive DPO: Leveraging Reward Model for Granular Control in Preference
    Optimization", arXiv:2510.05342): L = -w(h_phi) log sig(beta*h), h_phi the margin of a reward model
    trained first on the same pairs (a stage of its own), w = :func:`madpo_weight`, no gradient through w."""
    h = s.chosen_logratio - s.rejected_logratio
    w = madpo_weight(rm_margin, c_max, c_min, lam, tau).to(device=h.device, dtype=h.dtype)
    return LossOutput(-w * F.logsigmoid(beta * h), *_rewards(s, beta), logs={"madpo/weight_mean": float(w.mean())})


def sem_dpo_weight(distance, alpha: float) -> torch.Tensor:
    """Sem-DPO's weight (Mohamed et al. 2025, arXiv:2507.20133): W = exp(-alpha * d), d the cosine distance
    1 - cos(e(x), e(y_w)) between the embeddings of the prompt and the chosen completion."""
    return torch.exp(-alpha * torch.as_tensor(distance, dtype=torch.float64))


def sem_dpo(s: PairStats, beta: float, alpha: float, distance) -> LossOutput:
    """Sem-DPO (Mohamed et al. 2025, "Sem-DPO: Mitigating Semantic Inconsistency in Preference Optimization
    for Prompt Engineering", arXiv:2507.20133): L = -exp(-alpha d(x, y_w)) log sig(beta*h), d the cosine
    distance of a frozen sentence embedder (computed once per pair, a stage of its own)."""
    h = s.chosen_logratio - s.rejected_logratio
    w = sem_dpo_weight(distance, alpha).to(device=h.device, dtype=h.dtype)
    return LossOutput(-w * F.logsigmoid(beta * h), *_rewards(s, beta), logs={"sem_dpo/weight_mean": float(w.mean())})


def pair_weights(function: str, hparams: dict, scores) -> torch.Tensor:
    """The per-pair weights a loss with ``LossSpec.per_pair`` gives to per-pair scores (run.json reports them)."""
    if function == "madpo":
        return madpo_weight(scores, **hparams)
    if function == "sem_dpo":
        return sem_dpo_weight(scores, **hparams)
    raise ValueError(f"loss.function={function!r} has no per-pair weights")


@dataclass(frozen=True)
class LossSpec:
    fn: Callable[..., LossOutput]
    needs_ref: bool
    # hyperparameter -> (low, high, low_inclusive, high_inclusive); None = unbounded
    ranges: dict = field(default_factory=dict)
    # arguments the trainer supplies from its running state, not the config ("delta": BCO's shift)
    state: tuple = ()
    # seed -> the initial state of a loss that returns its updated state (LossOutput.state): the
    # trainer holds it, passes it in as keyword arguments and keeps the returned one (training steps only)
    init_state: Callable[[int], dict] | None = None
    # (argument, kind): the argument that receives each pair's score, computed before training by the
    # stage of that kind (loss.pair_scores.kind: reward_margin, semantic_distance) and carried per pair
    per_pair: tuple = ()
    # loss.args the stage consumes, not the function (InfiFPO's sources: the source models whose fused
    # sequence log-probs replace the reference); checked by :func:`check_stage_args`
    stage_args: tuple = ()


LOSSES: dict[str, LossSpec] = {
    "cdpo": LossSpec(cdpo, True, {"eps": (0.0, 0.5, True, False)}),
    "r_dpo": LossSpec(r_dpo, True, {"alpha": (0.0, None, True, False)}),
    "rrhf": LossSpec(rrhf, False, {"lam": (0.0, None, True, False)}),
    "slic_hf": LossSpec(slic_hf, False, {"delta": (0.0, None, True, False), "lam": (0.0, None, True, False)}),
    "asft": LossSpec(asft, False, {"lam": (0.0, None, True, False)}),
    "adpo": LossSpec(adpo, True, {"q": (0.5, 1.0, False, True)}),
    "rpo": LossSpec(rpo, True, {"alpha": (0.0, None, True, False)}),
    "flex_dpo": LossSpec(
        flex_dpo, True, {"w_chosen": (0.0, None, False, False), "w_rejected": (0.0, None, False, False)}
    ),
    "bco_pair": LossSpec(bco_pair, True, {}, state=("delta",)),
    "mpo": LossSpec(
        mpo,
        True,
        {"w_pref": (0.0, None, True, False), "w_bco": (0.0, None, True, False), "w_sft": (0.0, None, True, False)},
        state=("delta",),
    ),
    "fdpo_alpha": LossSpec(fdpo_alpha, True, {"alpha": (0.0, 1.0, False, True)}),
    "beta_dpo": LossSpec(
        beta_dpo,
        True,
        {"alpha": (0.0, None, True, False), "rho": (0.0, 1.0, False, True), "momentum": (0.0, 1.0, True, False)},
        state=("margin_mean", "margin_std", "step", "seed"),
        init_state=beta_dpo_init,
    ),
    "madpo": LossSpec(
        madpo,
        True,
        {
            "c_max": (1.0, None, False, False),
            "c_min": (0.0, 1.0, False, False),
            "lam": (0.0, None, False, False),
            "tau": (0.0, None, False, False),
        },
        per_pair=("rm_margin", "reward_margin"),
    ),
    "sem_dpo": LossSpec(sem_dpo, True, {"alpha": (0.0, None, True, False)}, per_pair=("distance", "semantic_distance")),
}


def in_range(v: float, lo, hi, lo_inc, hi_inc) -> bool:
    return (lo is None or (v >= lo if lo_inc else v > lo)) and (hi is None or (v <= hi if hi_inc else v < hi))


def fmt_range(lo, hi, lo_inc, hi_inc) -> str:
    left = ("[" if lo_inc else "(") + ("-inf" if lo is None else f"{lo:g}")
    right = ("inf" if hi is None else f"{hi:g}") + ("]" if hi_inc else ")")
    return f"{left}, {right}"


def check_arg_names(function: str, fn: Callable, skip: tuple, hparams: dict, extra: tuple = ()) -> None:
    """loss.args against a pure loss function's signature (minus ``skip``: what the trainer supplies) and
    ``extra`` names the trainer reads itself: an unknown argument or a missing one raises ValueError."""

    params = [p for p in inspect.signature(fn).parameters if p not in ("s", "beta", *skip)] + list(extra)
    for k in hparams:
        if k not in params:
            raise ValueError(f"loss.args.{k} is not a hyperparameter of {function} (it has: {', '.join(params)})")
    for k in params:
        if k not in hparams:
            raise ValueError(f"loss.args.{k} is required by {function}")


def check_hparams(function: str, hparams: dict) -> None:
    """Raise ValueError naming the hyperparameter and its allowed range."""
    registry = {**LOSSES, **TOKEN_LOSSES, **UNPAIRED_LOSSES}  # sequence-level, token-level, unpaired losses
    if function not in registry:
        raise ValueError(f"loss.function={function!r}: allowed {', '.join(sorted(registry))}")
    spec = registry[function]
    check_stage_args(function, spec, hparams)
    hparams = {k: v for k, v in hparams.items() if k not in spec.stage_args}
    check_arg_names(function, spec.fn, (*spec.state, *spec.per_pair[:1]), hparams)
    for k, (lo, hi, lo_inc, hi_inc) in spec.ranges.items():
        v = float(hparams[k])
        if not in_range(v, lo, hi, lo_inc, hi_inc):
            raise ValueError(f"loss.args.{k}={v:g} for {function}: allowed {fmt_range(lo, hi, lo_inc, hi_inc)}")


# ---------------------------------------------------------------------------------------------
# token-level losses: pure functions over per-token statistics (TokenStats)
# ---------------------------------------------------------------------------------------------


@dataclass
class TokenStats:
    """Per-token statistics of a batch of pairs (rows: pairs; columns: completion positions, padded with
    zeros where the mask is 0): the log-prob of each completion token under the policy, the reference and,
    for guided losses, the guide policy (a previously trained DPO policy), and the completion masks."""

    chosen_logps: torch.Tensor  # (B, T)
    rejected_logps: torch.Tensor
    chosen_mask: torch.Tensor  # (B, T): 1 on completion tokens
    rejected_mask: torch.Tensor
    ref_chosen_logps: torch.Tensor
    ref_rejected_logps: torch.Tensor
    guide_chosen_logps: torch.Tensor | None = None
    guide_rejected_logps: torch.Tensor | None = None

    def sequence(self) -> PairStats:
        """The per-sequence statistics (sums over completion tokens)."""
        mc, mr = self.chosen_mask.to(self.chosen_logps.dtype), self.rejected_mask.to(self.rejected_logps.dtype)
        return PairStats(
            (self.chosen_logps * mc).sum(-1),
            (self.rejected_logps * mr).sum(-1),
            mc.sum(-1),
            mr.sum(-1),
            (self.ref_chosen_logps * mc).sum(-1),
            (self.ref_rejected_logps * mr).sum(-1),
        )


def guide_token_rewards(s: TokenStats, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The guide policy's implicit token rewards r_t = beta * log(pi_guide(y_t|x, y_<t) / pi_ref(y_t|x, y_<t))
    (Rafailov et al. 2024, "From r to Q*"), 0 off the completion; no gradient."""
    rw = beta * (s.guide_chosen_logps - s.ref_chosen_logps) * s.chosen_mask
    rl = beta * (s.guide_rejected_logps - s.ref_rejected_logps) * s.rejected_mask
    return rw.detach(), rl.detach()


def tgdpo(s: TokenStats, beta: float, alpha: float) -> LossOutput:
    """TGDPO (Zhu et al. 2025, "TGDPO: Harnessing Token-Level Reward Guidance for Enhancing Direct Preference
    Optimization", arXiv:2506.14574), with the paper's practical guidance from an induced DPO reward:
    L = -log sig( sum_t beta f(r_t^w) log pi/ref(y_w,t) - sum_t beta g(r_t^l) log pi/ref(y_l,t) ),
    f(r) = 1 + alpha r, g(r) = 1 - alpha r, r_t = beta log(pi_dpo/pi_ref) per token of a DPO policy trained
    first (:func:`guide_token_rewards`; the authors' trainer: ``beta * (1 + alpha * beta * reward_logratio)``).
    alpha = 0 is DPO.  A chosen token the guide rewards deviates more from the reference, a rejected token
    it penalises (r < 0) is pushed down harder."""
    rw, rl = guide_token_rewards(s, beta)
    lw = (s.chosen_logps - s.ref_chosen_logps) * s.chosen_mask
    ll = (s.rejected_logps - s.ref_rejected_logps) * s.rejected_mask
    ww, wl = 1 + alpha * rw, 1 - alpha * rl
    logits = (beta * ww * lw).sum(-1) - (beta * wl * ll).sum(-1)
    mc, mr = s.chosen_mask.to(lw.dtype), s.rejected_mask.to(ll.dtype)
    logs = {
        "tgdpo/weight_chosen": float((ww * mc).sum() / mc.sum().clamp(min=1)),
        "tgdpo/weight_rejected": float((wl * mr).sum() / mr.sum().clamp(min=1)),
        "tgdpo/guide_margin": float((rw.sum(-1) - rl.sum(-1)).mean()),
    }
    return LossOutput(-F.logsigmoid(logits), beta * lw.sum(-1).detach(), beta * ll.sum(-1).detach(), logs=logs)


# Token-level losses (the trainer computes per-token log-probs for them; no precomputed reference sums).
TOKEN_LOSSES: dict[str, LossSpec] = {
    "tgdpo": LossSpec(tgdpo, True, {"alpha": (0.0, None, True, False)}),
}
GUIDED = ("tgdpo",)  # losses that read a guide policy's per-token log-probs (loss.guide names its loss)


def token_level(function: str) -> bool:
    """Whether a po-bench loss takes per-token statistics (:class:`TokenStats`)."""
    return function in TOKEN_LOSSES


def guided(function: str) -> bool:
    """Whether a po-bench loss reads a guide policy (loss.guide)."""
    return function in GUIDED


# ---------------------------------------------------------------------------------------------
# unpaired losses: pure functions over per-sequence statistics of single labelled completions
# ---------------------------------------------------------------------------------------------


@dataclass
class UnpairedStats:
    """Per-sequence statistics of unpaired rows (KTO's view: a prompt, one completion, desirable or not)."""

    logps: torch.Tensor  # sum of completion-token log-probs under the policy
    ref_logps: torch.Tensor  # ... under the reference
    lens: torch.Tensor  # completion tokens
    labels: torch.Tensor  # bool: True desirable, False undesirable

    @property
    def logratio(self) -> torch.Tensor:
        return self.logps - self.ref_logps


def bco(s: UnpairedStats, beta: float, delta: float) -> LossOutput:
    """BCO (Jung et al. 2024, "Binary Classifier Optimization for Large Language Model Alignment",
    arXiv:2404.04656, eq. 7 on unpaired data): a binary classifier with logit r - delta over single completions,
    r = beta*log pi/ref, delta the running mean of the rewards (:func:`running_mean_update`, held by the trainer):
    L = -log sig(r - delta) for a desirable completion, -log sig(-(r - delta)) for an undesirable one.
    ``chosen_rewards`` / ``rejected_rewards`` are the rewards of the desirable / undesirable rows.
    (The paper's underlying-distribution matching, a density-ratio reweighting of the undesirable rows by a
    classifier on prompt embeddings, is not part of this function.)"""
    r = beta * s.logratio
    lab = s.labels.to(torch.bool)
    losses = torch.where(lab, -F.logsigmoid(r - delta), -F.logsigmoid(-(r - delta)))
    rd = r.detach()
    return LossOutput(losses, rd[lab], rd[~lab])


# Unpaired losses (run by a KTO-based trainer on the unpaired view; loss.paired must be false).
UNPAIRED_LOSSES: dict[str, LossSpec] = {
    "bco": LossSpec(bco, True, {}, state=("delta",)),
}


def unpaired(function: str) -> bool:
    """Whether a po-bench loss trains on unpaired rows (:class:`UnpairedStats`)."""
    return function in UNPAIRED_LOSSES


# ---------------------------------------------------------------------------------------------
# SFT objectives from f-divergences (Wang et al. 2025, arXiv:2507.00018), on the chosen completions
# ---------------------------------------------------------------------------------------------
#
# Derivation (po-bench's; the paper's equations were not available, only its abstract): SFT as implicit
# reward learning, IQ-Learn style.  For a reward r, the KL-regularised optimum is pi* = ref exp(r/beta)/Z,
# so the implicit reward of a policy is r = beta log pi/ref (+ beta log Z, which is 0 at the sequence level:
# V(x) = beta log sum_y ref exp(r/beta) = beta log sum_y pi = 0).  The distribution-matching objective
# max_r E_D[phi(r)] - (E_pi[r] - beta KL(pi || ref)) then has a policy term equal to V(x) = 0 (the "KL term
# constant in the policy" of the abstract) and reduces to  max_pi E_D[phi(beta log pi(y|x)/ref(y|x))],
# phi(t) = -f*(-t) the concave function of the f-divergence's convex conjugate f* (IQ-Learn, Garg et al. 2021,
# sec. 4; its chi^2 case is t - t^2/4).  phi(t) = t is SFT (beta log pi + const: SFT at a beta-scaled learning
# rate, the paper's learning-rate reduction); a non-linear phi keeps log ref in the objective, so the
# reference anchors the update (its gradient -phi'(r) beta grad log pi vanishes or saturates as r grows).


def _sft_phi(s: PairStats, beta: float, phi) -> LossOutput:
    r = beta * s.chosen_logratio
    return LossOutput(-phi(r), *_rewards(s, beta))


def sft_fdiv_chi2(s: PairStats, beta: float) -> LossOutput:
    """f-divergence SFT, Pearson chi^2 (f(u) = (u-1)^2, f*(t) = t + t^2/4):
    L = -(r - r^2/4) on the chosen completion, r = beta log pi/ref; stationary at r = 2."""
    return _sft_phi(s, beta, lambda r: r - r * r / 4)


def sft_fdiv_kl(s: PairStats, beta: float) -> LossOutput:
    """f-divergence SFT, KL (f(u) = u log u, f*(t) = exp(t - 1)): L = exp(-r - 1) on the chosen completion,
    r = beta log pi/ref; the pull on log pi decays as exp(-r)."""
    return _sft_phi(s, beta, lambda r: -torch.exp(-r - 1))


def sft_fdiv_tv(s: PairStats, beta: float) -> LossOutput:
    """f-divergence SFT, total variation (f(u) = |u-1|/2, f*(t) = t on |t| <= 1/2): L = -clip(r, -1/2, 1/2)
    on the chosen completion, r = beta log pi/ref (f* is +inf outside [-1/2, 1/2]; the clip keeps phi finite:
    no gradient once r leaves the interval)."""
    return _sft_phi(s, beta, lambda r: r.clamp(-0.5, 0.5))


# ---------------------------------------------------------------------------------------------
# InfiFPO: DPO against a fused reference of several source models (Gu et al. 2025, arXiv:2505.13878)
# ---------------------------------------------------------------------------------------------


def fuse_reference(
    ref_avg_w: torch.Tensor, ref_avg_l: torch.Tensor, src_avg_w: torch.Tensor, src_avg_l: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfiFPO's fused source model, length-normalised log-probs (\\overline{log} = log M(y|x) / |y|):
    eq. 13, log M_fu^sclip(y|x) = sum_i gamma_i log Clip(M_i^s(y|x)), with
    probability clipping  Clip(M_i^s(y_w|x)) = max(M_i^s(y_w|x), M_init^p(y_w|x)),
                          Clip(M_i^s(y_l|x)) = min(M_i^s(y_l|x), M_init^p(y_l|x))
    (a source no better than the pivot's initial model on a response counts as that model), and max-margin
    fusion  gamma_i = 1 for the source whose clipped probability differs most from the pivot's initial one,
    0 for the others, chosen per response (the paper's Figure 2).
    ref_avg_*: (B,) the initial pivot (the SFT model); src_avg_*: (N, B) the N source models."""
    cw = torch.maximum(src_avg_w, ref_avg_w.unsqueeze(0))
    cl = torch.minimum(src_avg_l, ref_avg_l.unsqueeze(0))
    iw = (cw - ref_avg_w).abs().argmax(0, keepdim=True)
    il = (cl - ref_avg_l).abs().argmax(0, keepdim=True)
    return cw.gather(0, iw).squeeze(0), cl.gather(0, il).squeeze(0)


def infifpo(s: PairStats, beta: float) -> LossOutput:
    """InfiFPO (Gu et al. 2025, "InfiFPO: Implicit Model Fusion via Preference Optimization in Large Language
    Models", arXiv:2505.13878, eq. 13): length-normalised DPO against the fused source model,
    L = -log sig(beta \\overline{log} pi(y_w|x)/M_fu(y_w|x) - beta \\overline{log} pi(y_l|x)/M_fu(y_l|x)).
    Here ``ref_*_logps`` are the fused reference's sequence log-probs (:func:`fuse_reference` times |y|; the
    trainer replaces the reference with them), so \\overline{log} pi/M_fu = (log pi - log M_fu) / |y|."""
    uw = s.chosen_logratio / s.chosen_len.clamp(min=1)
    ul = s.rejected_logratio / s.rejected_len.clamp(min=1)
    return LossOutput(-F.logsigmoid(beta * (uw - ul)), beta * uw.detach(), beta * ul.detach())


SOURCE_KEYS = ("seed", "model")  # an InfiFPO source: the run's SFT recipe with another seed / model fields


def plain_sources(x):
    """``loss.args.sources`` as plain lists and dicts (a config's list / mapping nodes converted)."""

    if isinstance(x, Mapping):
        return {str(k): plain_sources(v) for k, v in x.items()}
    if isinstance(x, Sequence) and not isinstance(x, str):
        return [plain_sources(v) for v in x]
    return x


def check_stage_args(function: str, spec: LossSpec, hparams: dict) -> None:
    """Raise ValueError for a malformed stage argument (InfiFPO's ``sources``)."""
    for k in spec.stage_args:
        if k not in hparams:
            raise ValueError(f"loss.args.{k} is required by {function}")
    if "sources" in spec.stage_args:
        src = plain_sources(hparams["sources"])
        if not isinstance(src, list) or not src:
            raise ValueError(
                f"loss.args.sources for {function}: a non-empty list of source models "
                "({seed: <int>} or {seed: <int>, model: {<model field>: <value>}})"
            )
        for i, x in enumerate(src):
            if (
                not isinstance(x, dict)
                or set(x) - set(SOURCE_KEYS)
                or not isinstance(x.get("seed"), int)
                or isinstance(x.get("seed"), bool)
                or not isinstance(x.get("model", {}), dict)
            ):
                raise ValueError(
                    f"loss.args.sources[{i}]={x!r} for {function}: a source is {{seed: <int>}} "
                    "with an optional model: {<model field>: <value>} (an SFT model of the run's recipe)"
                )


LOSSES.update(
    {
        "sft_fdiv_chi2": LossSpec(sft_fdiv_chi2, True),
        "sft_fdiv_kl": LossSpec(sft_fdiv_kl, True),
        "sft_fdiv_tv": LossSpec(sft_fdiv_tv, True),
        "infifpo": LossSpec(infifpo, True, stage_args=("sources",)),
    }
)


# ---- losses from outside po-bench ------------------------------------------------------------------------
# A package adds a pure-function pairwise loss by calling register_loss at import and naming the module in
# the entry-point group below (pyproject: [project.entry-points."po_bench.losses"] my_loss = "my_pkg.my_loss");
# its yaml (backend: pobench, function: <name>) comes from the package's own config folder through
# hydra.searchpath.  The group is loaded by po_bench.training.methods.loss_registry, through which every process
# (the rank processes of launch=ddp too) looks a loss function up.

ENTRY_POINT_GROUP = "po_bench.losses"


def register_loss(name: str, spec: LossSpec) -> LossSpec:
    """Make ``spec`` the pairwise loss a loss yaml's ``function: <name>`` trains with; a name is owned once."""
    if not isinstance(spec, LossSpec):
        raise TypeError(f"register_loss({name!r}, ...) takes a LossSpec, not {type(spec).__name__}")
    owner = {**LOSSES, **TOKEN_LOSSES, **UNPAIRED_LOSSES}.get(name)
    if owner is not None and owner is not spec:
        raise ValueError(f"loss function {name!r} is already registered (by {owner.fn.__module__})")
    LOSSES[name] = spec
    return spec

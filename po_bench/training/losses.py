"""po-bench's own preference losses: small pure functions over per-sequence statistics.

Each function takes :class:`PairStats` (policy and reference log-probs of the chosen and rejected
completions, summed over completion tokens, and their token counts) plus its hyperparameters, and
returns :class:`LossOutput`: per-example losses and the implicit rewards it logs.  They are called
by the one trainer adapter in ``trl_adapter.py`` (a subclass of TRL's DPOTrainer) and tested
against transcriptions of the papers' equations in ``tests/test_losses.py``.

TRL-backed methods (dpo, ipo, simpo, ...) are not here: their yaml maps them onto a TRL trainer
and loss_type.  Adding a loss = one function + one ``LOSSES`` entry + one yaml + one test row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F


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


def beta_dpo(s: PairStats, beta: float, alpha: float, rho: float, momentum: float,
             margin_mean: float, margin_std: float, step: int, seed: int) -> LossOutput:
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
    return LossOutput(losses, *_rewards(s, beta),
                      state={"margin_mean": m0, "margin_std": sd, "step": step + 1, "seed": seed},
                      logs={"beta_dpo/beta": beta_b, "beta_dpo/margin_mean": m0, "beta_dpo/margin_std": sd,
                            "beta_dpo/kept": float(keep.sum())})


def beta_dpo_init(seed: int) -> dict:
    return {"margin_mean": 0.0, "margin_std": 0.0, "step": 0, "seed": int(seed)}


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


LOSSES: dict[str, LossSpec] = {
    "cdpo": LossSpec(cdpo, True, {"eps": (0.0, 0.5, True, False)}),
    "r_dpo": LossSpec(r_dpo, True, {"alpha": (0.0, None, True, False)}),
    "rrhf": LossSpec(rrhf, False, {"lam": (0.0, None, True, False)}),
    "slic_hf": LossSpec(slic_hf, False, {"delta": (0.0, None, True, False), "lam": (0.0, None, True, False)}),
    "asft": LossSpec(asft, False, {"lam": (0.0, None, True, False)}),
    "adpo": LossSpec(adpo, True, {"q": (0.5, 1.0, False, True)}),
    "rpo": LossSpec(rpo, True, {"alpha": (0.0, None, True, False)}),
    "bco_pair": LossSpec(bco_pair, True, {}, state=("delta",)),
    "mpo": LossSpec(mpo, True, {"w_pref": (0.0, None, True, False), "w_bco": (0.0, None, True, False),
                                "w_sft": (0.0, None, True, False)}, state=("delta",)),
    "fdpo_alpha": LossSpec(fdpo_alpha, True, {"alpha": (0.0, 1.0, False, True)}),
    "beta_dpo": LossSpec(beta_dpo, True, {"alpha": (0.0, None, True, False), "rho": (0.0, 1.0, False, True),
                                          "momentum": (0.0, 1.0, True, False)},
                         state=("margin_mean", "margin_std", "step", "seed"), init_state=beta_dpo_init),
}


def in_range(v: float, lo, hi, lo_inc, hi_inc) -> bool:
    return (lo is None or (v >= lo if lo_inc else v > lo)) and (hi is None or (v <= hi if hi_inc else v < hi))


def fmt_range(lo, hi, lo_inc, hi_inc) -> str:
    left = ("[" if lo_inc else "(") + ("-inf" if lo is None else f"{lo:g}")
    right = ("inf" if hi is None else f"{hi:g}") + ("]" if hi_inc else ")")
    return f"{left}, {right}"


def check_hparams(function: str, hparams: dict) -> None:
    """Raise ValueError naming the hyperparameter and its allowed range."""
    import inspect

    if function not in LOSSES:
        raise ValueError(f"loss.function={function!r}: allowed {', '.join(sorted(LOSSES))}")
    spec = LOSSES[function]
    params = [p for p in inspect.signature(spec.fn).parameters if p not in ("s", "beta", *spec.state)]
    for k in hparams:
        if k not in params:
            raise ValueError(f"loss.args.{k} is not a hyperparameter of {function} (it has: {', '.join(params)})")
    for k in params:
        if k not in hparams:
            raise ValueError(f"loss.args.{k} is required by {function}")
    for k, (lo, hi, lo_inc, hi_inc) in spec.ranges.items():
        v = float(hparams[k])
        if not in_range(v, lo, hi, lo_inc, hi_inc):
            raise ValueError(f"loss.args.{k}={v:g} for {function}: allowed {fmt_range(lo, hi, lo_inc, hi_inc)}")

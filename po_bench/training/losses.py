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


@dataclass(frozen=True)
class LossSpec:
    fn: Callable[..., LossOutput]
    needs_ref: bool
    # hyperparameter -> (low, high, low_inclusive, high_inclusive); None = unbounded
    ranges: dict = field(default_factory=dict)


LOSSES: dict[str, LossSpec] = {
    "cdpo": LossSpec(cdpo, True, {"eps": (0.0, 0.5, True, False)}),
    "r_dpo": LossSpec(r_dpo, True, {"alpha": (0.0, None, True, False)}),
    "rrhf": LossSpec(rrhf, False, {"lam": (0.0, None, True, False)}),
    "slic_hf": LossSpec(slic_hf, False, {"delta": (0.0, None, True, False), "lam": (0.0, None, True, False)}),
    "asft": LossSpec(asft, False, {"lam": (0.0, None, True, False)}),
    "adpo": LossSpec(adpo, True, {"q": (0.5, 1.0, False, True)}),
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
    params = [p for p in inspect.signature(spec.fn).parameters if p not in ("s", "beta")]
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

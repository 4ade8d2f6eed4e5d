"""po-bench's own losses against direct transcriptions of the papers' equations, gradient signs,
hyperparameter ranges; and the mapping of TRL-backed configs onto TRL."""

import json
import math
from pathlib import Path

import pytest
import torch

from po_bench.cli.app import CONF_DIR
from po_bench.config import ConfigError, validate
from po_bench.training import losses

from .conftest import ROOT, SMALL, run_cli
from .conftest import compose as _compose
from .helpers import PLUGIN_SEARCH_PATH, plugin_env

# Hand-chosen statistics: (policy chosen, policy rejected, ref chosen, ref rejected, |y_w|, |y_l|)
CASES = [(-12.0, -15.0, -13.0, -14.0, 6, 9), (-20.0, -8.0, -18.5, -9.0, 10, 4), (-3.0, -3.5, -3.2, -3.1, 3, 3)]


def _stats(c, r, rc, rr, nc, nl, requires_grad=False):
    t = lambda x: torch.tensor([float(x)], dtype=torch.float64, requires_grad=requires_grad)
    return losses.PairStats(t(c), t(r), t(nc), t(nl), t(rc), t(rr))


def log_sig(x):
    return -math.log1p(math.exp(-x))


# Direct transcriptions, written from the papers' equations with plain math.
def ref_cdpo(c, r, rc, rr, nc, nl, beta, eps):
    # Mitchell (2023), cDPO: L = -(1-eps) log sig(beta h) - eps log sig(-beta h)
    h = (c - rc) - (r - rr)
    return -(1 - eps) * log_sig(beta * h) - eps * log_sig(-beta * h)


def ref_r_dpo(c, r, rc, rr, nc, nl, beta, alpha):
    # Park et al. (2024), eq. (9): -log sig(beta log pi/ref(y_w) - beta log pi/ref(y_l) + (alpha|y_w| - alpha|y_l|))
    return -log_sig(beta * (c - rc) - beta * (r - rr) + (alpha * nc - alpha * nl))


def ref_rrhf(c, r, rc, rr, nc, nl, beta, lam):
    # Yuan et al. (2023), eq. (2)-(4) with two responses: L_rank = max(0, p_l - p_w), p = sum log P / |y|;
    # L = L_rank + lam * L_ft, L_ft = -p_w (token-mean NLL of the best response)
    pw, pl = c / nc, r / nl
    return max(0.0, pl - pw) + lam * (-pw)


def ref_slic_hf(c, r, rc, rr, nc, nl, beta, delta, lam):
    # Zhao et al. (2023); the DPO survey (arXiv:2503.11701) eq. (9):
    # max(0, delta - log P(y_w|x) + log P(y_l|x)) - lam log P(y_w|x)
    return max(0.0, delta - c + r) - lam * c


def ref_asft(c, r, rc, rr, nc, nl, beta, lam):
    # Wang et al. (2024), ASFT: L_SFT + lam * L_align, L_align = -log sig(log odds(y_w)) - log sig(-log odds(y_l)),
    # odds(y) = P/(1-P) with P = exp(log pi(y|x)/|y|)
    pw, pl = math.exp(c / nc), math.exp(r / nl)
    odds_w, odds_l = pw / (1 - pw), pl / (1 - pl)
    return -(c / nc) + lam * (-log_sig(math.log(odds_w)) - log_sig(-math.log(odds_l)))


def ref_adpo(c, r, rc, rr, nc, nl, beta, q):
    # Wang (2025), ADPO: KL(q || softmax((l - l_ref)/tau_anc)) over {y_w, y_l}, tau_anc = 1/beta
    u = [(c - rc) * beta, (r - rr) * beta]
    z = math.log(sum(math.exp(x) for x in u))
    p = [math.exp(x - z) for x in u]
    return sum(qi * math.log(qi / pi) for qi, pi in zip((q, 1 - q), p) if qi > 0)


def ref_rpo(c, r, rc, rr, nc, nl, beta, alpha):
    # Pang et al. (2024), eq. (1): L_DPO + alpha * L_NLL, L_NLL = -log M(y_w|x) / |y_w| (per example)
    return -log_sig(beta * (c - rc) - beta * (r - rr)) + alpha * (-c / nc)


def ref_flex_dpo(c, r, rc, rr, nc, nl, beta, w_chosen, w_rejected):
    # Yan et al. (2025), DPO with separate coefficients: -log sig(beta_w log pi/ref(y_w) - beta_l log pi/ref(y_l))
    return -log_sig(w_chosen * beta * (c - rc) - w_rejected * beta * (r - rr))


def ref_bco_pair(c, r, rc, rr, nc, nl, beta, delta):
    # Jung et al. (2024), eq. (7): -log sig(r_theta(x, y_w) - delta) - log sig(-(r_theta(x, y_l) - delta)),
    # r_theta = beta log pi/ref, delta the running mean of the rewards
    rw, rl = beta * (c - rc), beta * (r - rr)
    return -log_sig(rw - delta) - log_sig(-(rl - delta))


def ref_mpo(c, r, rc, rr, nc, nl, beta, w_pref, w_bco, w_sft, delta):
    # Wang et al. (2024), MPO eq. (2): L = w_p L_p + w_q L_q + w_g L_g; L_p DPO (eq. 3), L_q BCO with the
    # reward shift delta (eq. 4), L_g = -log pi(y_c|x) / |y_c| (eq. 5)
    lp = -log_sig(beta * (c - rc) - beta * (r - rr))
    lq = ref_bco_pair(c, r, rc, rr, nc, nl, beta, delta)
    lg = -c / nc
    return w_pref * lp + w_bco * lq + w_sft * lg


def ref_fdpo_alpha(c, r, rc, rr, nc, nl, beta, alpha):
    # Wang et al. (2023), Table 1 (alpha-divergence): f(u) = (u^(1-alpha) - (1-alpha) u - alpha) / (alpha (alpha-1)),
    # so f'(u) = (1 - u^(-alpha)) / alpha; eq. (8): -log sig(beta f'(pi/ref(y_w)) - beta f'(pi/ref(y_l)))
    def fprime(u):
        return (1 - u ** (-alpha)) / alpha

    uw, ul = math.exp(c - rc), math.exp(r - rr)
    return -log_sig(beta * fprime(uw) - beta * fprime(ul))


def ref_beta_dpo(c, r, rc, rr, nc, nl, beta, alpha, rho, momentum, margin_mean, margin_std, step, seed):
    # Wu et al. (2024), beta-DPO, one pair (B = 1, so the one pair is kept for any rho > 0, std of one margin 0):
    # M = log pi/ref(y_w) - log pi/ref(y_l); M_0 <- m M_0 + (1-m) M; beta = beta_0 (1 + alpha (M - M_0))
    M = (c - rc) - (r - rr)
    m0 = momentum * margin_mean + (1 - momentum) * M
    b = max(1e-3, beta * (1 + alpha * (M - m0)))
    return -log_sig(b * M)


def ref_madpo(c, r, rc, rr, nc, nl, beta, c_max, c_min, lam, tau, rm_margin):
    # Rho (2025), the authors' MADPOLoss with y1 = y_w (choices = 0): margin m = r_phi(y1) - r_phi(y2),
    # coef = c_min + (c_max - c_min) / (1 + (c_max - 1)/(1 - c_min) e^{lam(|m| - tau)}),
    # w1 = sig(coef m)/sig(m) if m > -tau else 1; loss = w1 * cross_entropy([beta log pi/ref(y1), beta log pi/ref(y2)], 0)
    m = rm_margin
    sig = lambda x: 1 / (1 + math.exp(-x))
    coef = c_min + (c_max - c_min) / (1 + (c_max - 1) / (1 - c_min) * math.exp(lam * (abs(m) - tau)))
    w1 = sig(coef * m) / sig(m) if m > -tau else 1.0
    r1, r2 = beta * (c - rc), beta * (r - rr)
    return w1 * -(r1 - math.log(math.exp(r1) + math.exp(r2)))


def ref_sem_dpo(c, r, rc, rr, nc, nl, beta, alpha, distance):
    # Mohamed et al. (2025): L = -W_alpha(x, y_w) log sig(beta h), W_alpha = exp(-alpha d_cos(e(x), e(y_w)))
    return -math.exp(-alpha * distance) * log_sig(beta * ((c - rc) - (r - rr)))


def ref_sft_fdiv(phi):
    # Wang et al. (2025), f-divergence SFT (po-bench's derivation, see losses.py): L = -phi(beta log pi/ref(y_w)),
    # phi(t) = -f*(-t) with f* the convex conjugate of the divergence's f; y_l unused
    def ref(c, r, rc, rr, nc, nl, beta):
        return -phi(beta * (c - rc))

    return ref


def _conj_chi2(t):  # f(u) = (u-1)^2: f*(t) = sup_u t u - (u-1)^2 = t + t^2/4
    return t + t * t / 4


def _conj_kl(t):  # f(u) = u log u: f*(t) = exp(t - 1)
    return math.exp(t - 1)


def _conj_tv(t):  # f(u) = |u-1|/2: f*(t) = t on |t| <= 1/2 (+inf outside; po-bench clips the argument)
    return max(-0.5, min(0.5, t))


def ref_infifpo(c, r, rc, rr, nc, nl, beta):
    # Gu et al. (2025), eq. (13) with the fused reference's sequence log-probs in rc, rr:
    # -log sig(beta log_bar pi/M_fu(y_w) - beta log_bar pi/M_fu(y_l)), log_bar = log(.)/|y|
    return -log_sig(beta * (c / nc - rc / nc) - beta * (r / nl - rr / nl))


FORMULAS = {
    "sft_fdiv_chi2": (ref_sft_fdiv(lambda t: -_conj_chi2(-t)), {"beta": 0.1}),
    "sft_fdiv_kl": (ref_sft_fdiv(lambda t: -_conj_kl(-t)), {"beta": 0.1}),
    "sft_fdiv_tv": (ref_sft_fdiv(lambda t: -_conj_tv(-t)), {"beta": 0.1}),
    "infifpo": (ref_infifpo, {"beta": 2.5}),
    "madpo": (ref_madpo, {"beta": 0.1, "c_max": 2.0, "c_min": 0.5, "lam": 1.0, "tau": 2.0, "rm_margin": 1.3}),
    "sem_dpo": (ref_sem_dpo, {"beta": 0.1, "alpha": 1.5, "distance": 0.4}),
    "rpo": (ref_rpo, {"beta": 0.1, "alpha": 1.0}),
    "flex_dpo": (ref_flex_dpo, {"beta": 0.1, "w_chosen": 1.0, "w_rejected": 0.5}),
    "bco_pair": (ref_bco_pair, {"beta": 0.1, "delta": 0.03}),
    "mpo": (ref_mpo, {"beta": 0.1, "w_pref": 0.8, "w_bco": 0.2, "w_sft": 1.0, "delta": -0.02}),
    "fdpo_alpha": (ref_fdpo_alpha, {"beta": 0.1, "alpha": 0.3}),
    "cdpo": (ref_cdpo, {"beta": 0.1, "eps": 0.2}),
    "r_dpo": (ref_r_dpo, {"beta": 0.1, "alpha": 0.05}),
    "rrhf": (ref_rrhf, {"beta": 1.0, "lam": 1.0}),
    "slic_hf": (ref_slic_hf, {"beta": 1.0, "delta": 1.0, "lam": 0.1}),
    "asft": (ref_asft, {"beta": 1.0, "lam": 0.1}),
    "adpo": (ref_adpo, {"beta": 0.1, "q": 0.8}),
    "beta_dpo": (
        ref_beta_dpo,
        {
            "beta": 0.1,
            "alpha": 0.6,
            "rho": 0.8,
            "momentum": 0.9,
            "margin_mean": 0.4,
            "margin_std": 0.3,
            "step": 5,
            "seed": 0,
        },
    ),
}
# losses whose gradient deliberately stops at a batch statistic (checked by their own gradient test)
NO_GRAD_THROUGH = {"beta_dpo": "beta_batch is detached (the authors' beta_used.detach()): see test_beta_dpo_gradient"}


def test_every_pobench_loss_has_a_formula_test():
    assert set(FORMULAS) == set(losses.LOSSES)


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("case", CASES)
def test_matches_paper_equation(name, case):
    ref_fn, hp = FORMULAS[name]
    out = losses.LOSSES[name].fn(_stats(*case), **hp)
    assert out.losses.item() == pytest.approx(ref_fn(*case, **hp), abs=1e-6)


# Gradient signs the papers state: raising log pi(y_w) lowers the loss, raising log pi(y_l) raises it
# (at points where hinge-type losses are active).
SIGN_CASES = {
    "infifpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "madpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "sem_dpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "cdpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "r_dpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "rrhf": (-20.0, -6.0, 0, 0, 10, 4),  # p_l = -1.5 > p_w = -2: ranking hinge active
    "slic_hf": (-12.0, -12.5, 0, 0, 6, 6),  # margin 0.5 < delta: calibration hinge active
    "asft": (-12.0, -15.0, 0, 0, 6, 9),
    "adpo": (-14.0, -13.0, -13.0, -14.0, 6, 9),  # policy prefers y_l: below the target q
    "rpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "flex_dpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "bco_pair": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "mpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "fdpo_alpha": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "beta_dpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
}


def _num_grad(fn, case, i, hp, h=1e-6):
    lo, hi = list(case), list(case)
    lo[i] -= h
    hi[i] += h
    return (fn(*hi, **hp) - fn(*lo, **hp)) / (2 * h)


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_paper_equation(name, case):
    """d loss / d log pi(y_w|x) and d loss / d log pi(y_l|x) of po-bench's function equal the
    numerical derivatives of the paper's transcription."""
    ref_fn, hp = FORMULAS[name]
    if name in NO_GRAD_THROUGH:
        pytest.skip(NO_GRAD_THROUGH[name])
    for i in (0, 1):  # a hinge exactly at its kink (RRHF on case 1) has no derivative to compare
        at, up, down = list(case), list(case), list(case)
        up[i] += 1e-5
        down[i] -= 1e-5
        right = (ref_fn(*up, **hp) - ref_fn(*at, **hp)) / 1e-5
        left = (ref_fn(*at, **hp) - ref_fn(*down, **hp)) / 1e-5
        if abs(right - left) > 1e-3:
            pytest.skip("the paper's loss is not differentiable at this point")
    s = _stats(*case, requires_grad=True)
    losses.LOSSES[name].fn(s, **hp).losses.sum().backward()
    assert s.chosen_logps.grad.item() == pytest.approx(_num_grad(ref_fn, case, 0, hp), abs=1e-6)
    g_l = s.rejected_logps.grad  # None: a loss that never reads y_l (f-divergence SFT), a zero gradient
    assert (0.0 if g_l is None else g_l.item()) == pytest.approx(_num_grad(ref_fn, case, 1, hp), abs=1e-6)


# One fixed batch of mixed lengths (sums of completion-token log-probs and token counts): the batch
# the report's before/after table is computed on.
BATCH = {
    "c": [-12.0, -40.0, -3.0, -25.0],
    "r": [-15.0, -30.0, -4.5, -28.0],
    "rc": [-13.0, -39.0, -3.2, -26.0],
    "rr": [-14.0, -31.0, -4.4, -27.0],
    "nc": [6, 30, 2, 12],
    "nl": [9, 20, 3, 14],
}


def _batch(requires_grad=True):
    t = lambda k: torch.tensor([float(x) for x in BATCH[k]], dtype=torch.float64, requires_grad=requires_grad)
    return losses.PairStats(t("c"), t("r"), t("nc"), t("nl"), t("rc"), t("rr"))


def _trl_sft_term(s):
    """TRL 1.16's "sft" loss_type: one token mean of the chosen NLL over the whole batch."""
    return -s.chosen_logps.sum() / s.chosen_len.sum()


def test_rpo_per_example_nll_differs_from_trls_batch_token_mean():
    """RPO's paper term is the mean over examples of -log pi(y_w|x)/|y_w|; TRL's "sft" term, what
    loss=rpo trained before, is the batch token mean: on mixed lengths loss and gradient differ."""
    s = _batch()
    ours = losses.rpo(s, beta=0.1, alpha=1.0).losses.mean()
    ours.backward()
    g_ours = s.chosen_logps.grad.clone()
    s2 = _batch()
    dpo = -torch.nn.functional.logsigmoid(0.1 * (s2.chosen_logratio - s2.rejected_logratio)).mean()
    trl = dpo + _trl_sft_term(s2)
    trl.backward()
    g_trl = s2.chosen_logps.grad
    want = (
        sum(ref_rpo(*(BATCH[k][i] for k in ("c", "r", "rc", "rr", "nc", "nl")), beta=0.1, alpha=1.0) for i in range(4))
        / 4
    )
    assert ours.item() == pytest.approx(want, abs=1e-9)
    assert abs(trl.item() - ours.item()) / ours.item() > 0.01  # the old loss was off
    assert (g_trl - g_ours).norm() / g_ours.norm() > 0.1  # and its gradient more so


def test_fdpo_alpha_is_the_papers_alpha_and_trls_coef_is_one_minus_alpha():
    """The paper's f'(u) = (1 - u^-alpha)/alpha is TRL's (u^(a-1) - 1)/(a-1) at a = 1 - alpha: at alpha = 0.3
    TRL's coef 0.3 (what loss=fdpo_alpha sweeps meant before) is a different loss."""
    s = _batch(requires_grad=False)

    def trl_alpha(coef):
        sc = (torch.exp((coef - 1) * s.chosen_logratio) - 1) / (coef - 1)
        sr = (torch.exp((coef - 1) * s.rejected_logratio) - 1) / (coef - 1)
        return -torch.nn.functional.logsigmoid(0.1 * (sc - sr))

    ours = losses.fdpo_alpha(s, beta=0.1, alpha=0.3).losses
    assert torch.allclose(ours, trl_alpha(0.7), atol=1e-12)
    assert not torch.allclose(ours, trl_alpha(0.3), atol=1e-4)


def test_bco_delta_is_the_running_mean_of_batch_rewards():
    """BCO's delta after each step is the mean of the batches' mean rewards seen so far (updated
    before the step's loss, BCO's RunningMoments with one value per step)."""
    mean, n = 0.0, 0
    seen = []
    for rewards in ([0.2, -0.1, 0.4, 0.3], [1.0, 0.5], [-0.6, -0.2, 0.1]):
        mean, n = losses.running_mean_update(mean, n, torch.tensor(rewards, dtype=torch.float64))
        seen.append(sum(rewards) / len(rewards))
        assert mean == pytest.approx(sum(seen) / len(seen), abs=1e-12)
    assert n == 3
    # the loss moves with delta (TRL 1.16's bco_pair is the delta = 0 case)
    s = _batch(requires_grad=False)
    assert losses.bco_pair(s, 0.1, 0.5).losses.mean() != losses.bco_pair(s, 0.1, 0.0).losses.mean()


@pytest.mark.parametrize("name", sorted(SIGN_CASES))
def test_gradient_signs(name):
    _, hp = FORMULAS[name]
    s = _stats(*SIGN_CASES[name], requires_grad=True)
    losses.LOSSES[name].fn(s, **hp).losses.sum().backward()
    assert s.chosen_logps.grad.item() < 0
    assert s.rejected_logps.grad.item() > 0


def test_cdpo_eps_zero_is_dpo():
    s = _stats(*CASES[0])
    h = (CASES[0][0] - CASES[0][2]) - (CASES[0][1] - CASES[0][3])
    assert losses.cdpo(s, beta=0.1, eps=0.0).losses.item() == pytest.approx(-log_sig(0.1 * h), abs=1e-9)


def test_flex_dpo_with_equal_coefficients_is_dpo_and_a_smaller_rejected_one_pushes_it_less():
    s = _stats(*CASES[0])
    h = (CASES[0][0] - CASES[0][2]) - (CASES[0][1] - CASES[0][3])
    assert losses.flex_dpo(s, beta=0.1, w_chosen=1.0, w_rejected=1.0).losses.item() == pytest.approx(
        -log_sig(0.1 * h), abs=1e-9
    )
    grads = []
    for w in (1.0, 0.5):
        st = _stats(*CASES[0], requires_grad=True)
        losses.flex_dpo(st, beta=0.1, w_chosen=1.0, w_rejected=w).losses.sum().backward()
        grads.append(st.rejected_logps.grad.item())
    assert 0 < grads[1] < grads[0]  # the loss rises with log pi(y_l) in both; less steeply at w_rejected=0.5


def test_adpo_is_a_kl_and_q_one_is_dpo():
    s = _stats(*CASES[0])
    h = (CASES[0][0] - CASES[0][2]) - (CASES[0][1] - CASES[0][3])
    assert losses.adpo(s, beta=0.1, q=1.0).losses.item() == pytest.approx(-log_sig(0.1 * h), abs=1e-9)
    # zero exactly where sig(beta*h) = q
    beta, q = 0.5, 0.8
    hq = math.log(q / (1 - q)) / beta
    at = losses.adpo(_stats(hq, 0.0, 0.0, 0.0, 1, 1), beta=beta, q=q).losses.item()
    assert at == pytest.approx(0.0, abs=1e-9)
    assert losses.adpo(_stats(hq + 1, 0.0, 0.0, 0.0, 1, 1), beta=beta, q=q).losses.item() > 0


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["loss=cdpo", "loss.args.eps=0.5"], "loss.args.eps=0.5 for cdpo: allowed [0, 0.5)"),
        (["loss=cdpo", "loss.args.eps=-0.1"], "allowed [0, 0.5)"),
        (["loss=simpo", "loss.args.simpo_gamma=-1"], "loss.args.simpo_gamma=-1 for simpo: allowed [0, inf)"),
        (["loss=rdpo", "loss.args.label_smoothing=0.6"], "for rdpo: allowed [0, 0.5)"),
        (["loss=dpo", "loss.beta=0"], "loss.beta=0 for dpo: allowed (0, inf)"),
        (["loss=ipo", "loss.beta=-1"], "for ipo: allowed (0, inf)"),
        (["loss=slic_hf", "loss.args.delta=-1"], "loss.args.delta=-1 for slic_hf"),
        (["loss=r_dpo", "+loss.args.gamma=1"], "not a hyperparameter of r_dpo"),
        (["loss=ld_dpo", "loss.args.ld_alpha=2"], "for ld_dpo: allowed [0, 1]"),
    ],
)
def test_invalid_hyperparameters_fail_at_config_time(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose(overrides))
    assert needle in str(e.value)


# The mapping of each TRL-backed family onto TRL's config (what TRL will actually run).
@pytest.mark.parametrize(
    "loss, cls, expect",
    [
        ("dpo", "DPOConfig", {"loss_type": ["sigmoid"], "beta": 0.1}),
        ("ipo", "DPOConfig", {"loss_type": ["ipo"], "beta": 0.1}),  # IPO's tau is TRL's beta
        ("rso", "DPOConfig", {"loss_type": ["hinge"]}),
        ("rdpo", "DPOConfig", {"loss_type": ["robust"], "label_smoothing": 0.1}),
        ("exo", "DPOConfig", {"loss_type": ["exo_pair"], "label_smoothing": 1e-3}),
        ("ln_dpo", "DPOConfig", {"loss_type": ["sigmoid_norm"]}),
        ("ld_dpo", "DPOConfig", {"loss_type": ["sigmoid"], "ld_alpha": 0.5}),
        ("fdpo_js", "DPOConfig", {"f_divergence_type": "js_divergence"}),
        ("wpo", "DPOConfig", {"use_weighting": True}),
        # 800 rows / batch 32 = 25 steps per epoch, 2 epochs: tau = 10% of 50 steps
        ("tr_dpo", "DPOConfig", {"sync_ref_model": True, "ref_model_mixup_alpha": 0.6, "ref_model_sync_steps": 5}),
        ("simpo", "CPOConfig", {"loss_type": "simpo", "cpo_alpha": 0.0, "beta": 2.0, "simpo_gamma": 1.0}),
        ("cpo", "CPOConfig", {"loss_type": "sigmoid", "cpo_alpha": 1.0}),
        ("alphapo", "CPOConfig", {"loss_type": "simpo", "alpha": 0.25}),
        ("orpo", "ORPOConfig", {"beta": 0.1}),
        ("kto", "KTOConfig", {"beta": 0.1, "desirable_weight": 1.0}),
    ],
)
def test_trl_mapping(loss, cls, expect, tmp_path):
    from po_bench.training.trl.args import build_trl_config

    cfg = _compose([f"loss={loss}"])
    trl_cfg = build_trl_config(cfg.loss, cfg.train, tmp_path, 0, n_rows=800)
    assert type(trl_cfg).__name__ == cls
    for k, v in expect.items():
        assert getattr(trl_cfg, k) == v, (k, getattr(trl_cfg, k))
    assert trl_cfg.learning_rate == cfg.loss.lr


def test_reference_labels_have_configs():
    """The method labels of the papers' tables (shared/reference) exist as loss configs."""
    import yaml

    labels = {yaml.safe_load(p.read_text())["label"] for p in (Path(CONF_DIR) / "loss").glob("*.yaml")}
    for method in ("SFT", "RRHF", "SLiC-HF", "DPO", "IPO", "CPO", "KTO", "ORPO", "R-DPO", "SimPO"):
        assert method in labels


def test_loss_docs_are_generated_from_configs():
    import subprocess
    import sys

    from .conftest import ROOT

    r = subprocess.run(
        [sys.executable, "scripts/gen_loss_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


# ---- beta-DPO: the batch-level equations, the filter and the running statistics ----------------------------


def _ref_beta_dpo_batch(h, beta, alpha, momentum, margin_mean, margin_std, keep):
    """Wu et al. (2024), beta-DPO on a batch of margins h (plain math), given which pairs the filter kept:
    M_0 <- m M_0 + (1-m) mean(M); sigma <- m sigma + (1-m) std(M) (unbiased, torch's default, as the
    authors' code); beta = beta_0 (1 + alpha (mean_kept M - M_0)); L = mean_kept -log sig(beta M)."""
    n = len(h)
    mu = sum(h) / n
    sd = math.sqrt(sum((x - mu) ** 2 for x in h) / (n - 1))
    m0 = momentum * margin_mean + (1 - momentum) * mu
    sigma = momentum * margin_std + (1 - momentum) * sd
    kept = [x for x, k in zip(h, keep) if k]
    b = max(1e-3, beta * (1 + alpha * (sum(kept) / len(kept) - m0)))
    return sum(-log_sig(b * x) for x in kept) / len(kept), m0, sigma, b


def _batch_margins():
    return [(BATCH["c"][i] - BATCH["rc"][i]) - (BATCH["r"][i] - BATCH["rr"][i]) for i in range(4)]


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_beta_dpo_matches_the_papers_batch_equations(rho):
    h = _batch_margins()
    hp = dict(beta=0.1, alpha=0.6, rho=rho, momentum=0.9, margin_mean=0.3, margin_std=0.8, step=3, seed=7)
    out = losses.beta_dpo(_batch(requires_grad=False), **hp)
    keep = (out.losses != 0).tolist()
    assert sum(keep) == int(rho * 4)
    want, m0, sigma, b = _ref_beta_dpo_batch(h, 0.1, 0.6, 0.9, 0.3, 0.8, keep)
    assert out.losses.mean().item() == pytest.approx(want, abs=1e-9)
    assert out.state == {"margin_mean": pytest.approx(m0), "margin_std": pytest.approx(sigma), "step": 4, "seed": 7}
    assert out.logs["beta_dpo/beta"] == pytest.approx(b) and out.logs["beta_dpo/kept"] == sum(keep)


def test_beta_dpo_filter_draws_by_the_gaussian_weights():
    """The kept pairs are floor(rho*B) draws without replacement with p ~ exp(-(M_i - M_0)^2 / (2 sigma^2)):
    the same draw as torch.multinomial on weights written with plain math; an outlier is rarely kept."""
    h = [0.1, -0.2, 0.3, 0.0, 6.0, 0.2, -0.1, 0.05]
    m0, sigma = 0.05, 0.4
    w = torch.tensor([math.exp(-((x - m0) ** 2) / (2 * sigma**2)) for x in h], dtype=torch.float64)
    for seed in range(5):
        mask = losses.gaussian_keep_mask(torch.tensor(h), m0, sigma, 0.75, seed)
        idx = torch.multinomial(
            w.clamp(min=1e-300), 6, replacement=False, generator=torch.Generator().manual_seed(seed)
        )
        assert sorted(torch.nonzero(mask).flatten().tolist()) == sorted(idx.tolist())
    kept_outlier = sum(bool(losses.gaussian_keep_mask(torch.tensor(h), m0, sigma, 0.75, s)[4]) for s in range(200))
    assert kept_outlier == 0  # p(6.0) / p(0) = exp(-110): never drawn while 7 central pairs remain
    # every margin equal (step 1 from policy = reference): sigma = 0, uniform draw, no NaN
    assert losses.gaussian_keep_mask(torch.zeros(8), 0.0, 0.0, 0.75, 0).sum() == 6


def test_beta_dpo_running_statistics_thread_through_steps():
    """The state returned by one call is the input of the next: M_0 and sigma are momentum averages."""
    state = losses.beta_dpo_init(3)
    assert state == {"margin_mean": 0.0, "margin_std": 0.0, "step": 0, "seed": 3}
    m0 = sd = 0.0
    for shift in (0.0, 1.0, -0.5):
        s = _batch(requires_grad=False)
        s.chosen_logps = s.chosen_logps + shift
        h = [x + shift for x in _batch_margins()]
        out = losses.beta_dpo(s, beta=0.1, alpha=0.6, rho=0.75, momentum=0.9, **state)
        mu = sum(h) / 4
        m0 = 0.9 * m0 + 0.1 * mu
        sd = 0.9 * sd + 0.1 * math.sqrt(sum((x - mu) ** 2 for x in h) / 3)
        assert out.state["margin_mean"] == pytest.approx(m0) and out.state["margin_std"] == pytest.approx(sd)
        state = out.state
    assert state["step"] == 3


def test_beta_dpo_gradient():
    """The gradient is DPO's at the batch's beta held fixed (no gradient through beta_batch), on the kept
    pairs only, scaled by 1/|kept|."""
    s = _batch()
    out = losses.beta_dpo(
        s, beta=0.1, alpha=0.6, rho=0.75, momentum=0.9, margin_mean=0.2, margin_std=0.5, step=0, seed=1
    )
    out.losses.mean().backward()
    keep = (out.losses != 0).detach()
    b = out.logs["beta_dpo/beta"]
    h = torch.tensor(_batch_margins(), dtype=torch.float64)
    want = torch.where(keep, -b * torch.sigmoid(-b * h) / keep.sum(), torch.zeros_like(h))
    assert torch.allclose(s.chosen_logps.grad, want, atol=1e-12)
    assert torch.allclose(s.rejected_logps.grad, -want, atol=1e-12)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["loss=curry_dpo"], "loss=curry_dpo needs dataset.k_samples=4 (got 2)"),
        (["loss=curry_dpo", "dataset.k_samples=4"], "needs dataset.curriculum=easy_to_hard"),
        (["dataset.k_samples=1"], "dataset.k_samples=1: must be >= 2"),
        (["dataset.pair_strategy=top"], "dataset.pair_strategy='top': allowed best_vs_rest, adjacent, best_worst, all"),
        (["loss=kto", "dataset.curriculum=easy_to_hard"], "a curriculum order needs a paired loss"),
        (["loss=beta_dpo", "loss.args.rho=0"], "loss.args.rho=0 for beta_dpo: allowed (0, 1]"),
    ],
)
def test_ranked_data_and_method_requirements_fail_at_config_time(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose(overrides))
    assert needle in str(e.value)
    validate(_compose(["loss=curry_dpo", "dataset.k_samples=4", "dataset.curriculum=easy_to_hard"]))


# ---- a loss from outside po-bench: CONTRIBUTING.md's pure-function recipe as a plug-in ---------------------


def _toy_loss_env(tmp_path) -> dict:
    """The toy loss's entry point, installed as a distribution's metadata in a folder on PYTHONPATH (what
    ``pip install`` of a plug-in package leaves)."""
    from po_bench.training.losses import ENTRY_POINT_GROUP

    return plugin_env(tmp_path, ENTRY_POINT_GROUP, {"toy_hinge": "tests.plugins.toy_loss"})


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_a_loss_from_outside_trains_through_the_pipeline(tmp_path):
    """tests/plugins/toy_loss.py (registered with register_loss, found through the po_bench.losses entry
    point) and its yaml (tests/plugins/conf/loss/, through hydra.searchpath) train a real run; no file under
    po_bench/ names it.  Its first logged loss is exactly the hinge's 1.0 at h = 0 (DPO's would be ln 2)."""
    assert not [p for p in (ROOT / "po_bench").rglob("*.py") if "toy_hinge" in p.read_text()]
    args = [
        *SMALL,
        "loss=toy_hinge",
        PLUGIN_SEARCH_PATH,
        "train.logging_steps=1",
        f"cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/run",
    ]
    r = run_cli(args, ROOT, env_extra=_toy_loss_env(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "done" and rec["config"]["loss"]["function"] == "toy_hinge"
    (facts,) = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("policy/*/train_metrics.json")]
    first = next(h["loss"] for h in facts["history"] if "loss" in h)
    assert first == pytest.approx(1.0, abs=1e-6), first
    # without the entry point the function is unknown: one config error line, before any compute
    bad = run_cli([a for a in args if not a.startswith("hydra.run.dir")] + [f"hydra.run.dir={tmp_path}/bad"], ROOT)
    assert bad.returncode == 2 and "toy_hinge" in bad.stderr.strip().splitlines()[-1], bad.stderr[-2000:]


def test_register_loss_refuses_a_second_owner_and_what_is_not_a_loss():
    from po_bench.training import losses

    with pytest.raises(ValueError, match="'cdpo' is already registered"):
        losses.register_loss("cdpo", losses.LossSpec(losses.rrhf, False))
    with pytest.raises(TypeError, match="takes a LossSpec"):
        losses.register_loss("x", losses.rrhf)
    assert losses.register_loss("cdpo", losses.LOSSES["cdpo"]) is losses.LOSSES["cdpo"]  # the owner again: fine

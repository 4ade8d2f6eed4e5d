"""po-bench's own losses against direct transcriptions of the papers' equations, gradient signs,
hyperparameter ranges; and the mapping of TRL-backed configs onto TRL."""

import math
from pathlib import Path

import pytest
import torch

from po_bench.training import losses
from po_bench.app import CONF_DIR
from po_bench.config import ConfigError, validate

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


FORMULAS = {
    "cdpo": (ref_cdpo, {"beta": 0.1, "eps": 0.2}),
    "r_dpo": (ref_r_dpo, {"beta": 0.1, "alpha": 0.05}),
    "rrhf": (ref_rrhf, {"beta": 1.0, "lam": 1.0}),
    "slic_hf": (ref_slic_hf, {"beta": 1.0, "delta": 1.0, "lam": 0.1}),
    "asft": (ref_asft, {"beta": 1.0, "lam": 0.1}),
    "adpo": (ref_adpo, {"beta": 0.1, "q": 0.8}),
}


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
    "cdpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "r_dpo": (-12.0, -15.0, -13.0, -14.0, 6, 9),
    "rrhf": (-20.0, -6.0, 0, 0, 10, 4),  # p_l = -1.5 > p_w = -2: ranking hinge active
    "slic_hf": (-12.0, -12.5, 0, 0, 6, 6),  # margin 0.5 < delta: calibration hinge active
    "asft": (-12.0, -15.0, 0, 0, 6, 9),
    "adpo": (-14.0, -13.0, -13.0, -14.0, 6, 9),  # policy prefers y_l: below the target q
}


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


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("overrides, needle", [
    (["loss=cdpo", "loss.args.eps=0.5"], "loss.args.eps=0.5 for cdpo: allowed [0, 0.5)"),
    (["loss=cdpo", "loss.args.eps=-0.1"], "allowed [0, 0.5)"),
    (["loss=simpo", "loss.args.simpo_gamma=-1"], "loss.args.simpo_gamma=-1 for simpo: allowed [0, inf)"),
    (["loss=rdpo", "loss.args.label_smoothing=0.6"], "for rdpo: allowed [0, 0.5)"),
    (["loss=dpo", "loss.beta=0"], "loss.beta=0 for dpo: allowed (0, inf)"),
    (["loss=ipo", "loss.beta=-1"], "for ipo: allowed (0, inf)"),
    (["loss=slic_hf", "loss.args.delta=-1"], "loss.args.delta=-1 for slic_hf"),
    (["loss=r_dpo", "+loss.args.gamma=1"], "not a hyperparameter of r_dpo"),
    (["loss=ld_dpo", "loss.args.ld_alpha=2"], "for ld_dpo: allowed [0, 1]"),
])
def test_invalid_hyperparameters_fail_at_config_time(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose(overrides))
    assert needle in str(e.value)


# The mapping of each TRL-backed family onto TRL's config (what TRL will actually run).
@pytest.mark.parametrize("loss, cls, expect", [
    ("dpo", "DPOConfig", {"loss_type": ["sigmoid"], "beta": 0.1}),
    ("ipo", "DPOConfig", {"loss_type": ["ipo"], "beta": 0.1}),  # IPO's tau is TRL's beta
    ("rso", "DPOConfig", {"loss_type": ["hinge"]}),
    ("rdpo", "DPOConfig", {"loss_type": ["robust"], "label_smoothing": 0.1}),
    ("exo", "DPOConfig", {"loss_type": ["exo_pair"], "label_smoothing": 1e-3}),
    ("ln_dpo", "DPOConfig", {"loss_type": ["sigmoid_norm"]}),
    ("ld_dpo", "DPOConfig", {"loss_type": ["sigmoid"], "ld_alpha": 0.5}),
    ("fdpo_js", "DPOConfig", {"f_divergence_type": "js_divergence"}),
    ("wpo", "DPOConfig", {"use_weighting": True}),
    ("tr_dpo", "DPOConfig", {"sync_ref_model": True, "ref_model_mixup_alpha": 0.6}),
    ("rpo", "DPOConfig", {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]}),
    ("mpo", "DPOConfig", {"loss_type": ["sigmoid", "bco_pair", "sft"], "loss_weights": [0.8, 0.2, 1.0]}),
    ("simpo", "CPOConfig", {"loss_type": "simpo", "cpo_alpha": 0.0, "beta": 2.0, "simpo_gamma": 1.0}),
    ("cpo", "CPOConfig", {"loss_type": "sigmoid", "cpo_alpha": 1.0}),
    ("alphapo", "CPOConfig", {"loss_type": "simpo", "alpha": 0.25}),
    ("orpo", "ORPOConfig", {"beta": 0.1}),
    ("kto", "KTOConfig", {"beta": 0.1, "desirable_weight": 1.0}),
])
def test_trl_mapping(loss, cls, expect, tmp_path):
    from po_bench.training.trl_adapter import build_trl_config

    cfg = _compose([f"loss={loss}"])
    trl_cfg = build_trl_config(cfg.loss, cfg.train, tmp_path, 0)
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

    r = subprocess.run([sys.executable, "scripts/gen_loss_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

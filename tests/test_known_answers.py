"""Known-answer tests for every metric and every TRL-backed loss.

* ``kl_and_length`` against the exact KL sum over every completion of a tiny Markov language model
  (three words + EOS, lengths 1-2), ``implicit_reward_accuracy`` on constructed pairs with exact
  rewards and ties, ``gold_metrics`` on constructed samples (gold rewards by hand, ties included).
* Every TRL-backed loss config (backend dpo / cpo / orpo / kto): the first optimizer step's logged
  loss against its closed form.  For reference-based losses the policy equals the reference at the
  first step, so every log-ratio is 0 and most losses are constants (ln 2 for DPO's sigmoid,
  (1/(2 beta))^2 for IPO, 1 for hinge, ...); where a loss has a term that does not vanish there (an
  NLL term, WPO's weights) or no reference at all (CPO, SimPO, AlphaPO, ORPO), the closed form is
  evaluated on the batch's log-probs from ``completion_logps`` (itself checked against a
  token-by-token loop in tests/test_logprobs.py, and equal to what TRL logs).  Then the direction
  of that step (chosen log-prob up, rejected down; see ``DIRECTION``).
* po-bench's own trainer (backend pobench, cDPO with eps = 0) against TRL's sigmoid loss on the same
  batch, policy != reference.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.cli.app import CONF_DIR
from po_bench.data import world
from po_bench.generation.logprobs import completion_logps, tokenize_completion
from po_bench.training import models
from po_bench.training.trl.args import TRAIN_FIELD_MAP, build_trl_config
from po_bench.training.trl.preference import train_preference

from .conftest import compose as _compose

LN2 = math.log(2.0)


# ---- a tiny Markov language model with exact probabilities ---------------------------------------------


def test_gold_metrics_win_rate_with_ties():
    prompts = ["write about apple river =>", "write about apple =>", "write about river =>", "write about apple =>"]
    policy = ["apple river", "apple the", "the", "apple the"]
    sft = ["apple river", "stone stone", "river", "the apple"]
    # r* = 2 coverage - 0.3 offtopic + 0.04 min(len, 14) - 0.5 immediate repeats - 0.25 repeated content words
    rp = [2.0 + 0.08, 2.0 + 0.08, 0.04, 2.0 + 0.08]
    rs = [2.0 + 0.08, -0.6 + 0.08 - 0.5 - 0.25, 2.0 + 0.04, 2.0 + 0.08]
    for p, y, want in zip(prompts + prompts, policy + sft, rp + rs):
        assert world.gold_reward(p, y) == pytest.approx(want, abs=1e-12), (p, y)
    m = world.gold_metrics(prompts, policy, sft)
    assert m["win_rate_vs_sft"] == (0.5 + 1 + 0 + 0.5) / 4  # tie, win, loss, tie (different texts)
    assert m["gold_reward"] == pytest.approx(sum(rp) / 4, abs=1e-12)
    assert m["gold_reward_sft"] == pytest.approx(sum(rs) / 4, abs=1e-12)
    assert m["mean_length_words"] == 1.75


# ---- every TRL-backed loss: the first step from policy == reference ------------------------------------


def _loss_cfg(name):
    return _compose([f"loss={name}"])


BACKENDS = {p.stem: _loss_cfg(p.stem).loss.backend for p in (Path(CONF_DIR) / "loss").glob("*.yaml")}
TRL_LOSSES = sorted(name for name, backend in BACKENDS.items() if backend in ("dpo", "cpo", "orpo", "kto"))


def _logsig(x):
    return torch.nn.functional.logsigmoid(x)


def _nll(b):
    """The SFT / NLL term on chosen completions.  TRL's (backend dpo, cpo): one token-level mean over every
    chosen completion token of the batch; po-bench's (backend pobench): the per-example token mean, averaged."""
    if b.backend == "pobench":
        return float((-b.c / b.nc).mean())
    return float(-b.c.sum() / b.nc.sum())


def _wpo_weights(model, tokenizer, prompts, completions):
    """WPO (arXiv:2406.11827) eq. 2 as TRL computes it: exp(mean over completion tokens of
    log p(y_t) - log sum_v p(v)^2), per sequence."""
    out = []
    with torch.no_grad():
        for p, c in zip(prompts, completions):
            pi, ci = tokenize_completion(tokenizer, p, c)
            ids = torch.tensor([pi + ci])
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            tgt = ids[0, 1:]
            tok = lp.gather(-1, tgt[:, None])[:, 0] - torch.logsumexp(2 * lp, -1)
            out.append(float(torch.exp(tok[len(pi) - 1 :].mean())))
    return torch.tensor(out, dtype=torch.float64)


def _exo(b):
    eps = b.trl_cfg.label_smoothing  # TRL's EXO needs eps > 0 (its DPOConfig sets 1e-3 for exo_pair)
    assert eps > 0
    return 0.5 * (math.log(0.5) - math.log1p(-eps)) + 0.5 * (math.log(0.5) - math.log(eps))


def _simpo_family(b, alpha=0.0):
    ac, ar = b.c / b.nc, b.r / b.nr  # SimPO / AlphaPO rewards use the mean token log-prob
    if alpha:
        ac, ar = (1 - torch.exp(ac) ** -alpha) / alpha, (1 - torch.exp(ar) ** -alpha) / alpha
    gamma = b.args["simpo_gamma"]
    return float((-_logsig(b.beta * (ac - ar) - gamma)).mean())


def _full_sequence_nll(model, tokenizer, prompts, completions):
    """ORPO's NLL term: token-level mean NLL over prompt AND completion tokens (every token but the first)."""
    total, n = 0.0, 0
    with torch.no_grad():
        for p, c in zip(prompts, completions):
            pi, ci = tokenize_completion(tokenizer, p, c)
            ids = torch.tensor([pi + ci])
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            total -= float(lp.gather(-1, ids[0, 1:, None]).sum())
            n += ids.shape[1] - 1
    return total / n


def _orpo(b):
    ac, ar = b.c / b.nc, b.r / b.nr
    log1mexp = lambda x: torch.log(-torch.expm1(x))
    log_odds = (ac - ar) - (log1mexp(ac) - log1mexp(ar))
    return b.full_nll - b.beta * float(_logsig(log_odds).mean())


# closed form of the first step's loss (mean over the batch), b: the batch's statistics at policy == reference
CLOSED_FORM = {
    "dpo": ("ln 2", lambda b: LN2),
    "curry_dpo": ("ln 2 (DPO's loss; the method is in the data order)", lambda b: LN2),
    "step_dpo": ("ln 2 (DPO's loss; the method is in the step-wise data)", lambda b: LN2),
    "rdpo": ("ln 2 (robust, label_smoothing 0)", lambda b: LN2),
    "aot": ("ln 2 (sorted margins all 0)", lambda b: LN2),
    "ln_dpo": ("ln 2 (sigmoid_norm)", lambda b: LN2),
    "ld_dpo": ("ln 2 (ld_alpha scales both sides)", lambda b: LN2),
    "tr_dpo": ("ln 2 (reference not yet synced)", lambda b: LN2),
    "fdpo_alpha": ("ln 2 (alpha-divergence scores 0)", lambda b: LN2),
    "cdpo": ("ln 2 (label smoothing does not move -ln sig(0))", lambda b: LN2),
    "fdpo_fkl": ("ln 2 (forward-KL scores 1 - e^0 = 0)", lambda b: LN2),
    "fdpo_js": ("ln 2 (JS scores ln2 + ln sig(0) = 0)", lambda b: LN2),
    "ipo": ("(1/(2 beta))^2", lambda b: (1 / (2 * b.beta)) ** 2),
    "rso": ("1 (hinge)", lambda b: 1.0),
    "exo": ("1/2 (ln 1/2 - ln(1-eps)) + 1/2 (ln 1/2 - ln eps)", _exo),
    "nca": ("2 ln 2 (ln2 + ln2/2 + ln2/2)", lambda b: 2 * LN2),
    "bco_pair": ("2 ln 2 (rewards 0, so the running mean delta = 0)", lambda b: 2 * LN2),
    "beta_dpo": ("ln 2 (margins 0 = M_0: beta = beta_0; mean over the kept pairs)", lambda b: LN2),
    "sppo": ("2 (1/(2 beta))^2", lambda b: 2 * (0.5 / b.beta) ** 2),
    "apo_zero": ("1 (1 - sig(0) + sig(0))", lambda b: 1.0),
    "apo_down": ("1 (sig(0) + 1 - sig(0))", lambda b: 1.0),
    "discopop": ("(ln 2 + 1)/2 (modulation sig(0) = 1/2)", lambda b: (LN2 + 1) / 2),
    "sft_lowlr": ("NLL(chosen) token mean", _nll),
    "flex_dpo": ("ln 2 (both coefficients times a zero log-ratio)", lambda b: LN2),
    "rpo": ("ln 2 + NLL(chosen)", lambda b: LN2 + float(b.args.get("alpha", 1.0)) * _nll(b)),
    "mpo": (
        "0.8 ln 2 + 0.2 (2 ln 2) + NLL(chosen)",
        lambda b: (
            b.args.get("w_pref", 0.8) * LN2 + b.args.get("w_bco", 0.2) * 2 * LN2 + b.args.get("w_sft", 1.0) * _nll(b)
        ),
    ),
    "wpo": (
        "ln 2 * mean(w_chosen w_rejected), WPO weights from the logits",
        lambda b: LN2 * float((b.w_chosen * b.w_rejected).mean()),
    ),
    "kto": ("1/2 (1 - sig(beta (0 - KL=0)), both labels, weights 1)", lambda b: 0.5),
    # reference-free: no policy == reference point; the closed form on the batch's log-probs
    "cpo": (
        "mean -ln sig(beta (c - r)) + cpo_alpha NLL(chosen)",
        lambda b: float((-_logsig(b.beta * (b.c - b.r))).mean()) + b.args["cpo_alpha"] * _nll(b),
    ),
    "simpo": ("mean -ln sig(beta (c/|c| - r/|r|) - gamma)", _simpo_family),
    "alphapo": (
        "mean -ln sig(beta (R_a(c) - R_a(r)) - gamma), R_a = (1 - p^-a)/a, p = e^(c/|c|)",
        lambda b: _simpo_family(b, alpha=b.args["alpha"]),
    ),
    "orpo": ("NLL(prompt + chosen) - beta mean ln sig(log odds(c/|c|) - log odds(r/|r|))", _orpo),
}

# Direction of the first step on the batch (mean chosen log-prob, mean rejected log-prob): +1 up, -1 down,
# None: not determined by the loss at this point, so not asserted (the margin is, always).
DIRECTION = {name: (+1, -1) for name in CLOSED_FORM}
DIRECTION.update(
    {
        # DiscoPOP at zero margin is non-convex: d loss / d margin = rho'(0)(1 - ln 2) - 3/4 > 0 for tau = 0.05
        # (see tests/test_preference.py), so the first step LOWERS the margin: chosen down, rejected up.
        "discopop": (-1, +1),
        # apo_down: d/d chosen-logratio of sig(beta c) + 1 - sig(beta (c - r)) is beta/4 - beta/4 = 0 at the start;
        # only the rejected side is pushed (down).
        "apo_down": (None, -1),
        # an NLL term on chosen raises shared tokens' probabilities, so rejected may rise with them
        "sft_lowlr": (+1, None),
        "cpo": (+1, None),
        "orpo": (+1, None),
        "rpo": (+1, None),
        "mpo": (+1, None),
    }
)
MARGIN_SIGN = {"discopop": -1, "sft_lowlr": None}  # SFT alone does not target the margin


# po-bench-backed losses (po_bench/training/losses.py) whose closed form at policy == reference is here too
# (rpo, mpo, bco_pair, fdpo_alpha moved from TRL to po-bench functions): checked through the same trainer path
CHECKED = sorted(name for name in BACKENDS if name in CLOSED_FORM and BACKENDS[name] != "sft")


def test_every_trl_backed_loss_has_a_known_answer():
    assert set(TRL_LOSSES) <= set(CLOSED_FORM), set(TRL_LOSSES) - set(CLOSED_FORM)
    assert set(TRL_LOSSES) <= set(CHECKED)


@pytest.fixture(scope="module")
def batch_pairs(pairs):  # the first 4 of conftest's 32 labelled world pairs
    return pairs[:4]


def _stats(model, tokenizer, pairs):
    P = [p["prompt"] for p in pairs]
    c, nc = completion_logps(model, tokenizer, P, [p["chosen"] for p in pairs])
    r, nr = completion_logps(model, tokenizer, P, [p["rejected"] for p in pairs])
    return NS(c=c.double(), r=r.double(), nc=nc.double(), nr=nr.double())


def _train_cfg(cfg, steps):
    train = {k: v for k, v in cfg.train.items() if k in TRAIN_FIELD_MAP}  # the training fields passed on to TRL
    return NS(
        **{
            **train,
            "max_steps": steps,
            "batch_size": 4,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
            "grad_accum": 1,
            "save_steps": 0,
        }
    )


@pytest.mark.parametrize("loss", CHECKED)
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_first_step_loss_closed_form_and_direction(loss, tokenizer, batch_pairs, tmp_path):
    cfg = _loss_cfg(loss)
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128, seed=0)
    ref = None if cfg.loss.reference_free else copy.deepcopy(model)
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    train = _train_cfg(cfg, 1)
    b = _stats(model, tokenizer, batch_pairs)
    b.beta, b.args, b.backend = float(loss_cfg.beta), loss_cfg.args, loss_cfg.backend
    b.trl_cfg = build_trl_config(loss_cfg, train, tmp_path / "cfg", 0)
    P = [p["prompt"] for p in batch_pairs]
    b.w_chosen = _wpo_weights(model, tokenizer, P, [p["chosen"] for p in batch_pairs])
    b.w_rejected = _wpo_weights(model, tokenizer, P, [p["rejected"] for p in batch_pairs])
    b.full_nll = _full_sequence_nll(model, tokenizer, P, [p["chosen"] for p in batch_pairs])
    cache = (lambda: None, lambda obj: None) if loss_cfg.backend == "dpo" else None
    res = train_preference(model, ref, tokenizer, batch_pairs, loss_cfg, train, tmp_path, 0, ref_logps_cache=cache)
    (first,) = [h for h in res["history"] if "loss" in h]
    label, form = CLOSED_FORM[loss]
    want = form(b)
    print(f"{loss}: first-step loss {first['loss']:.6f}, closed form {label} = {want:.6f}")
    assert math.isfinite(first["loss"])
    assert first["loss"] == pytest.approx(want, rel=1e-5, abs=1e-5), label
    # TRL's logged log-probs are ours (sum per sequence; CPO-SimPO / ORPO log the token mean)
    # (KTO's batch is a shuffled half of the unpaired rows; LD-DPO logs its length-desensitised log-probs)
    if "logps/chosen" in first and loss not in ("kto", "ld_dpo"):
        avg = loss in ("simpo", "alphapo", "orpo")
        mean_c = float((b.c / b.nc).mean() if avg else b.c.mean())
        assert first["logps/chosen"] == pytest.approx(mean_c, rel=1e-5)
    # the step's direction on this batch
    after = _stats(model, tokenizer, batch_pairs)
    dc, dr = float((after.c - b.c).mean()), float((after.r - b.r).mean())
    want_c, want_r = DIRECTION[loss]
    if want_c is not None:
        assert want_c * dc > 0, f"{loss}: chosen log-prob moved {dc:+.4f}"
    if want_r is not None:
        assert want_r * dr > 0, f"{loss}: rejected log-prob moved {dr:+.4f}"
    sign = MARGIN_SIGN.get(loss, +1)
    if sign is not None:
        assert sign * (dc - dr) > 0, f"{loss}: margin moved {dc - dr:+.4f}"


# ---- po-bench's own trainer against TRL's sigmoid loss --------------------------------------------------


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_pobench_cdpo_eps0_matches_trl_sigmoid(tokenizer, batch_pairs, tmp_path):
    """Same policy, same (different) reference, same batch: po-bench's trainer running cDPO with
    eps = 0 logs the same loss, log-probs and reward margins as TRL's DPO sigmoid loss, two steps."""
    cfg = _loss_cfg("dpo")
    policy = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128, seed=0)
    ref = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128, seed=1)
    train = _train_cfg(cfg, 2)
    runs = {}
    for name, lc in {
        "trl": NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3}),
        "pobench": NS(**{**_loss_cfg("cdpo").loss, "args": {"eps": 0.0}, "lr": 1e-3}),
    }.items():
        res = train_preference(
            copy.deepcopy(policy),
            copy.deepcopy(ref),
            tokenizer,
            batch_pairs,
            lc,
            train,
            tmp_path / name,
            0,
            ref_logps_cache=None,
        )
        runs[name] = [h for h in res["history"] if "loss" in h]
    b = _stats(policy, tokenizer, batch_pairs)
    rb = _stats(ref, tokenizer, batch_pairs)
    h = (b.c - rb.c) - (b.r - rb.r)
    want = float((-_logsig(0.1 * h)).mean())
    assert abs(want - LN2) > 1e-3  # policy != reference: a non-trivial value
    assert runs["trl"][0]["loss"] == pytest.approx(want, rel=1e-5)
    assert len(runs["trl"]) == len(runs["pobench"]) == 2
    for t, p in zip(runs["trl"], runs["pobench"]):
        for k in ("loss", "logps/chosen", "logps/rejected", "rewards/chosen", "rewards/margins"):
            assert p[k] == pytest.approx(t[k], rel=1e-4, abs=1e-5), (t["step"], k)

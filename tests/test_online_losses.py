"""The online methods' losses (po_bench/training/online_losses.py) against hand transcriptions of their papers'
per-pair losses, on per-sequence statistics; and the check of their arguments."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from po_bench.training.labellers import labeller_names
from po_bench.training.losses import PairStats
from po_bench.training.online import LoopInputs
from po_bench.training.online_losses import (
    LOOPS,
    ONLINE_LOSSES,
    brain,
    brain_targets,
    check_online,
    grpo_losses,
    guided,
    loop_function,
    ofs_dpo,
    ofs_swaps,
    online_args,
    online_dpo,
    oprl_prm_losses,
    oprl_step_rewards,
    oprl_token_advantages,
    reinforce_losses,
    rto_token_rewards,
    xpo,
)

# two pairs: policy / reference log-probs of chosen and rejected, and the policy's log-prob of XPO's reference sample
PC, PR, RC, RR = [-5.0, -9.0], [-7.5, -4.0], [-6.0, -8.0], [-6.5, -5.5]
REF_SAMPLE = [-7.5, -9.0]  # pair 1: the reference's sample was rejected; pair 2: chosen


def _stats():
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return PairStats(t(PC), t(PR), t([3.0, 4.0]), t([5.0, 2.0]), t(RC), t(RR))


def _dpo_by_hand(i: int, beta: float) -> float:
    h = (PC[i] - RC[i]) - (PR[i] - RR[i])
    return -math.log(1.0 / (1.0 + math.exp(-beta * h)))


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_online_dpo_is_dpo_on_the_online_pair(beta):
    out = online_dpo(_stats(), beta)
    assert out.losses.tolist() == pytest.approx([_dpo_by_hand(i, beta) for i in range(2)], rel=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * (PC[i] - RC[i]) for i in range(2)])
    assert out.rejected_rewards.tolist() == pytest.approx([beta * (PR[i] - RR[i]) for i in range(2)])


@pytest.mark.parametrize("beta,alpha", [(0.1, 1e-5), (0.1, 0.3), (0.5, 2.0)])
def test_xpo_is_dpo_plus_alpha_times_the_reference_samples_log_prob(beta, alpha):
    """XPO (Xie et al. 2024, Algorithm 1): alpha * sum_t log pi(y~_t) - sum log sigma(beta h); per pair:
    -log sigma(beta h) + alpha * log pi(y~)."""
    out = xpo(_stats(), beta, alpha, torch.tensor(REF_SAMPLE, dtype=torch.float64))
    hand = [_dpo_by_hand(i, beta) + alpha * REF_SAMPLE[i] for i in range(2)]
    assert out.losses.tolist() == pytest.approx(hand, rel=1e-12)


def test_xpo_with_alpha_zero_is_online_dpo_and_its_bonus_pushes_the_reference_sample_down():
    s = _stats()
    assert torch.equal(xpo(s, 0.1, 0.0, torch.tensor(REF_SAMPLE)).losses, online_dpo(s, 0.1).losses)
    lp = torch.tensor(REF_SAMPLE, requires_grad=True)
    xpo(s, 0.1, 0.5, lp).losses.sum().backward()
    assert lp.grad.tolist() == [0.5, 0.5]  # minimising raises nothing but lowers log pi(y~): gradient +alpha


def test_defaults_and_arguments():
    assert online_args("xpo", {}) == {"labeller": "gold", "label_temperature": 0.0, "alpha": 1e-5, "accumulate": False}
    assert online_args("online_dpo", {"labeller": "implicit"})["labeller"] == "implicit"
    assert set(ONLINE_LOSSES) == {"online_dpo", "xpo", "brain", "rto", "oprl", "ofs_dpo"}
    assert online_args("brain", {}) == {
        "labeller": "gold",
        "label_temperature": 0.0,
        "n": 4,
        "proposal": "sft",
        "targets": "soft",
    }
    with pytest.raises(ValueError, match=r"loss.args.n=1: must be an integer >= 2"):
        check_online("brain", {"n": 1}, labeller_names())
    with pytest.raises(ValueError, match=r"loss.args.proposal='ref': must be sft or policy"):
        check_online("brain", {"proposal": "ref"}, labeller_names())
    names = labeller_names()
    check_online("xpo", {"alpha": 0.0, "accumulate": True, "labeller": "annotator"}, names)
    with pytest.raises(ValueError, match=r"loss.args.alpha=-1: must be a number >= 0"):
        check_online("xpo", {"alpha": -1}, names)
    with pytest.raises(ValueError, match=r"loss.args.accumulate='yes': must be true or false"):
        check_online("xpo", {"accumulate": "yes"}, names)
    with pytest.raises(ValueError, match=r"loss.args.alpha is not an argument of online_dpo"):
        check_online("online_dpo", {"alpha": 0.1}, names)
    with pytest.raises(ValueError, match=r"loss.args.labeller='oracle': allowed gold, annotator, implicit"):
        check_online("online_dpo", {"labeller": "oracle"}, names)
    with pytest.raises(ValueError, match=r"loss.function='nope': allowed online_dpo, xpo, brain, rto, oprl, ofs_dpo"):
        check_online("nope", {}, names)


# BRAIn on two prompts of three samples: policy, reference (SFT) and proposal log-probs, and the rewards
BP = [[-5.0, -9.0, -7.0], [-4.0, -6.5, -8.0]]
BR = [[-6.0, -8.0, -7.5], [-5.0, -5.5, -9.0]]
BQ = [[-5.5, -8.5, -6.0], [-4.5, -7.0, -8.5]]
BRW = [[1.0, 0.2, 0.7], [0.1, 0.9, 0.9]]


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def _brain_by_hand(i: int, beta: float, q) -> float:
    """Pandey et al. 2024: targets alpha_j = exp(r_j/beta + log p_sft(y_j) - log q(y_j)) / sum_k (same); the
    policy's self-normalised weights w_j = exp(log pi(y_j) - log q(y_j)) / sum_k (same); loss -sum_j alpha_j log w_j."""
    a = [math.exp(BRW[i][j] / beta + BR[i][j] - q[i][j]) for j in range(3)]
    w = [math.exp(BP[i][j] - q[i][j]) for j in range(3)]
    return -sum(a[j] / sum(a) * math.log(w[j] / sum(w)) for j in range(3))


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("proposal", ["sft", "other"])
def test_brain_is_the_cross_entropy_of_the_posterior_weights_and_the_policys_self_normalised_weights(beta, proposal):
    q = BR if proposal == "sft" else BQ
    out = brain(_t(BP), _t(BR), _t(q), _t(BRW), beta)
    assert out.tolist() == pytest.approx([_brain_by_hand(i, beta, q) for i in range(2)], rel=1e-12)


def test_brains_gradient_is_target_minus_self_normalised_baseline():
    """grad of the loss wrt log pi(y_j) = -(alpha_j - w_j): the paper's estimator with its self-normalised baseline."""
    lp = _t(BP).requires_grad_(True)
    brain(lp, _t(BR), _t(BQ), _t(BRW), 1.0).sum().backward()
    alpha = brain_targets(_t(BRW), _t(BR), _t(BQ), 1.0)
    w = (_t(BP) - _t(BQ)).softmax(-1)
    assert torch.allclose(lp.grad, w - alpha, rtol=0, atol=1e-12)
    # argmax targets: a one-hot, ties split evenly
    hard = brain_targets(_t(BRW), _t(BR), _t(BR), 1.0, "argmax")
    assert hard.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]


def test_brain_with_two_sft_samples_and_argmax_targets_is_dpo_at_beta_one():
    """The paper's connection (DPO-sft as a special case of BRAIn): q = p_sft, n = 2, argmax targets.  Then
    loss = -log [pi/ref(y_w) / (pi/ref(y_w) + pi/ref(y_l))] = -log sigmoid(log pi/ref(y_w) - log pi/ref(y_l)),
    DPO's loss at beta 1 with the SFT model as reference, exactly.  The reference terms are *included* (the
    policy's self-normalised weights are over log pi - log q); a softmax over log pi alone would equal DPO only
    when log p_sft(y_w) = log p_sft(y_l)."""
    pc, pr, rc, rr = _t(PC), _t(PR), _t(RC), _t(RR)
    lp, lref = torch.stack([pc, pr], -1), torch.stack([rc, rr], -1)
    rewards = _t([[1.0, 0.0], [0.3, -2.0]])  # the first sample is the chosen one in both pairs
    out = brain(lp, lref, lref, rewards, 0.37, "argmax")  # beta only scales r: argmax does not depend on it
    s = PairStats(pc, pr, _t([1.0, 1.0]), _t([1.0, 1.0]), rc, rr)
    assert out.tolist() == pytest.approx(online_dpo(s, 1.0).losses.tolist(), rel=1e-12)
    assert out.tolist() == pytest.approx([_dpo_by_hand(i, 1.0) for i in range(2)], rel=1e-12)
    no_ref = -(lp.log_softmax(-1)[:, 0])  # softmax over log pi alone: not DPO unless the reference terms are equal
    assert no_ref.tolist() != pytest.approx(out.tolist())
    equal = brain(lp, torch.zeros_like(lref), torch.zeros_like(lref), rewards, 1.0, "argmax")
    assert equal.tolist() == pytest.approx(no_ref.tolist(), rel=1e-12)


# RTO (Zhong et al. 2024): two samples, three completion tokens at most, right-padded (the second sample has two)
POL = [[-1.0, -2.0, -0.5], [-0.3, -1.2, 0.0]]
REF = [[-1.5, -1.0, -0.7], [-0.2, -2.0, 0.0]]
GUIDE = [[-0.5, -3.0, -0.1], [-0.1, -0.4, 0.0]]
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
SPARSE = [2.0, -1.0]


def _rto_by_hand(beta, clip, kl, dense):
    """r_t = clip(beta (g_t - ref_t), -c, c) [dense] - kl (pol_t - ref_t) + r* at the last token, one token at a
    time."""
    out = []
    for i in range(2):
        n = int(sum(MASK[i]))
        row = []
        for t in range(3):
            if t >= n:
                row.append(0.0)
                continue
            r = -kl * (POL[i][t] - REF[i][t])
            if dense:
                r += min(max(beta * (GUIDE[i][t] - REF[i][t]), -clip), clip)
            if t == n - 1:
                r += SPARSE[i]
            row.append(r)
        out.append(row)
    return out


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize(("beta", "clip", "kl"), [(0.1, 1.0, 0.05), (1.0, 0.3, 0.0), (2.0, 0.5, 0.2)])
def test_rto_token_rewards_and_reinforce_loss_match_a_hand_transcription(dense, beta, clip, kl):
    t = torch.tensor
    r = rto_token_rewards(t(POL), t(REF), t(GUIDE), t(MASK), t(SPARSE), beta, clip, kl, dense)
    hand = _rto_by_hand(beta, clip, kl, dense)
    assert torch.allclose(r, t(hand), atol=1e-6)
    # REINFORCE with the other sample's total return as the baseline: loss_i = -sum_t (G_i,t - G_j,0) log pi_t
    pol = t(POL, requires_grad=True)
    losses, adv = reinforce_losses(pol, r, t(MASK), t([1, 0]))
    togo = [[sum(hand[i][u] for u in range(s, 3)) for s in range(3)] for i in range(2)]
    want = []
    for i, j in ((0, 1), (1, 0)):
        n = int(sum(MASK[i]))
        want.append(-sum((togo[i][s] - togo[j][0]) * POL[i][s] for s in range(n)))
    assert torch.allclose(losses, t(want), atol=1e-5)
    losses.sum().backward()  # the gradient of log pi_t is -(advantage_t): rewards carry none
    assert torch.allclose(pol.grad, -adv, atol=1e-6)
    assert adv[1, 2] == 0 and pol.grad[1, 2] == 0  # padding


def test_rto_sparse_only_is_rloo_and_the_dense_term_is_clipped():
    t = torch.tensor
    r = rto_token_rewards(t(POL), t(REF), None, t(MASK), t(SPARSE), 0.1, 1.0, 0.0, False)
    _, adv = reinforce_losses(t(POL), r, t(MASK), t([1, 0]))
    assert adv.tolist() == [[3.0, 3.0, 3.0], [-3.0, -3.0, 0.0]]  # every token: r*(y) - r*(other): RLOO, k = 2
    big = rto_token_rewards(t(POL), t(REF), t(GUIDE), t(MASK), t([0.0, 0.0]), 10.0, 0.25, 0.0, True)
    assert big.abs().max() == 0.25 and big[0, 0] == 0.25 and big[0, 1] == -0.25
    assert guided("rto", {}) and not guided("rto", {"dense": False}) and not guided("xpo", {})
    names = labeller_names()
    check_online("rto", {"dense": False, "clip": 0.5, "kl_coef": 0.0}, names)
    with pytest.raises(ValueError, match=r"loss.args.dense='no': must be true or false"):
        check_online("rto", {"dense": "no"}, names)


# OPRL (Liu et al. 2025): one prompt's group of three samples, four completion positions at most (right-padded);
# the PRM's and the sampling policy's (pi_old) per-token log-probs, each token's world step (-1: none)
OP = [[-1.0, -2.0, -0.5, -0.7], [-0.3, -1.2, -2.2, 0.0], [-0.9, -0.4, 0.0, 0.0]]
OO = [[-1.5, -1.0, -0.7, -0.6], [-0.2, -2.0, -1.0, 0.0], [-0.5, -0.5, 0.0, 0.0]]
OM = [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]
OSTEP = [[0, 0, 1, 2], [0, 1, 1, -1], [-1, -1, -1, -1]]  # the third sample has no steps
OUT = [[1.0, -0.5, 0.25]]


def _oprl_by_hand(beta, alpha):
    """The step rewards beta * sum_{t in k} (prm_t - old_t); A_E = (r - mean) / (std + 1e-4) over the group (std
    unbiased); A_S the same over every step reward of the group; A_t = A_E + alpha * A_S(step of t), one value at
    a time."""
    steps = [[0.0] * 3 for _ in range(3)]
    for i in range(3):
        for t in range(4):
            if OM[i][t] and OSTEP[i][t] >= 0:
                steps[i][OSTEP[i][t]] += beta * (OP[i][t] - OO[i][t])
    n_steps = [3, 2, 0]

    def z(xs):
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
        return [(x - m) / (sd + 1e-4) for x in xs]

    a_e = z(OUT[0])
    flat = [steps[i][k] for i in range(3) for k in range(n_steps[i])]
    zs = iter(z(flat))
    a_s = [[next(zs) if k < n_steps[i] else 0.0 for k in range(3)] for i in range(3)]
    adv = [[a_e[i] + (alpha * a_s[i][OSTEP[i][t]] if OSTEP[i][t] >= 0 else 0.0) for t in range(4)] for i in range(3)]
    return steps, a_e, a_s, adv


@pytest.mark.parametrize(("beta", "alpha"), [(0.1, 1.0), (0.5, 0.3), (1.0, 0.0)])
def test_oprl_step_rewards_and_advantages_match_a_hand_transcription(beta, alpha):
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    step = torch.tensor(OSTEP)
    r = oprl_step_rewards(t(OP), t(OO), step, 3, beta)
    steps, a_e, a_s, adv = _oprl_by_hand(beta, alpha)
    assert torch.allclose(r, t(steps), rtol=0, atol=1e-12)
    smask = t([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    got, got_e, got_s = oprl_token_advantages(t(OUT), r, smask, step, alpha)
    assert torch.allclose(got_e, t(a_e), rtol=1e-12, atol=0)
    assert torch.allclose(got_s, t(a_s), rtol=1e-12, atol=1e-12)
    assert torch.allclose(got, t(adv), rtol=1e-12, atol=1e-12)
    assert got[2].tolist() == pytest.approx([a_e[2]] * 4)  # no steps: the outcome advantage alone


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_oprl_prm_loss_is_trajectory_dpo_against_the_previous_policy(beta):
    """J_PRM = -log sigma(beta * [log pi_prm/pi_old (tau+) - log pi_prm/pi_old (tau-)]) per pair."""
    prm_w, old_w, prm_l, old_l = [-5.0, -9.0], [-6.0, -8.0], [-7.5, -4.0], [-6.5, -5.5]
    got = oprl_prm_losses(_t(prm_w), _t(old_w), _t(prm_l), _t(old_l), beta)
    hand = [-math.log(1 / (1 + math.exp(-beta * ((prm_w[i] - old_w[i]) - (prm_l[i] - old_l[i]))))) for i in range(2)]
    assert got.tolist() == pytest.approx(hand, rel=1e-12)


@pytest.mark.parametrize("clip", [0.2, 0.05])
def test_grpo_surrogate_matches_a_hand_transcription_and_is_the_policy_gradient_at_ratio_one(clip):
    """-mean_t min(rho_t A_t, clip(rho_t, 1-c, 1+c) A_t) per sample; at pi = pi_old (one update per batch, as the
    loop takes) its gradient is -A_t / |y| on log pi(y_t): the clip never acts."""
    adv = [[0.5, -1.0, 2.0, 0.3], [-0.4, 0.1, 1.5, 9.0], [1.0, 1.0, 0.0, 0.0]]
    got = grpo_losses(_t(OP), _t(OO), _t(adv), _t(OM), clip)
    hand = []
    for i in range(3):
        n = int(sum(OM[i]))
        terms = []
        for k in range(n):
            rho = math.exp(OP[i][k] - OO[i][k])
            terms.append(min(rho * adv[i][k], min(max(rho, 1 - clip), 1 + clip) * adv[i][k]))
        hand.append(-sum(terms) / n)
    assert got.tolist() == pytest.approx(hand, rel=1e-12)
    lp = _t(OP).requires_grad_()
    grpo_losses(lp, _t(OP), _t(adv), _t(OM), clip).sum().backward()
    want = [[-adv[i][k] * OM[i][k] / sum(OM[i]) for k in range(4)] for i in range(3)]
    assert torch.allclose(lp.grad, _t(want), rtol=1e-12, atol=0)
    names = labeller_names()
    check_online("oprl", {"n": 2, "alpha": 0.0, "clip": 0.1, "labeller": "annotator"}, names)
    with pytest.raises(ValueError, match=r"loss.args.n=1: must be an integer >= 2"):
        check_online("oprl", {"n": 1}, names)
    assert online_args("oprl", {}) == {"labeller": "gold", "label_temperature": 0.0, "n": 4, "alpha": 1.0, "clip": 0.2}


# OFS-DPO (a reconstruction: docs/online.md): the fast and the slow LoRA modules' log-probs of the same pairs
SC, SR = [-5.5, -8.0], [-7.0, -4.5]  # the slow module's chosen / rejected log-probs (the fast one's: PC, PR)


def _slow_stats():
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return PairStats(t(SC), t(SR), t([3.0, 4.0]), t([5.0, 2.0]), t(RC), t(RR))


@pytest.mark.parametrize("beta, chase", [(0.1, 1.0), (0.5, 0.3), (1.0, 0.0)])
def test_ofs_dpo_is_both_modules_dpo_plus_the_chasing_term(beta, chase):
    out = ofs_dpo(_stats(), _slow_stats(), beta, chase)
    for i in range(2):
        h_fast = (PC[i] - RC[i]) - (PR[i] - RR[i])
        h_slow = (SC[i] - RC[i]) - (SR[i] - RR[i])
        sig = lambda z: 1.0 / (1.0 + math.exp(-z))  # noqa: E731
        want = (
            -math.log(sig(beta * h_fast))
            - math.log(sig(beta * h_slow))
            - chase * math.log(sig(beta * (h_fast - h_slow)))
        )
        assert out.losses[i].item() == pytest.approx(want, rel=1e-12)
        assert out.chosen_rewards[i].item() == pytest.approx(beta * (PC[i] - RC[i]))  # the fast module's rewards
        assert out.rejected_rewards[i].item() == pytest.approx(beta * (PR[i] - RR[i]))


def test_ofs_dpos_chasing_term_moves_only_the_fast_module_and_the_swap_rule():
    t = lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True)  # noqa: E731
    fc, fr, sc, sr = t(PC), t(PR), t(SC), t(SR)
    ref = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    n = ref([1.0, 1.0])
    fast, slow = PairStats(fc, fr, n, n, ref(RC), ref(RR)), PairStats(sc, sr, n, n, ref(RC), ref(RR))
    (ofs_dpo(fast, slow, 0.1, 1.0).losses.sum() - ofs_dpo(fast, slow, 0.1, 0.0).losses.sum()).backward()
    assert sc.grad.abs().sum() == 0 and sr.grad.abs().sum() == 0  # the regulariser: no gradient into the slow one
    assert (fc.grad < 0).all() and (fr.grad > 0).all()  # it raises the fast module's margin over the slow one's
    assert ofs_swaps(0.7, 0.6) and not ofs_swaps(0.6, 0.7) and not ofs_swaps(0.6, 0.6)


def test_ofs_dpo_arguments():
    names = labeller_names()
    a = online_args("ofs_dpo", {})
    assert a == {
        "labeller": "gold",
        "label_temperature": 0.0,
        "chase": 1.0,
        "lr_ratio": 4.0,
        "lora_r": 8,
        "lora_alpha": 16,
        "domains": 0,
        "weights": None,
    }
    check_online("ofs_dpo", {"domains": 3, "weights": [1, 2, 1], "lr_ratio": 1}, names)
    for args, msg in (
        ({"lr_ratio": 0.5}, r"loss.args.lr_ratio=0.5: must be a number >= 1"),
        ({"lora_r": 0}, r"loss.args.lora_r=0: must be an integer >= 1"),
        ({"domains": -1}, r"loss.args.domains=-1: must be an integer >= 0"),
        ({"weights": [0, 0]}, r"loss.args.weights=\[0, 0\]: must be null"),
        ({"chase": -1}, r"loss.args.chase=-1: must be a number >= 0"),
    ):
        with pytest.raises(ValueError, match=msg):
            check_online("ofs_dpo", args, names)


def test_every_online_method_names_a_loop_that_is_a_function_of_one_inputs_record():
    """An online method's loop is its OnlineSpec's ``loop`` (LOOPS: ``module:function``, imported when run), a
    function of one LoopInputs (keyword-only extras allowed); the policy stage builds the record and calls it."""
    assert set(LOOPS) == {spec.loop for spec in ONLINE_LOSSES.values()}
    for function in ONLINE_LOSSES:
        params = list(inspect.signature(loop_function(function), eval_str=True).parameters.values())
        assert params[0].annotation is LoopInputs, function
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), function
    # OFS-DPO's reference is its base with the adapters off: the stage loads no second copy for it
    assert [f for f, s in ONLINE_LOSSES.items() if not s.reference] == ["ofs_dpo"]
    assert {f for f, s in ONLINE_LOSSES.items() if not LOOPS[s.loop].ddp} == {"rto", "oprl", "ofs_dpo"}

"""The online methods' losses (po_bench/training/online_losses.py) against hand transcriptions of their papers'
per-pair losses, on per-sequence statistics; and the check of their arguments."""

from __future__ import annotations

import math

import pytest
import torch

from po_bench.training.labellers import labeller_names
from po_bench.training.losses import PairStats
from po_bench.training.online_losses import ONLINE_LOSSES, check_online, online_args, online_dpo, xpo

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
    assert set(ONLINE_LOSSES) == {"online_dpo", "xpo"}
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
    with pytest.raises(ValueError, match=r"loss.function='nope': allowed online_dpo, xpo"):
        check_online("nope", {}, names)

"""Fine-grained methods: the world's steps and token gains, Step-DPO's step-wise pairs, TGDPO's token-level
loss against the paper's equation, its guide policy in the artifact keys, and real TRL steps."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.specs import plan
from po_bench.training import losses

from .conftest import compose as _compose
from .helpers import loss_args, step_args

# ---- the world's steps ---------------------------------------------------------------------------


def test_steps_are_clauses_and_gains_telescope_to_the_gold_reward():
    p = "write about apple river =>"
    y = "the apple and a castle river the river very"
    steps = world.split_steps(y)
    assert steps == ["the apple", "and a castle", "river", "the river", "very"]
    assert " ".join(steps) == y
    gains = world.step_gains(p, steps)
    assert sum(gains) == pytest.approx(world.gold_reward(p, y))
    w = world.RewardWeights()
    assert gains[0] == pytest.approx(w.coverage / 2 + 2 * w.length)  # a new keyword: half the coverage
    assert gains[1] == pytest.approx(-w.offtopic + 3 * w.length)  # an off-topic word: an error
    assert gains[3] == pytest.approx(-w.content_repeat + 2 * w.length)  # a repeated content word: an error
    assert world.first_error(gains) == 1 and world.first_error([0.1, 0.0]) is None
    assert sum(world.token_gains(p, y)) == pytest.approx(world.gold_reward(p, y))
    assert world.token_gains(p, "apple apple")[1] == pytest.approx(w.length - w.immediate_repeat - w.content_repeat)


def test_step_pairs_share_a_correct_prefix_and_reject_the_first_erroneous_step():
    prompts = ["write about apple river =>", "write about stone =>", "write about cloud =>"]
    samples = [
        ["the apple castle river", "apple"],  # error at step 2 ("castle", off-topic)
        ["the stone", "a stone"],  # no error
        ["cloud cloud", "the cloud"],
    ]  # error at step 2 (repeat)
    seen = {}

    def continue_fn(ctxs, n):
        seen["ctxs"] = ctxs
        return [[" castle more", " the river and", " x"][:n] for _ in ctxs]  # the 1st candidate repeats the error

    pairs, stats = world.step_pairs(prompts, samples, continue_fn, 3)
    assert seen["ctxs"] == ["write about apple river => the apple", "write about cloud => cloud"]
    assert [(q["prompt"], q["chosen"], q["rejected"]) for q in pairs] == [
        ("write about apple river => the apple", " the river", " castle"),
        ("write about cloud => cloud", " x", " cloud"),
    ]  # "the river" is off-topic there: not a correct step
    for q in pairs:  # the chosen step gains at least 0 given the prefix, the rejected one loses
        assert q["gold_margin"] > 0 and q["step"] == 1
    assert stats["n_pairs"] == 2 and stats["prompts_without_error"] == 1
    assert stats["steps_per_response"] == pytest.approx(np.mean([3, 1, 1, 1, 2, 1]))


# ---- config, keys ----------------------------------------------------------------------------------


def test_step_dpo_requires_step_pairs_and_the_field_keys_the_pairs():
    with pytest.raises(ConfigError, match="dataset.steps"):
        validate(_compose(["loss=step_dpo"]))
    cfg = _compose(["loss=step_dpo", "dataset.steps=true"])
    validate(cfg)
    base, steps = plan(_compose(["loss=step_dpo", "dataset.steps=false"])).keys(), plan(cfg).keys()
    assert sorted(r for r in base if base[r] != steps[r]) == ["generations", "pairs", "policy", "ref_logps"]
    more = plan(_compose(["loss=step_dpo", "dataset.steps=true", "dataset.step_candidates=8"])).keys()
    assert sorted(r for r in steps if steps[r] != more[r]) == ["generations", "pairs", "policy", "ref_logps"]
    with pytest.raises(ConfigError, match="step_candidates"):
        validate(_compose(["dataset.step_candidates=0"]))


def test_tgdpo_key_holds_its_guide_the_dpo_policy_of_the_same_run():
    tg, dpo = plan(_compose(["loss=tgdpo"])), plan(_compose(["loss=dpo"]))
    assert tg.keys()["guide"] == dpo.keys()["policy"]  # shared with a plain DPO run
    assert tg.policy["guide"]["spec"] == dpo.policy
    assert tg.ref_logps is None  # token-level: the reference is scored per token each step
    # what changes the guide changes the TGDPO policy; the TGDPO-only alpha does not touch the guide
    a = plan(_compose(["loss=tgdpo", "train.epochs=3"])).keys()
    assert a["guide"] != tg.keys()["guide"] and a["policy"] != tg.keys()["policy"]
    b = plan(_compose(["loss=tgdpo", "loss.args.alpha=1.0"])).keys()
    assert b["guide"] == tg.keys()["guide"] and b["policy"] != tg.keys()["policy"]
    validate(_compose(["loss=tgdpo"]))


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["loss=tgdpo", "loss.guide="], "needs loss.guide"),
        (["loss=tgdpo", "loss.guide=nope"], "no such loss config"),
        (["loss=tgdpo", "loss.guide=simpo"], "reference-based"),
        (["loss=dpo", "loss.guide=dpo"], "takes no guide"),
        (["loss=tgdpo", "loss.args.alpha=-0.5"], "alpha"),
    ],
)
def test_tgdpo_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(_compose(overrides))


# ---- TGDPO's loss against the paper's equation -----------------------------------------------------


def ref_tgdpo(pc, pr, rc, rr, gc, gr, beta, alpha):
    # Zhu et al. (2025): -log sig( sum_t beta f(r^w_t) log pi/ref(y^w_t) - sum_t beta g(r^l_t) log pi/ref(y^l_t) ),
    # f(r) = 1 + alpha r, g(r) = 1 - alpha r, r_t = beta log(pi_dpo(y_t)/pi_ref(y_t)) (plain lists, no padding)
    sw = sum(beta * (1 + alpha * beta * (g - q)) * (p - q) for p, q, g in zip(pc, rc, gc))
    sl = sum(beta * (1 - alpha * beta * (g - q)) * (p - q) for p, q, g in zip(pr, rr, gr))
    return math.log1p(math.exp(-(sw - sl)))


def _token_batch(rows, T=5, requires_grad=False):
    """Pad per-token lists into (B, T) tensors + masks."""

    def pad(xs):
        return torch.tensor([x + [0.0] * (T - len(x)) for x in xs], dtype=torch.float64, requires_grad=requires_grad)

    def mask(xs):
        return torch.tensor([[1.0] * len(x) + [0.0] * (T - len(x)) for x in xs], dtype=torch.float64)

    cols = list(zip(*rows))
    return losses.TokenStats(
        pad(cols[0]),
        pad(cols[1]),
        mask(cols[0]),
        mask(cols[1]),
        pad(cols[2]).detach(),
        pad(cols[3]).detach(),
        pad(cols[4]).detach(),
        pad(cols[5]).detach(),
    )


ROWS = [  # per-token log-probs: policy chosen, policy rejected, ref chosen, ref rejected, guide chosen, guide rejected
    ([-1.0, -2.0, -0.5], [-1.5, -3.0], [-1.2, -1.8, -0.9], [-1.1, -2.0], [-0.4, -2.5, -0.2], [-2.5, -2.6]),
    (
        [-3.0, -0.1],
        [-0.7, -0.9, -4.0, -1.0],
        [-2.0, -0.3],
        [-1.0, -0.8, -3.0, -1.5],
        [-1.0, -0.2],
        [-1.6, -0.8, -5.0, -1.2],
    ),
]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
def test_tgdpo_matches_paper_equation(alpha):
    beta = 0.1
    out = losses.tgdpo(_token_batch(ROWS), beta=beta, alpha=alpha)
    want = [ref_tgdpo(*row, beta, alpha) for row in ROWS]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-9)
    if alpha == 0.0:  # alpha = 0 is DPO on the sequence sums
        s = _token_batch(ROWS).sequence()
        h = s.chosen_logratio - s.rejected_logratio
        assert out.losses.tolist() == pytest.approx((-torch.nn.functional.logsigmoid(beta * h)).tolist())


def test_tgdpo_gradient_weights_each_token_by_its_guide_reward():
    beta, alpha = 0.1, 0.5
    s = _token_batch(ROWS, requires_grad=True)
    losses.tgdpo(s, beta=beta, alpha=alpha).losses.sum().backward()
    for i, row in enumerate(ROWS):
        pc, pr, rc, rr, gc, gr = row
        z = sum(beta * (1 + alpha * beta * (g - q)) * (p - q) for p, q, g in zip(pc, rc, gc)) - sum(
            beta * (1 - alpha * beta * (g - q)) * (p - q) for p, q, g in zip(pr, rr, gr)
        )
        sig = 1 / (1 + math.exp(z))  # dL/dz = -sigmoid(-z)
        want_c = [-sig * beta * (1 + alpha * beta * (g - q)) for q, g in zip(rc, gc)]
        want_r = [sig * beta * (1 - alpha * beta * (g - q)) for q, g in zip(rr, gr)]
        assert s.chosen_logps.grad[i, : len(pc)].tolist() == pytest.approx(want_c)
        assert s.rejected_logps.grad[i, : len(pr)].tolist() == pytest.approx(want_r)
        assert s.chosen_logps.grad[i, len(pc) :].abs().sum() == 0  # padding gets nothing


# ---- real TRL steps ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs(pairs):  # the first 8 of conftest's 32 labelled world pairs
    return pairs[:8]


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_tgdpo_two_real_optimizer_steps_with_a_guide(tokenizer, pairs, tmp_path):
    from po_bench.training import models
    from po_bench.training.trl.preference import train_preference

    cfg = _compose(["loss=tgdpo"])
    torch.manual_seed(0)
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = copy.deepcopy(model)
    guide = copy.deepcopy(model)
    with torch.no_grad():  # a guide that differs from the reference: nonzero token rewards
        for prm in guide.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g_before = {k: v.clone() for k, v in guide.state_dict().items()}
    train = step_args(cfg.train, 2)
    loss_cfg = loss_args(cfg.loss, 1e-3)
    with pytest.raises(ValueError, match="guide"):
        train_preference(
            copy.deepcopy(model), copy.deepcopy(ref), tokenizer, pairs, loss_cfg, train, tmp_path / "noguide", 0
        )
    res = train_preference(model, ref, tokenizer, pairs, loss_cfg, train, tmp_path / "t", 0, guide_model=guide)
    assert res["steps"] == 2 and math.isfinite(res["train_loss_final"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(g_before[k], v) for k, v in guide.state_dict().items())  # the guide is frozen
    assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())
    logged = [h for h in res["history"] if "tgdpo/weight_chosen" in h]
    assert logged and any(abs(h["tgdpo/weight_chosen"] - 1) > 1e-6 for h in logged)  # the guide shapes the weights
    margins = [h["rewards/margins"] for h in res["history"] if "rewards/margins" in h]
    assert margins[1] > margins[0]


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_step_dpo_two_real_optimizer_steps_on_step_pairs(tokenizer, tmp_path):
    from po_bench.training import models
    from po_bench.training.trl.preference import train_preference

    spec = world.WorldSpec(n_pref=48)
    prompts = world.make_prompts(spec, "pref")
    rng = np.random.default_rng(1)
    samples = [[world.demonstrate(spec, p, rng) for _ in range(2)] for p in prompts]

    def continue_fn(ctxs, n):  # the demonstrator stands in for the SFT policy's continuations
        return [[" " + world.demonstrate(spec, c, rng) for _ in range(n)] for c in ctxs]

    step_pairs, stats = world.step_pairs(prompts, samples, continue_fn, 4)
    assert len(step_pairs) >= 8 and stats["steps_per_response"] > 1
    cfg = _compose(["loss=step_dpo", "dataset.steps=true"])
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = step_args(cfg.train, 2)
    loss_cfg = loss_args(cfg.loss, 1e-3)
    res = train_preference(model, ref, tokenizer, step_pairs[:8], loss_cfg, train, tmp_path, 0)
    assert res["steps"] == 2 and math.isfinite(res["train_loss_final"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())

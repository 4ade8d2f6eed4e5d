"""Per-pair adaptive weighting (MADPO, Sem-DPO): the weights against the papers' forms, the scores
reaching the loss through TRL's data pipeline in real training steps, the artifacts' keys, and config-time
refusals (the reward model trained with TRL's RewardTrainer: tests/test_reward.py)."""

import copy
import math
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.config import ConfigError, validate
from po_bench.specs import plan
from po_bench.training import losses, models
from po_bench.training.trl.preference import train_preference
from tests.conftest import compose as _compose


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_madpo_weight_is_the_authors_coefficient():
    """c(|h|) runs from ~c_max (h = 0, hard) through 1 at |h| = tau to c_min (easy); w = sig(c h)/sig(h)
    amplifies confident-but-hard pairs, damps easy ones, and is 1 at or below -tau (the authors' code)."""
    c_max, c_min, lam, tau = 2.0, 0.5, 1.0, math.log(0.999 / 0.001)
    k = (c_max - 1) / (1 - c_min)
    for h in (-8.0, -6.9, -3.0, -0.5, 0.0, 0.7, 3.0, 6.9, 10.0):
        c = c_min + (c_max - c_min) / (1 + k * math.exp(lam * (abs(h) - tau)))
        want = _sig(c * h) / _sig(h) if h > -tau else 1.0
        got = float(losses.madpo_weight(h, c_max, c_min, lam, tau))
        assert got == pytest.approx(want, rel=1e-12), h
    w = lambda h: float(losses.madpo_weight(h, c_max, c_min, lam, tau))
    assert w(0.0) == 1.0 and w(3.0) > 1.0 and w(10.0) < 1.0 and w(-10.0) == 1.0
    assert float(c_min + (c_max - c_min) / (1 + k)) == pytest.approx(1.0)  # c(tau) = 1: the weight's pivot


def _train(loss_name, tokenizer, pairs, tmp_path, scores, max_steps=2, cache=None, **args):
    cfg = _compose([f"loss={loss_name}"])
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(
        **{
            **cfg.train,
            "max_steps": max_steps,
            "batch_size": 8,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        }
    )
    loss_cfg = NS(**{**cfg.loss, "args": {**dict(cfg.loss.args), **args}, "lr": 1e-3})
    res = train_preference(
        model, ref, tokenizer, pairs, loss_cfg, train, tmp_path, 0, pair_scores=scores, ref_logps_cache=cache
    )
    moved = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    return res, moved


@pytest.mark.parametrize("loss_name, score, args", [("madpo", 1.5, {}), ("sem_dpo", 0.3, {})])
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_real_steps_with_per_pair_scores(loss_name, score, args, tokenizer, pairs, tmp_path):
    saved = {}  # the reference log-prob pass through the store hook sees batches that carry the scores too
    res, moved = _train(
        loss_name,
        tokenizer,
        pairs[:8],
        tmp_path,
        [score] * 8,
        cache=(lambda: None, lambda obj: saved.update(obj)),
        **args,
    )
    assert res["steps"] == 2 and math.isfinite(res["train_loss_final"]) and moved > 0
    assert len(saved["ref_chosen_logps"]) == 8
    key = f"{loss_name}/weight_mean"
    logged = [h[key] for h in res["history"] if key in h]
    want = float(losses.pair_weights(loss_name, dict(_compose([f"loss={loss_name}"]).loss.args), [score])[0])
    assert logged and logged[0] == pytest.approx(want, rel=1e-6)  # the weight of the score handed in, per pair


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_a_pair_weighted_zero_gives_no_gradient(tokenizer, pairs, tmp_path):
    """The scores reach the loss pair by pair: with every weight exactly 0 (Sem-DPO, exp(-1000 d) = 0 in
    float) no parameter moves; the same pairs at weight 1 move them."""
    _, moved = _train("sem_dpo", tokenizer, pairs[:8], tmp_path / "zero", [1.0] * 8, max_steps=1, alpha=1000.0)
    assert moved == 0
    _, moved = _train("sem_dpo", tokenizer, pairs[:8], tmp_path / "one", [0.0] * 8, max_steps=1, alpha=1000.0)
    assert moved > 0


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_scores_follow_their_pairs_through_the_shuffle(tokenizer, pairs, tmp_path, monkeypatch):
    """Each pair's score arrives with that pair (TRL shuffles the rows): a score is a function of the
    pair here, so the batch's scores must equal that function of the batch's chosen completions."""
    seen = []
    real = losses.sem_dpo

    def spy(s, beta, alpha, distance):
        seen.append((distance.detach().cpu().tolist(), s.chosen_len.detach().cpu().tolist()))
        return real(s, beta, alpha, distance)

    monkeypatch.setitem(
        losses.LOSSES, "sem_dpo", losses.LossSpec(spy, True, {}, per_pair=("distance", "semantic_distance"))
    )
    ps = pairs[:16]
    n_tok = [len(tokenizer(p["chosen"] + tokenizer.eos_token)["input_ids"]) for p in ps]
    _train("sem_dpo", tokenizer, ps, tmp_path, [float(n) for n in n_tok], max_steps=2)
    assert seen
    for dist, lens in seen:
        assert [float(x) for x in dist] == pytest.approx([float(x) for x in lens], abs=1.01)


def _keys(overrides):
    return plan(_compose(overrides)).keys()


@pytest.mark.parametrize(
    "loss_name, field, value, changed",
    [
        # the reward model: its own training fields, the data, the seed; never the loss's weighting
        ("madpo", "loss.pair_scores.lr", 5e-4, ["generations", "pair_scores", "policy"]),
        ("madpo", "loss.pair_scores.epochs", 3, ["generations", "pair_scores", "policy"]),
        ("madpo", "loss.pair_scores.batch_size", 16, ["generations", "pair_scores", "policy"]),
        ("madpo", "train.max_length", 64, None),  # everything after SFT, the reward model included
        ("madpo", "train.warmup_ratio", 0.1, None),
        ("madpo", "loss.args.c_max", 3.0, ["generations", "policy"]),
        ("madpo", "loss.args.tau", 2.0, ["generations", "policy"]),
        ("madpo", "loss.beta", 0.2, ["generations", "policy"]),
        ("madpo", "train.epochs", 3, ["generations", "policy"]),
        ("madpo", "noise.rate", 0.1, None),
        # the embedding distances: the pairs and the embedder only; alpha keys the policy
        (
            "sem_dpo",
            "loss.pair_scores.embedder",
            "sentence-transformers/all-MiniLM-L6-v2",
            ["generations", "pair_scores", "policy"],
        ),
        ("sem_dpo", "loss.args.alpha", 2.0, ["generations", "policy"]),
        ("sem_dpo", "loss.beta", 0.2, ["generations", "policy"]),
        ("sem_dpo", "train.max_length", 64, None),
        ("sem_dpo", "train.epochs", 3, ["generations", "policy"]),
    ],
)
def test_pair_scores_are_keyed_by_exactly_their_fields(loss_name, field, value, changed):
    base = _keys([f"loss={loss_name}"])
    new = _keys([f"loss={loss_name}", f"{field}={value}"])
    diff = sorted(r for r in set(base) | set(new) if base.get(r) != new.get(r))
    if changed is None:  # a field upstream of the pairs or the whole preference stage: the scores follow
        assert "pair_scores" in diff and "policy" in diff
    else:
        assert diff == changed


def test_only_weighting_losses_have_pair_scores():
    assert "pair_scores" not in _keys(["loss=dpo"])
    assert plan(_compose(["loss=madpo"])).pair_scores["stage"] == "reward_model"
    assert plan(_compose(["loss=sem_dpo"])).pair_scores["stage"] == "semantic_distance"
    # MADPO variants with other weightings share one reward model
    assert _keys(["loss=madpo"])["pair_scores"] == _keys(["loss=madpo", "loss.args.c_max=4"])["pair_scores"]


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["loss=madpo", "loss.args.c_min=1.5"], "loss.args.c_min=1.5 for madpo: allowed (0, 1)"),
        (["loss=madpo", "loss.args.c_max=1"], "loss.args.c_max=1 for madpo: allowed (1, inf)"),
        (["loss=madpo", "loss.pair_scores.lr=0"], "loss.pair_scores.lr=0: allowed (0, inf)"),
        (["loss=madpo", "loss.pair_scores.batch_size=0.5"], "loss.pair_scores.batch_size=0.5: must be an integer"),
        (["loss=madpo", "loss.pair_scores.kind=semantic_distance"], "needs loss.pair_scores.kind=reward_margin"),
        (
            ["loss=madpo", "+loss.pair_scores.embedder=x"],
            "loss.pair_scores.embedder is not a field of kind reward_margin",
        ),
        (["loss=sem_dpo", "loss.args.alpha=-1"], "loss.args.alpha=-1 for sem_dpo: allowed [0, inf)"),
        (["loss=sem_dpo", "loss.pair_scores.embedder=no-such/embedder-xyz"], "not in the local Hub cache"),
        (["loss=dpo", "+loss.pair_scores.kind=reward_margin"], "takes no per-pair score"),
    ],
)
def test_bad_pair_score_configs_fail_at_config_time(overrides, needle, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as e:
        validate(_compose(overrides))
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_training_without_the_scores_is_refused(tokenizer, pairs, tmp_path):
    cfg = _compose(["loss=madpo"])
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args)})
    with pytest.raises(ValueError, match="needs one pair score per pair"):
        train_preference(None, None, tokenizer, pairs[:8], loss_cfg, NS(**cfg.train), tmp_path, 0)

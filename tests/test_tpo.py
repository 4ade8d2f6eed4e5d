"""TPO (Liao et al. 2024, arXiv:2410.12854; conf/loss/tpo.yaml): the listwise ranking over adaptive step
rewards against an explicit-loop transcription of the authors' loss.py, the world's step spans, config-time
errors, and two real optimizer steps of the listwise trainer's per-step path."""

from __future__ import annotations

import math
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.training import listwise

from .conftest import compose as _compose
from .helpers import check_golden, training_trace, two_steps

TPO_DATA = ["loss=tpo", "dataset.pair_strategy=list", "dataset.k_samples=4", "dataset.steps=true"]


def log_sig(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def ref_tpo(m, e, present, scores, beta, label, pair_weight):
    """One list, by explicit loops: loss.py's compute_step_weights (1 + cos to the best response's same
    step) and compute_weighted_logits (weighted mean of step mean log-ratios), then the ranking loss."""
    n, S = len(m), len(m[0])
    r = []
    for i in range(n):
        num = den = 0.0
        for k in range(S):
            if not (present[i][k] and present[0][k]):
                continue
            a, b = e[i][k], e[0][k]
            dot = sum(x * y for x, y in zip(a, b))
            cos = dot / max(math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)), 1e-8)
            w = 1 + cos
            num += w * m[i][k]
            den += w
        r.append(beta * (num / den if den > 0 else 0.0))
    if label == "score":
        v = list(scores)
    else:
        v = [
            sum((scores[i] > scores[j]) + 0.5 * (scores[i] == scores[j]) for j in range(n) if j != i) / (n - 1)
            for i in range(n)
        ]
    total = 0.0
    if pair_weight == "uniform":
        for i in range(n):
            for j in range(n):
                if i != j:
                    sgn = (v[i] > v[j]) - (v[i] < v[j])
                    total += -log_sig((r[i] - r[j]) * sgn)
        return total / (n * (n - 1))
    order = sorted(range(n), key=lambda i: (-r[i], i))
    tau = {i: p + 1 for p, i in enumerate(order)}
    for i in range(n):
        for j in range(n):
            if v[i] > v[j]:
                d = abs((2 ** v[i] - 1) - (2 ** v[j] - 1)) * abs(1 / math.log1p(tau[i]) - 1 / math.log1p(tau[j]))
                total += d * -log_sig(r[i] - r[j])
    return total


def _batch(seed=0, sizes=(4, 3), S=3, H=5):
    g = torch.Generator().manual_seed(seed)
    B, K = len(sizes), max(sizes)
    mask = torch.tensor([[j < n for j in range(K)] for n in sizes])
    m = torch.randn(B, K, S, generator=g, dtype=torch.float64)
    e = torch.randn(B, K, S, H, generator=g, dtype=torch.float64)
    present = torch.rand(B, K, S, generator=g) > 0.2
    present[:, 0, 0] = True
    present &= mask.unsqueeze(-1)
    scores = torch.randn(B, K, generator=g, dtype=torch.float64).sort(-1, descending=True).values
    scores[0, 2] = scores[0, 1]  # a tie
    scores = torch.where(mask, scores, torch.zeros_like(scores))
    z = torch.zeros(B, K, dtype=torch.float64)
    s = listwise.ListStats(
        z, z, torch.ones_like(z), scores, mask, {"step_logratio": m, "step_hidden": e, "step_mask": present}
    )
    return s, sizes


@pytest.mark.parametrize("label", ["score", "win_rate"])
@pytest.mark.parametrize("pair_weight", ["lambda", "uniform"])
def test_tpo_matches_the_explicit_loops(label, pair_weight):
    for seed in range(3):
        s, sizes = _batch(seed)
        out = listwise.tpo(s, beta=0.7, label=label, pair_weight=pair_weight)
        for b, n in enumerate(sizes):
            x = lambda t: t[b, :n].tolist()
            want = ref_tpo(
                x(s.extra["step_logratio"]),
                x(s.extra["step_hidden"]),
                x(s.extra["step_mask"]),
                x(s.scores),
                0.7,
                label,
                pair_weight,
            )
            assert out.losses[b].item() == pytest.approx(want, abs=1e-9), (seed, b)


def test_tpo_pushes_the_better_response_up_and_weights_steps():
    s, _ = _batch(1)
    s.extra["step_logratio"].requires_grad_(True)
    listwise.tpo(s, beta=0.5, label="score", pair_weight="uniform").losses.sum().backward()
    g = s.extra["step_logratio"].grad
    assert (g[0, 0][s.extra["step_mask"][0, 0]] < 0).all()  # the best response's steps: reward goes up
    assert (g[0, 3][s.extra["step_mask"][0, 3] & s.extra["step_mask"][0, 0]] > 0).all()  # the worst's: down
    e = torch.randn(1, 2, 2, 4, dtype=torch.float64)
    e[0, 1, 0] = e[0, 0, 0] * 3  # same direction: weight 2; opposite: weight 0
    e[0, 1, 1] = -e[0, 0, 1]
    w = listwise.adaptive_step_weights(e, torch.ones(1, 2, 2, dtype=torch.bool))
    assert w[0, 1].tolist() == pytest.approx([2.0, 0.0]) and w[0, 0].tolist() == pytest.approx([2.0, 2.0])


def test_world_step_spans():
    content = list(world.CONTENT_WORDS)[:2]
    y = f"  so {content[0]}  and then {content[1]} ok "
    ends = world.step_ends(y)
    assert [y[:e].split()[-1] for e in ends] == [content[0], content[1], "ok"]
    assert [" ".join(y[a:b].split()) for a, b in zip([0, *ends], ends)] == world.split_steps(y)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (TPO_DATA[:3], "loss=tpo needs dataset.steps=True (got False)"),
        (["loss=tpo", "dataset.pair_strategy=list", "dataset.steps=true"], "loss=tpo needs dataset.k_samples=4"),
        ([*TPO_DATA, "loss.args.pair_weight=x"], "loss.args.pair_weight='x' for tpo: allowed lambda, uniform"),
        ([*TPO_DATA, "loss.args.label=rank"], "loss.args.label='rank' for tpo: allowed win_rate, score"),
    ],
)
def test_tpo_requirements_fail_at_config_time(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose(overrides))
    assert needle in str(e.value)


def test_tpo_config_validates_and_lists_carry_step_spans():
    cfg = _compose(TPO_DATA)
    validate(cfg)
    from po_bench.data.sources import WorldSource

    spec = WorldSource(dict(cfg.dataset)).pairs_spec()
    assert spec["ranking"].get("steps") is True and "annotator" in spec and "steps" not in spec


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_two_real_optimizer_steps(tokenizer, tmp_path):
    """Two optimizer steps on 8 world lists (one shorter, padded) through the per-step path: finite loss,
    parameters move, the reference stays frozen and nothing is precomputed, the margin grows."""
    spec = world.WorldSpec(n_pref=8)
    prompts = world.make_prompts(spec, "pref")
    rng = __import__("numpy").random.default_rng(0)
    samples = [[" " + world.demonstrate(spec, p, rng) for _ in range(4)] for p in prompts]
    rows = world.label_lists(prompts, samples, world.Annotator(), 0, steps=True)[:8]
    assert all(len(r["step_ends"]) == len(r["responses"]) for r in rows)
    rows[0] = {**rows[0], **{k: rows[0][k][:3] for k in ("responses", "scores", "gold", "ranks", "step_ends")}}
    cfg = _compose(TPO_DATA)
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    res, _, ref, before, saved = two_steps(tokenizer, rows, loss_cfg, cfg.train, tmp_path)
    check_golden("tpo_two_steps", "tpo", training_trace(res))
    assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items()) and not saved
    margins = [h["rewards/margins"] for h in res["history"] if "rewards/margins" in h]
    assert len(margins) == 2 and margins[1] > margins[0], margins

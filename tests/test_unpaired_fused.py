"""BCO on unpaired rows, InfiFPO's fused reference and the f-divergence SFT objectives: the pure functions
against transcriptions of the papers' equations, real optimizer steps on the world, keys and config checks."""

import copy
import math
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.specs import plan
from po_bench.training import losses, models
from po_bench.training.trl.args import build_trl_config
from po_bench.training.trl.dpo import FusedReferenceDPOTrainer, source_sequence_logps
from po_bench.training.trl.preference import train_preference

from .conftest import compose as _compose


def log_sig(x):
    return -math.log1p(math.exp(-x))


# ---- BCO (Jung et al. 2024, eq. 7 on unpaired rows) ---------------------------------------------------------


def ref_bco(logp, ref_logp, desirable, beta, delta):
    # desirable: -log sig(r - delta); undesirable: -log sig(-(r - delta)); r = beta log pi/ref
    r = beta * (logp - ref_logp)
    return -log_sig(r - delta) if desirable else -log_sig(-(r - delta))


ROWS = [(-12.0, -13.0, True, 6), (-15.0, -14.0, False, 9), (-3.0, -3.4, True, 3), (-20.0, -21.0, False, 10)]


@pytest.mark.parametrize("delta", [0.0, 0.07, -0.3])
def test_bco_matches_the_papers_equation_and_its_gradient(delta):
    lp = torch.tensor([r[0] for r in ROWS], dtype=torch.float64, requires_grad=True)
    s = losses.UnpairedStats(
        lp,
        torch.tensor([r[1] for r in ROWS], dtype=torch.float64),
        torch.tensor([float(r[3]) for r in ROWS]),
        torch.tensor([r[2] for r in ROWS]),
    )
    out = losses.bco(s, beta=0.1, delta=delta)
    for i, (a, b, lab, _) in enumerate(ROWS):
        assert out.losses[i].item() == pytest.approx(ref_bco(a, b, lab, 0.1, delta), abs=1e-9)
    out.losses.sum().backward()
    for i, (a, b, lab, _) in enumerate(ROWS):
        num = (ref_bco(a + 1e-6, b, lab, 0.1, delta) - ref_bco(a - 1e-6, b, lab, 0.1, delta)) / 2e-6
        assert lp.grad[i].item() == pytest.approx(num, abs=1e-6)
        assert (lp.grad[i].item() < 0) == lab  # desirable up, undesirable down
    assert out.chosen_rewards.numel() == 2 and out.rejected_rewards.numel() == 2


# ---- InfiFPO's fused source model (Gu et al. 2025, eq. 13) ----------------------------------------------------


def ref_fused(p_init, p_src, chosen):
    """One response, in probability space (length-normalised probabilities P = exp(log M / |y|)):
    Clip(M_i) = max(M_i, M_init) on y_w, min(M_i, M_init) on y_l; gamma_i = 1 for the source whose clipped
    probability is farthest from the pivot's, 0 otherwise; M_fu = prod_i Clip(M_i)^gamma_i."""
    clipped = [max(p, p_init) if chosen else min(p, p_init) for p in p_src]
    best = max(range(len(clipped)), key=lambda i: abs(clipped[i] - p_init))
    gamma = [1.0 if i == best else 0.0 for i in range(len(clipped))]
    return math.prod(c**g for c, g in zip(clipped, gamma))


def test_fused_reference_is_eq13_with_clipping_and_max_margin():
    # the paper's Figure 2: pivot 0.2 on y_w, 0.3 on y_l; five sources
    p_init_w, p_init_l = 0.2, 0.3
    src_w, src_l = [0.6, 0.7, 0.4, 0.9, 0.5], [0.3, 0.2, 0.1, 0.2, 0.35]
    fw, fl = losses.fuse_reference(
        torch.tensor([math.log(p_init_w)]),
        torch.tensor([math.log(p_init_l)]),
        torch.tensor([[math.log(p)] for p in src_w]),
        torch.tensor([[math.log(p)] for p in src_l]),
    )
    assert math.exp(fw.item()) == pytest.approx(ref_fused(p_init_w, src_w, True)) == pytest.approx(0.9)  # source 4
    assert math.exp(fl.item()) == pytest.approx(ref_fused(p_init_l, src_l, False)) == pytest.approx(0.1)  # source 3
    g = torch.Generator().manual_seed(0)
    ref_w, ref_l = -torch.rand(16, generator=g, dtype=torch.float64), -torch.rand(16, generator=g, dtype=torch.float64)
    sw, sl = -torch.rand(3, 16, generator=g, dtype=torch.float64), -torch.rand(3, 16, generator=g, dtype=torch.float64)
    fw, fl = losses.fuse_reference(ref_w, ref_l, sw, sl)
    for j in range(16):
        pw = ref_fused(math.exp(ref_w[j]), [math.exp(x) for x in sw[:, j].tolist()], True)
        pl = ref_fused(math.exp(ref_l[j]), [math.exp(x) for x in sl[:, j].tolist()], False)
        # the max-margin pick in probability space and in log space agree (both monotone in the clipped value)
        assert fw[j].item() == pytest.approx(math.log(pw), abs=1e-12)
        assert fl[j].item() == pytest.approx(math.log(pl), abs=1e-12)
    assert (fw >= ref_w).all() and (fl <= ref_l).all()  # the fused reference's margin is never below the pivot's


def test_a_source_below_the_pivot_is_clipped_to_it():
    ref_w, ref_l = torch.tensor([-1.0]), torch.tensor([-2.0])
    fw, fl = losses.fuse_reference(ref_w, ref_l, torch.tensor([[-3.0]]), torch.tensor([[-0.5]]))
    assert fw.item() == -1.0 and fl.item() == -2.0  # worse than the pivot on both: the pivot itself (DPO-LN)


# ---- real optimizer steps on the world ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs():
    spec = world.WorldSpec(n_pref=16)
    prompts = world.make_prompts(spec, "pref")
    rng = __import__("numpy").random.default_rng(0)
    samples = [[" " + world.demonstrate(spec, p, rng), " " + world.demonstrate(spec, p, rng)] for p in prompts]
    return world.label_pairs(prompts, samples, world.Annotator(), seed=0)


def _tiny(tokenizer, seed=0):
    torch.manual_seed(seed)
    return models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)


def _run(name, tokenizer, pairs, tmp_path, steps=2, **kw):
    cfg = _compose([f"loss={name}"])
    train = NS(
        **{
            **cfg.train,
            "max_steps": steps,
            "batch_size": 8,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        }
    )
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    model = _tiny(tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train_preference(model, copy.deepcopy(model), tokenizer, pairs, loss_cfg, train, tmp_path, 0, **kw)
    moved = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    return res, moved


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_bco_trains_on_unpaired_rows_with_a_running_delta(tokenizer, pairs, tmp_path):
    res, moved = _run("bco", tokenizer, pairs[:8], tmp_path, steps=3)
    assert res["steps"] == 3 and moved > 0 and math.isfinite(res["train_loss_final"])
    deltas = [h["bco/delta"] for h in res["history"] if "bco/delta" in h]
    assert len(deltas) == 3 and deltas[0] == pytest.approx(0.0, abs=1e-6)  # step 1: policy = reference
    assert deltas[2] != deltas[1]  # the running mean moves with the rewards
    assert "kto_kl_matched_rows" not in res  # no KL rows (TRL's KTO trainer with the loss replaced)


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_infifpo_trains_against_the_fused_reference(tokenizer, pairs, tmp_path):
    """The fused reference replaces the pivot's reference log-probs (the store keeps the pivot's), and two
    optimizer steps move the policy."""
    saved = {}
    sources = [_tiny(tokenizer, seed=s) for s in (1, 2)]
    res, moved = _run(
        "infifpo",
        tokenizer,
        pairs[:8],
        tmp_path,
        source_models=sources,
        ref_logps_cache=(lambda: None, lambda obj: saved.update(obj)),
    )
    assert res["steps"] == 2 and moved > 0 and math.isfinite(res["train_loss_final"])
    assert len(saved["ref_chosen_logps"]) == 8  # the store's artifact: the pivot's own log-probs (shared with DPO)
    with pytest.raises(ValueError, match="needs its source models"):
        _run("infifpo", tokenizer, pairs[:8], tmp_path / "none")


def test_fused_reference_rows_are_the_fusion_of_the_sources(tokenizer, pairs, tmp_path):
    """The rows the InfiFPO trainer trains on carry fuse_reference(...) * |y| as their reference."""
    cfg = _compose(["loss=infifpo"])
    train = NS(**{**cfg.train, "max_steps": 1, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args)})
    model, sources = _tiny(tokenizer), [_tiny(tokenizer, seed=s) for s in (1, 2)]
    args = build_trl_config(loss_cfg, train, tmp_path, 0)
    assert args.precompute_ref_log_probs  # fused: always precomputed, with or without the store's cache
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs[:8]]
    from datasets import Dataset

    tr = FusedReferenceDPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        spec=losses.LOSSES["infifpo"],
        hparams={},
        needs_ref=True,
        sources=sources,
    )
    ds = tr.train_dataset
    piv, n = source_sequence_logps(tr, model, ds, 8)
    src = torch.stack([source_sequence_logps(tr, m, ds, 8)[0] for m in sources])
    fw, fl = losses.fuse_reference(piv[0] / n[0], piv[1] / n[1], src[:, 0] / n[0], src[:, 1] / n[1])
    assert torch.tensor(ds["ref_chosen_logps"], dtype=torch.float64) == pytest.approx(fw * n[0], abs=1e-3)
    assert torch.tensor(ds["ref_rejected_logps"], dtype=torch.float64) == pytest.approx(fl * n[1], abs=1e-3)


@pytest.mark.parametrize("name", ["sft_fdiv_chi2", "sft_fdiv_kl", "sft_fdiv_tv"])
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_fdiv_sft_raises_the_chosen_likelihood(name, tokenizer, pairs, tmp_path):
    res, moved = _run(name, tokenizer, pairs[:8], tmp_path)
    assert res["steps"] == 2 and moved > 0 and math.isfinite(res["train_loss_final"])
    chosen = [h["rewards/chosen"] for h in res["history"] if "rewards/chosen" in h]
    assert chosen[1] > chosen[0]


def test_fdiv_objectives_anchor_to_the_reference():
    """phi(t) = t is SFT (a constant gradient in log pi); the f-divergence objectives' pull on log pi fades
    (chi^2: zero at r = 2; KL: exp(-r - 1); TV: zero beyond r = 1/2): the reference stays in the objective."""

    def grad(fn, logratio):
        c = torch.tensor([logratio], dtype=torch.float64, requires_grad=True)
        z = torch.zeros(1, dtype=torch.float64)
        fn(losses.PairStats(c, z, z + 5, z + 5, z, z), beta=1.0).losses.sum().backward()
        return c.grad.item()

    assert grad(losses.sft_fdiv_chi2, 0.0) == pytest.approx(-1.0) and grad(losses.sft_fdiv_chi2, 2.0) == 0.0
    assert grad(losses.sft_fdiv_chi2, 3.0) > 0  # past the optimum it pushes back toward the reference
    assert grad(losses.sft_fdiv_kl, 0.0) == pytest.approx(-math.exp(-1))
    assert grad(losses.sft_fdiv_kl, 0.0) < grad(losses.sft_fdiv_kl, 3.0) < 0
    assert grad(losses.sft_fdiv_tv, 0.0) == -1.0 and grad(losses.sft_fdiv_tv, 1.0) == 0.0


# ---- keys and config-time checks ---------------------------------------------------------------------------


def test_the_source_set_is_part_of_the_policy_key():
    base = plan(_compose(["loss=infifpo"])).keys()
    other = plan(_compose(["loss=infifpo", "loss.args.sources=[{seed: 101}, {seed: 102}, {seed: 104}]"])).keys()
    changed = sorted(r for r in set(base) | set(other) if base.get(r) != other.get(r))
    assert changed == ["generations", "policy", "source_2"]  # the pivot's reference log-probs are shared
    bigger = plan(
        _compose(
            ["loss=infifpo", "loss.args.sources=[{seed: 101}, {seed: 102}, {seed: 103, model: {hidden_size: 64}}]"]
        )
    )
    assert bigger.sources["source_2"]["model"]["hidden_size"] == 64
    assert bigger.keys()["policy"] != base["policy"]
    dpo = plan(_compose(["loss=dpo"])).keys()
    assert dpo["ref_logps"] == base["ref_logps"] and not any(r.startswith("source") for r in dpo)
    assert plan(_compose(["loss=infifpo"])).policy["sources"][0]["spec"]["seed"] == 101


def test_bco_has_no_pairwise_reference_artifact():
    keys = plan(_compose(["loss=bco"])).keys()
    assert "ref_logps" not in keys and "policy" in keys


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["loss=bco", "loss.paired=true"], "trains on unpaired rows (set loss.paired=false)"),
        (["loss=infifpo", "loss.paired=false"], "trains on pairs (set loss.paired=true)"),
        (["loss=bco", "+loss.args.gamma=1"], "not a hyperparameter of bco"),
        (["loss=infifpo", "loss.args.sources=[]"], "a non-empty list of source models"),
        (["loss=infifpo", "loss.args.sources=[{sed: 1}]"], "loss.args.sources[0]"),
        (["loss=infifpo", "loss.args.sources=[{seed: 1, model: {name_or_path: x}}]"], "sources[0].model.name_or_path"),
        (["loss=sft_fdiv_chi2", "loss.beta=0"], "allowed (0, inf)"),
    ],
)
def test_invalid_configs_fail_before_compute(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose(overrides))
    assert needle in str(e.value)

"""Real TRL optimizer steps for every preference loss on the tiny model."""

import copy
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.training import models, trl_adapter
from po_bench.data import world
from po_bench.app import CONF_DIR

# DiscoPOP (arXiv:2406.08414) is non-convex at zero margin: with rho = sigmoid(L/tau), its loss
# (1-rho)*softplus(-L) + rho*exp(-L) has dL-derivative rho'(0)(1 - ln 2) - 0.75 = (0.25/0.05)(0.307) - 0.75
# = +0.78 > 0 at L = 0 for tau = 0.05, so from a policy equal to its reference the first step
# lowers the margin.  Every other loss raises it.
MARGIN_DIRECTION_AT_INIT = {"discopop": -1}
LOSSES = sorted(p.stem for p in (Path(CONF_DIR) / "loss").glob("*.yaml") if p.stem != "sft")


def _loss_cfg(name):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=[f"loss={name}"])


@pytest.fixture(scope="module")
def pairs():
    spec = world.WorldSpec(n_pref=32)
    prompts = world.make_prompts(spec, "pref")
    rng = __import__("numpy").random.default_rng(0)
    samples = [[" " + world.demonstrate(spec, p, rng), " " + world.demonstrate(spec, p, rng)] for p in prompts]
    return world.label_pairs(prompts, samples, world.Annotator(), seed=0)


@pytest.mark.parametrize("loss", LOSSES)
def test_two_real_optimizer_steps(loss, tokenizer, pairs, tmp_path):
    """Two optimizer steps on one fixed batch: finite loss, parameters move, the logged reward
    margin on that batch grows (the loss pushes chosen above rejected)."""
    cfg = _loss_cfg(loss)
    pairs = pairs[:8]
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = None if cfg.loss.reference_free else copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(**{**cfg.train, "max_steps": 2, "batch_size": 8, "logging_steps": 1, "progress": False,
                  "warmup_ratio": 0.0, "lr_scheduler": "constant"})
    lr = 1e-2 if loss == "sft_lowlr" else 1e-3
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": lr})
    saved = {}
    cache = (lambda: None, lambda obj: saved.update(obj)) if loss_cfg.backend == "dpo" else None
    res = trl_adapter.train_preference(model, ref, tokenizer, pairs, loss_cfg, train, tmp_path, 0, ref_logps_cache=cache)
    assert res["steps"] == 2
    assert res["train_loss_final"] is not None and torch.isfinite(torch.tensor(res["train_loss_final"]))
    changed = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed > 0, "no parameter moved after two optimizer steps"
    if ref is not None:  # the reference stays frozen
        assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())
    if cache is not None and not loss_cfg.reference_free and not loss_cfg.args.get("sync_ref_model"):
        # reference log-probs went through the store hook
        assert len(saved["ref_chosen_logps"]) == len(pairs)
    margins = [h["rewards/margins"] for h in res["history"] if "rewards/margins" in h]
    assert len(margins) == 2, res["history"]
    direction = MARGIN_DIRECTION_AT_INIT.get(loss, +1)
    assert direction * (margins[1] - margins[0]) > 0, f"{loss}: reward margin moved the wrong way: {margins}"


def test_cached_reference_logps_are_used(tokenizer, pairs, tmp_path):
    """With the store's reference log-probs in place, DPO reads them instead of recomputing."""
    cfg = _loss_cfg("dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train = NS(**{**cfg.train, "max_steps": 1, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args)})
    fake = {"ref_chosen_logps": [-1000.0] * len(pairs), "ref_rejected_logps": [0.0] * len(pairs)}
    res = trl_adapter.train_preference(model, copy.deepcopy(model), tokenizer, pairs, loss_cfg, train, tmp_path, 0,
                                       ref_logps_cache=(lambda: fake, lambda obj: None))
    # ref chosen logp -1000 makes the chosen log-ratio huge: rewards/chosen ~ +0.1*1000
    chosen = [h["rewards/chosen"] for h in res["history"] if "rewards/chosen" in h]
    assert chosen and chosen[0] > 50


def test_unknown_backend_argument_rejected():
    with pytest.raises(ValueError, match="not_an_arg"):
        trl_adapter.validate_backend_args("dpo", {"not_an_arg": 1})
    trl_adapter.validate_backend_args("cpo", {"loss_type": "simpo", "simpo_gamma": 0.5})


def test_unpaired_view():
    out = trl_adapter.unpaired_view([{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert out == [{"prompt": "p", "completion": "a", "label": True}, {"prompt": "p", "completion": "b", "label": False}]


def test_lora_trains_adapters_only_and_merges(tokenizer, pairs, tmp_path):
    """model.lora.enabled: TRL trains peft LoRA adapters (base weights frozen, reference = adapters off);
    the merged policy differs from the start, and its shape is a plain checkpoint."""
    cfg = _loss_cfg("dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(**{**cfg.train, "max_steps": 2, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-2})
    model_cfg = NS(lora=NS(enabled=True, r=4, alpha=8, dropout=0.0, target_modules="all-linear"))
    res = trl_adapter.train_preference(model, None, tokenizer, pairs[:8], loss_cfg, train, tmp_path, 0,
                                       model_cfg=model_cfg)
    peft_model = res["model"]
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    plain = trl_adapter.merged(peft_model)
    after = plain.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_last_checkpoint_skips_partial_ones(tmp_path):
    """A kill during a checkpoint write leaves a folder without trainer_state.json: resume from the
    newest complete one instead."""
    assert trl_adapter.last_checkpoint(tmp_path / "missing") is None
    for n in (4, 8):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-8" / "model.safetensors").write_bytes(b"half")  # partial: no trainer_state.json
    assert trl_adapter.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text("{}")
    assert trl_adapter.last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")

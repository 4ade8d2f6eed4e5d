"""Real TRL optimizer steps for every preference loss on the tiny model."""

import copy
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench import models, trl_adapter, world
from po_bench.app import CONF_DIR

LOSSES = ["dpo", "ipo", "simpo", "kto"]


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
    cfg = _loss_cfg(loss)
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = None if cfg.loss.reference_free else copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(**{**cfg.train, "max_steps": 2, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    saved = {}
    cache = (lambda: None, lambda obj: saved.update(obj)) if loss_cfg.backend == "dpo" else None
    res = trl_adapter.train_preference(model, ref, tokenizer, pairs, loss_cfg, train, tmp_path, 0, ref_logps_cache=cache)
    assert res["steps"] == 2
    assert res["train_loss_final"] is not None and torch.isfinite(torch.tensor(res["train_loss_final"]))
    changed = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed > 0, "no parameter moved after two optimizer steps"
    if ref is not None:  # the reference stays frozen
        assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())
    if cache is not None:  # reference log-probs went through the store hook, one per pair
        assert len(saved["ref_chosen_logps"]) == len(pairs)


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

"""The DPO family's trainers (po_bench/training/trl/dpo.py): the store's cached reference log-probs, BCO's
running delta and beta-DPO's margin statistics held across steps, and a curriculum's order kept by the trainer."""

import copy
from types import SimpleNamespace as NS

import pytest

from po_bench.training import models
from po_bench.training.trl.args import build_trl_config
from po_bench.training.trl.preference import train_preference

from .helpers import config_with_loss, loss_args, step_args


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_cached_reference_logps_are_used(tokenizer, pairs, tmp_path):
    """With the store's reference log-probs in place, DPO reads them instead of recomputing."""
    cfg = config_with_loss("dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train = NS(**{**cfg.train, "max_steps": 1, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args)})
    fake = {"ref_chosen_logps": [-1000.0] * len(pairs), "ref_rejected_logps": [0.0] * len(pairs)}
    res = train_preference(
        model,
        copy.deepcopy(model),
        tokenizer,
        pairs,
        loss_cfg,
        train,
        tmp_path,
        0,
        ref_logps_cache=(lambda: fake, lambda obj: None),
    )
    # ref chosen logp -1000 makes the chosen log-ratio huge: rewards/chosen ~ +0.1*1000
    chosen = [h["rewards/chosen"] for h in res["history"] if "rewards/chosen" in h]
    assert chosen and chosen[0] > 50


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_bco_delta_updated_across_steps(tokenizer, pairs, tmp_path):
    """loss=bco_pair: the logged reward shift delta is the running mean of the batches' rewards, so it
    changes from step to step once the policy leaves the reference (TRL 1.16 keeps it at 0)."""
    cfg = config_with_loss("bco_pair")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train, loss_cfg = step_args(cfg.train, 3), loss_args(cfg.loss, 1e-2)
    res = train_preference(model, copy.deepcopy(model), tokenizer, pairs[:24], loss_cfg, train, tmp_path, 0)
    deltas = [h["bco/delta"] for h in res["history"] if "bco/delta" in h]
    assert len(deltas) == 3, res["history"]
    assert deltas[0] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference, every reward 0
    assert deltas[1] != pytest.approx(0.0, abs=1e-6) and deltas[2] != pytest.approx(deltas[1], abs=1e-7)


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_beta_dpo_state_is_held_across_steps(tokenizer, pairs, tmp_path):
    """loss=beta_dpo: the trainer passes the running M_0 / sigma into the pure loss and keeps what it
    returns: the logged M_0 follows the momentum average of the batches' margins, floor(0.8 * 8) = 6 pairs
    are kept per batch, and the batch beta leaves beta_0 once the margins spread."""
    cfg = config_with_loss("beta_dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train, loss_cfg = step_args(cfg.train, 3), loss_args(cfg.loss, 1e-2)
    res = train_preference(model, copy.deepcopy(model), tokenizer, pairs[:24], loss_cfg, train, tmp_path, 0)
    h = [x for x in res["history"] if "beta_dpo/margin_mean" in x]
    assert len(h) == 3, res["history"]
    assert all(x["beta_dpo/kept"] == 6 for x in h)
    assert h[0]["beta_dpo/margin_mean"] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference
    assert h[0]["beta_dpo/beta"] == pytest.approx(0.1, abs=1e-6)
    # the margin mean is a momentum average: it moves, but by at most (1 - 0.9) of the batch's mean margin
    assert h[2]["beta_dpo/margin_mean"] != pytest.approx(h[1]["beta_dpo/margin_mean"], abs=1e-9)
    assert h[2]["beta_dpo/margin_std"] > 0
    assert h[2]["beta_dpo/beta"] != pytest.approx(0.1, abs=1e-9)


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_curriculum_order_is_kept_by_the_trainer(tokenizer, pairs, tmp_path):
    """ordered=True (dataset.curriculum): transformers' train_sampling_strategy="sequential", so the batches are
    the pairs in their order (TRL's default samples at random); and two real steps train in that order."""
    from torch.utils.data import SequentialSampler
    from trl import DPOTrainer

    cfg = config_with_loss("curry_dpo")
    train = NS(**{**cfg.train, "max_steps": 2, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs[:16]][::-1]
    args = build_trl_config(loss_cfg, train, tmp_path, 0, n_rows=16, ordered=True)
    assert args.train_sampling_strategy == "sequential"
    assert build_trl_config(loss_cfg, train, tmp_path, 0, n_rows=16).train_sampling_strategy == "random"
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=__import__("datasets").Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    assert isinstance(trainer._get_train_sampler(), SequentialSampler)
    batches = list(trainer.get_train_dataloader())
    assert len(batches) == 2
    for j, batch in enumerate(batches):
        ids, cm, am = batch["input_ids"], batch["completion_mask"], batch["attention_mask"]
        for i in range(8):  # TRL stacks chosen then rejected: row i's prompt is dataset row 8j + i's
            got = ids[i][(am[i] == 1) & (cm[i] == 0)].tolist()
            assert tokenizer.decode(got).strip() == rows[8 * j + i]["prompt"].strip()  # (random: 0 of 8 match)
    res = train_preference(
        model, copy.deepcopy(model), tokenizer, pairs[:16], loss_cfg, train, tmp_path / "run", 0, ordered=True
    )
    assert res["steps"] == 2
    with pytest.raises(ValueError, match="curriculum"):
        kto = config_with_loss("kto")
        train_preference(
            model,
            None,
            tokenizer,
            pairs[:8],
            NS(**{**kto.loss, "args": dict(kto.loss.args)}),
            train,
            tmp_path / "kto",
            0,
            ordered=True,
        )

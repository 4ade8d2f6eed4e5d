"""TRL's config objects (po_bench/training/trl/args.py): every training field, learning rate, beta and loss
argument of every loss reaches the TRL config actually built, an unknown or unmapped field stops the run, and the
warmup ratio reaches the scheduler."""

import copy
from types import SimpleNamespace as NS

import pytest

from po_bench.training import models
from po_bench.training.methods import method_of
from po_bench.training.trl.args import build_sft_config, build_trl_config, make_config, validate_loss_args
from po_bench.training.trl.preference import train_preference

from .conftest import compose as _compose
from .helpers import config_with_loss, loss_args, preference_losses, step_args

LOSSES = preference_losses()


def test_unknown_backend_argument_rejected():
    with pytest.raises(ValueError, match="not_an_arg"):
        validate_loss_args(method_of({"backend": "dpo", "args": {"not_an_arg": 1}}))
    validate_loss_args(method_of({"backend": "cpo", "args": {"loss_type": "simpo", "simpo_gamma": 0.5}}))


TRAIN_OVERRIDES = [
    "train.batch_size=6",
    "train.grad_accum=3",
    "train.epochs=1.5",
    "train.max_steps=7",
    "train.lr_scheduler=linear",
    "train.warmup_ratio=0.1",
    "train.max_length=40",
    "train.logging_steps=3",
]


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed", "bf16-pure"])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_hyperparameter_reaches_the_trl_config(loss, precision, tmp_path):
    """What each loss config asks (training fields, lr, beta, every loss argument) against the TRL args
    object actually built; nothing is dropped on the way (transformers 5 has no warmup_ratio: the ratio
    must arrive as warmup_steps)."""
    cfg = _compose([f"loss={loss}", f"train.precision={precision}", *TRAIN_OVERRIDES])
    t, lc = cfg.train, cfg.loss
    a = build_trl_config(lc, t, tmp_path, 3, n_rows=64)
    asked = {
        "per_device_train_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "learning_rate": lc.lr,
        "warmup_steps": t.warmup_ratio,
        "max_length": t.max_length,
        "logging_steps": t.logging_steps,
        "beta": lc.beta,
        "seed": 3,
        "bf16": precision == "bf16-mixed",
        "fp16": False,
    }
    for field, want in asked.items():
        assert getattr(a, field) == want, (loss, field, getattr(a, field), want)
    assert getattr(a.lr_scheduler_type, "value", a.lr_scheduler_type) == "linear" and a.get_warmup_steps(100) == 10
    args = dict(lc.args)
    if lc.backend == "pobench":  # the loss function's own hyperparameters, checked by name and range
        from po_bench.training.losses import check_hparams

        check_hparams(lc.function, args)
    elif lc.backend == "listwise":  # likewise (po_bench.training.listwise); its reference is precomputed
        from po_bench.training.listwise import LISTWISE
        from po_bench.training.listwise import check_hparams as check_listwise

        check_listwise(lc.function, args)
        # per-step losses (TPO) score the reference per token every batch: nothing to precompute
        assert a.precompute_ref_log_probs == (not LISTWISE[lc.function].steps) and not a.sync_ref_model
    else:
        for k, v in args.items():
            if k == "ref_model_sync_fraction":  # TR-DPO: tau as a fraction of the run's 7 steps
                assert a.ref_model_sync_steps == max(1, round(v * 7)), a.ref_model_sync_steps
            else:
                want = list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v
                want = TRL_NORMALISES.get((k, str(want)), want)
                assert getattr(a, k) == want, (loss, k, getattr(a, k), want)


# TRL's own renames in its config's __post_init__ (the same loss by TRL's name)
TRL_NORMALISES = {("loss_type", "alphapo"): "simpo"}  # CPOConfig: AlphaPO is SimPO with alpha != 0


def test_sft_config_carries_every_sft_field(tmp_path):
    cfg = _compose([*TRAIN_OVERRIDES, "train.sft_lr=0.003", "train.sft_epochs=2", "train.sft_batch_size=5"])
    a = build_sft_config(cfg.train, tmp_path, 0)
    assert (a.learning_rate, a.num_train_epochs, a.per_device_train_batch_size) == (0.003, 2, 5)
    assert (a.warmup_steps, a.max_length, a.gradient_accumulation_steps) == (0.1, 40, 3)


def test_sft_config_takes_the_loss_on_completions_only(tmp_path):
    """Prompt/completion examples: the loss on the completion tokens only; conversations: TRL's default."""
    train = _compose([]).train
    assert build_sft_config(train, tmp_path, 0).completion_only_loss is True
    assert build_sft_config(train, tmp_path, 0, conversational=True).completion_only_loss is None


def test_an_unmapped_field_stops_the_run(tmp_path):
    cfg = _compose([])
    train = NS(**{**cfg.train, "not_a_field": 1})
    with pytest.raises(ValueError, match="train.not_a_field"):
        build_trl_config(cfg.loss, train, tmp_path, 0)
    from trl import DPOConfig

    with pytest.raises(ValueError, match="loss.args.warmup_ratio has no field in TRL's DPOConfig"):
        make_config(
            DPOConfig, {"output_dir": str(tmp_path), "warmup_ratio": 0.1}, {"warmup_ratio": "loss.args.warmup_ratio"}
        )


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_warmup_reaches_the_scheduler(tokenizer, pairs, tmp_path):
    """train.warmup_ratio=0.5 over 4 steps: the logged learning rate rises over the first steps."""
    cfg = config_with_loss("dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train = step_args(cfg.train, 4, warmup_ratio=0.5, lr_scheduler="linear")
    loss_cfg = loss_args(cfg.loss, 1e-3)
    res = train_preference(model, copy.deepcopy(model), tokenizer, pairs[:16], loss_cfg, train, tmp_path, 0)
    lrs = [h["learning_rate"] for h in res["history"] if "learning_rate" in h]
    assert lrs[0] < lrs[1] <= 1e-3, lrs  # TRL logs the rate of the step just taken: warmup, then decay

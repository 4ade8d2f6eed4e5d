"""Real TRL optimizer steps for every preference loss on the tiny model."""

import copy
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from po_bench.cli.app import CONF_DIR
from po_bench.training import models
from po_bench.training.methods import method_of
from po_bench.training.trl.args import build_sft_config, build_trl_config, make_config, validate_loss_args
from po_bench.training.trl.fit import last_checkpoint, merged
from po_bench.training.trl.preference import train_preference
from po_bench.training.trl.unpaired import kl_matched_rows, kto_order, unpaired_view

from .conftest import compose as _compose
from .helpers import check_golden, training_trace

# DiscoPOP (arXiv:2406.08414) is non-convex at zero margin: with rho = sigmoid(L/tau), its loss
# (1-rho)*softplus(-L) + rho*exp(-L) has dL-derivative rho'(0)(1 - ln 2) - 0.75 = (0.25/0.05)(0.307) - 0.75
# = +0.78 > 0 at L = 0 for tau = 0.05, so from a policy equal to its reference the first step
# lowers the margin.  Every other loss raises it.
MARGIN_DIRECTION_AT_INIT = {"discopop": -1}
LOSSES = sorted(p.stem for p in (Path(CONF_DIR) / "loss").glob("*.yaml") if p.stem != "sft")


def _loss_cfg(name):
    return _compose([f"loss={name}"])


# TPO trains on step-annotated lists only (each response's world steps): its two real optimizer steps are
# tests/test_tpo.py::test_two_real_optimizer_steps
PAIR_DATA_LOSSES = [x for x in LOSSES if x != "tpo"]


@pytest.mark.parametrize("loss", PAIR_DATA_LOSSES)
@pytest.mark.slow  # trains (make test-fast runs no training)
def test_two_real_optimizer_steps(loss, tokenizer, pairs, tmp_path):
    """Two optimizer steps on one fixed batch: finite loss, parameters move, the logged reward
    margin on that batch grows (the loss pushes chosen above rejected)."""
    cfg = _loss_cfg(loss)
    unpaired = cfg.loss.backend == "kto" or not cfg.loss.paired  # KTO, BCO: 8 unpaired rows, one batch of 8
    pairs = pairs[:4] if unpaired else pairs[:8]
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = None if cfg.loss.reference_free else copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(
        **{
            **cfg.train,
            "max_steps": 2,
            "batch_size": 8,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        }
    )
    lr = 1e-2 if loss == "sft_lowlr" else 1e-3
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": lr})
    saved = {}
    cache = (lambda: None, lambda obj: saved.update(obj)) if loss_cfg.backend == "dpo" else None
    # a guided loss (TGDPO) scores a guide policy per token: here a copy of the start (token rewards 0: DPO's step);
    # tests/test_fine_grained.py trains it with a guide that differs from the reference
    guide = {"guide_model": copy.deepcopy(model)} if cfg.loss.get("guide") else {}
    if method_of(
        loss_cfg
    ).needs_source_models:  # InfiFPO: source models (tests/test_unpaired_fused.py checks the fusion)
        guide["source_models"] = [
            models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128) for _ in range(2)
        ]
    if method_of(loss_cfg).needs_pair_scores:  # MADPO / Sem-DPO: one score per pair (tests/test_pair_weights.py)
        guide["pair_scores"] = [0.5] * len(pairs)
    res = train_preference(model, ref, tokenizer, pairs, loss_cfg, train, tmp_path, 0, ref_logps_cache=cache, **guide)
    assert res["steps"] == 2
    assert res["train_loss_final"] is not None and torch.isfinite(torch.tensor(res["train_loss_final"]))
    changed = sum(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed > 0, "no parameter moved after two optimizer steps"
    if ref is not None and not loss_cfg.args.get("sync_ref_model"):  # the reference stays frozen
        assert all(torch.equal(before[k], v) for k, v in ref.state_dict().items())
    elif ref is not None:  # TR-DPO: tau = 10% of 2 steps -> the reference is mixed with the policy every step
        assert any(not torch.equal(before[k], v) for k, v in ref.state_dict().items())
    if cache is not None and not loss_cfg.reference_free and not loss_cfg.args.get("sync_ref_model"):
        # reference log-probs went through the store hook
        assert len(saved["ref_chosen_logps"]) == len(pairs)
    margins = [h["rewards/margins"] for h in res["history"] if "rewards/margins" in h]
    assert len(margins) == 2, res["history"]
    direction = MARGIN_DIRECTION_AT_INIT.get(loss, +1)
    assert direction * (margins[1] - margins[0]) > 0, f"{loss}: reward margin moved the wrong way: {margins}"
    # the losses and gradient norms of both steps, as recorded before the Method-record refactoring
    check_golden("trl_adapter_two_steps", loss, training_trace(res))


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_cached_reference_logps_are_used(tokenizer, pairs, tmp_path):
    """With the store's reference log-probs in place, DPO reads them instead of recomputing."""
    cfg = _loss_cfg("dpo")
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


def test_unknown_backend_argument_rejected():
    with pytest.raises(ValueError, match="not_an_arg"):
        validate_loss_args(method_of({"backend": "dpo", "args": {"not_an_arg": 1}}))
    validate_loss_args(method_of({"backend": "cpo", "args": {"loss_type": "simpo", "simpo_gamma": 0.5}}))


def test_unpaired_view():
    out = unpaired_view([{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert out == [
        {"prompt": "p", "completion": "a", "label": True},
        {"prompt": "p", "completion": "b", "label": False},
    ]


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_lora_trains_adapters_only_and_merges(tokenizer, pairs, tmp_path):
    """model.lora.enabled: TRL trains peft LoRA adapters (base weights frozen, reference = adapters off);
    the merged policy differs from the start, and its shape is a plain checkpoint."""
    cfg = _loss_cfg("dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = NS(**{**cfg.train, "max_steps": 2, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-2})
    model_cfg = NS(lora=NS(enabled=True, r=4, alpha=8, dropout=0.0, target_modules="all-linear"))
    res = train_preference(model, None, tokenizer, pairs[:8], loss_cfg, train, tmp_path, 0, model_cfg=model_cfg)
    peft_model = res["model"]
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    plain = merged(peft_model)
    after = plain.state_dict()
    assert set(after) == set(before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_last_checkpoint_skips_partial_ones(tmp_path):
    """A kill during a checkpoint write leaves a folder without trainer_state.json: resume from the
    newest complete one instead."""
    assert last_checkpoint(tmp_path / "missing") is None
    for n in (4, 8):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-8" / "model.safetensors").write_bytes(b"half")  # partial: no trainer_state.json
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")


# ---- every hyperparameter reaches TRL's config ------------------------------------------------------------


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
    cfg = _loss_cfg("dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train = NS(
        **{
            **cfg.train,
            "max_steps": 4,
            "batch_size": 8,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.5,
            "lr_scheduler": "linear",
        }
    )
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-3})
    res = train_preference(model, copy.deepcopy(model), tokenizer, pairs[:16], loss_cfg, train, tmp_path, 0)
    lrs = [h["learning_rate"] for h in res["history"] if "learning_rate" in h]
    assert lrs[0] < lrs[1] <= 1e-3, lrs  # TRL logs the rate of the step just taken: warmup, then decay


# ---- KTO: the KL rows are truly mismatched pairs ------------------------------------------------------------


def test_kto_kl_rows_are_provably_mismatched(tokenizer, pairs, tmp_path):
    """TRL scores row i's prompt with row i-1's completion (within each batch).  On the plain unpaired
    view (each prompt's desirable row next to its undesirable one) half of those KL rows are matched
    pairs; po-bench's order leaves none: in a real collated batch, every KL row's completion is the
    previous row's, whose prompt differs from the KL row's prompt."""
    rows = unpaired_view(pairs[:16])
    assert kl_matched_rows(__import__("datasets").Dataset.from_list(rows), 8) == len(rows) // 2  # before: half
    ordered = kto_order(rows, 8, seed=0)
    assert sorted(map(str, ordered)) == sorted(map(str, rows))  # same rows, another order
    from trl import KTOTrainer

    cfg = _loss_cfg("kto")
    train = NS(**{**cfg.train, "max_steps": 1, "batch_size": 8, "logging_steps": 1, "progress": False})
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args)})
    args = build_trl_config(loss_cfg, train, tmp_path, 0, n_rows=len(ordered))
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    trainer = KTOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=__import__("datasets").Dataset.from_list(ordered),
        processing_class=tokenizer,
    )
    assert kl_matched_rows(trainer.train_dataset, 8) == 0
    batch = next(iter(trainer.get_train_dataloader()))
    ids, cm = batch["input_ids"], batch["completion_mask"]
    kl_ids, kl_cm = batch["KL_input_ids"], batch["KL_completion_mask"]
    n = ids.shape[0]
    assert n == 8
    for i in range(n):
        j = (i - 1) % n
        prompt_i = ids[i][(batch["attention_mask"][i] == 1) & (cm[i] == 0)].tolist()
        prompt_j = ids[j][(batch["attention_mask"][j] == 1) & (cm[j] == 0)].tolist()
        kl_prompt = kl_ids[i][(batch["KL_attention_mask"][i] == 1) & (kl_cm[i] == 0)].tolist()
        assert kl_prompt == prompt_i  # the KL row is prompt i ...
        assert kl_ids[i][kl_cm[i] == 1].tolist() == ids[j][cm[j] == 1].tolist()  # ... with completion j
        assert prompt_i != prompt_j  # ... which answers another prompt


def test_kto_order_drops_a_last_batch_of_one_and_keeps_the_rest():
    rows = [{"prompt": f"p{i // 2}", "completion": str(i), "label": i % 2 == 0} for i in range(17)]
    out = kto_order(rows, 4, seed=1)
    assert len(out) == 16
    assert kl_matched_rows(__import__("datasets").Dataset.from_list(out), 4) == 0


# ---- BCO's delta moves across steps ------------------------------------------------------------------------


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_bco_delta_updated_across_steps(tokenizer, pairs, tmp_path):
    """loss=bco_pair: the logged reward shift delta is the running mean of the batches' rewards, so it
    changes from step to step once the policy leaves the reference (TRL 1.16 keeps it at 0)."""
    cfg = _loss_cfg("bco_pair")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train = NS(
        **{
            **cfg.train,
            "max_steps": 3,
            "batch_size": 8,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        }
    )
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-2})
    res = train_preference(model, copy.deepcopy(model), tokenizer, pairs[:24], loss_cfg, train, tmp_path, 0)
    deltas = [h["bco/delta"] for h in res["history"] if "bco/delta" in h]
    assert len(deltas) == 3, res["history"]
    assert deltas[0] == pytest.approx(0.0, abs=1e-6)  # step 1: policy == reference, every reward 0
    assert deltas[1] != pytest.approx(0.0, abs=1e-6) and deltas[2] != pytest.approx(deltas[1], abs=1e-7)


# ---- beta-DPO: the trainer holds the running margin statistics ------------------------------------------


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_beta_dpo_state_is_held_across_steps(tokenizer, pairs, tmp_path):
    """loss=beta_dpo: the trainer passes the running M_0 / sigma into the pure loss and keeps what it
    returns: the logged M_0 follows the momentum average of the batches' margins, floor(0.8 * 8) = 6 pairs
    are kept per batch, and the batch beta leaves beta_0 once the margins spread."""
    cfg = _loss_cfg("beta_dpo")
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    train = NS(
        **{
            **cfg.train,
            "max_steps": 3,
            "batch_size": 8,
            "logging_steps": 1,
            "progress": False,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        }
    )
    loss_cfg = NS(**{**cfg.loss, "args": dict(cfg.loss.args), "lr": 1e-2})
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


# ---- a curriculum order reaches the trainer (Curry-DPO) -------------------------------------------------


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_curriculum_order_is_kept_by_the_trainer(tokenizer, pairs, tmp_path):
    """ordered=True (dataset.curriculum): transformers' train_sampling_strategy="sequential", so the batches are
    the pairs in their order (TRL's default samples at random); and two real steps train in that order."""
    from torch.utils.data import SequentialSampler
    from trl import DPOTrainer

    cfg = _loss_cfg("curry_dpo")
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
        kto = _loss_cfg("kto")
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

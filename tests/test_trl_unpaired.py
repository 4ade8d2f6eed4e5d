"""KTO's unpaired rows (po_bench/training/trl/unpaired.py): the unpaired view of the pairs, po-bench's order,
which leaves no KL row a matched pair in TRL's real collated batches, and its reference log-probs through the
store."""

import copy
from types import SimpleNamespace as NS

import pytest

from po_bench.training import models
from po_bench.training.trl.args import build_trl_config
from po_bench.training.trl.unpaired import kl_matched_rows, kto_order, unpaired_view

from .helpers import config_with_loss, loss_args, step_args


def test_unpaired_view():
    out = unpaired_view([{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert out == [
        {"prompt": "p", "completion": "a", "label": True},
        {"prompt": "p", "completion": "b", "label": False},
    ]


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

    cfg = config_with_loss("kto")
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


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_ktos_reference_log_probs_go_through_the_store_and_train_the_same_policy(tokenizer, pairs, tmp_path):
    """KTO's reference log-probs (each row's and each KL row's, in its row order) precomputed and saved through
    the store hook train the same policy, bit for bit, as TRL's reference scored each step, and so do the
    saved ones read back (another KTO run on the same rows: no reference pass)."""
    import torch

    from po_bench.training.trl.preference import train_preference

    cfg = config_with_loss("kto")
    train, loss_cfg = step_args(cfg.train, 3), loss_args(cfg.loss, 1e-3)
    start = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    saved = {}

    def run(cache, out):
        model = copy.deepcopy(start)
        res = train_preference(
            model, copy.deepcopy(start), tokenizer, pairs[:12], loss_cfg, train, out, 0, ref_logps_cache=cache
        )
        return [
            {k: v for k, v in h.items() if "runtime" not in k and "per_second" not in k} for h in res["history"]
        ], model

    each_step, m0 = run(None, tmp_path / "a")
    stored, m1 = run((lambda: None, lambda obj: saved.update(obj)), tmp_path / "b")
    assert set(saved) == {"ref_logps", "ref_KL_logps"} and len(saved["ref_logps"]) == len(saved["ref_KL_logps"]) == 24
    read, m2 = run((lambda: saved, lambda obj: pytest.fail("saved again")), tmp_path / "c")
    assert each_step == stored == read and len(each_step) >= 3
    for m in (m1, m2):
        assert all(torch.equal(a, b) for a, b in zip(m0.state_dict().values(), m.state_dict().values()))

"""The CPO family (po_bench/training/trl/cpo.py): each reference-free loss config runs on TRL's own trainer
for its backend (CPO, SimPO and AlphaPO on CPOTrainer, ORPO on ORPOTrainer), the one whose config class
po-bench builds for it."""

import pytest

from po_bench.training.methods import MethodKind, method_of
from po_bench.training.trl import cpo
from po_bench.training.trl.args import build_trl_config
from po_bench.training.trl.preference import trainer_class

from .helpers import config_with_loss, preference_losses

EXPECTED = {"cpo": "CPOTrainer", "simpo": "CPOTrainer", "alphapo": "CPOTrainer", "orpo": "ORPOTrainer"}


def test_the_reference_free_losses_are_the_cpo_family():
    kinds = {n: method_of(config_with_loss(n).loss).kind for n in preference_losses()}
    assert {n for n, k in kinds.items() if k is MethodKind.REFERENCE_FREE_TRL} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_runs_on_trls_trainer_for_its_backend(name, tmp_path):
    cfg = config_with_loss(name)
    method = method_of(cfg.loss)
    cls = trainer_class(method)
    assert cls is cpo.TRAINERS[method.trl_trainer] and cls.__name__ == EXPECTED[name]
    assert cls.__module__.startswith("trl."), cls  # TRL's class as it ships, nothing subclassed
    # the config object built for the loss is the one of that trainer's family (CPOConfig / ORPOConfig)
    args = build_trl_config(cfg.loss, cfg.train, tmp_path, 0, n_rows=16)
    assert type(args).__name__ == EXPECTED[name].replace("Trainer", "Config")
    assert type(args).__module__.rsplit(".", 1)[0] == cls.__module__.rsplit(".", 1)[0]

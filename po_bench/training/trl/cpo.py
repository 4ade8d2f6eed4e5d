"""The CPO family (``MethodKind.REFERENCE_FREE_TRL``): TRL's CPOTrainer (CPO, and SimPO / AlphaPO by its
``loss_type``) and ORPOTrainer, reference-free (no reference model at all), run as TRL ships them."""

from __future__ import annotations

from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

# Method.trl_trainer -> the trainer class
TRAINERS = {"cpo": CPOTrainer, "orpo": ORPOTrainer}

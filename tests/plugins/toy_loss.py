"""A loss from outside po-bench (CONTRIBUTING.md's "A loss that is a pure function" recipe as a plug-in, run
by ``tests/test_losses.py``): a hinge on the implicit reward margin, L = max(0, 1 - beta * h), whose value
at the first step (policy = reference, h = 0) is exactly 1 whatever the batch: DPO's would be ln 2."""

import torch

from po_bench.training.losses import LossOutput, LossSpec, PairStats, register_loss


def toy_hinge(s: PairStats, beta: float, margin: float) -> LossOutput:
    chosen = beta * (s.chosen_logps - s.ref_chosen_logps)
    rejected = beta * (s.rejected_logps - s.ref_rejected_logps)
    return LossOutput(torch.relu(margin - (chosen - rejected)), chosen.detach(), rejected.detach())


register_loss("toy_hinge", LossSpec(toy_hinge, True, {"margin": (0.0, None, False, False)}))

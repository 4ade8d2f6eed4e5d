"""Log-probability trajectories during training on a fixed probe set: the measurements of likelihood
displacement (Razin et al., "Unintentional Unalignment", ICLR 2025: the chosen response's log-probability
falls during DPO) and of the "3D-properties" (Yan et al.: the rejected likelihood drops, the chosen one is
suppressed too, and mass disperses onto unseen responses).

At the start of training (the policy is then the starting checkpoint, the reference of every
reference-based loss), every ``every`` optimizer steps (0: about :data:`MEASUREMENTS` over the run, from its
total steps) and at the last step, :class:`ProbeCallback` scores, with the policy as it is at that step:

* summed log pi(y+) and log pi(y-) of each probe pair (drawn from the training pairs), their mean and
  their mean change from the start (``delta_chosen``, ``delta_rejected``);
* summed log pi(y) of a fixed set of *unseen* responses (responses to the probe prompts that are in no
  training pair): the mass that disperses there (``delta_unseen``).

Measuring is tied to optimizer steps (``on_step_end``), not to ``train.logging_steps`` (a run option that
must not change what is stored).  The latest values go into each of the Trainer's logged dicts under
``probe/`` (so wandb's callback and the run's history carry them: the callback runs before the reporters);
every measurement goes into :attr:`ProbeCallback.history`, and :meth:`ProbeCallback.result` is what the
policy artifact stores (per-pair start and final values for the CHES analysis).  Extra forward passes:
two or three per probe sequence per measurement (counted in :attr:`forward_sequences`), none when the
callback is not given.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

from po_bench.generation.logprobs import completion_logps

PREFIX = "probe/"
MEASUREMENTS = 10  # probe_every=0: about this many measurements over the run (besides the start)


def interval(every: int, max_steps: int) -> int:
    """Optimizer steps between two measurements: ``every``, or (0) about :data:`MEASUREMENTS` over ``max_steps``."""
    if every > 0:
        return every
    return max(1, math.ceil(max_steps / MEASUREMENTS))


class ProbeCallback(TrainerCallback):
    """Scores a fixed probe set at the start of training and every ``every`` optimizer steps (module docstring)."""

    def __init__(
        self,
        tokenizer,
        pairs: list[dict],
        unseen: list[dict] | None = None,
        max_length: int | None = None,
        every: int = 0,
    ):
        if not pairs:
            raise ValueError("the probe set is empty")
        self.tokenizer = tokenizer
        self.pairs = pairs
        self.unseen = list(unseen or [])  # {"prompt", "response"}: responses in no training pair
        self.max_length = max_length
        self.every = int(every)
        self.step_interval: int | None = None  # decided at the start of training (from its total steps)
        self.start: dict[str, list[float]] | None = None
        self.last: dict[str, list[float]] | None = None
        self.last_step: int | None = None
        self.history: list[dict] = []
        self.forward_sequences = 0  # sequences scored, for the cost accounting (and its test)

    def score(self, model) -> dict[str, list[float]]:
        """Per probe sequence: summed log pi under ``model`` (left in the training mode it was in)."""
        was_training = model.training
        prompts = [p["prompt"] for p in self.pairs]
        out = {}
        try:
            for key, ps, ys in (
                ("chosen", prompts, [p["chosen"] for p in self.pairs]),
                ("rejected", prompts, [p["rejected"] for p in self.pairs]),
                ("unseen", [u["prompt"] for u in self.unseen], [u["response"] for u in self.unseen]),
            ):
                if not ps:
                    continue
                sums, _ = completion_logps(model, self.tokenizer, ps, ys, max_length=self.max_length)
                out[key] = [float(x) for x in sums]
                self.forward_sequences += len(ps)
        finally:
            model.train(was_training)
        return out

    def summary(self, now: dict[str, list[float]]) -> dict[str, float]:
        """The logged numbers: means of the summed log-probs and of their change from the start."""

        def mean(xs):
            return sum(xs) / len(xs)

        out = {}
        for key, values in now.items():
            out[f"logp_{key}"] = mean(values)
            out[f"delta_{key}"] = mean([a - b for a, b in zip(values, self.start[key])])
        if "chosen" in now:
            out["margin"] = out["logp_chosen"] - out["logp_rejected"]
        return out

    def per_pair_delta(self, key: str = "chosen") -> list[float]:
        """Each probe sequence's change of summed log pi(y) from the start to the last measurement."""
        return [a - b for a, b in zip(self.last[key], self.start[key])]

    def measure(self, model, step: int) -> None:
        self.last = self.score(model)
        self.last_step = step
        self.history.append({"step": step, **self.summary(self.last)})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.step_interval = interval(self.every, state.max_steps)
        if self.start is None:  # (a resumed run keeps the start it measured, if the object is the same)
            self.start = self.score(model)
            self.last, self.last_step = self.start, state.global_step
            self.history.append({"step": state.global_step, **self.summary(self.start)})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step % self.step_interval == 0 or step >= state.max_steps:
            self.measure(model, step)

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # a training logging step, not the end-of-training summary
            return
        logs.update({PREFIX + k: v for k, v in self.history[-1].items() if k != "step"})

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.last_step != state.global_step:  # (training stopped early: its final state is measured too)
            self.measure(model, state.global_step)

    def result(self) -> dict:
        """What the policy artifact stores (``train_metrics.json``'s ``probe``): every measurement, and per
        probe sequence its summed log pi at the start and at the end and the change."""
        per_pair = {}
        for key in self.start:
            per_pair[f"start_{key}"] = self.start[key]
            per_pair[f"final_{key}"] = self.last[key]
            per_pair[f"delta_{key}"] = self.per_pair_delta(key)
        return {
            "every": self.step_interval,
            "history": self.history,
            "per_pair": per_pair,
            "forward_sequences": self.forward_sequences,
        }

"""Log-probability trajectories during training on a fixed probe set: the measurements of likelihood
displacement (Razin et al., "Unintentional Unalignment", ICLR 2025: the chosen response's log-probability
falls during DPO) and of the "3D-properties" (Yan et al.: the rejected likelihood drops, the chosen one is
suppressed too, and mass disperses onto unseen responses).

At the start of training (the policy is then the starting checkpoint, the reference of every
reference-based loss) and at every logging step, :class:`ProbeCallback` scores, with the policy as it is at
that step:

* summed log pi(y+) and log pi(y-) of each probe pair (drawn from the training pairs), their mean and
  their mean change from the start (``delta_chosen``, ``delta_rejected``);
* summed log pi(y) of a fixed set of *unseen* responses (responses to the probe prompts that are in no
  training pair): the mass that disperses there (``delta_unseen``).

Its values go into the Trainer's logged dict under ``probe/`` (so wandb's callback and the run's history
carry them: the callback runs before the reporters) and into :attr:`ProbeCallback.history`; the per-pair
changes of the last step are kept for the CHES analysis.  Extra forward passes: two or three per probe
sequence per logging step, none when the callback is not given.
"""

from __future__ import annotations

from transformers import TrainerCallback

from po_bench.generation.logprobs import completion_logps

PREFIX = "probe/"


class ProbeCallback(TrainerCallback):
    """Scores a fixed probe set at the start of training and at every logging step (module docstring)."""

    def __init__(self, tokenizer, pairs: list[dict], unseen: list[dict] | None = None, max_length: int | None = None):
        if not pairs:
            raise ValueError("the probe set is empty")
        self.tokenizer = tokenizer
        self.pairs = pairs
        self.unseen = list(unseen or [])  # {"prompt", "response"}: responses in no training pair
        self.max_length = max_length
        self.start: dict[str, list[float]] | None = None
        self.last: dict[str, list[float]] | None = None
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
        """Each probe pair's change of summed log pi(y) from the start to the last logged step."""
        return [a - b for a, b in zip(self.last[key], self.start[key])]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.start is None:  # (a resumed run keeps the start it measured, if the object is the same)
            self.start = self.score(model)
            self.last = self.start
            self.history.append({"step": state.global_step, **self.summary(self.start)})

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # a training logging step, not the end-of-training summary
            return
        self.last = self.score(model)
        summary = self.summary(self.last)
        self.history.append({"step": state.global_step, **summary})
        logs.update({PREFIX + k: v for k, v in summary.items()})

"""The online methods' losses and arguments (``backend: online``): pure functions over per-sequence statistics
of the pairs the online loop (:mod:`po_bench.training.online`) samples and labels, and the registry of what
each method samples and which ``loss.args`` it takes.

- ``online_dpo``: two samples of the current policy per prompt, labelled; the DPO loss against the fixed
  reference (the start checkpoint).
- ``xpo`` (Xie et al. 2024, "Exploratory Preference Optimization", Algorithm 1): one sample of the current
  policy and one of the reference per prompt, labelled; the DPO loss plus ``alpha * log pi(y~)`` summed over the
  reference samples y~ (the exploration bonus: minimising it lowers the policy's likelihood of what the reference
  says, pushing it off the reference's support).  ``accumulate``: false, a fresh batch each step (TRL's former
  XPOTrainer); true, the paper's growing preference set, every pair and reference sample so far in each update.
- ``brain`` (Pandey et al. 2024, "BRAIn: Bayesian Reward-conditioned Amortized Inference"): n samples per prompt
  from a proposal q (the SFT model, or the current policy), each scored by the source's scalar reward; the
  cross-entropy between the reward-conditioned posterior's self-normalised importance weights and the policy's
  self-normalised weights over the same samples (:func:`brain`).
- ``rto`` (Zhong et al. 2024, "DPO Meets PPO: Reinforced Token Optimization for RLHF"): two samples of the current
  policy per prompt, each scored by the sparse reward (the world's gold r*); a per-token reward
  (:func:`rto_token_rewards`: a trained DPO guide policy's clipped token log-ratio, the KL penalty to the
  reference, the sparse reward at the last token) optimised by REINFORCE with the other sample of the prompt as
  the baseline (:func:`reinforce_losses`).  ``dense: false`` drops the DPO term: the sparse-only baseline.
- ``oprl`` (Liu et al. 2025, "Online Process Reward Learning for Agentic Reinforcement Learning"): n samples of
  the current policy per prompt, each scored by the source's scalar reward (the outcome); an implicit PRM (its own
  copy of the start checkpoint) trained on the group's outcome-ordered trajectory pairs with the trajectory DPO
  loss against the sampling policy (:func:`oprl_prm_losses`); its step rewards beta * sum over a world step's
  tokens of log(pi_prm/pi_old) (:func:`oprl_step_rewards`); GRPO's group-normalised outcome advantage plus alpha
  times the group-normalised step reward on each step's tokens (:func:`oprl_token_advantages`), and GRPO's
  clipped surrogate (:func:`grpo_losses`).  po_bench/training/oprl.py runs it.
- ``ofs_dpo`` (Qi et al. 2024, "Online DPO: Online Direct Preference Optimization with Fast-Slow Chasing"): two
  LoRA modules on the same base, a fast one (``lr``) and a slow one (``lr / lr_ratio``); two samples of the fast
  module per prompt, labelled; each module's DPO loss plus ``chase`` times the chasing regulariser (:func:`ofs_dpo`),
  the modules exchanging roles when the slow one's DPO loss falls below the fast one's
  (po_bench/training/ofs.py).  ``domains`` > 0: COFS-DPO, the world's prompt families in sequence and the finished
  fast modules combined linearly.  The paper's method section was not available: docs/online.md says what is
  reconstructed.

Every online method also reads the loop's arguments (:data:`LOOP_ARGS`): the preference source that labels
the samples (``labeller``, :mod:`po_bench.training.labellers`), its Bradley-Terry temperature, and a source's own
fields (:data:`SOURCE_ARGS`: ``reward_model`` for ``explicit``, ``judge`` for ``judge``; keyed through the source's
spec, refused with any other source).
Nothing here imports torch at module level (config validation reads the registry).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from po_bench.training.losses import F, LossOutput, PairStats, torch


def dpo_losses(s: PairStats, beta: float):
    """-log sigmoid(beta * [log pi/ref (y_w) - log pi/ref (y_l)]) per pair."""
    return -F.logsigmoid(beta * (s.chosen_logratio - s.rejected_logratio))


def online_dpo(s: PairStats, beta: float) -> LossOutput:
    """Online DPO (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback"): DPO's loss on
    the labelled pair of two current-policy samples."""
    return LossOutput(dpo_losses(s, beta), beta * s.chosen_logratio.detach(), beta * s.rejected_logratio.detach())


def xpo(s: PairStats, beta: float, alpha: float, ref_sample_logps) -> LossOutput:
    """XPO: DPO's loss on the labelled (policy sample, reference sample) pair plus alpha * log pi(y~), y~ the
    reference's sample (``ref_sample_logps``: its summed log-prob under the policy, one per pair)."""
    losses = dpo_losses(s, beta) + alpha * ref_sample_logps
    return LossOutput(losses, beta * s.chosen_logratio.detach(), beta * s.rejected_logratio.detach())


def brain_targets(rewards, ref_logps, q_logps, beta: float, targets: str = "soft"):
    """BRAIn's targets per prompt (rows: prompts, columns: its n samples): the self-normalised importance weights
    of the reward-conditioned posterior p(y | x, G=1) ~ p_sft(y) exp(r(y) / beta) under the proposal q,
    softmax_i(r_i / beta + log p_sft(y_i) - log q(y_i)); ``argmax``: the one-hot of its largest logit (ties: the
    mass split evenly among them)."""
    logits = rewards / beta + ref_logps - q_logps
    if targets == "soft":
        return logits.softmax(-1)
    top = (logits == logits.max(-1, keepdim=True).values).to(logits.dtype)
    return top / top.sum(-1, keepdim=True)


def brain(policy_logps, ref_logps, q_logps, rewards, beta: float, targets: str = "soft"):
    """BRAIn's loss per prompt: -sum_i t_i log softmax_j(log pi(y_j) - log q(y_j))_i, t = :func:`brain_targets`
    (no gradient).  Its gradient is sum_i (t_i - w_i) grad log pi(y_i), w = softmax(log pi - log q): the paper's
    distillation gradient with its self-normalised baseline (the w_i term).  With q = p_sft (the reference),
    n = 2 and argmax targets it is -log sigmoid(log pi/ref(y_w) - log pi/ref(y_l)): DPO at beta 1 on the SFT
    samples (tests/test_online_losses.py)."""
    with torch.no_grad():
        t = brain_targets(rewards, ref_logps, q_logps, beta, targets)
    return -(t * (policy_logps - q_logps.detach()).log_softmax(-1)).sum(-1)


def rto_token_rewards(policy_tok, ref_tok, guide_tok, mask, sparse, beta: float, clip: float, kl_coef: float, dense):
    """RTO's reward of each completion token (rows: samples; ``mask`` 1 on completion tokens, right-padded):
    ``clamp(beta * log(pi_dpo/pi_ref)(y_t), -clip, clip)`` (the guide's token reward, when ``dense``) minus
    ``kl_coef * log(pi/pi_ref)(y_t)`` (the KL penalty to the reference), plus the sparse reward at the sample's
    last token.  Every input is a per-token log-prob tensor [B, T] (``guide_tok`` unused when not dense) and
    ``sparse`` [B]; no gradient flows through the rewards."""
    with torch.no_grad():
        r = -kl_coef * (policy_tok - ref_tok)
        if dense:
            r = r + torch.clamp(beta * (guide_tok - ref_tok), -clip, clip)
        last = (mask.cumsum(-1) == mask.sum(-1, keepdim=True)) & (mask > 0)
        r = r + last.to(r.dtype) * sparse.to(r.dtype)[:, None]
        return r * mask


def reinforce_losses(policy_tok, rewards, mask, pair_of):
    """REINFORCE with a leave-one-out baseline, per sample: ``-sum_t (G_t - b) log pi(y_t)``, G_t the reward to go
    from token t (undiscounted), b the total return G_0 of the other sample of the same prompt (``pair_of[i]``:
    its row; RLOO with two samples, so b does not depend on the sample's own tokens).  Returns (losses [B],
    advantages [B, T])."""
    with torch.no_grad():
        togo = torch.flip(torch.cumsum(torch.flip(rewards * mask, [-1]), -1), [-1])
        total = togo[:, 0]
        adv = (togo - total[pair_of][:, None]) * mask
    return -(adv * policy_tok * mask).sum(-1), adv


def oprl_prm_losses(prm_w, old_w, prm_l, old_l, beta: float):
    """OPRL's PRM loss per trajectory pair (the paper's J_PRM, a trajectory DPO loss against the previous policy
    snapshot pi_old): -log sigmoid(beta * [log pi_prm/pi_old (tau+) - log pi_prm/pi_old (tau-)]); each argument the
    summed completion log-probs of the preferred (w) or the other (l) trajectory of each pair."""
    return -F.logsigmoid(beta * ((prm_w - old_w) - (prm_l - old_l)))


def oprl_step_rewards(prm_tok, old_tok, token_step, n_steps: int, beta: float):
    """OPRL's implicit step rewards [B, n_steps]: beta * sum over the tokens of step k of log(pi_prm/pi_old)(y_t)
    (the paper's r_phi(o_1:t, a_t) = beta * log pi_phi(a_t | .)/pi_old(a_t | .), a_t the step's tokens).
    ``token_step`` [B, T]: the step index of each completion token, -1 for none (prompt, padding, a response
    without steps); no gradient."""
    with torch.no_grad():
        r = beta * (prm_tok - old_tok)
        idx = token_step.clamp(min=0)
        keep = (token_step >= 0).to(r.dtype)
        out = torch.zeros(r.shape[0], max(1, n_steps), dtype=r.dtype, device=r.device)
        return out.scatter_add_(1, idx, r * keep)[:, :n_steps]


def group_normalised(x, mask, eps: float = 1e-4):
    """(x - mean) / (std + eps) over each group's valid entries (rows: groups; ``mask`` 1 where valid; std the
    unbiased one, as TRL's GRPO; a group with fewer than 2 valid entries gets 0)."""
    with torch.no_grad():
        m = mask.to(x.dtype)
        k = m.sum(-1, keepdim=True)
        mean = (x * m).sum(-1, keepdim=True) / k.clamp(min=1)
        var = (((x - mean) * m) ** 2).sum(-1, keepdim=True) / (k - 1).clamp(min=1)
        return torch.where(k >= 2, (x - mean) / (var.sqrt() + eps), torch.zeros_like(x)) * m


def oprl_token_advantages(outcome, step_rewards, step_mask, token_step, alpha: float):
    """OPRL's advantage of each completion token [G*n, T]: A_E(tau) + alpha * A_S(step of the token), A_E GRPO's
    group-normalised outcome (``outcome`` [G, n]: a group is one prompt's n samples) and A_S the step reward
    group-normalised over every step of the group's n samples (``step_rewards``, ``step_mask`` [G*n, S]); a token
    of no step (``token_step`` -1, e.g. a response without steps) gets A_E alone.  Returns (A [G*n, T], A_E [G*n],
    A_S [G*n, S])."""
    with torch.no_grad():
        G, n = outcome.shape
        S = step_rewards.shape[-1]
        a_e = group_normalised(outcome, torch.ones_like(outcome)).reshape(G * n)
        a_s = group_normalised(step_rewards.reshape(G, n * S), step_mask.reshape(G, n * S)).reshape(G * n, S)
        if S == 0:
            per_tok = torch.zeros(token_step.shape, dtype=outcome.dtype, device=outcome.device)
        else:
            per_tok = torch.gather(a_s, 1, token_step.clamp(min=0)) * (token_step >= 0).to(a_s.dtype)
        return a_e[:, None] + alpha * per_tok, a_e, a_s


def grpo_losses(policy_tok, old_tok, adv, mask, clip: float):
    """GRPO's clipped surrogate per sample: -mean over its completion tokens of min(rho_t A_t, clip(rho_t, 1-c,
    1+c) A_t), rho_t = pi/pi_old(y_t) (``old_tok`` without gradient); no KL term."""
    rho = torch.exp(policy_tok - old_tok.detach())
    tok = torch.minimum(rho * adv, torch.clamp(rho, 1 - clip, 1 + clip) * adv)
    return -(tok * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def ofs_dpo(fast: PairStats, slow: PairStats, beta: float, chase: float) -> LossOutput:
    """OFS-DPO's loss per pair (a reconstruction, docs/online.md): the fast module's and the slow module's DPO
    losses against the fixed reference, plus ``chase`` times the chasing regulariser
    ``-log sigmoid(beta * (h_fast - sg(h_slow)))`` (h = log pi/ref(y_w) - log pi/ref(y_l)): DPO with the slow
    module as the fast one's reference, which keeps the fast module's preference margin ahead of the slow one's (a
    gradient that does not vanish as the DPO term saturates, as long as the slow module follows).  No gradient
    flows into the slow module through the regulariser.  The rewards are the fast module's."""
    h_fast = fast.chosen_logratio - fast.rejected_logratio
    h_slow = slow.chosen_logratio - slow.rejected_logratio
    chase_term = -F.logsigmoid(beta * (h_fast - h_slow.detach()))
    losses = dpo_losses(fast, beta) + dpo_losses(slow, beta) + chase * chase_term
    return LossOutput(losses, beta * fast.chosen_logratio.detach(), beta * fast.rejected_logratio.detach())


def ofs_swaps(fast_dpo_loss: float, slow_dpo_loss: float) -> bool:
    """OFS-DPO's swap rule (a reconstruction): the modules exchange roles when the slow one's DPO loss on the
    step's labelled pairs (before the update) is below the fast one's: it has overtaken the fast one."""
    return slow_dpo_loss < fast_dpo_loss


# which model draws each of the two responses of a pair
POLICY_POLICY = "policy_policy"
POLICY_REFERENCE = "policy_reference"
# n samples per prompt from a proposal (brain: loss.args.proposal), weighted by a scalar reward, no pairs
N_SAMPLES = "n_samples"
# two policy samples per prompt, each scored (not a pairwise label): RTO's loop (po_bench/training/rto.py)
POLICY_SCORED = "policy_scored"
# n policy samples per prompt, each scored, a PRM trained on the group's pairs: OPRL's loop (training/oprl.py)
POLICY_GROUP = "policy_group"
# two samples of the fast LoRA module per prompt, labelled, both modules trained: OFS-DPO's loop (training/ofs.py)
FAST_SLOW = "fast_slow"


@dataclass(frozen=True)
class Loop:
    """An online loop: the function that runs it (``module:function``, imported when the loop runs: the loops
    import torch, peft, scipy), a function of one :class:`po_bench.training.online.LoopInputs`; ``ddp``: it
    shards each step over a ``launch=ddp`` process group (else it runs in one process)."""

    target: str
    ddp: bool = False


# the online loops by name (an OnlineSpec's ``loop``)
LOOPS: dict[str, Loop] = {
    "pairs": Loop("po_bench.training.online:train_online", ddp=True),  # the shared loop (po_bench/training/online.py)
    "rto": Loop("po_bench.training.rto:train_rto"),
    "oprl": Loop("po_bench.training.oprl:train_oprl"),
    "ofs": Loop("po_bench.training.ofs:train_ofs"),
}


@dataclass(frozen=True)
class OnlineSpec:
    """An online method: its loss function, who samples the pair, its own arguments (name -> (allowed type,
    check, the one-line rule)) and their defaults, the loop that trains it (:data:`LOOPS`) and what the policy
    stage loads for that loop (po_bench/stages.py build_online_policy)."""

    fn: Callable
    pairing: str
    args: dict[str, tuple] = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    guided: bool = False  # reads a guide policy (``loss.guide``, e.g. RTO's DPO policy)
    loop: str = "pairs"  # the loop that trains it (a name in LOOPS)
    # a second copy of the start checkpoint beside the policy: the fixed reference (OPRL: its implicit PRM); false
    # for a loop that needs none (OFS-DPO: the reference is the base with the adapters off)
    reference: bool = True
    # under generation=vllm the policy's samples come from a colocated vLLM engine (the loop takes one; config.py
    # says which methods' samples allow it)
    engine: bool = False


def _nonneg(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


ONLINE_LOSSES: dict[str, OnlineSpec] = {
    "online_dpo": OnlineSpec(online_dpo, POLICY_POLICY, engine=True),
    "xpo": OnlineSpec(
        xpo,
        POLICY_REFERENCE,
        args={
            "alpha": (_nonneg, "a number >= 0"),
            "accumulate": (lambda v: isinstance(v, bool), "true or false"),
        },
        defaults={"alpha": 1e-5, "accumulate": False},
        engine=True,
    ),
    "brain": OnlineSpec(
        brain,
        N_SAMPLES,
        args={
            "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2, "an integer >= 2"),
            "proposal": (lambda v: v in ("sft", "policy"), "sft or policy"),
            "targets": (lambda v: v in ("soft", "argmax"), "soft or argmax"),
        },
        defaults={"n": 4, "proposal": "sft", "targets": "soft"},
        engine=True,
    ),
    "rto": OnlineSpec(
        rto_token_rewards,
        POLICY_SCORED,
        args={
            "dense": (lambda v: isinstance(v, bool), "true or false"),
            "clip": (_nonneg, "a number >= 0"),
            "kl_coef": (_nonneg, "a number >= 0"),
        },
        defaults={"dense": True, "clip": 0.05, "kl_coef": 0.01},
        guided=True,
        loop="rto",
    ),
    "oprl": OnlineSpec(
        grpo_losses,
        POLICY_GROUP,
        args={
            "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2, "an integer >= 2"),
            "alpha": (_nonneg, "a number >= 0"),
            "clip": (_nonneg, "a number >= 0"),
        },
        defaults={"n": 4, "alpha": 1.0, "clip": 0.2},
        loop="oprl",
    ),
    "ofs_dpo": OnlineSpec(
        ofs_dpo,
        FAST_SLOW,
        args={
            "chase": (_nonneg, "a number >= 0"),
            "lr_ratio": (lambda v: _nonneg(v) and v >= 1, "a number >= 1 (fast lr / slow lr)"),
            "lora_r": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
            "lora_alpha": (lambda v: _nonneg(v) and v > 0, "a number > 0"),
            "domains": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
            "weights": (
                lambda v: (
                    v is None
                    or (
                        isinstance(v, Sequence) and not isinstance(v, str) and all(_nonneg(w) for w in v) and sum(v) > 0
                    )
                ),
                "null (uniform) or a list of numbers >= 0, one per domain, not all 0",
            ),
        },
        defaults={"chase": 1.0, "lr_ratio": 4.0, "lora_r": 8, "lora_alpha": 16, "domains": 0, "weights": None},
        loop="ofs",
        reference=False,
    ),
}

# the loop's arguments every online method reads: the preference source and its Bradley-Terry temperature
# (0: the argmax of the source's scores; > 0: the label sampled with P(a > b) = sigmoid((s_a - s_b) / T))
LOOP_ARGS: dict[str, tuple] = {
    "labeller": (lambda v: isinstance(v, str), "a preference source's name"),
    "label_temperature": (_nonneg, "a number >= 0"),
    # labeller=explicit: the reward model's lr / epochs / batch_size (iterative_dpo's loss.args.reward_model)
    "reward_model": (
        lambda v: (
            isinstance(v, Mapping)
            and set(v) <= {"lr", "epochs", "batch_size"}
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v.values())
        ),
        "a map of lr, epochs, batch_size, each > 0",
    ),
    # labeller=judge: the judge's fields (po_bench/training/labellers.py JUDGE_KEY_FIELDS, JUDGE_RUN_FIELDS)
    "judge": (lambda v: isinstance(v, Mapping), "a map of the judge's fields"),
}
# the loop's arguments read by one preference source only (keyed through the source's spec, not the loss's)
SOURCE_ARGS = {"reward_model": "explicit", "judge": "judge"}
LOOP_DEFAULTS = {"labeller": "gold", "label_temperature": 0.0}


def online(function: str) -> bool:
    return function in ONLINE_LOSSES


def loop_of(function: str) -> Loop:
    """The loop that trains an online method (its OnlineSpec's ``loop``)."""
    return LOOPS[ONLINE_LOSSES[function].loop]


def loop_function(function: str) -> Callable:
    """The function that runs an online method's loop, a function of one LoopInputs (its module imported now:
    torch, transformers, and what the loop reads)."""
    module, name = loop_of(function).target.split(":")
    return getattr(importlib.import_module(module), name)


def guided(function: str, args: dict) -> bool:
    """Whether an online method with these ``loss.args`` reads a guide policy (RTO unless ``dense: false``)."""
    spec = ONLINE_LOSSES.get(function)
    return spec is not None and spec.guided and bool({**spec.defaults, **args}.get("dense", True))


def check_online(function: str, args: dict, labellers: tuple[str, ...]) -> None:
    """ValueError naming the first problem of an online method's ``loss.args``: an unknown function or argument,
    a value out of its range, an unknown preference source (``labellers``: the registered ones)."""
    if function not in ONLINE_LOSSES:
        raise ValueError(f"loss.function={function!r}: allowed {', '.join(ONLINE_LOSSES)}")
    allowed = {**LOOP_ARGS, **ONLINE_LOSSES[function].args}
    for k, v in args.items():
        if k not in allowed:
            raise ValueError(f"loss.args.{k} is not an argument of {function} (allowed: {', '.join(allowed)})")
        ok, rule = allowed[k]
        if not ok(v):  # (a source's map of fields is not shown: a judge's could hold a planted key)
            raise ValueError(f"loss.args.{k}{'' if k in SOURCE_ARGS else f'={v!r}'}: must be {rule}")
    lab = args.get("labeller", LOOP_DEFAULTS["labeller"])
    if lab not in labellers:
        raise ValueError(f"loss.args.labeller={lab!r}: allowed {', '.join(labellers)}")
    for k, source in SOURCE_ARGS.items():
        if k in args and lab != source:
            raise ValueError(f"loss.args.{k} is read by labeller={source} only (got {lab})")
    if lab == "judge":
        from po_bench.training.labellers import judge_args_problem  # lazy: its module (numpy, the world)

        problem = judge_args_problem(args.get("judge"))
        if problem:
            raise ValueError(problem)


def online_args(function: str, args: dict) -> dict:
    """An online method's arguments with the defaults filled in (the loop's and the method's)."""
    return {**LOOP_DEFAULTS, **ONLINE_LOSSES[function].defaults, **args}

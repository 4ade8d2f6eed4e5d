"""From a run's config to the specs of its artifacts: the one place where config fields become keys.

A *spec* is the plain dict of exactly the fields a stage reads (:mod:`po_bench.stages` builds each
artifact from its spec and nothing else); the store keys the artifact by the spec's hash, so a key
is complete by construction.  :func:`plan` is pure (no training, no generation: at most a checksum
of the data files), so the whole dependency structure of a run can be inspected before any compute.

=================  ===================================================================================
artifact           spec (what determines it)
=================  ===================================================================================
sft                model fields, the source's SFT data fields, SFT hyperparameters, seed
sft_samples        start checkpoint, eval prompts (their fields), generation config, seed
heldout_<split>    start checkpoint, that split's prompts, generation config, seed (+1000/+2000), n=2
pref_samples       start checkpoint, pref prompts, generation config, seed + 3000, n=dataset.k_samples (2)
sft_strong         sft's spec on a stronger demonstrator's data; its pref-prompt samples (pref_samples_strong)
                   are read by multi-model pairs (dataset.pair_models multi | strong_chosen; the pairs stage
                   builds both when absent)
pairs              the source's pair fields (+ pref_samples, annotator / files' checksums, tokenizer
                   and max_length for over-long prompts), noise, seed
ches               (diagnostics.ches or dataset.filter) start checkpoint, model, the unfiltered pairs, max_length:
                   CHES and length-normalised CHES of every training pair (:func:`ches_spec`)
filtered pairs     (dataset.filter) the pairs spec plus ``filter`` (kind, keep, the ches spec): the kept pairs, a
                   pairs artifact of its own, read by everything that trains on the pairs (:func:`train_pairs`)
ref_logps          start checkpoint, model, pairs, max_length and the TRL fields its reference pass
                   reads (``methods.REF_LOGP_ARGS``); KTO's: its rows and KL rows, so also the per-device
                   batch and the seed that order them (:func:`ref_logps_spec`)
reward_model       (MADPO) start checkpoint, model, pairs, loss.pair_scores' lr/epochs/batch_size,
                   train.max_length/precision/lr_scheduler/warmup_ratio, seed: the reward model + margins; the
                   explicit labeller's (iterative_dpo and the online loop, loss.args.reward_model) on the start's
                   annotator pairs (:func:`explicit_reward_model_spec`), nested in the online policy's labeller
semantic_distance  (Sem-DPO) pairs, loss.pair_scores.embedder: prompt/chosen embedding distances
policy             start checkpoint, model, pairs, loss (its trainer-facing fields), preference
                   hyperparameters, seed (+ the per-pair scores' spec for MADPO / Sem-DPO; + the probe's
                   fields when ``diagnostics.probe`` is on: :func:`probe_spec`, its trajectory is stored with it)
round<r>_*         (an iterative method: loss=iterative_dpo) per round r, the samples (k per pref prompt from round
                   r-1's policy, round 1: the start), the pairs (those samples, the labeller's spec: gold, the
                   annotator, the last policy's implicit reward, a reward model), the ref_logps and the policy (the
                   inner loss from round r-1's policy; ``reference`` where it is not its start), each nesting round
                   r-1's policy (:func:`iterative_rounds`); the run's pairs / ref_logps / policy are the last round's
generations        policy, eval prompts, generation config, seed
implicit           (the judge stage's implicit judges: kl_to_ref, mean_length, implicit-reward accuracy) the
                   policy, the reference (start checkpoint), their model fields, the policy's eval samples, the
                   held-out samples (the world) and the pairs (real data: their eval split), the implicit
                   reward's kind and beta (:func:`implicit_spec`; not a Plan role: read by the pipeline)
beams              (``diagnostics.beams``; not a Plan role: read by the pipeline) per beam width, the policy's
                   beam samples on the eval prompts (a samples spec whose gen has ``num_beams`` and no sampling
                   fields) and their kl_to_ref, mean_length and implicit reward against the reference
                   (:func:`beam_specs`)
token_credit       (``diagnostics.token_credit``, the world) the policy, the reference, their model fields, the
                   held-out eval samples (the eval pairs' responses) and beta (:func:`token_credit_spec`)
reward_model       (as an EXRM: diagnostics.reward_models) the same spec with diagnostics.rm_lr/rm_epochs/
                   rm_batch_size for lr/epochs/batch_size (:func:`exrm_spec`; MADPO's at the defaults)
reward_models      (diagnostics.reward_models) DPORM and EXRM margins on each evaluation set: the policy, the
                   reference, the EXRM's spec, each set's sample / pair / file specs, kind and beta
                   (:func:`reward_models_spec`; not a Plan role: read by the pipeline)
answers            (judges that read answers) the policy, the generation config with the judge's answer
                   settings, the judge's question set (:data:`JUDGE_QUESTION_FIELDS`), the conversations
<judge kind>       (judges with an artifact of their own, e.g. ``openllm``: lm-eval's output) the policy and
                   the fields the judge names (``OpenLLMJudge.cache_fields``)
===================  ===================================================================================

:data:`DEPENDS` is the dependency table (config field -> artifacts it determines) that
``tests/test_specs.py`` checks field by field against :func:`plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from po_bench.choices import FilterKind
from po_bench.common import plain
from po_bench.data.sources import DataSource, file_fingerprint, source_for
from po_bench.store import fingerprint
from po_bench.training.labellers import labeller_needs, labeller_spec
from po_bench.training.launch import global_batch, split_batch, world_size
from po_bench.training.losses import plain_sources
from po_bench.training.methods import method_of
from po_bench.training.online_losses import SOURCE_ARGS, online_args
from po_bench.training.online_losses import guided as online_guided

# Bumped when a stage's code changes what it produces for the same spec.
# sft/samples/policy 2: warmup reaches TRL, KTO KL order, held-out world prompts; reward_model and
# semantic_distance: the per-pair scores of po_bench.training.pair_scores
VERSIONS = {
    "sft": 2,
    "samples": 2,
    "pairs": 1,
    "ref_logps": 1,
    "policy": 2,
    "reward_model": 1,
    "semantic_distance": 1,
    "implicit": 1,
    "ches": 1,
    "beams": 1,
    "token_credit": 1,
    "reward_models": 1,
}

# Run options that never change an artifact (logging, progress bars, checkpoint frequency, threads).
RUN_OPTIONS = ("logging_steps", "save_steps", "progress")
SFT_TRAIN_FIELDS = (
    "sft_lr",
    "sft_epochs",
    "sft_batch_size",
    "max_length",
    "lr_scheduler",
    "warmup_ratio",
    "grad_accum",
    "max_steps",
    "precision",
)
PREF_TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "grad_accum",
    "max_steps",
    "lr_scheduler",
    "warmup_ratio",
    "max_length",
    "precision",
)
# Model fields that are only defaults of other fields (train.max_length, generation.max_new_tokens,
# loss.lr interpolate them): they determine artifacts through those fields, not as model fields.
MODEL_DEFAULT_FIELDS = ("max_length", "max_new_tokens", "lr")
DESCRIPTIVE_LOSS_FIELDS = (
    "label",
    "citation",
    "formula",  # tables and docs only; no trainer reads them
    "requires",
)  # checked by validate(); the data fields it names key the artifacts
_VLLM_ENGINE_FIELDS = (
    "n",
    "dtype",
    "max_model_len",
    "gpu_memory_utilization",
    "kv_cache_memory_gib",
    "enforce_eager",
    "max_num_seqs",
    "tensor_parallel_size",
    "multiprocessing",
    "engine_args",
)


def model_fields(cfg) -> dict:
    """The model config fields that determine a checkpoint (``name`` and ``reference_id`` only label)."""
    return {k: v for k, v in plain(cfg.model).items() if k not in ("name", "reference_id", *MODEL_DEFAULT_FIELDS)}


def gen_fields(cfg) -> dict:
    """Generation settings that determine samples (not speed knobs; hf ignores vLLM's engine options)."""
    g = plain(cfg.generation)
    for k in ("progress", "batch_size", "multiprocessing"):
        g.pop(k, None)
    if g.get("backend") == "hf":
        for k in _VLLM_ENGINE_FIELDS:
            g.pop(k, None)
    return g


# Loss fields keyed through another artifact, not as a value: loss.guide through the guide policy's spec
GUIDE_LOSS_FIELDS = ("guide",)
# loss.pair_scores is keyed through the per-pair scores' own spec (Plan.pair_scores), which the policy spec nests
PAIR_SCORE_LOSS_FIELDS = ("pair_scores",)


def loss_fields(cfg) -> dict:
    return {
        k: v
        for k, v in plain(cfg.loss).items()
        if k not in DESCRIPTIVE_LOSS_FIELDS + GUIDE_LOSS_FIELDS + PAIR_SCORE_LOSS_FIELDS
    }


def guide_config(cfg):
    """The run's config with the loss replaced by ``loss.guide`` (TGDPO: dpo), composed as Hydra composes
    ``loss=<guide>``: the schema's defaults and ``conf/loss/<guide>.yaml``; the guide policy is that run's policy
    (same data, model, training hyperparameters, seed), so it is shared with a plain run of the guide's loss."""

    from po_bench.config import LossConfig  # lazy: hydra (~0.1 s)

    path = Path(__file__).resolve().parent.parent / "conf" / "loss" / f"{cfg.loss.guide}.yaml"
    g = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(g):
        g.loss = OmegaConf.merge(OmegaConf.structured(LossConfig), OmegaConf.load(path))
    return g


def source_specs(cfg, sft: dict | None) -> list[dict]:
    """InfiFPO's source models (``loss.args.sources``): the run's SFT spec with each source's seed and model
    fields (e.g. another hidden_size); [] for a loss without sources or a run without an SFT stage
    (config.validate refuses that combination)."""

    if not method_of(cfg.loss).needs_source_models or sft is None:
        return []
    out = []
    for s in plain_sources(cfg.loss.args.get("sources") or []):
        out.append({**sft, "model": {**sft["model"], **s.get("model", {})}, "seed": int(s["seed"])})
    return out


def run_options(cfg) -> dict:
    return {**{k: cfg.train[k] for k in RUN_OPTIONS}, "keep_checkpoints": cfg.train.keep_checkpoints}


def batch_fields(cfg, batch_key: str) -> dict:
    """The batch a training stage uses under the launch: the recipe's global batch (``launch.global_batch``:
    train.global_batch_size for the preference stage when set, else train.<batch_key> x train.grad_accum) is
    kept under every launch, so a launch never changes the optimizer steps; the per-device batch (at most
    train.<batch_key>) and the accumulation are derived from it and the world size (validate() refuses a
    global batch the world size does not divide).  Under launch=local these are the fields as set."""

    ws = world_size(cfg.launch)
    per, accum = split_batch(global_batch(cfg.train, batch_key)[0], ws, cfg.train[batch_key])
    return {batch_key: per, "grad_accum": accum, "world_size": ws, "strategy": cfg.launch.strategy}


def sft_train(cfg) -> dict:
    return {**{k: cfg.train[k] for k in SFT_TRAIN_FIELDS}, **batch_fields(cfg, "sft_batch_size")}


def pref_train(cfg) -> dict:
    return {**{k: cfg.train[k] for k in PREF_TRAIN_FIELDS}, **batch_fields(cfg, "batch_size")}


def ref(stage: str, spec: dict) -> dict:
    """A reference to a stored artifact, for use inside another spec."""
    return {"stage": stage, "spec": spec}


def spec_key(stage: str, spec: dict) -> str:
    return f"{stage}/{fingerprint(spec)}"


@dataclass
class Plan:
    """Every artifact spec of one run, by role (``None``: the run has no such artifact)."""

    source: DataSource
    start: dict  # the checkpoint preference training starts from: ref("sft", ...) or {"base": model fields}
    sft: dict | None = None
    samples: dict[str, dict] = field(default_factory=dict)  # role -> samples spec
    pairs: dict | None = None
    ref_logps: dict | None = None
    policy: dict | None = None
    guide: dict | None = None  # the guide policy's spec (TGDPO: the DPO policy on the same data), built first
    pair_scores: dict | None = None  # per-pair scores a weighting loss reads (MADPO: reward_model; Sem-DPO)
    ches: dict | None = None  # CHES of the (unfiltered) training pairs: diagnostics.ches or dataset.filter
    eval_prompts: dict | None = None
    extra_sft: dict[str, dict] = field(default_factory=dict)  # role -> another SFT policy the pairs read
    sources: dict[str, dict] = field(default_factory=dict)  # role -> an InfiFPO source model (an SFT spec)
    # an iterative method's rounds, first to last (:func:`iterative_rounds`); ``policy`` is the last round's
    rounds: list[dict] = field(default_factory=list)

    @property
    def policy_ref(self) -> dict:
        return ref("policy", self.policy) if self.policy is not None else self.start

    def keys(self) -> dict[str, str]:
        """Role -> store key of every artifact of the run (what the dependency test compares)."""
        out = {}
        if self.sft is not None:
            out["sft"] = spec_key("sft", self.sft)
        for role, s in self.samples.items():
            out[role] = spec_key("samples", s)
        for role, s in self.extra_sft.items():
            out[f"sft_{role}"] = spec_key("sft", s)
        for role, s in self.sources.items():
            out[role] = spec_key("sft", s)
        for role in ("pairs", "ref_logps", "policy"):
            s = getattr(self, role)
            if s is not None:
                out[role] = spec_key(role, s)
        if self.guide is not None:
            out["guide"] = spec_key("policy", self.guide)
        if self.pair_scores is not None:
            out["pair_scores"] = spec_key(self.pair_scores["stage"], self.pair_scores)
        if self.ches is not None:
            out["ches"] = spec_key("ches", self.ches)
        for r, rnd in enumerate(self.rounds, 1):  # (the last round's pairs, ref_logps and policy are the run's too)
            for role, s in rnd.items():
                if s is not None:
                    out[f"round{r}_{role}"] = spec_key(s["stage"], s)
        return out


def _samples(start: dict, model: dict, prompts: dict, gen: dict, seed: int, n: int) -> dict:
    return {
        "stage": "samples",
        "version": VERSIONS["samples"],
        "model": start,
        "model_fields": model,
        "prompts": prompts,
        "gen": gen,
        "seed": seed,
        "n": n,
    }


def plan(cfg) -> Plan:
    """The specs of every artifact the run ``cfg`` reads or builds."""

    seed = int(cfg.seed)
    src = source_for(cfg.dataset)
    model = model_fields(cfg)
    gen = gen_fields(cfg)
    loss = cfg.loss
    method = method_of(loss)

    # ---- SFT: the world always builds its (tiny) model; real data only with an SFT dataset ----
    sft_data = src.sft_spec()
    sft = None
    if src.always_sft or (sft_data is not None and cfg.stages.sft):
        sft = {
            "stage": "sft",
            "version": VERSIONS["sft"],
            "model": model,
            "data": sft_data,
            "train": sft_train(cfg) if cfg.stages.sft else None,
            "seed": seed,
        }
        start = ref("sft", sft)
    else:
        start = {"base": model}
    p = Plan(source=src, start=start, sft=sft)

    # ---- preference data -----------------------------------------------------------------------
    # (an online method samples and labels its own pairs while it trains: no pairs artifact, training_pairs below)
    online = method.online and method.trains_preference and cfg.stages.train
    trains = method.trains_preference and cfg.stages.train and not online
    if method.iterative:  # rounds of sample -> label -> train, each a policy stage of the inner loss
        return iterative_plan(cfg, p, trains)
    noise = plain(cfg.noise)
    if src.pref_samples_n():  # pairs labelled from the SFT policy's samples on the pref prompts (the world)
        pref = _samples(start, model, src.prompt_spec("pref"), gen, seed + 3000, src.pref_samples_n())
        if trains:
            p.samples["pref_samples"] = pref
        pairs = {
            "stage": "pairs",
            "version": VERSIONS["pairs"],
            "source": src.pairs_spec(),
            "samples": pref,
            "noise": noise,
            "seed": seed,
        }
        extra = {}  # other SFT policies' samples on the pref prompts (multi-model pairs), built by the pairs stage
        for role, data in src.extra_policies().items():
            other = {
                "stage": "sft",
                "version": VERSIONS["sft"],
                "model": model,
                "data": data,
                "train": sft_train(cfg),
                "seed": seed,
            }
            extra[role] = _samples(
                ref("sft", other), model, src.prompt_spec("pref"), gen, seed + 3000, src.pref_samples_n()
            )
            if trains:
                p.extra_sft[role] = other
                p.samples[f"pref_samples_{role}"] = extra[role]
        if extra:
            pairs["extra_samples"] = extra
    else:  # pairs read from files, with the tokenizer and max_length that drop over-long prompts
        pairs = {
            "stage": "pairs",
            "version": VERSIONS["pairs"],
            "source": src.pairs_spec(),
            "view": "pairs" if loss.paired or cfg.dataset.format != "unpaired" else "unpaired",
            "tokenizer": model,
            "max_length": cfg.train.max_length,
            "noise": noise,
            "seed": seed,
        }
    p.eval_prompts = src.eval_prompt_spec(pairs)
    # built when training reads it, or when the eval prompts are its held-out pairs (real data)
    if trains or p.eval_prompts.get("pairs") is pairs:
        p.pairs = pairs
    if trains:  # CHES of the training pairs (diagnostics.ches, dataset.filter); the filter's pairs are trained on
        p.ches = ches_spec(cfg, start, model, pairs)
        pairs = p.pairs = train_pairs(cfg, pairs, p.ches)

    # ---- SFT samples (the comparison for win rate; held-out pairs for implicit-reward accuracy) ---
    if cfg.stages.generate:
        p.samples["sft_samples"] = _samples(start, model, p.eval_prompts, gen, seed, 1)
        if cfg.stages.judge:
            for offset, split in zip((1000, 2000), src.heldout_splits().values()):
                p.samples[f"heldout_{split}"] = _samples(start, model, src.prompt_spec(split), gen, seed + offset, 2)

    # ---- preference training -----------------------------------------------------------------------
    if trains:
        lf = loss_fields(cfg)
        if method.needs_guide and loss.guide:
            p.guide = plan(guide_config(cfg)).policy
        # (token-level losses score the reference per token each step: no precomputed sums)
        train = pref_train(cfg)
        p.ref_logps = ref_logps_spec(loss, start, model, pairs, train, seed)
        p.pair_scores = pair_scores_spec(cfg, start, model, pairs, seed)
        p.policy = {
            "stage": "policy",
            "version": VERSIONS["policy"],
            "start": start,
            "model": model,
            "pairs": pairs,
            "loss": lf,
            "train": train,
            "seed": seed,
            # KTO's reference log-probs follow from the fields above (ref_logps_spec): its policy key predates them
            "ref_logps": None if method.kl_rows else p.ref_logps,
        }
        if p.guide is not None:
            p.policy["guide"] = ref("policy", p.guide)
        srcs = source_specs(cfg, p.sft)
        if srcs:  # InfiFPO: the source models, fused into the reference, are part of the policy's key
            p.sources = {f"source_{i}": s for i, s in enumerate(srcs)}
            p.policy["sources"] = [ref("sft", s) for s in srcs]
        if p.pair_scores is not None:
            p.policy["pair_scores"] = p.pair_scores
        probe = probe_spec(cfg, pairs)
        if probe is not None:  # (diagnostics.probe=false: the policy's key as before the probe existed)
            p.policy["probe"] = probe
    elif online:
        p.policy = online_policy_spec(cfg, src, start, model, gen, noise, seed)
        if online_guided(method.function, method.args) and loss.guide:  # RTO: the DPO policy on the same data
            p.guide = plan(guide_config(cfg)).policy
            p.policy["guide"] = ref("policy", p.guide)
    if (trains or online) and cfg.stages.generate:
        p.samples["generations"] = _samples(p.policy_ref, model, p.eval_prompts, gen, seed, 1)
    return p


# Round r samples with seed + 3000 + ROUND_SEED_STRIDE * (r - 1): round 1's are the offline pairs' samples, later
# rounds draw afresh (the i-th of k samples adds i, so the stride keeps the rounds' seeds apart for k < 10000)
ROUND_SEED_STRIDE = 10_000


def iterative_plan(cfg, p: Plan, trains: bool) -> Plan:
    """The plan of an iterative method (loss=iterative_dpo): the rounds (:func:`iterative_rounds`); the run's
    ``pairs``, ``ref_logps`` and ``policy`` are the last round's, its eval samples and judges as any run's."""
    src, model, gen, seed = p.source, model_fields(cfg), gen_fields(cfg), int(cfg.seed)
    p.eval_prompts = src.eval_prompt_spec({})
    if trains:
        p.rounds = iterative_rounds(cfg, p.start, int(cfg.loss.args.rounds))
        last = p.rounds[-1]
        p.pairs, p.ref_logps, p.policy = last["pairs"], last["ref_logps"], last["policy"]
    if cfg.stages.generate:
        p.samples["sft_samples"] = _samples(p.start, model, p.eval_prompts, gen, seed, 1)
        if cfg.stages.judge:
            for offset, split in zip((1000, 2000), src.heldout_splits().values()):
                p.samples[f"heldout_{split}"] = _samples(p.start, model, src.prompt_spec(split), gen, seed + offset, 2)
        if p.policy is not None:
            p.samples["generations"] = _samples(p.policy_ref, model, p.eval_prompts, gen, seed, 1)
    return p


def iterative_rounds(cfg, start: dict, rounds: int) -> list[dict]:
    """The specs of an iterative method's rounds 1..``rounds`` (loss.args: inner, labeller, ref_update); each
    round a dict of ``samples`` (k = dataset.k_samples per world pref prompt from the last round's policy, round 1:
    the start), ``pairs`` (those samples labelled, pairs by dataset.pair_strategy), ``ref_logps`` (the reference's
    on them, None for a loss that stores none), ``policy`` (the inner loss's policy stage from the last round's
    policy), ``reward_model`` (labeller=explicit: the reward model, else None).  A round's specs nest the last
    round's policy, so round r's keys are the same for every ``rounds`` >= r (a sweep over R builds each round once).

    The reference (ref_update): ``fixed``, the start checkpoint; ``per_round``, the previous round's policy.  It is
    the policy spec's ``reference`` where it is not its ``start`` (so a round whose reference is its start,
    round 1, has the key of the inner loss's plain policy on the same pairs).  The labeller: ``annotator``, the
    world's Bradley-Terry annotator exactly as the offline pairs (the pairs spec of a plain run: round 1 is offline
    DPO); ``gold``, the world's r*; ``implicit``, the last round's policy's implicit reward against its reference
    (round 1 has no trained policy: the annotator's pairs); ``explicit``, a Bradley-Terry reward model (the
    ``reward_model`` stage, MADPO's) trained once on the start's annotator pairs, scoring every round."""

    from po_bench.config import inner_loss_config  # lazy: hydra (~0.1 s)

    a = cfg.loss.args
    labeller, ref_update = str(a.get("labeller", "gold")), str(a.get("ref_update", "fixed"))
    inner_cfg = inner_loss_config(cfg)
    inner = inner_cfg.loss
    src = source_for(cfg.dataset)
    model, gen, seed, noise = model_fields(cfg), gen_fields(cfg), int(cfg.seed), plain(cfg.noise)
    train, lf = pref_train(cfg), loss_fields(inner_cfg)
    k = src.pref_samples_n()
    scored = {
        "kind": "world",
        "prompts": src.prompt_spec("pref"),
        "ranking": {f: cfg.dataset[f] for f in ("k_samples", "pair_strategy", "curriculum")},
    }
    reward_model = None
    out: list[dict] = []
    prev, prev_ref = start, start  # the last round's policy and its reference
    for r in range(1, rounds + 1):
        samples = _samples(prev, model, src.prompt_spec("pref"), gen, seed + 3000 + ROUND_SEED_STRIDE * (r - 1), k)
        pairs = {"stage": "pairs", "version": VERSIONS["pairs"], "source": src.pairs_spec(), "samples": samples}
        if labeller == "gold":
            pairs["source"], pairs["labeller"] = scored, {"kind": "gold"}
        elif labeller == "implicit" and r > 1:
            pairs["source"] = scored
            pairs["labeller"] = {
                "kind": "implicit",
                "policy": prev,
                "reference": prev_ref,
                "model": model,
                "implicit_reward": str(inner.implicit_reward),
                "beta": float(inner.beta),
            }
        elif labeller == "explicit":
            if reward_model is None:  # trained once, on the start's samples labelled by the annotator
                reward_model = explicit_reward_model_spec(cfg, start, plain(a.get("reward_model") or {}))
            pairs["source"] = scored
            pairs["labeller"] = {"kind": "explicit", "reward_model": ref("reward_model", reward_model)}
        pairs.update(noise=noise, seed=seed)
        reference = start if ref_update == "fixed" else prev
        policy = {
            "stage": "policy",
            "version": VERSIONS["policy"],
            "start": prev,
            "model": model,
            "pairs": pairs,
            "loss": lf,
            "train": train,
            "seed": seed,
            "ref_logps": ref_logps_spec(inner, reference, model, pairs, train, seed),
        }
        if reference != prev:  # (round 1, and every per_round round: the reference is the start, no field)
            policy["reference"] = reference
        probe = probe_spec(cfg, pairs)
        if probe is not None:
            policy["probe"] = probe
        out.append(
            {
                "samples": samples,
                "pairs": pairs,
                "ref_logps": policy["ref_logps"],
                "policy": policy,
                "reward_model": reward_model if labeller == "explicit" and r == 1 else None,
            }
        )
        prev, prev_ref = ref("policy", policy), reference
    return out


def explicit_reward_model_spec(cfg, start: dict, fields: dict) -> dict:
    """The explicit labeller's Bradley-Terry reward model (iterative_dpo's and the online loop's ``labeller:
    explicit``, one artifact for both): the reward_model stage on the start checkpoint's samples of the world's pref
    prompts labelled by the annotator (the offline pairs' spec: round 1 of an iterative run), trained with
    ``fields`` (loss.args.reward_model: lr, epochs, batch_size) over the defaults model.lr, 2 epochs, batch 32."""
    src, model, gen, seed = source_for(cfg.dataset), model_fields(cfg), gen_fields(cfg), int(cfg.seed)
    samples = _samples(start, model, src.prompt_spec("pref"), gen, seed + 3000, src.pref_samples_n())
    initial = {
        "stage": "pairs",
        "version": VERSIONS["pairs"],
        "source": src.pairs_spec(),
        "samples": samples,
        "noise": plain(cfg.noise),
        "seed": seed,
    }
    fields = {"lr": float(cfg.model.lr), "epochs": 2, "batch_size": 32, **fields}
    return reward_model_spec(cfg, start, model, initial, seed, fields)


# The stored artifacts a preference source may read (its ``needs``, po_bench/training/labellers.py): name -> its
# spec for a run (cfg, the start checkpoint, the online method's args)
LABELLER_INPUTS = {
    "reward_model": lambda cfg, start, args: ref(
        "reward_model", explicit_reward_model_spec(cfg, start, plain(args.get("reward_model") or {}))
    ),
}


def online_policy_spec(cfg, src: DataSource, start: dict, model: dict, gen: dict, noise: dict, seed: int) -> dict:
    """The policy of an online method (po_bench/training/online.py): the start checkpoint (also the fixed
    reference), the model fields, the loop's world (the source's pref prompts, which the gold reward scores), the
    generation fields its samples are drawn with, the preference source's spec (po_bench/training/labellers.py,
    with the references of the stored artifacts it reads: the explicit source's reward model), the label noise,
    the loss fields (the method's and the loop's arguments; a source's own arguments, ``loss.args.reward_model``
    and ``loss.args.judge``, only through its spec: the judge's endpoint, key, budget and cache key nothing), the
    training fields and the seed;
    COFS-DPO (``ofs_dpo`` with ``loss.args.domains``) adds the eval prompts its forgetting is measured on."""
    method = method_of(cfg.loss)
    args = online_args(method.function, method.args)
    inputs = {name: LABELLER_INPUTS[name](cfg, start, args) for name in labeller_needs(args)}
    lf = loss_fields(cfg)
    if any(k in lf.get("args", {}) for k in SOURCE_ARGS):
        lf["args"] = {k: v for k, v in lf["args"].items() if k not in SOURCE_ARGS}
    online = {
        "prompts": src.prompt_spec("pref"),
        "gen": gen,
        "labeller": labeller_spec(args, cfg.dataset, inputs),
        "noise": noise,
    }
    if args.get("domains"):  # COFS-DPO: each family's held-out prompts (the world's eval split) measure forgetting
        online["heldout"] = src.prompt_spec("eval")
    return {
        "stage": "policy",
        "version": VERSIONS["policy"],
        "start": start,
        "model": model,
        "online": online,
        "loss": lf,
        "train": pref_train(cfg),
        "seed": seed,
    }


def filter_on(cfg) -> bool:
    """Whether ``dataset.filter`` drops pairs: a kind other than none keeping less than every pair (keep 1.0
    keeps them all: the run's keys are those of no filter)."""
    f = cfg.dataset.filter
    return f.kind != FilterKind.NONE and float(f.keep) < 1


def pair_shaped(cfg, pairs: dict) -> bool:
    """Whether a pairs spec's training rows are (prompt, chosen, rejected) pairs: not rated lists, not the
    unpaired view of files (the world's pairs are pairs for every loss)."""
    return cfg.dataset.pair_strategy != "list" and pairs.get("view", "pairs") == "pairs"


def ches_spec(cfg, start: dict, model: dict, pairs: dict) -> dict | None:
    """The spec of the CHES of a run's training pairs (po_bench/generation/hidden.py, at the start checkpoint,
    the reference the policy starts from; responses cut at train.max_length as in training), for
    ``diagnostics.ches`` or a ``dataset.filter`` that drops pairs; None otherwise, or when the rows are not pairs.
    ``pairs`` is the unfiltered pairs spec: the filter is decided by these scores."""
    if not (cfg.diagnostics.ches or filter_on(cfg)) or not pair_shaped(cfg, pairs):
        return None
    return {
        "stage": "ches",
        "version": VERSIONS["ches"],
        "start": start,
        "model": model,
        "pairs": pairs,
        "max_length": cfg.train.max_length,
    }


def train_pairs(cfg, pairs: dict, ches: dict | None) -> dict:
    """The pairs spec preference training reads: ``pairs`` itself, or with ``dataset.filter`` dropping pairs,
    ``pairs`` plus ``filter`` (the score's kind, the share kept, the CHES spec), which the pairs stage builds as
    the kept pairs (stages.filtered_pairs), so every artifact trained on them is keyed by the filter."""
    if not filter_on(cfg) or ches is None:
        return pairs
    f = cfg.dataset.filter
    return {**pairs, "filter": {"kind": str(f.kind), "keep": float(f.keep), "ches": ches}}


# The generation fields the probe's unseen responses are sampled with (always by HF, in the policy stage)
PROBE_GEN_FIELDS = ("temperature", "top_p", "max_new_tokens")


def probe_spec(cfg, pairs: dict) -> dict | None:
    """The probe's part of the policy spec (``diagnostics.probe``, po_bench/training/probe_set.py): the probe
    pairs' and unseen responses' counts, the measuring interval, and the generation fields the unseen
    responses are sampled with (the seed and the start checkpoint are the policy's own).  None when the probe is
    off, or when the training rows are unpaired (``dataset.format=unpaired``: nothing to probe, reported absent)."""
    d = cfg.diagnostics
    if not d.probe or pairs.get("view") == "unpaired":
        return None
    out = {"pairs": int(d.probe_pairs), "unseen": int(d.probe_unseen), "every": int(d.probe_every)}
    if out["unseen"]:
        out["gen"] = {k: cfg.generation[k] for k in PROBE_GEN_FIELDS}
    return out


def implicit_spec(cfg, p: Plan) -> dict:
    """The spec of a run's implicit judges (:mod:`po_bench.judges.implicit`: kl_to_ref and mean_length of the
    policy's eval samples, implicit-reward accuracy on each held-out set): the judged policy and the reference
    (the start checkpoint) with the model fields they load with, the policy's eval samples, the held-out SFT
    sample pairs of each split (the world), the pairs artifact (real data: its eval split is held out), the
    implicit reward's kind (avg_logp without a preference stage) and beta.  Only for a run that judges
    (``stages.generate`` and ``stages.judge``)."""

    loss = cfg.loss
    return {
        "version": VERSIONS["implicit"],
        "policy": p.policy_ref,
        "reference": p.start,
        "model": model_fields(cfg),
        "samples": p.samples["generations" if "generations" in p.samples else "sft_samples"],
        "heldout": {name: p.samples[f"heldout_{split}"] for name, split in p.source.heldout_splits().items()},
        "pairs": p.pairs,
        "kind": loss.implicit_reward if method_of(loss).trains_preference else "avg_logp",
        "beta": float(loss.beta),
    }


def implicit_kind(cfg) -> str:
    """The implicit reward's kind of a run (avg_logp without a preference stage)."""
    return cfg.loss.implicit_reward if method_of(cfg.loss).trains_preference else "avg_logp"


# Sampling fields a beam search does not read (it decodes deterministically)
SAMPLING_FIELDS = ("temperature", "top_p")


def beam_specs(cfg, p: Plan) -> dict[int, dict]:
    """``diagnostics.beams``: width -> the spec of the ``beams`` artifact at that width (po_bench/judges/beams.py):
    the policy's beam samples on the eval prompts (a samples spec: the generation config without its sampling
    fields, with ``num_beams``, seed 0 since beam search draws nothing) and what it measures of them against the
    reference, as the implicit judges do (:func:`implicit_spec`: the policy, the reference, their model fields,
    the implicit reward's kind and beta).  {} with beams off: no run artifact changes."""
    model = model_fields(cfg)
    gen = {k: v for k, v in gen_fields(cfg).items() if k not in SAMPLING_FIELDS}
    out = {}
    for b in (int(x) for x in cfg.diagnostics.beams):
        out[b] = {
            "stage": "beams",
            "version": VERSIONS["beams"],
            "policy": p.policy_ref,
            "reference": p.start,
            "model": model,
            "samples": _samples(p.policy_ref, model, p.eval_prompts, {**gen, "num_beams": b}, 0, 1),
            "kind": implicit_kind(cfg),
            "beta": float(cfg.loss.beta),
        }
    return out


def token_credit_spec(cfg, p: Plan) -> dict | None:
    """``diagnostics.token_credit`` (the world): the spec of the ``token_credit`` artifact
    (po_bench/judges/credit.py on the held-out eval pairs): the policy, the reference, their model fields, the
    held-out eval SFT samples (the pairs' responses) and beta.  None with it off."""
    if not cfg.diagnostics.token_credit:
        return None
    return {
        "stage": "token_credit",
        "version": VERSIONS["token_credit"],
        "policy": p.policy_ref,
        "reference": p.start,
        "model": model_fields(cfg),
        "samples": p.samples["heldout_eval"],
        "beta": float(cfg.loss.beta),
    }


def ref_logps_spec(loss, start: dict, model: dict, pairs: dict, train: dict, seed: int) -> dict | None:
    """The spec of the reference's log-probs a policy trains against (None: the method stores none,
    ``Method.stores_reference_logps``): the reference (the start checkpoint), its model fields, the pairs,
    max_length and precision, and the TRL fields the reference pass reads (``Method.ref_logp_args``).  KTO's
    are those of its rows and KL rows in its row order (training/trl/unpaired.py's kto_order), which the
    per-device batch and the seed decide.  From the policy spec's own fields, so the policy stage derives
    KTO's (whose policy spec does not hold it) as the plan does."""
    method = method_of(loss)
    if not method.stores_reference_logps:
        return None
    spec = {
        "stage": "ref_logps",
        "version": VERSIONS["ref_logps"],
        "ref": start,
        "model": model,
        "pairs": pairs,
        "max_length": train["max_length"],
        "precision": train["precision"],
        "args": method.ref_logp_args,
    }
    if "steps" in pairs["source"]:  # one-step completions are scored without <eos> (training/trl/dpo.py)
        spec["completion_eos"] = False
    if method.kl_rows:
        spec["rows"] = {"batch_size": train["batch_size"], "seed": seed}
    return spec


# The reward model's training fields besides loss.pair_scores' own (lr, epochs, batch_size)
REWARD_MODEL_TRAIN_FIELDS = ("max_length", "precision", "lr_scheduler", "warmup_ratio")


def pair_scores_spec(cfg, start: dict, model: dict, pairs: dict, seed: int) -> dict | None:
    """The spec of the per-pair scores a weighting loss reads (``LossSpec.per_pair``; None for every other
    loss): ``reward_model`` (MADPO: the start checkpoint, the pairs, the reward model's training fields,
    seed) or ``semantic_distance`` (Sem-DPO: the pairs and the embedding model's name).  The loss's own
    hyperparameters (c_max, alpha, ...) turn scores into weights and key only the policy."""

    loss = cfg.loss
    stage = method_of(loss).pair_score_stage
    if stage is None:
        return None
    ps = plain(loss.get("pair_scores") or {})
    fields = {k: v for k, v in ps.items() if k != "kind"}
    if stage == "reward_model":
        return reward_model_spec(cfg, start, model, pairs, seed, fields)
    return {"stage": stage, "version": VERSIONS[stage], "pairs": pairs, **fields}


def reward_model_spec(cfg, start: dict, model: dict, pairs: dict, seed: int, fields: dict) -> dict:
    """The spec of a Bradley-Terry reward model on ``pairs`` (the reward_model stage): the start checkpoint,
    the pairs, its own training fields ``fields`` (lr, epochs, batch_size) and the run's
    :data:`REWARD_MODEL_TRAIN_FIELDS`, the seed.  MADPO's pair scores and the reward_models diagnostic's
    EXRM share it (the same fields: the same artifact)."""
    return {
        "stage": "reward_model",
        "version": VERSIONS["reward_model"],
        "start": start,
        "model": model,
        "pairs": pairs,
        "train": {**fields, **{k: cfg.train[k] for k in REWARD_MODEL_TRAIN_FIELDS}},
        "seed": seed,
    }


def exrm_spec(cfg, p: Plan) -> dict:
    """The reward_models diagnostic's explicit reward model (EXRM): a reward model on the run's training pairs
    from its start checkpoint, with ``diagnostics.rm_lr`` (null: model.lr), ``rm_epochs``, ``rm_batch_size``;
    at the defaults the same artifact as MADPO's reward model on the same pairs and seed."""
    d = cfg.diagnostics
    lr = float(d.rm_lr) if d.rm_lr is not None else cfg.model.lr
    fields = {"lr": lr, "epochs": int(d.rm_epochs), "batch_size": int(d.rm_batch_size)}
    return reward_model_spec(cfg, p.start, model_fields(cfg), p.pairs, int(cfg.seed), fields)


# A shift set's seed offset (the annotator's labels of held-out pairs: none of the run's other draws)
LABEL_SHIFT_SEED = 5000


def reward_models_spec(cfg, p: Plan) -> dict | None:
    """The spec of the reward_models diagnostic's scores (DPORM and EXRM margins on every evaluation set,
    :mod:`po_bench.judges.reward_shift`): the policy, the reference (the start checkpoint), their model fields,
    the EXRM's spec, the implicit reward's kind and beta, and each set's inputs.  The world: ``id`` (held-out
    eval sample pairs), ``prompt`` (the OOD split's), ``response`` (the policy's eval generations against the
    SFT model's eval samples), ``label`` (held-out eval sample pairs on which the run's annotator's label
    contradicts gold), all labelled by gold.  Real data: ``id`` (the pairs' eval split) and ``ood`` (the
    ``diagnostics.ood_pairs`` file, its content's checksum, ``ood_pairs_n``).  None where it cannot be
    measured (no preference-trained policy, no generation or judge stage)."""
    if p.policy is None or p.pairs is None or "generations" not in p.samples or not cfg.stages.judge:
        return None
    seed = int(cfg.seed)
    if p.source.world:
        held = {split: p.samples[f"heldout_{split}"] for split in ("eval", "ood")}
        ann = {"temperature": cfg.dataset.annotator_temperature, "length_bias": cfg.dataset.annotator_length_bias}
        sets = {
            "id": {"kind": "gold", "samples": held["eval"]},
            "prompt": {"kind": "gold", "samples": held["ood"]},
            "response": {"kind": "gold_vs", "samples": p.samples["generations"], "other": p.samples["sft_samples"]},
            "label": {"kind": "annotator_disagrees", "samples": held["eval"], "annotator": ann, "seed": seed},
        }
    else:
        sets = {"id": {"kind": "eval_pairs", "pairs": p.pairs}}
        ood = cfg.diagnostics.ood_pairs
        if ood is not None:
            sets["ood"] = {
                "kind": "file",
                "path": str(ood),
                "content": file_fingerprint(Path(ood).expanduser()),
                "n": int(cfg.diagnostics.ood_pairs_n),
            }
    loss = cfg.loss
    return {
        "version": VERSIONS["reward_models"],
        "policy": p.policy_ref,
        "reference": p.start,
        "model": model_fields(cfg),
        "exrm": exrm_spec(cfg, p),
        "sets": sets,
        "kind": loss.implicit_reward if method_of(loss).trains_preference else "avg_logp",
        "beta": float(loss.beta),
    }


# The judge's fields that determine its question set (answers to the same questions are shared by every
# judge config that asks them); absent fields count as None
JUDGE_QUESTION_FIELDS = (
    "name",
    "version",
    "subset_size",
    "subset_seed",
    "question_ids",
    "eval_path",
    "questions_path",
)


def answers_spec(cfg, policy: dict, gen: dict, conversations: list) -> dict:
    """The spec of a policy's answers to a judge's conversations (``cfg.judge`` is the judge's config):
    the policy's reference, the generation config with the answer settings ``gen`` (max_new_tokens,
    temperature, top_p) over it, the judge's question set and the conversations' fingerprint."""
    judge = plain(cfg.judge)
    return {
        "policy": policy,
        "gen": {**gen_fields(cfg), **{k: gen[k] for k in ("max_new_tokens", "temperature", "top_p")}},
        "judge_questions": {k: judge.get(k) for k in JUDGE_QUESTION_FIELDS},
        "conversations": fingerprint(conversations),
    }


def judge_artifact_spec(policy: dict, judge_fields: dict) -> dict:
    """The spec of a judge's own artifact of a policy (lm-eval's output: kind ``openllm``): the policy's
    reference and the fields the judge names as determining it."""
    return {"policy": policy, "judge": judge_fields}


# The dependency table: config field -> the artifacts (Plan.keys() roles) whose key it changes, for
# the default world run (loss=dpo); every field not listed changes no artifact.  ``tests/test_specs.py`` perturbs every field in turn and checks
# that exactly these keys change (no stale reuse, no needless rebuild).
ALL = (
    "sft",
    "sft_samples",
    "heldout_eval",
    "heldout_ood",
    "pref_samples",
    "pairs",
    "ref_logps",
    "policy",
    "generations",
)
AFTER_SFT = ALL[1:]
_POLICY = ("policy", "generations")
DEPENDS: dict[str, tuple[str, ...]] = {
    "seed": ALL,
    "model.kind": ALL,
    "model.name_or_path": ALL,
    "model.dtype": ALL,
    "model.hidden_size": ALL,
    "model.num_layers": ALL,
    "model.num_heads": ALL,
    "model.intermediate_size": ALL,
    "model.max_position_embeddings": ALL,
    "model.chat_template": ALL,
    "model.lora.enabled": ALL,
    "model.lora.r": ALL,
    "model.lora.alpha": ALL,
    "model.lora.dropout": ALL,
    "model.lora.target_modules": ALL,
    "model.name": (),
    "model.reference_id": (),
    # defaults of train.max_length, generation.max_new_tokens and loss.lr (they act through those)
    "model.max_length": ("sft",) + AFTER_SFT,
    "model.max_new_tokens": AFTER_SFT,
    "model.lr": _POLICY,
    "dataset.seed": ALL,
    "dataset.n_sft": ALL,
    "dataset.min_keywords": ALL,
    "dataset.max_keywords": ALL,
    "dataset.n_pref": ("pref_samples", "pairs", "ref_logps", "policy", "generations"),
    "dataset.n_eval": ("sft_samples", "heldout_eval", "generations"),
    "dataset.n_ood": ("heldout_ood",),
    "dataset.ood_min_keywords": ("heldout_ood",),
    "dataset.ood_max_keywords": ("heldout_ood",),
    "dataset.annotator_temperature": ("pairs", "ref_logps", "policy", "generations"),
    "dataset.annotator_length_bias": ("pairs", "ref_logps", "policy", "generations"),
    # k samples per prompt (more on-policy samples, pairs from their ranking); the curriculum orders the
    # pairs (and the policy stage trains in that order); at k_samples=2 every pair strategy gives the one
    # pair, so the strategy changes nothing there (tests/test_specs.py checks it at k_samples=4)
    "dataset.k_samples": ("pref_samples", "pairs", "ref_logps", "policy", "generations"),
    "dataset.curriculum": ("pairs", "ref_logps", "policy", "generations"),
    "dataset.pair_strategy": (),
    # PUGC rates the same samples against user-generated content (the UGC's noise keys the pairs only under
    # pair_source=pugc: tests/test_pair_data.py); multi-model pairs add a stronger SFT model and its samples
    "dataset.pair_source": ("pairs", "ref_logps", "policy", "generations"),
    "dataset.ugc_noise": (),
    "dataset.pair_models": ("sft_strong", "pref_samples_strong", "pairs", "ref_logps", "policy", "generations"),
    # the CHES filter: the kept pairs are the pairs artifact trained on, decided by the CHES artifact (built for
    # it); its share changes nothing while the kind is none (tests/test_ches.py checks it with the filter on)
    "dataset.filter.kind": ("ches", "pairs", "ref_logps", "policy", "generations"),
    "dataset.filter.keep": (),
    "loss.beta": _POLICY,
    "loss.lr": _POLICY,
    "loss.args.loss_type": _POLICY,
    "loss.implicit_reward": _POLICY,
    "loss.reference_free": ("ref_logps",) + _POLICY,
    # loss.paired=false: a loss on the unpaired view (KTO, BCO) has no per-pair reference log-probs
    "loss.name": _POLICY,
    "loss.backend": _POLICY,
    "loss.function": _POLICY,
    "loss.paired": ("ref_logps",) + _POLICY,
    "loss.label": (),
    "loss.citation": (),
    "loss.formula": (),
    "loss.requires": (),
    # a guide policy only for guided losses (TGDPO; its key nests the guide's policy spec): none for DPO
    "loss.guide": (),
    # per-pair scores only for losses with per-pair weights (MADPO, Sem-DPO; tests/test_pair_weights.py): none for DPO
    "loss.pair_scores": (),
    # Step-DPO's step-wise pairs; the candidates per prefix count only with steps on (tests/test_specs.py)
    "dataset.steps": ("pairs", "ref_logps", "policy", "generations"),
    "dataset.step_candidates": (),
    "noise.kind": ("pairs", "ref_logps", "policy", "generations"),
    "generation.backend": AFTER_SFT,
    "noise.rate": ("pairs", "ref_logps", "policy", "generations"),
    "generation.temperature": AFTER_SFT,
    "generation.top_p": AFTER_SFT,
    "generation.max_new_tokens": AFTER_SFT,
    "generation.batch_size": (),
    "generation.progress": (),
    "train.sft_lr": ALL,
    "train.sft_epochs": ALL,
    "train.sft_batch_size": ALL,
    "train.warmup_ratio": ALL,
    "train.lr_scheduler": ALL,
    "train.grad_accum": ALL,
    "train.max_steps": ALL,
    "train.max_length": ("sft",) + AFTER_SFT,
    "train.precision": ALL,
    "train.epochs": _POLICY,
    "train.batch_size": _POLICY,
    "train.logging_steps": (),
    "train.save_steps": (),
    "train.progress": (),
    "train.keep_checkpoints": (),
    # the global batch sets the preference stage's accumulation; the launch's world size and
    # strategy change how both training stages run
    "train.global_batch_size": ("policy", "generations"),
    "launch.strategy": ALL,
    # launch=local is one process whatever these say; under a process group they set the world size
    # (ALL: tests/test_specs.py checks that too)
    "launch.num_processes": (),
    "launch.num_machines": (),
    "stages.sft": ALL,  # off: the world's untrained model is the start
    # switching a stage off removes its artifacts (and those built on them) from the run
    "stages.train": ("pref_samples", "pairs", "ref_logps", "policy", "generations"),
    "stages.generate": ("sft_samples", "heldout_eval", "heldout_ood", "generations"),
    "stages.judge": ("heldout_eval", "heldout_ood"),
    "judge.name": (),
    # the diagnostics (issue 25): measures of a run's artifacts, keyed by their own specs; the probe's
    # trajectory is stored with the policy (probe_spec; diagnostics.probe=false keeps the keys of before)
    "diagnostics.probe": _POLICY,
    "diagnostics.probe_pairs": _POLICY,
    "diagnostics.probe_unseen": _POLICY,
    "diagnostics.probe_every": _POLICY,
    "diagnostics.ches": ("ches",),  # the CHES artifact of the training pairs, nothing else
    # DPORM vs EXRM (its reward_model and reward_models artifacts are read by the pipeline, not Plan roles)
    "diagnostics.reward_models": (),
    "diagnostics.rm_lr": (),
    "diagnostics.rm_epochs": (),
    "diagnostics.rm_batch_size": (),
    "diagnostics.ood_pairs": (),
    "diagnostics.ood_pairs_n": (),
    "diagnostics.token_credit": (),
    "diagnostics.beams": (),
    "tracking.backend": (),
    "threads": (),
    "cache_dir": (),
}

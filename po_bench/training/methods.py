"""The Method record: what kind of method a loss config is and what it needs, in one place.

A loss config (``conf/loss/*.yaml``) names a ``backend`` and, for po-bench's own losses, a ``function``;
:func:`method_of` reads them once and answers every question the rest of po-bench asks of a loss: its
:class:`MethodKind` (which trainer runs it), its data shape, whether it needs a reference model, reference
log-probs the store can hold, per-pair scores (and the stage that builds them), a guide policy or source
models.  This module is the only one that compares ``loss.backend`` strings (``tests/test_methods.py``
checks it); everything else asks the Method.

Kinds and their trainers (``po_bench.training.trl``, the one package that imports TRL):

=====================  =====================================================  ===============================
kind                   what                                                   trainer (po_bench.training.trl)
=====================  =====================================================  ===============================
PAIRWISE_TRL           TRL's DPO losses (``backend: dpo``, ``args.loss_type``) ``dpo.StoreReferenceDPOTrainer``
REFERENCE_FREE_TRL     TRL's CPO / ORPO trainers (CPO, SimPO, AlphaPO, ORPO)  ``cpo`` (TRL's own classes)
PAIRWISE_CUSTOM        a pure function of ``training/losses.py`` over pairs    ``dpo.PureLossDPOTrainer``
FUSED_REFERENCE        a pairwise pure function against a fusion of source     ``dpo.FusedReferenceDPOTrainer``
                       models (InfiFPO, ``loss.args.sources``)
TOKEN_LEVEL            a pure function over per-token statistics (TGDPO)        ``dpo.TokenLossDPOTrainer``
UNPAIRED_TRL           TRL's KTO (``backend: kto``)                           ``unpaired.StoreReferenceKTOTrainer``
UNPAIRED_CUSTOM        a pure function over unpaired rows (BCO)               ``unpaired.PureLossKTOTrainer``
LISTWISE               a pure function of ``training/listwise.py`` over rated  ``listwise.ListwiseTrainer``
                       lists (LiPO, IRPO, ADPO-list; TPO with step inputs)
SFT                    no preference stage (``backend: sft``: the SFT model)   (none)
ITERATIVE              R rounds of sample -> label -> an offline pairwise loss  each round: its inner loss's
                       (``backend: iterative``, ``loss.args.inner``;           trainer (``specs.iterative_rounds``)
                       iterative DPO): each round's policy an artifact
ONLINE                 the online loop: samples from the current policy, a     ``training/online.py`` (po-bench's
                       preference source labels them, a DPO-style update      own loop, no TRL Trainer)
                       (``backend: online``: online_dpo, xpo, brain, rto,
                       oprl, ofs_dpo)
=====================  =====================================================  ===============================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from po_bench import plugins
from po_bench.training import losses
from po_bench.training.listwise import LISTWISE, fn_args, moving_anchor, step_inputs
from po_bench.training.online_losses import ONLINE_LOSSES
from po_bench.training.pair_scores import stage_of


class MethodKind(enum.Enum):
    PAIRWISE_TRL = "pairwise_trl"
    REFERENCE_FREE_TRL = "reference_free_trl"
    PAIRWISE_CUSTOM = "pairwise_custom"
    FUSED_REFERENCE = "fused_reference"
    TOKEN_LEVEL = "token_level"
    UNPAIRED_TRL = "unpaired_trl"
    UNPAIRED_CUSTOM = "unpaired_custom"
    LISTWISE = "listwise"
    SFT = "sft"
    # Rounds of an offline pairwise loss (``loss.args.inner``) on pairs labelled from the last round's samples
    # (iterative DPO): no trainer of its own, each round is a policy stage of its inner loss (specs.iterative_rounds)
    ITERATIVE = "iterative"
    # the online loop (po_bench/training/online.py): samples from the policy and labels them inside training
    ONLINE = "online"


class DataShape(enum.Enum):
    """What one training row of the method is."""

    PAIRS = "pairs"  # prompt, chosen, rejected
    UNPAIRED_ROWS = "unpaired_rows"  # prompt, completion, label (pairs are split into two rows)
    LISTS = "lists"  # prompt, k responses, their scores
    STEP_LISTS = "step_lists"  # rated lists whose responses carry step spans (TPO)
    NONE = "none"  # no preference data (SFT)


# backend (loss.backend) -> the kind it runs as; ``pobench`` is decided by the function's registry
BACKEND_KINDS = {
    "dpo": MethodKind.PAIRWISE_TRL,
    "cpo": MethodKind.REFERENCE_FREE_TRL,
    "orpo": MethodKind.REFERENCE_FREE_TRL,
    "kto": MethodKind.UNPAIRED_TRL,
    "pobench": MethodKind.PAIRWISE_CUSTOM,
    "listwise": MethodKind.LISTWISE,
    "sft": MethodKind.SFT,
    "iterative": MethodKind.ITERATIVE,
    "online": MethodKind.ONLINE,
}
BACKENDS = tuple(BACKEND_KINDS)

# the kinds whose loss is a pure function of training/losses.py (loss.args: its hyperparameters)
PAIR_FUNCTION_KINDS = (
    MethodKind.PAIRWISE_CUSTOM,
    MethodKind.FUSED_REFERENCE,
    MethodKind.TOKEN_LEVEL,
    MethodKind.UNPAIRED_CUSTOM,
)
# the kinds whose loss TRL computes (loss.args: fields of the TRL trainer's config class)
TRL_LOSS_KINDS = (MethodKind.PAIRWISE_TRL, MethodKind.REFERENCE_FREE_TRL, MethodKind.UNPAIRED_TRL, MethodKind.SFT)

# Fields of TRL's DPO config that its reference log-prob pass reads (besides the reference model,
# the pairs and max_length): LD-DPO weights the reference's tail tokens by ld_alpha, and truncation
# decides which tokens are scored.  Part of the reference log-probs' artifact key.
REF_LOGP_ARGS = ("ld_alpha", "truncation_mode")


LOADED: list[bool] = []  # [True] once the loss plug-ins were loaded in this process


def loss_registry():
    """:mod:`po_bench.training.losses`, the registry of pure-function losses, with the plug-in losses of the
    ``po_bench.losses`` entry-point group registered in it (once per process; a plug-in that fails to import is
    refused by config validation, po_bench.plugins).  Every lookup of a loss function goes through here."""

    if not LOADED:
        LOADED.append(True)
        plugins.load(losses.ENTRY_POINT_GROUP)
    return losses


def known_backend(backend: str) -> bool:
    return backend in BACKEND_KINDS


def _kind(backend: str, function: str) -> MethodKind:
    if backend not in BACKEND_KINDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend != "pobench":
        return BACKEND_KINDS[backend]
    losses = loss_registry()
    if losses.unpaired(function):
        return MethodKind.UNPAIRED_CUSTOM
    if losses.token_level(function):
        return MethodKind.TOKEN_LEVEL
    spec = losses.LOSSES.get(function)
    if spec is not None and "sources" in spec.stage_args:
        return MethodKind.FUSED_REFERENCE
    return MethodKind.PAIRWISE_CUSTOM  # (an unknown function too: its check names the allowed ones)


@dataclass(frozen=True, eq=False)
class Method:
    """One loss config as a method: its kind and the config fields its capabilities read."""

    kind: MethodKind
    backend: str = "dpo"
    function: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    reference_free: bool = False
    paired: bool = True
    guide: str = ""

    # ---- what runs it ------------------------------------------------------------------------------

    @property
    def trains_preference(self) -> bool:
        """Whether the method has a preference stage (SFT's policy is the SFT model itself)."""
        return self.kind is not MethodKind.SFT

    @property
    def iterative(self) -> bool:
        """Whether the method runs rounds of its inner loss (``loss.args.inner``) on pairs it samples and labels
        itself (iterative DPO): it has no trainer of its own, each round is a policy stage of the inner loss."""
        return self.kind is MethodKind.ITERATIVE

    @property
    def trl_trainer(self) -> str:
        """The TRL trainer (and config class) the method runs on: dpo, cpo, orpo, kto or sft."""
        if self.kind is MethodKind.UNPAIRED_CUSTOM:
            return "kto"  # KTO's pipeline with its KL rows off, the loss replaced
        if self.backend in ("cpo", "orpo", "kto", "sft"):
            return self.backend
        return "dpo"  # TRL's DPO pipeline: its own losses, po-bench's pure functions, the listwise trainer

    @property
    def trl_loss(self) -> bool:
        """Whether TRL computes the loss: ``loss.args`` are fields of the TRL trainer's config class."""
        return self.kind in TRL_LOSS_KINDS

    @property
    def pair_function(self) -> bool:
        """Whether the loss is a pure function of ``training/losses.py`` (``loss.args``: its hyperparameters)."""
        return self.kind in PAIR_FUNCTION_KINDS

    @property
    def online(self) -> bool:
        """Whether the method trains in the online loop (training/online.py): its pairs are sampled from the
        current policy and labelled during training, not read from the pairs artifact."""
        return self.kind is MethodKind.ONLINE

    @property
    def list_function(self) -> bool:
        """Whether the loss is a pure function of ``training/listwise.py`` over rated lists."""
        return self.kind is MethodKind.LISTWISE

    @property
    def data_shape(self) -> DataShape:
        if self.kind is MethodKind.SFT:
            return DataShape.NONE
        if self.kind in (MethodKind.UNPAIRED_TRL, MethodKind.UNPAIRED_CUSTOM):
            return DataShape.UNPAIRED_ROWS
        if self.kind is MethodKind.LISTWISE:
            return DataShape.STEP_LISTS if self.per_step else DataShape.LISTS
        return DataShape.PAIRS

    @property
    def per_step(self) -> bool:
        """Whether the listwise loss reads per-step inputs (TPO): step spans in the rows, the reference per batch."""

        return self.kind is MethodKind.LISTWISE and step_inputs(self.function)

    @property
    def kl_rows(self) -> bool:
        """KTO's KL term: rows are reordered so each batch pairs completions with other prompts' (no
        curriculum order; a per-device batch of at least 2)."""
        return self.kind is MethodKind.UNPAIRED_TRL

    @property
    def unordered_rows(self) -> bool:
        """Whether the trainer reorders its rows itself (unpaired rows): a curriculum order cannot be kept."""
        return self.kind in (MethodKind.UNPAIRED_TRL, MethodKind.UNPAIRED_CUSTOM)

    # ---- the reference ------------------------------------------------------------------------------

    @property
    def needs_reference_model(self) -> bool:
        """Whether the loss reads a reference model (``loss.reference_free`` says it does not)."""
        return not self.reference_free

    @property
    def takes_reference_model(self) -> bool:
        """Whether the trainer takes a reference model at all (TRL's CPO / ORPO trainers do not)."""
        return self.kind not in (MethodKind.REFERENCE_FREE_TRL, MethodKind.SFT)

    @property
    def dynamic_anchor(self) -> bool:
        """Whether a listwise loss's reference is a moving anchor (ADPO's ``anchor: dynamic``), synced to the
        policy every step."""

        return self.kind is MethodKind.LISTWISE and moving_anchor(self.function, self.args)

    @property
    def moving_reference(self) -> bool:
        """Whether the reference moves during training (TR-DPO's sync, ADPO's dynamic anchor): its log-probs
        are computed each step, never precomputed or stored."""
        return bool(self.args.get("sync_ref_model")) or self.dynamic_anchor

    @property
    def stores_reference_logps(self) -> bool:
        """Whether the reference's sequence log-probs on the training pairs are an artifact of the store
        (``ref_logps``, computed once and shared by every method that reads the same ones).  KTO: those of its
        unpaired rows and KL rows, in its row order."""
        if self.kind is MethodKind.UNPAIRED_TRL:
            return not self.reference_free and not self.moving_reference
        return (
            self.kind not in (MethodKind.REFERENCE_FREE_TRL, MethodKind.TOKEN_LEVEL, MethodKind.SFT, MethodKind.ONLINE)
            and not self.reference_free  # (a pure unpaired function is not paired: config.validate says so)
            and self.paired
            and not self.moving_reference
        )

    @property
    def ref_logp_args(self) -> dict:
        """The loss arguments that change the reference log-probs (part of their artifact key)."""
        if self.kind is MethodKind.LISTWISE:  # k log-probs per row: never the same artifact as a pairwise pass
            return {"view": "list"}
        if self.kind is MethodKind.UNPAIRED_TRL:  # one log-prob per unpaired row, and per KL row unless TRL has none
            kl = self.args.get("loss_type", "kto") != "apo_zero_unpaired"
            return {"view": "unpaired", "kl": kl, **{k: self.args[k] for k in REF_LOGP_ARGS if k in self.args}}
        if self.pair_function:  # po-bench's functions: none
            return {}
        return {k: self.args[k] for k in REF_LOGP_ARGS if k in self.args}

    # ---- artifacts built before training ------------------------------------------------------------

    @property
    def pair_score(self) -> tuple[str, str] | None:
        """(the loss function's argument, the score kind) for a loss that weights each pair by a score computed
        before training (MADPO: reward_margin, Sem-DPO: semantic_distance); None for every other loss."""
        if self.kind not in (MethodKind.PAIRWISE_CUSTOM, MethodKind.FUSED_REFERENCE):
            return None
        spec = loss_registry().LOSSES.get(self.function)
        return tuple(spec.per_pair) if spec is not None and spec.per_pair else None

    @property
    def needs_pair_scores(self) -> bool:
        return self.pair_score is not None

    @property
    def pair_score_stage(self) -> str | None:
        """The stage that builds the pair scores: ``reward_model`` (a reward model trained first) or
        ``semantic_distance`` (a sentence-embedding model); None without pair scores."""
        if self.pair_score is None:
            return None

        return stage_of(self.pair_score[1])

    @property
    def needs_guide(self) -> bool:
        """Whether the loss reads a guide policy's per-token log-probs (TGDPO, RTO; ``loss.guide`` names its loss)."""
        if self.online:
            spec = ONLINE_LOSSES.get(self.function)
            return spec is not None and spec.guided
        return self.backend == "pobench" and loss_registry().guided(self.function)

    @property
    def needs_source_models(self) -> bool:
        """Whether the reference is a fusion of source models (InfiFPO: ``loss.args.sources``, SFT models)."""
        return self.kind is MethodKind.FUSED_REFERENCE

    @property
    def function_spec(self):
        """The pure function's registry entry (a ``losses.LossSpec`` or a ``listwise.ListwiseSpec``); None for a
        loss TRL computes or an unknown function."""
        if self.list_function:
            return LISTWISE.get(self.function)
        if not self.pair_function:
            return None
        losses = loss_registry()
        return {**losses.LOSSES, **losses.TOKEN_LOSSES, **losses.UNPAIRED_LOSSES}.get(self.function)

    @property
    def function_args(self) -> dict:
        """A pure function's keyword arguments: ``loss.args`` without what a stage consumes (InfiFPO's sources)
        or the trainer reads itself (ADPO-list's anchor)."""
        if self.list_function:
            return fn_args(self.function, self.args)
        spec = self.function_spec
        drop = spec.stage_args if spec is not None else ()
        return {k: v for k, v in self.args.items() if k not in drop}


def _get(cfg, key: str, default):
    getter = getattr(cfg, "get", None)  # a dict or an OmegaConf node; else attributes (a namespace)
    return getter(key, default) if callable(getter) else getattr(cfg, key, default)


def method_of(loss_cfg) -> Method:
    """The Method of a loss config (an OmegaConf node, a dict or any object with the LossConfig fields; a
    missing field takes LossConfig's default).  ValueError for an unknown backend."""
    backend = str(_get(loss_cfg, "backend", "dpo"))
    function = str(_get(loss_cfg, "function", "") or "")
    args = _get(loss_cfg, "args", None)
    return Method(
        kind=_kind(backend, function),
        backend=backend,
        function=function,
        args=dict(args) if args else {},
        reference_free=bool(_get(loss_cfg, "reference_free", False)),
        paired=bool(_get(loss_cfg, "paired", True)),
        guide=str(_get(loss_cfg, "guide", "") or ""),
    )


def can_guide(loss_cfg) -> bool:
    """Whether a loss config's trained policy can guide a guided loss (TGDPO's ``loss.guide``): a
    reference-based DPO-family loss (TRL's DPO losses, po-bench's pure functions) without a guide of its own,
    so that its token rewards are beta*log(pi_guide/pi_ref).  Reads the config as written (a loss yaml)."""
    return (
        _get(loss_cfg, "backend", "dpo") in ("dpo", "pobench")
        and not _get(loss_cfg, "reference_free", False)
        and not _get(loss_cfg, "guide", None)
    )

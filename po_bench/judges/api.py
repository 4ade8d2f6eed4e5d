"""The judges' contract: what a judge reads, how the pipeline runs it, what it returns.

A judge is three things, all in its own module:

* a **config** dataclass derived from :class:`BaseJudgeConfig`: its own fields (``conf/judge/<name>.yaml``
  sets them; ``judge=<name>`` picks the yaml) and its own :meth:`BaseJudgeConfig.validate`, which
  ``po_bench.config.validate`` calls before any compute;
* a **class** derived from :class:`Judge`, registered under its config name with
  ``@register_judge("<name>")``.  Its class attributes say what it reads (:class:`Reads`: the world's
  gold reward, the policy's samples, the policy's answers to the judge's own questions, or the
  policy's checkpoint) and how its metrics are named; :meth:`Judge.judge` is the one way the
  pipeline (``po_bench.judges.runner``) runs it;
* its **result**, a :class:`JudgeResult`: ``metrics`` (JSON-ready, run-level: they go into run.json as
  ``<prefix><name>``, the prefix being ``<judge>_`` unless the judge names another) and ``records``
  (one per judged item: a pairwise verdict, a turn score, a benchmark item).  A judge that asks
  for judgments counts them in its metrics: ``n_asked``, ``n_request_failures``,
  ``n_parse_failures``, ``n_not_judged_budget``; the runner derives ``n_judged`` and reports the
  client's requests and budget beside them.

Where judges come from (:func:`load_judges`, once per process): every module of ``po_bench/judges/``
that registers one (its source has ``@register_judge(``), then the entry points of the group
``po_bench.judges`` (``[project.entry-points."po_bench.judges"] my_judge = "my_package.my_judge"``
in a plug-in's ``pyproject.toml``: the module is imported, its decorators register its judges).
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from po_bench import plugins

ENTRY_POINT_GROUP = "po_bench.judges"
ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what judge.api_key_env must look like


@dataclass
class JudgeResult:
    metrics: dict
    records: list[dict] = field(default_factory=list)


class Reads(str, enum.Enum):
    """What a judge reads of the policy under test."""

    WORLD = "world"  # the embedded world's gold reward: scored by the pipeline itself (judge=gold)
    NOTHING = "nothing"  # no external judge (judge=none): the implicit judges only
    SAMPLES = "samples"  # the policy's and the SFT policy's samples on the eval prompts
    ANSWERS = "answers"  # the policy's answers to the judge's own questions (generated, cached in the store)
    CHECKPOINT = "checkpoint"  # the policy's saved checkpoint folder (likelihood-based benchmarks: lm-eval)


RUN_BY_RUNNER = (Reads.SAMPLES, Reads.ANSWERS, Reads.CHECKPOINT)  # the others are the pipeline's own


class JudgeConfigError(ValueError):
    """A judge config's value is wrong: po_bench.config reports it as a ConfigError (one line)."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise JudgeConfigError(message)


@dataclass
class ConfigChecks:
    """What a judge config's ``validate`` needs to know beyond its own fields."""

    world_data: bool  # dataset=world: the embedded world's prompts and gold reward
    secret_keys: list[str] = field(default_factory=list)  # keys of the judge's config that would hold a secret


@dataclass
class BaseJudgeConfig:
    """The fields every judge has: its name, the run's other judges (``also``) and how the policy answers
    each judge (``answer_generation``), and the run's budget and credentials for judges that call a paid
    endpoint.  API keys never live here: ``api_key_env`` names the environment variable that holds one, or
    ``api_key_file`` a file that holds one (it wins when set)."""

    name: str = "gold"
    kind: str = ""
    version: str = ""
    api_key_env: str | None = None
    api_key_file: str | None = None  # a file holding the key (wins over api_key_env)
    max_requests: int = 0  # budget: HTTP requests this run may send (retries included); 0 = unlimited
    max_cost_usd: float = 0.0  # budget: USD this run may spend (from usage and the prices); 0 = unlimited
    price_input_per_mtok: float = 0.0
    price_output_per_mtok: float = 0.0
    # How the policy answers this judge's questions, per judge name (a setting's published eval config:
    # conf/setting/*.yaml from ../shared/reference/simpo_eval_generation.csv): temperature / top_p /
    # max_new_tokens over generation.* and answer_max_new_tokens; temperature 0 = greedy
    answer_generation: dict[str, Any] = field(default_factory=dict)
    # More judges of the same run, after this one (po_bench.config.judge_configs): names of conf/judge/*.yaml,
    # or {name: <judge>, <field>: <value>, ...} for one judge's own fields.  One job trains a policy and runs
    # all of its judges (e.g. judge=alpaca_eval judge.also=[arena_hard,mt_bench]).
    also: list[Any] = field(default_factory=list)

    def check_data(self, world_data: bool) -> None:
        """Whether this judge can score the run's data (default: any)."""

    def check_endpoint(self) -> None:
        """Whether the judge's endpoint is set (judges that call one)."""

    def refuse_world(self, world_data: bool) -> None:
        """For judges of real-data answers: the world is scored by its gold reward."""
        check(
            not world_data,
            f"judge={self.name} scores real-data answers: dataset=world is scored by judge=gold "
            "(use a real dataset and model, e.g. model=smollm2_135m dataset=hh_rlhf)",
        )

    def validate(self, checks: ConfigChecks) -> None:
        """The checks of one judge's config (``judge.*`` and each of ``judge.also``); a subclass calls
        ``super().validate(checks)`` first, then checks its own fields."""
        self.check_data(checks.world_data)
        self.check_endpoint()
        check(self.max_requests >= 0, f"judge.max_requests={self.max_requests}: must be >= 0 (0 = unlimited)")
        check(self.max_cost_usd >= 0, f"judge.max_cost_usd={self.max_cost_usd:g}: must be >= 0 (0 = unlimited)")
        check(
            not self.max_cost_usd or self.price_input_per_mtok > 0 or self.price_output_per_mtok > 0,
            f"judge.max_cost_usd={self.max_cost_usd:g} needs the judge's prices: set judge.price_input_per_mtok "
            "and judge.price_output_per_mtok (USD per million tokens)",
        )
        check(
            not self.api_key_env or bool(ENV_VAR_NAME.fullmatch(str(self.api_key_env))),
            "judge.api_key_env must name an environment variable (letters, digits, _), not hold the key itself",
        )
        check(
            not self.api_key_file or Path(str(self.api_key_file)).expanduser().is_file(),
            "judge.api_key_file: no such file (its value is not shown here: it could be a key)",
        )
        secret = checks.secret_keys
        check(
            not secret,
            f"judge.{secret[0] if secret else ''}: API keys are never read from the config; put the key "
            "in the environment variable named by judge.api_key_env or a file named by judge.api_key_file",
        )


@dataclass
class JudgeInputs:
    """What the pipeline hands a judge; each judge reads the part its :class:`Reads` names."""

    cfg: Any  # the run's config; its ``judge`` is this judge's config
    prompts: list  # the eval prompts
    samples: list[str]  # the policy's samples on them
    sft_samples: list[str]  # the SFT policy's samples on them
    checkpoint: Path | str  # the policy's saved checkpoint folder
    # answers(conversations, temperature=None) -> one answer per chat conversation (lists of messages), by the
    # policy / the SFT policy; artifacts of the store (specs.answers_spec), generated on first use
    answers: Callable[..., list[str]] | None = None
    sft_answers: Callable[..., list[str]] | None = None
    # cached(kind, judge_fields, build): an artifact of the store keyed by the policy and the judge's fields
    # (specs.judge_artifact_spec), built by build() once
    cached: Callable[[str, dict, Callable[[], Any]], Any] | None = None


class Judge(abc.ABC):
    """A judge of the policy under test.  Constructed as ``cls(judge_cfg)``, or ``cls(judge_cfg, client)``
    when it asks an endpoint (``uses_client``: the runner makes the client, with its cache, retries and
    budget, and reports its counts)."""

    name: ClassVar[str] = ""  # set by @register_judge
    config_class: ClassVar[type[BaseJudgeConfig]] = BaseJudgeConfig
    reads: ClassVar[Reads] = Reads.SAMPLES
    uses_client: ClassVar[bool] = False
    metric_prefix: ClassVar[str] = ""  # "": "<name>_"
    headline_metric: ClassVar[str | None] = None  # the metric its per-item records are scores of
    reports_interval: ClassVar[bool] = False  # its metrics carry a 95% interval (ci_low/high) or a standard error
    order: ClassVar[int] = 100  # where it is listed (config errors): the built-in judges first

    @classmethod
    def prefix(cls) -> str:
        return cls.metric_prefix or f"{cls.name}_"

    @classmethod
    def build(cls, cfg: Any, client: Any = None) -> Judge:
        return cls(cfg, client) if cls.uses_client else cls(cfg)  # type: ignore[call-arg]

    @abc.abstractmethod
    def judge(self, policy: JudgeInputs) -> JudgeResult:
        """Judge the policy under test: its metrics and one record per judged item."""


REGISTRY: dict[str, type[Judge]] = {}  # filled by @register_judge; read it through the functions below


def register_judge(name: str) -> Callable[[type[Judge]], type[Judge]]:
    """Register a :class:`Judge` subclass as ``judge=<name>``."""

    def add(cls: type[Judge]) -> type[Judge]:
        if not (isinstance(cls, type) and issubclass(cls, Judge)):
            raise TypeError(f"@register_judge({name!r}): {cls!r} is not a subclass of po_bench.judges.api.Judge")
        old = REGISTRY.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(
                f"@register_judge({name!r}): {cls.__module__}.{cls.__qualname__} and "
                f"{old.__module__}.{old.__qualname__} both register it"
            )
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


LOADED: list[bool] = []  # [True] once load_judges ran


def load_judges() -> None:
    """Import the modules that register judges: this package's (those whose source has
    ``@register_judge(``; the client and the runner are imported by those that use them), then the entry
    points of the group ``po_bench.judges``.  Once per process."""
    if LOADED:
        return
    LOADED.append(True)
    import po_bench.judges as package  # lazy: the package imports this module (its registry), not the other way round

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        source = Path(package.__path__[0]) / f"{info.name}.py"
        if source.is_file() and "@register_judge(" in source.read_text():
            importlib.import_module(f"{package.__name__}.{info.name}")
    plugins.load(ENTRY_POINT_GROUP)  # a plug-in that fails to import: refused by config validation, one line


def judges() -> dict[str, type[Judge]]:
    """Every registered judge by name, in listing order."""
    load_judges()
    seen = list(REGISTRY)
    return {n: REGISTRY[n] for n in sorted(seen, key=lambda n: (REGISTRY[n].order, seen.index(n)))}


def judge_names() -> list[str]:
    return list(judges())


def runner_judge_names() -> list[str]:
    """The judges the runner runs (the others, gold and none, are the pipeline's own)."""
    return [n for n, j in judges().items() if j.reads in RUN_BY_RUNNER]


def judge_class(name: str) -> type[Judge]:
    known = judges()
    if name not in known:
        raise ValueError(f"judge kind {name!r} is not available; valid: {', '.join(runner_judge_names())}")
    return known[name]


def metric_prefixes() -> tuple[str, ...]:
    """The prefixes of the judges' metrics in run.json (e.g. ``alpaca_eval_``, ``rm_``)."""
    return tuple(dict.fromkeys(judges()[n].prefix() for n in runner_judge_names()))


def interval_prefixes() -> tuple[str, ...]:
    """The prefixes of the judges whose metrics carry their own interval or standard error."""
    return tuple(judges()[n].prefix() for n in runner_judge_names() if judges()[n].reports_interval)


def headline_metrics() -> dict[str, str]:
    """Judge name (and metric prefix, without its ``_``) -> the metric its per-item records score."""
    out: dict[str, str] = {}
    for n, j in judges().items():
        if j.headline_metric:
            out[n] = j.headline_metric
            out.setdefault(j.prefix().rstrip("_"), j.headline_metric)
    return out


def config_union(name: str, module: str) -> type:
    """The composed ``judge`` node's schema, ``<module>.<name>``: every registered judge's config fields
    (each judge's own dataclass, in its module).  Hydra checks ``judge.*`` keys and types against it while
    composing, as it does every section's; a preset may set a judge's fields before its sweep picks that
    judge; :func:`config_view` then reads one judge's config as its own dataclass."""
    classes = list(dict.fromkeys(j.config_class for j in judges().values()))
    leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
    doc = "The ``judge`` node: every registered judge's config fields (po_bench.judges.api.config_union)."
    return dataclass(type(name, tuple(leaves), {"__doc__": doc, "__module__": module, "__qualname__": name}))


def config_view(node: Any) -> BaseJudgeConfig:
    """One judge's config (a composed ``judge`` node, all interpolations resolvable) as its own dataclass."""
    from omegaconf import OmegaConf  # lazy: omegaconf (~0.0 s)

    cls = judge_class(node.name).config_class
    data = OmegaConf.to_container(node, resolve=True)
    own = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), own))

"""The Method record (po_bench/training/methods.py): every loss config has one, its kind and capabilities say
what the yaml says, the trainer of each kind is a named class, and no module but the method table compares
``loss.backend`` strings."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from po_bench.cli.app import CONF_DIR
from po_bench.specs import plan
from po_bench.training.methods import BACKENDS, DataShape, Method, MethodKind, method_of

from .conftest import compose as _compose

K = MethodKind
# one row per loss config: the kind it runs as
KINDS = {
    "adpo": K.PAIRWISE_CUSTOM,
    "adpo_list": K.LISTWISE,
    "alphapo": K.REFERENCE_FREE_TRL,
    "aot": K.PAIRWISE_TRL,
    "apo_down": K.PAIRWISE_TRL,
    "apo_zero": K.PAIRWISE_TRL,
    "asft": K.PAIRWISE_CUSTOM,
    "bco": K.UNPAIRED_CUSTOM,
    "bco_pair": K.PAIRWISE_CUSTOM,
    "beta_dpo": K.PAIRWISE_CUSTOM,
    "brain": K.ONLINE,
    "cdpo": K.PAIRWISE_CUSTOM,
    "cpo": K.REFERENCE_FREE_TRL,
    "curry_dpo": K.PAIRWISE_TRL,
    "discopop": K.PAIRWISE_TRL,
    "dpo": K.PAIRWISE_TRL,
    "exo": K.PAIRWISE_TRL,
    "fdpo_alpha": K.PAIRWISE_CUSTOM,
    "fdpo_fkl": K.PAIRWISE_TRL,
    "fdpo_js": K.PAIRWISE_TRL,
    "infifpo": K.FUSED_REFERENCE,
    "ipo": K.PAIRWISE_TRL,
    "irpo": K.LISTWISE,
    "iterative_dpo": K.ITERATIVE,
    "kto": K.UNPAIRED_TRL,
    "ld_dpo": K.PAIRWISE_TRL,
    "lipo": K.LISTWISE,
    "ln_dpo": K.PAIRWISE_TRL,
    "madpo": K.PAIRWISE_CUSTOM,
    "mpo": K.PAIRWISE_CUSTOM,
    "nca": K.PAIRWISE_TRL,
    "online_dpo": K.ONLINE,
    "oprl": K.ONLINE,
    "orpo": K.REFERENCE_FREE_TRL,
    "r_dpo": K.PAIRWISE_CUSTOM,
    "rdpo": K.PAIRWISE_TRL,
    "rpo": K.PAIRWISE_CUSTOM,
    "flex_dpo": K.PAIRWISE_CUSTOM,
    "rrhf": K.PAIRWISE_CUSTOM,
    "rso": K.PAIRWISE_TRL,
    "sem_dpo": K.PAIRWISE_CUSTOM,
    "sft": K.SFT,
    "sft_fdiv_chi2": K.PAIRWISE_CUSTOM,
    "sft_fdiv_kl": K.PAIRWISE_CUSTOM,
    "sft_fdiv_tv": K.PAIRWISE_CUSTOM,
    "sft_lowlr": K.PAIRWISE_TRL,
    "simpo": K.REFERENCE_FREE_TRL,
    "slic_hf": K.PAIRWISE_CUSTOM,
    "sppo": K.PAIRWISE_TRL,
    "step_dpo": K.PAIRWISE_TRL,
    "tgdpo": K.TOKEN_LEVEL,
    "tpo": K.LISTWISE,
    "tr_dpo": K.PAIRWISE_TRL,
    "wpo": K.PAIRWISE_TRL,
    "xpo": K.ONLINE,
    "rto": K.ONLINE,
    "ofs_dpo": K.ONLINE,
}
LOSS_DIR = Path(CONF_DIR) / "loss"
CONFIGS = sorted(p.stem for p in LOSS_DIR.glob("*.yaml"))
SCORE_STAGES = {"reward_margin": "reward_model", "semantic_distance": "semantic_distance"}


def test_every_loss_config_has_a_method():
    assert sorted(KINDS) == CONFIGS


def _overrides(name: str) -> list[str]:
    """loss=<name> with the data its method is defined on (loss.requires: lists, steps, a curriculum)."""
    y = OmegaConf.load(LOSS_DIR / f"{name}.yaml")
    return [f"loss={name}", *(f"{k}={v}" for k, v in (y.get("requires") or {}).items())]


@pytest.mark.parametrize("name", CONFIGS)
def test_kind_and_capabilities_match_the_yaml(name):
    y = OmegaConf.to_container(OmegaConf.load(LOSS_DIR / f"{name}.yaml"), resolve=False)
    m = method_of(_compose([f"loss={name}"]).loss)
    assert m.kind is KINDS[name]
    args, requires = y.get("args") or {}, y.get("requires") or {}
    # the function: a po-bench pure function (pobench / listwise) or TRL's loss
    assert m.pair_function == (y["backend"] == "pobench") and m.list_function == (y["backend"] == "listwise")
    assert m.trl_loss == (y["backend"] in ("dpo", "cpo", "orpo", "kto", "sft"))
    assert m.trains_preference == (y["backend"] != "sft")
    # the reference
    assert m.needs_reference_model == (not y.get("reference_free", False))
    assert m.takes_reference_model == (y["backend"] not in ("cpo", "orpo", "sft"))
    assert m.moving_reference == bool(args.get("sync_ref_model") or args.get("anchor") == "dynamic")
    # artifacts built before training: pair scores and their stage, a guide policy, source models
    ps = y.get("pair_scores") or {}
    assert m.needs_pair_scores == bool(ps)
    assert m.pair_score_stage == SCORE_STAGES.get(ps.get("kind"))
    assert m.needs_guide == bool(y.get("guide"))
    assert m.needs_source_models == ("sources" in args)
    # the data shape
    lists = requires.get("dataset.pair_strategy") == "list"
    shape = (
        DataShape.NONE
        if y["backend"] == "sft"
        else DataShape.UNPAIRED_ROWS
        if y.get("paired", True) is False
        else (DataShape.STEP_LISTS if requires.get("dataset.steps") else DataShape.LISTS)
        if lists
        else DataShape.PAIRS
    )
    assert m.data_shape is shape
    assert m.per_step == (shape is DataShape.STEP_LISTS)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_store_holds_reference_logps_exactly_where_the_method_says(name):
    """Method.stores_reference_logps against the run's plan (specs.plan: the ref_logps artifact) on the data the
    method is defined on."""
    cfg = _compose(_overrides(name))
    m = method_of(cfg.loss)
    p = plan(cfg)
    assert (p.ref_logps is not None) == m.stores_reference_logps
    if p.ref_logps is not None:
        assert p.ref_logps["args"] == m.ref_logp_args
    assert (p.pair_scores or {}).get("stage") == m.pair_score_stage
    assert bool(p.sources) == m.needs_source_models and (p.guide is not None) == m.needs_guide


def test_the_online_backend_is_the_online_kind():
    """backend: online runs in po-bench's online loop (training/online.py): no pairs artifact, no stored reference
    log-probs, no TRL trainer class; every other backend maps to another kind."""
    assert method_of({"backend": "online", "function": "xpo"}).kind is K.ONLINE
    assert method_of({"backend": "online"}).online and not method_of({"backend": "dpo"}).online
    assert {method_of({"backend": b, "function": ""}).kind for b in BACKENDS if b not in ("pobench", "online")} <= (
        set(K) - {K.ONLINE}
    )
    for name in ("online_dpo", "xpo", "brain", "ofs_dpo"):
        p = plan(_compose([f"loss={name}"]))
        assert p.pairs is None and p.ref_logps is None and "pref_samples" not in p.samples and "online" in p.policy


def test_an_unknown_backend_is_refused():
    with pytest.raises(
        ValueError,
        match="unknown backend 'nope'; valid: dpo, cpo, orpo, kto, pobench, listwise, sft, iterative, online",
    ):
        method_of({"backend": "nope"})


def test_a_method_reads_any_config_shape():
    """An OmegaConf node, a dict and a namespace give the same Method; a missing field takes LossConfig's default."""
    from types import SimpleNamespace as NS

    cfg = _compose(["loss=madpo"]).loss
    a = method_of(cfg)
    b = method_of(OmegaConf.to_container(cfg, resolve=True))
    c = method_of(NS(**{**cfg, "args": dict(cfg.args)}))
    assert a.kind is b.kind is c.kind is K.PAIRWISE_CUSTOM and a.pair_score == b.pair_score == c.pair_score
    assert method_of({}).kind is K.PAIRWISE_TRL and isinstance(method_of({}), Method)


# (the online kind trains in po-bench's online loop, training/online.py, not a TRL Trainer: tests/test_online.py;
# an iterative method's rounds train its inner loss: tests/test_iterative.py)
@pytest.mark.parametrize("name", [n for n in CONFIGS if KINDS[n] not in (K.SFT, K.ITERATIVE, K.ONLINE)])
def test_each_kind_trains_with_a_named_trainer_class(name):
    """The trainer of a loss config is a class defined at a module's top level (po-bench's family modules or
    TRL's own), not one assembled at run time from closures."""
    from po_bench.training.trl.preference import trainer_class

    cls = trainer_class(method_of(_compose([f"loss={name}"]).loss))
    assert "<locals>" not in cls.__qualname__ and cls.__module__.split(".")[0] in ("po_bench", "trl"), cls
    if KINDS[name] not in (K.REFERENCE_FREE_TRL, K.UNPAIRED_TRL):  # po-bench's trainers: TRL's, subclassed
        assert cls.__module__.startswith("po_bench.training.trl."), cls


def test_sft_has_no_preference_trainer():
    from po_bench.training.trl.preference import trainer_class

    with pytest.raises(ValueError, match="backend 'sft' has no preference stage"):
        trainer_class(method_of({"backend": "sft"}))


def test_an_iterative_method_has_no_trainer_of_its_own():
    """Iterative DPO's rounds are policy stages of its inner loss (specs.iterative_rounds): the inner loss's
    trainer trains them, the iterative method itself has none."""
    from po_bench.training.trl.preference import trainer_class

    m = method_of(_compose(["loss=iterative_dpo"]).loss)
    assert m.iterative and not method_of({"backend": "dpo"}).iterative
    with pytest.raises(ValueError, match="backend 'iterative' has no preference stage"):
        trainer_class(m)


# ---- only the method table compares loss.backend strings ----------------------------------------------------

PKG = Path(__file__).resolve().parent.parent / "po_bench"
METHOD_TABLE = "training/methods.py"
# the other backends (generation, lm-eval, tracking): (file, the compared expression)
OTHER_BACKENDS = {
    ("generation/generate.py", "gen_cfg.backend"),  # generation.backend: hf | vllm
    ("config.py", "cfg.generation.backend"),  # the online loop samples with hf (config._check_online)
    ("judges/openllm.py", "self.backend"),  # lm-eval's model backend
    ("judges/openllm.py", "self.lm_eval_backend"),  # judge=openllm_v2's config: the same
    ("results/tracking.py", "tcfg.backend"),  # tracking: wandb | none
    ("specs.py", "g.get('backend')"),  # gen_fields: the generation config's backend
    ("stages.py", "spec['gen']['backend']"),  # the samples spec's generation.backend
    ("stages.py", "sspec['gen']['backend']"),
}


def backend_comparisons(root: Path) -> list[tuple[str, str]]:
    """(file under ``root``, compared expression) of every comparison (==, !=, in, not in, ...) with an operand
    that reads a backend, outside the method table."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == METHOD_TABLE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for operand in (node.left, *node.comparators):
                    text = ast.unparse(operand)
                    if "backend" in text and not isinstance(operand, ast.Constant):
                        out.append((rel, text))
    return sorted(set(out))


def test_only_the_method_table_compares_loss_backends():
    """`grep -rn "backend ==\\|backend in" po_bench` finds the method table and the other backends listed above."""
    loss_backends = [c for c in backend_comparisons(PKG) if c not in OTHER_BACKENDS]
    assert loss_backends == [], "compare loss backends in po_bench/training/methods.py (ask the Method): "
    found = set(backend_comparisons(PKG))
    assert found == OTHER_BACKENDS, sorted(OTHER_BACKENDS - found)  # the list stays honest


def test_the_backend_scan_sees_a_comparison(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "methods.py").write_text('ok = loss.backend == "dpo"\n')
    (tmp_path / "x.py").write_text(
        'if cfg.loss.backend == "kto":\n    pass\nif "dpo" != loss.backend:\n    pass\n'
        'y = g.get("backend", "dpo") not in ("dpo",)  # a guide yaml\n'
    )
    assert backend_comparisons(tmp_path) == [
        ("x.py", "cfg.loss.backend"),
        ("x.py", "g.get('backend', 'dpo')"),
        ("x.py", "loss.backend"),
    ]

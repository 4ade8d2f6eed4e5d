"""Paper presets (experiment=<name> scale=tiny|paper) through the union-of-grids sweeper (its expansion
itself: tests/test_sweep.py).

The scale=paper presets only run on GPUs with the Hub; here every one of them is composed with
Hydra, its sweep expanded by the real sweeper code, each job composed and validated, and the
hyperparameters checked against the papers' numbers in results/reference/.
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
from pathlib import Path

import pytest
import yaml
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from po_bench.cli.app import CONF_DIR, check_preset
from po_bench.config import ConfigError, judge_configs, validate
from po_bench.results.sweep import expand
from po_bench.specs import plan

from .conftest import ROOT, SMALL, run_cli
from .conftest import compose as _compose
from .helpers import parse_overrides

REF = ROOT / "results" / "reference"
EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
SETTINGS = {
    "mistral_base": "mistral-7b-base",
    "mistral_instruct": "mistral-7b-instruct",
    "llama3_base": "llama-3-8b-base",
    "llama3_instruct": "llama-3-8b-instruct",
}


@pytest.fixture(scope="module", autouse=True)
def _hydra():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):  # once: composing is then ~10 ms
        yield


def _jobs(experiment, scale, cli=()):
    return [list(job) for job in _expanded(experiment, scale, tuple(cli))]


@functools.cache
def _expanded(experiment, scale, cli):
    """A preset's jobs, expanded once per file: composing with the hydra config takes a second or more (the
    same presets are expanded by several tests below; the expansion is a pure function of the files)."""
    c = _compose([f"experiment={experiment}", f"scale={scale}"], return_hydra_config=True)
    sw = c.hydra.sweeper
    assert sw._target_.endswith("GridSweeper")
    jobs = expand(dict(sw.params or {}), [dict(g) for g in sw.grids or []], list(cli), parse_overrides)
    return tuple(tuple(job) for job in jobs)


# --- every preset at every scale -----------------------------------------------------------------


def _one_per_method(jobs):
    """Large sweeps: the first job of each (method, judge) and of each (method, setting)."""
    seen, out = set(), []
    for j in jobs:
        keys = [tuple(x for x in j if x.startswith(("loss=", p))) for p in ("judge=", "+setting=")]
        if any(k not in seen for k in keys):
            seen.update(keys)
            out.append(j)
    return out


# the paper scale's grids are the large ones (seconds each to compose): make test checks them, make test-fast the tiny scale
@pytest.mark.parametrize("scale", ["tiny", "small", pytest.param("paper", marks=pytest.mark.slow)])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_composes_and_its_jobs_validate(experiment, scale):
    if not (Path(CONF_DIR) / "preset" / experiment / f"{scale}.yaml").exists():
        # a world-only preset (its data strategy is defined on the embedded world: pugc, more_is_less,
        # beyond_pairs); scale=small (a real small model on CPU) only where a preset defines it (diagnostics)
        assert scale in ("paper", "small")
        with pytest.raises(ConfigError, match=f"experiment={experiment} has no scale={scale} preset"):
            check_preset(_compose([f"experiment={experiment}", f"scale={scale}"]), experiment)
        return
    jobs = _jobs(experiment, scale)
    assert jobs
    # the seeds change no field that validation reads: one job per point of the rest (the job counts and
    # the seeds of each preset are checked by test_tiny_presets_are_small_enough_for_a_cpu)
    jobs = list({tuple(x for x in j if not x.startswith("seed=")): j for j in jobs}.values())
    if len(jobs) > 30:  # simpo/survey at paper scale: 744 jobs each
        jobs = _one_per_method(jobs)
    for job in jobs:
        cfg = _compose([f"experiment={experiment}", f"scale={scale}", *job])
        assert (cfg.preset.name, cfg.preset.scale, cfg.scale.name) == (experiment, scale, scale)
        validate(cfg)
        for ov in job:  # every override of the job landed in the composed config
            key, val = ov.lstrip("+").split("=", 1)
            if "." in key:
                got, want = OmegaConf.select(cfg, key), yaml.safe_load(val)
                # a float field set by an integral grid value (train.epochs=1 -> 1.0) or one YAML reads as a string
                # (loss.args.alpha=1e-05) compares as a number
                assert got == float(want) if isinstance(got, float) else str(got) == str(want), ov
        if scale == "tiny":
            assert cfg.dataset.kind == "world" and cfg.model.kind == "tiny"
        elif scale == "small":  # the real small model, offline, on real pairs (no LLM judge: CPU)
            assert cfg.model.kind == "smollm2" and cfg.dataset.kind == "hf"
        else:
            assert cfg.model.kind == "hub" and cfg.dataset.kind == "hf" and cfg.judge.name not in ("gold", "none")


def test_a_selection_outside_every_grid_is_one_line_before_any_compute(tmp_path):
    r = run_cli(["-m", "experiment=hitchhiker", "loss=kto", f"hydra.sweep.dir={tmp_path / 's'}"], cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "po-bench: config error: no job left: loss=kto matches no grid point"
    assert not list(tmp_path.rglob("run.json"))


def test_tiny_presets_are_small_enough_for_a_cpu():
    """Presets that compare methods run 5 seeds (the method-level claims need them, issue 21); the
    one-seed grids (hitchhiker, noise, simpo: spreads over hyperparameters) say so in their tables; the
    35-loss zoo runs 2 (its pooled variance has 34 degrees of freedom; conf/preset/loss_zoo/tiny.yaml)."""
    sizes = {e: len(_jobs(e, "tiny")) for e in EXPERIMENTS}
    assert sizes == {
        "dpo_frontier": 25,
        "hitchhiker": 27,
        "noise_robustness": 30,
        "simpo_table": 18,
        "survey_table": 50,
        "pugc": 25,
        "more_is_less": 15,
        "beyond_pairs": 100,
        "loss_zoo": 70,
        "diagnostics": 40,
        "online_table": 70,
        "online_curve": 60,
    }
    seeds = {e: {j for job in _jobs(e, "tiny") for j in job if j.startswith("seed=")} for e in EXPERIMENTS}
    five = ("dpo_frontier", "survey_table", "pugc", "more_is_less", "beyond_pairs", "diagnostics", "online_table")
    assert all(len(seeds[e]) == 5 for e in five), seeds
    assert len(seeds["loss_zoo"]) == 2


# --- scale=paper against the papers ------------------------------------------------------------


def _paper_cfgs(experiment, **select):
    cli = [f"{k}={v}" for k, v in select.items()]
    for job in _jobs(experiment, "paper", cli):
        yield job, _compose([f"experiment={experiment}", "scale=paper", *job])


def test_simpo_table_paper_runs_simpo_at_its_published_hyperparameters():
    rows = list(csv.DictReader(open(REF / "simpo_hparams.csv")))
    assert len(rows) == 4
    seen = {}
    for _job, cfg in _paper_cfgs("simpo_table", loss="simpo", judge="alpaca_eval"):
        seen[cfg.model.reference_id] = (cfg.loss.beta, cfg.loss.args.simpo_gamma, cfg.loss.lr)
        assert cfg.loss.args.cpo_alpha == 0 and cfg.loss.args.loss_type == "simpo"
    assert seen == {r["model"]: (float(r["beta"]), float(r["gamma"]), float(r["learning_rate"])) for r in rows}


# SimPO's Table 3 names -> po-bench's config keys (TRL's names)
GRID_KEYS = {
    "slic_hf": {"lambda": "loss.args.lam", "delta": "loss.args.delta"},
    "dpo": {"beta": "loss.beta"},
    "ipo": {"tau": "loss.beta"},
    "cpo": {"alpha": "loss.args.cpo_alpha", "beta": "loss.beta"},
    "kto": {"lambda_w": "loss.args.desirable_weight", "lambda_l": "loss.args.undesirable_weight", "beta": "loss.beta"},
    "orpo": {"lambda": "loss.beta"},
    "r_dpo": {"alpha": "loss.args.alpha", "beta": "loss.beta"},
}


def _as_dict(job):
    return dict(x.lstrip("+").split("=", 1) for x in job)


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_simpo_table_paper_searches_each_baselines_published_grid(setting):
    """The sweep's jobs hold exactly Table 3's grid x the shared learning rates, per setting (read
    from the expanded overrides; one composed job per method shows the keys land where TRL reads them)."""
    grids = yaml.safe_load(open(REF / "baseline_grids.yaml"))
    lrs = [float(x) for x in grids["shared"]["learning_rate"]]
    jobs = _jobs("simpo_table", "paper", ["judge=alpaca_eval", f"+setting={setting}"])
    found: dict[str, set] = {}
    for job in jobs:
        d = _as_dict(job)
        if d["loss"] in GRID_KEYS:
            keys = GRID_KEYS[d["loss"]]
            found.setdefault(d["loss"], set()).add(tuple(float(d[keys[k]]) for k in keys) + (float(d["loss.lr"]),))
    assert set(found) == set(GRID_KEYS)
    for name, keys in GRID_KEYS.items():
        expected = {
            tuple(float(v) for v in combo) + (lr,)
            for combo in itertools.product(*(grids[name][k] for k in keys))
            for lr in lrs
        }
        assert found[name] == expected, name
    for job in _one_per_method(jobs):
        cfg = _compose(["experiment=simpo_table", "scale=paper", *job])
        d = _as_dict(job)
        assert cfg.model.reference_id == SETTINGS[setting]
        assert (cfg.train.epochs, cfg.train.warmup_ratio, cfg.train.lr_scheduler) == (1, 0.1, "cosine")
        # the paper's batch 128 on 8 GPUs under ZeRO-3: the accumulation derives from the world size
        assert (cfg.launch.strategy, cfg.launch.num_processes, cfg.train.global_batch_size) == ("zero3", 8, 128)
        train = plan(cfg).policy["train"] if d["loss"] != "sft" else None
        if train is not None:
            assert train["batch_size"] * train["grad_accum"] * train["world_size"] == 128
        for k in GRID_KEYS.get(d["loss"], {}).values():
            assert float(OmegaConf.select(cfg, k)) == float(d[k])


def test_simpo_table_paper_is_the_whole_table():
    jobs = _jobs("simpo_table", "paper")
    policies = {tuple(x for x in j if not x.startswith("judge")) for j in jobs}
    # one job per policy, which trains it and runs its three judges (judge.also): no job waits on another's lock
    assert len(policies) == 744 and len(jobs) == 744
    assert all({"judge=alpaca_eval", "judge.also=[arena_hard,mt_bench]"} <= set(j) for j in jobs)
    cfg = _compose(["experiment=simpo_table", "scale=paper", *jobs[0]])
    assert [j.name for j in judge_configs(cfg)] == ["alpaca_eval", "arena_hard", "mt_bench"]
    methods = {x for j in jobs for x in j if x.startswith("loss=")}
    assert methods == {
        f"loss={m}" for m in ("sft", "rrhf", "slic_hf", "dpo", "ipo", "cpo", "kto", "orpo", "r_dpo", "simpo")
    }
    ref_methods = {r["method"] for r in csv.DictReader(open(REF / "simpo_table4.csv"))}
    labels = {_compose([m]).loss.label for m in methods}
    assert labels == ref_methods


def test_survey_table_paper_scores_the_same_policies_on_the_open_llm_leaderboard():
    simpo = {tuple(x for x in j if not x.startswith("judge")) for j in _jobs("simpo_table", "paper")}
    survey = _jobs("survey_table", "paper")
    assert {tuple(x for x in j if not x.startswith("judge")) for j in survey} == simpo
    assert {x for j in survey for x in j if x.startswith("judge=")} == {"judge=openllm_v2"}
    ref = list(csv.DictReader(open(REF / "survey_openllm_v2.csv")))
    assert {r["model"] for r in ref} == set(SETTINGS.values())


# --- a tiny preset end to end through the grid sweeper -----------------------------------------


@pytest.mark.slow
def test_simpo_table_tiny_sweep_selects_best_grid_point_and_prints_the_paper(tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli(
        [
            "-m",
            "experiment=simpo_table",
            "loss=dpo,simpo",
            *SMALL,
            "train.max_steps=3",
            f"hydra.sweep.dir={sweep}",
            f"cache_dir={tmp_path / 'cache'}",
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(p.read_text()) for p in sweep.rglob("run.json")]
    assert len(recs) == 4 and all(x["status"] == "done" for x in recs)
    assert sorted(
        (x["config"]["loss"]["name"], x["config"]["loss"]["beta"], x["config"]["loss"]["args"].get("simpo_gamma"))
        for x in recs
    ) == [("dpo", 0.05, None), ("dpo", 0.1, None), ("simpo", 2.0, 0.5), ("simpo", 2.0, 1.0)]
    from po_bench.results.writers import write_tables

    paths = write_tables(sweep, tmp_path, "simpo", wall_seconds=12.0)
    md = paths["md"].read_text()
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [row["method"] for row in rows] == ["DPO", "SimPO"] and {row["grid_points"] for row in rows} == {"2"}
    for row in rows:  # the kept grid point is the better one by win rate
        cands = [x["metrics"]["win_rate_vs_sft"] for x in recs if x["config"]["loss"]["label"] == row["method"]]
        assert float(row["win_rate_vs_sft_mean"]) == pytest.approx(max(cands))
    assert float(next(r for r in rows if r["method"] == "SimPO")["paper llama-3-8b-instruct alpacaeval2_lc"]) == 44.7
    assert float(next(r for r in rows if r["method"] == "DPO")["paper mistral-7b-base alpacaeval2_wr"]) == 12.5
    assert "SimPO Table 4" in md and "scale=tiny" in md and "arXiv:2405.14734" in md
    assert "Hardware:" in md and "Versions:" in md and "sweep wall time 12 s" in md

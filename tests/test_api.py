"""CONTRIBUTING.md's "A judge" recipe, carried out: a judge defined outside ``po_bench/``
(``tests/plugins/toy_judge.py``, registered with ``@register_judge``) and its yaml
(``tests/plugins/conf/judge/toy.yaml``) run through the real pipeline without a file under ``po_bench/``
naming it.  The plug-in is found the way a user's package is: an entry point of the group
``po_bench.judges`` (the test writes the entry point's metadata into a folder on the run's
PYTHONPATH, as ``pip install`` of a plug-in package would), and its yaml through Hydra's search path.
"""

from __future__ import annotations

import json

import pytest

from po_bench.judges import api

from . import helpers
from .conftest import ROOT, SMALL, run_cli

PLUGINS = ROOT / "tests" / "plugins"
SEARCH_PATH = f"hydra.searchpath=[file://{PLUGINS / 'conf'}]"


@pytest.fixture
def plugin_env(tmp_path) -> dict:
    """The toy judge's entry point, installed as a distribution's metadata in a folder on PYTHONPATH."""
    return helpers.plugin_env(tmp_path, api.ENTRY_POINT_GROUP, {"toy": "tests.plugins.toy_judge"})


def test_no_file_under_po_bench_names_the_toy_judge():
    hits = [p for p in (ROOT / "po_bench").rglob("*") if p.is_file() and "toy_judge" in p.read_text(errors="ignore")]
    assert hits == []
    assert "toy" not in api.REGISTRY or api.REGISTRY["toy"].__module__ == "tests.plugins.toy_judge"


def test_the_toy_judge_validates_its_own_fields_before_compute(plugin_env, tmp_path):
    r = run_cli(
        [
            "judge=toy",
            "judge.length_unit=bytes",
            SEARCH_PATH,
            f"cache_dir={tmp_path}/c",
            f"hydra.run.dir={tmp_path}/run",
        ],
        ROOT,
        env_extra=plugin_env,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("po-bench: config error: judge.length_unit='bytes': allowed words, chars"), last
    assert not (tmp_path / "c").exists()


def test_without_its_entry_point_the_toy_judge_is_unknown(tmp_path):
    r = run_cli(["judge=toy", SEARCH_PATH, f"cache_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/run"], ROOT)
    assert r.returncode == 2, r.stderr[-3000:]
    last = [ln for ln in r.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("po-bench: config error: ") and "length_unit" in last, last  # not a field of any judge


@pytest.mark.slow
def test_a_judge_from_outside_runs_through_the_pipeline_into_the_table(plugin_env, tmp_path):
    runs = tmp_path / "runs"
    r = run_cli(
        [
            *SMALL,
            "dataset.n_eval=32",  # samples.jsonl keeps every eval prompt's samples (it is cut at 32)
            "judge=toy",
            "judge.length_unit=chars",
            SEARCH_PATH,
            f"cache_dir={tmp_path}/cache",
            f"hydra.run.dir={runs}/toy",
        ],
        ROOT,
        env_extra=plugin_env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((runs / "toy" / "run.json").read_text())
    assert rec["status"] == "done" and rec["config"]["judge"]["name"] == "toy"
    m = rec["metrics"]
    # the toy's metrics under its prefix, beside the world's own (gold reward, implicit judges)
    assert m["toy_unit"] == "chars" and m["toy_n_items"] == 32
    assert m["gold_reward"] is not None and "kl_to_ref" in m
    assert "judged" not in m and "judge_client" not in m  # it asks no endpoint: no request counts
    # its score is the toy's rule over the samples the run wrote
    rows = [json.loads(line) for line in (runs / "toy" / "samples.jsonl").read_text().splitlines()]
    wins = [100.0 * (len(x["policy"]) > len(x["sft"])) + 50.0 * (len(x["policy"]) == len(x["sft"])) for x in rows]
    assert len(rows) == 32 and m["toy_score"] == pytest.approx(sum(wins) / 32)
    assert m["toy_mean_length"] == pytest.approx(sum(len(x["policy"]) for x in rows) / 32)

    import tests.plugins.toy_judge  # noqa: F401  (this process registers it too: the table knows its prefix)
    from po_bench.results.writers import write_tables

    paths = write_tables(runs, name="results")
    header = paths["csv"].read_text().splitlines()[0].split(",")
    assert any(c.startswith("toy_score") for c in header), header
    assert "toy_score" in paths["md"].read_text()


def test_the_registry_lists_the_built_in_judges_in_order():
    assert api.judge_names()[:7] == [
        "gold",
        "none",
        "reward_model",
        "alpaca_eval",
        "mt_bench",
        "arena_hard",
        "openllm_v2",
    ]
    assert api.runner_judge_names()[:5] == ["reward_model", "alpaca_eval", "mt_bench", "arena_hard", "openllm_v2"]
    assert set(api.metric_prefixes()) >= {"alpaca_eval_", "mt_bench_", "arena_hard_", "rm_", "openllm_"}


def test_register_judge_refuses_what_is_not_a_judge_and_a_second_owner():
    api.load_judges()
    with pytest.raises(TypeError, match="not a subclass"):
        api.register_judge("not_a_judge")(object)

    class Other(api.Judge):
        def judge(self, policy):
            return api.JudgeResult({})

    with pytest.raises(ValueError, match="both register it"):
        api.register_judge("gold")(Other)
    assert api.judge_class("gold").__module__ == "po_bench.judges.gold"

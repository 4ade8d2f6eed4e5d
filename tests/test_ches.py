"""CHES as a stage (issue 25): the ``ches`` artifact (po_bench/generation/hidden.py's scores of the training
pairs at the start checkpoint), ``dataset.filter`` (train on the lowest-CHES share of the pairs: the filtered
pairs are a pairs artifact of their own, keyed into everything trained on them; with kind none every key is
today's), and ``metrics.diagnostics.ches`` (summary statistics, the filter's counts, the rank correlation of
CHES with each probe pair's change of log pi(y+)).  Keys field by field: tests/test_specs.py."""

from __future__ import annotations

import json
import math

import pytest

from po_bench.config import ConfigError, validate
from po_bench.results.ches import VARIANTS, probe_correlation, rank_correlation, run_ches_report
from po_bench.specs import plan

from .conftest import ROOT, SHARED, SMALL, compose, run_cli

# ---- the rank correlation, on numbers worked by hand -------------------------------------------------------


def test_rank_correlation_by_hand():
    # perfectly reversed ranks: rho = -1 (higher CHES, lower delta_chosen: the paper's direction)
    r = rank_correlation([0.1, 2.0, 3.5, 9.0, 10.0], [5.0, 4.0, -1.0, -2.0, -30.0])
    assert r["n"] == 5 and r["spearman"] == pytest.approx(-1.0) and r["p_value"] == pytest.approx(0.0, abs=1e-9)
    # ties take the average rank: ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4) -> Pearson of the ranks = 4.5 / sqrt(4.5 * 5)
    # = sqrt(0.9); t^2 = r^2 (n - 2) / (1 - r^2) = 18 on 2 degrees of freedom: p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(0.9)
    r = rank_correlation([1.0, 2.0, 2.0, 3.0], [10.0, 30.0, 20.0, 40.0])
    assert r["spearman"] == pytest.approx(math.sqrt(0.9)) and r["p_value"] == pytest.approx(1 - math.sqrt(0.9))
    assert r["n"] == 4


def test_rank_correlation_says_why_it_has_no_value():
    assert rank_correlation([1.0, 2.0], [2.0, 1.0]) == {
        "n": 2,
        "spearman": None,
        "p_value": None,
        "why": "fewer than 3 pairs",
    }
    assert rank_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["why"] == "a constant side"
    with pytest.raises(ValueError, match="3 scores for 2 changes"):
        rank_correlation([1.0, 2.0, 3.0], [1.0, 2.0])


CHES = {"ches": [5.0, 10.0, 2.0, 0.0, 9.0, 3.0], "ches_ln": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]}


def test_probe_pairs_are_mapped_through_the_filters_kept_indices():
    """probe.indices index the pairs the policy trained on; under the filter those are the kept ones, whose
    CHES sit at ``kept`` among the scored pairs."""
    kept = [0, 2, 3, 5]  # the trained pairs 0..3 are the scored pairs 0, 2, 3, 5
    # probe pairs: trained 3, 0, 1 -> scored 5, 0, 2: ches 3, 5, 2; ches_ln 0.0, 0.5, 0.3
    tm = {"probe": {"indices": [3, 0, 1], "per_pair": {"delta_chosen": [-2.0, -9.0, 1.0]}}}
    got = probe_correlation(CHES, kept, tm)
    # ches (3, 5, 2) vs delta (-2, -9, 1): ranks (2, 3, 1) vs (2, 1, 3) -> rho = -1
    assert got["ches"]["spearman"] == pytest.approx(-1.0) and got["ches"]["n"] == 3
    # ches_ln (0, 0.5, 0.3) vs delta: ranks (1, 3, 2) vs (2, 1, 3) -> 1 - 6 * (1 + 4 + 1) / (3 * 8) = -0.5
    assert got["ches_ln"]["spearman"] == pytest.approx(-0.5)
    # without a filter the indices are the scored pairs' own: 3, 0, 1 -> ches 0, 5, 10, ranks (1, 2, 3): rho = 0.5
    assert probe_correlation(CHES, None, tm)["ches"]["spearman"] == pytest.approx(0.5)
    # run.json carries the probe pairs' scores beside their changes (the scatter), through the kept indices
    art = {"train": [], "ches_kept": kept, "stats": {"ches_filter": {"kept": 4}}}
    rep = run_ches_report(CHES, art, tm)
    assert rep["probe_pairs"] == {
        "indices": [5, 0, 2],
        "ches": [3.0, 5.0, 2.0],
        "ches_ln": [0.0, 0.5, 0.3],
        "delta_chosen": [-2.0, -9.0, 1.0],
    }
    assert rep["correlation"] == got and rep["filter"] == {"kept": 4}


def test_a_missing_probe_is_reported_absent_with_its_reason():
    assert "no probe" in probe_correlation(CHES, None, {"train_loss_final": 0.7})["absent"]
    assert "no indices" in probe_correlation(CHES, None, {"probe": {"history": []}})["absent"]
    assert "no preference training" in probe_correlation(CHES, None, None)["absent"]
    rep = run_ches_report(CHES, {"train": [], "stats": {}}, {"train_loss_final": 0.7})
    assert rep["n_pairs"] == 6 and rep["filter"] is None and set(rep["correlation"]) == {"absent"}
    assert "probe_pairs" not in rep
    assert rep["ches"]["max"] == 10.0 and rep["ches_ln"]["min"] == 0.0 and set(VARIANTS) <= set(rep)
    assert "absent" in run_ches_report(None, None, None)


# ---- the config: checked before any compute ----------------------------------------------------------------

REFUSED = {
    "dataset.filter.kind=bogus": "dataset.filter.kind='bogus': allowed none, ches, ches_ln",
    "dataset.filter.keep=0": "dataset.filter.keep=0.0: the share of the training pairs kept, allowed (0, 1]",
    "dataset.filter.keep=1.5": "dataset.filter.keep=1.5: the share of the training pairs kept, allowed (0, 1]",
}
REFUSED_ON = {  # with dataset.filter.kind=ches_ln
    "loss=kto": "loss=kto trains on unpaired rows (loss.paired=false)",
    "loss=sft": "this run trains on none (loss=sft, stages.train=True)",
    "stages.train=false": "this run trains on none (loss=dpo, stages.train=False)",
    "dataset.pair_strategy=list": "dataset.pair_strategy=list builds rated lists, not pairs",
}


@pytest.mark.parametrize("override", sorted(REFUSED))
def test_filter_values_are_checked(override):
    with pytest.raises(ConfigError) as e:
        validate(compose([override]))
    assert str(e.value) == REFUSED[override]


@pytest.mark.parametrize("override", sorted(REFUSED_ON))
def test_a_filter_needs_a_run_that_trains_on_pairs(override):
    extra = ["loss=lipo", "dataset.k_samples=4"] if "list" in override else []
    with pytest.raises(ConfigError) as e:
        validate(compose([*extra, override, "dataset.filter.kind=ches_ln"]))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("dataset.filter.kind=ches_ln keeps the training pairs with the lowest")
    assert REFUSED_ON[override] in msg


def test_an_unpaired_file_cannot_be_filtered(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"prompt": "q", "completion": "a", "label": True}) + "\n")
    over = [
        "model=smollm2_135m",
        "dataset=file",
        f"dataset.path={f}",
        "dataset.format=unpaired",
        "loss=kto",
        "judge=none",
    ]
    with pytest.raises(ConfigError, match="dataset.format=unpaired has no pairs; set dataset.filter.kind=none"):
        validate(compose([*over, "dataset.filter.kind=ches"]))
    validate(compose([*over, "diagnostics.ches=true"]))  # the diagnostic is reported absent instead
    assert plan(compose([*over, "diagnostics.ches=true"])).ches is None


# ---- keys ----------------------------------------------------------------------------------------------------


def _changed(a: dict, b: dict) -> list[str]:
    return sorted(r for r in set(a) | set(b) if a.get(r) != b.get(r))


def test_filter_keys():
    base = plan(compose()).keys()
    on = plan(compose(["dataset.filter.kind=ches_ln"])).keys()
    assert _changed(base, on) == ["ches", "generations", "pairs", "policy", "ref_logps"]
    # the share kept re-keys what is trained on the kept pairs, not the scores they are kept by
    half = plan(compose(["dataset.filter.kind=ches_ln", "dataset.filter.keep=0.5"])).keys()
    assert _changed(on, half) == ["generations", "pairs", "policy", "ref_logps"]
    raw = plan(compose(["dataset.filter.kind=ches", "dataset.filter.keep=0.5"])).keys()
    assert _changed(half, raw) == ["generations", "pairs", "policy", "ref_logps"]
    # keep 1.0 keeps every pair: no filter, no CHES, today's keys
    assert plan(compose(["dataset.filter.kind=ches_ln", "dataset.filter.keep=1.0"])).keys() == base
    # the diagnostic scores the same pairs with the same model: the filter's CHES artifact, nothing else
    diag = plan(compose(["diagnostics.ches=true"])).keys()
    assert _changed(base, diag) == ["ches"] and diag["ches"] == on["ches"]
    assert plan(compose(["diagnostics.ches=true", "dataset.filter.kind=ches_ln"])).keys() == on
    # no preference stage: nothing to score
    assert plan(compose(["loss=sft", "diagnostics.ches=true"])).ches is None


def test_real_data_filter_keeps_the_eval_prompts_key(tmp_path):
    """Real data's eval prompts are the unfiltered pairs artifact's held-out pairs: the filter re-keys what is
    trained, not the SFT samples of the eval prompts."""
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "good", "rejected": "bad"}) + "\n" for i in range(8)))
    over = ["model=smollm2_135m", "dataset=file", f"dataset.path={f}", "dataset.eval_split=null", "judge=none"]
    base, on = plan(compose(over)), plan(compose([*over, "dataset.filter.kind=ches_ln", "dataset.filter.keep=0.5"]))
    assert _changed(base.keys(), on.keys()) == ["ches", "generations", "pairs", "policy", "ref_logps"]
    assert on.ches["pairs"] == base.pairs and on.ches["start"] == {"base": on.ches["model"]}
    assert on.pairs["filter"] == {"kind": "ches_ln", "keep": 0.5, "ches": on.ches}
    assert on.eval_prompts == base.eval_prompts


# ---- a real run on the tiny world ----------------------------------------------------------------------------

RUN = [
    *SMALL,
    "dataset.n_sft=200",
    "train.sft_epochs=1",
    "dataset.n_pref=32",
    "train.max_steps=2",
    "train.batch_size=8",
    "stages.generate=false",
    "diagnostics.ches=true",
    "dataset.filter.kind=ches_ln",
    "dataset.filter.keep=0.5",
]


@pytest.mark.slow
def test_a_filtered_run_trains_on_exactly_the_lowest_ches_pairs(tmp_path, tokenizer):
    """One DPO run with diagnostics.ches and the filter at 0.5: the ches artifact equals hidden.py's scores of
    the unfiltered pairs under the SFT checkpoint; the pairs trained on are exactly the half with the lowest
    length-normalised CHES, in their order; run.json reports the scores, the counts and the correlation."""
    from po_bench.generation.hidden import ches_scores
    from po_bench.stages import load_model
    from po_bench.store import Store

    cache = tmp_path / "cache"
    r = run_cli([*RUN, f"cache_dir={cache}", f"hydra.run.dir={tmp_path}/run"], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "done", rec.get("error")

    p = plan(compose([*RUN, f"cache_dir={cache}"]))
    store = Store(str(cache))
    unfiltered = store.load_json("pairs", p.ches["pairs"])["train"]
    trained = store.load_json("pairs", p.pairs)["train"]
    ches = store.load_json("ches", p.ches)
    assert ches is not None and len(ches["ches"]) == len(unfiltered) > 8

    # the stage's values are hidden.py's on the same pairs and checkpoint
    model = load_model(str(store.path("sft", p.sft)), p.sft["model"])
    direct = ches_scores(model, tokenizer, unfiltered, max_length=p.ches["max_length"])
    for v in ("ches", "ches_ln", "chosen_tokens", "rejected_tokens"):
        assert ches[v] == pytest.approx(direct[v], rel=1e-9, abs=1e-9), v

    # the kept pairs: round(0.5 n) of them, every one scoring below every dropped one (no ties here), in order
    n = len(unfiltered)
    ln = ches["ches_ln"]
    assert len(set(ln)) == n
    lowest = sorted(sorted(range(n), key=lambda i: ln[i])[: round(0.5 * n)])
    assert trained == [unfiltered[i] for i in lowest]
    assert max(ln[i] for i in lowest) < min(ln[i] for i in set(range(n)) - set(lowest))

    m = rec["metrics"]
    counts = {"kind": "ches_ln", "keep": 0.5, "n_before": n, "kept": len(lowest), "dropped": n - len(lowest)}
    assert {k: m["data"]["ches_filter"][k] for k in counts} == counts
    d = m["diagnostics"]["ches"]
    assert d["n_pairs"] == n and d["filter"] == m["data"]["ches_filter"]
    assert d["ches_ln"]["max"] == pytest.approx(max(ln)) and d["ches"]["mean"] == pytest.approx(sum(ches["ches"]) / n)
    corr = d["correlation"]
    probe = json.loads((store.path("policy", p.policy) / "train_metrics.json").read_text()).get("probe")
    if probe is None:  # a policy stage that does not probe (diagnostics.probe not wired to training)
        assert "holds no probe" in corr["absent"]
    else:  # the probe pairs index the trained (kept) pairs: their CHES are those of the kept indices
        from scipy.stats import spearmanr

        rows = [lowest[i] for i in probe["indices"]]
        assert d["probe_pairs"]["indices"] == rows and d["probe_pairs"]["ches_ln"] == [ln[j] for j in rows]
        assert [trained[i]["chosen"] for i in probe["indices"]] == [unfiltered[j]["chosen"] for j in rows]
        for v in VARIANTS:
            want = spearmanr([ches[v][j] for j in rows], probe["per_pair"]["delta_chosen"]).statistic
            assert corr[v]["n"] == len(rows) == min(32, len(trained))
            assert corr[v]["spearman"] == pytest.approx(want), v
    assert m["seconds"]["ches"] > 0


@pytest.mark.slow
def test_real_pairs_are_scored_and_filtered(tiny_chat_model, tmp_path):
    """HH-RLHF's conversational pairs (chat-template prompts) through the same stage and filter: the kept pairs
    are the lowest-CHES_ln half of the training pairs, the held-out eval pairs untouched."""
    from po_bench.store import Store

    hh = SHARED / "data" / "hh_rlhf" / "harmless-base_test.jsonl.gz"
    if not hh.exists():
        pytest.skip(f"{hh} is absent (../shared/data is provided to developers and CI only)")
    args = [
        *("model.kind=hub", f"model.name_or_path={tiny_chat_model}", "model.name=tiny-chat", "dataset=hh_rlhf"),
        *(f"dataset.path={hh}", "dataset.eval_split=null", "dataset.max_rows=40", "dataset.n_eval=8", "judge=none"),
        *("train.max_steps=1", "train.batch_size=4", "train.max_length=192", "stages.generate=false"),
        *("train.progress=false", "tracking=none", "threads=1", "diagnostics.ches=true"),
        *("dataset.filter.kind=ches_ln", "dataset.filter.keep=0.5", f"cache_dir={tmp_path}/cache"),
    ]
    r = run_cli([*args, f"hydra.run.dir={tmp_path}/run"], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]
    p = plan(compose(args))
    store = Store(f"{tmp_path}/cache")
    unfiltered, filtered = store.load_json("pairs", p.ches["pairs"]), store.load_json("pairs", p.pairs)
    ln = store.load_json("ches", p.ches)["ches_ln"]
    n = len(unfiltered["train"])
    assert len(ln) == n >= 20 and isinstance(unfiltered["train"][0]["prompt"], list)  # chat prompts
    lowest = sorted(sorted(range(n), key=lambda i: (ln[i], i))[: round(0.5 * n)])
    assert filtered["train"] == [unfiltered["train"][i] for i in lowest] and filtered["eval"] == unfiltered["eval"]
    assert m["data"]["ches_filter"]["kept"] == len(lowest) == m["data"]["tokens"]["n_pairs"]  # reported on the kept
    assert m["diagnostics"]["ches"]["n_pairs"] == n
    # the probe ran on the chat prompts (message lists) too, and the correlation read its numbers
    assert m["diagnostics"]["probe"]["history"] and "absent" not in m["diagnostics"]["ches"]["correlation"]["ches_ln"]

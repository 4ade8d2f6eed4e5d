"""The methods beyond one pair per prompt, each run once through the real CLI (experiment=beyond_pairs, seed 0,
one multirun sharing one store, plus More-is-Less's strong_chosen pairs), and what each needs from the
pipeline's glue: the stage it adds (MADPO's reward model, Sem-DPO's semantic distances, TGDPO's guide policy,
InfiFPO's source models, the stronger SFT model of multi-model pairs), the data it trains on (step pairs, PUGC
pairs, rated lists with step spans, the unpaired view) and that training saw that shape (optimizer steps per
row, the trainers' own logged statistics).  Plus the style-word rate of run.json on a case checked by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from po_bench.store import fingerprint

from .conftest import ROOT, SMALL, read_runs, run_cli

BATCH = 16  # SMALL's train.batch_size: the global batch of every run here (launch=local)
# SMALL, smaller still: 64 pref prompts, 32 eval prompts (samples.jsonl then holds every eval answer), one thread
TINY = [*SMALL, "dataset.n_pref=64", "dataset.n_eval=32", "dataset.n_ood=16", "threads=1"]
# every loss of the beyond_pairs preset's grids but the SFT-side and plain ones tested elsewhere; loss=dpo also
# selects the preset's PUGC and multi-model grids (and the plain DPO policy is TGDPO's guide)
LOSSES = "dpo,step_dpo,tgdpo,infifpo,madpo,sem_dpo,bco,lipo,irpo,adpo_list,tpo"


@pytest.fixture(scope="module")
def beyond(tmp_path_factory):
    d = tmp_path_factory.mktemp("beyond")
    cache = f"cache_dir={d}/cache"
    sweep = run_cli(
        ["-m", "experiment=beyond_pairs", "seed=0", f"loss={LOSSES}", *TINY, cache, f"hydra.sweep.dir={d}/sweep"],
        ROOT,
        timeout=1500,
    )
    one = run_cli(["loss=dpo", "dataset.pair_models=strong_chosen", *TINY, cache, f"hydra.run.dir={d}/strong"], ROOT)
    # a failed job is a failed run.json (test_every_method_runs_done_and_trains); the other runs are still checked
    return NS(runs=read_runs(d), store=d / "cache" / "v2", cli=[sweep, one])


def run_of(beyond, loss: str, **dataset) -> dict:
    """The one run of ``loss`` whose dataset config has these values (the defaults: annotator pairs of the
    policy's own samples)."""
    want = {"pair_source": "annotator", "pair_models": "single", **dataset}
    found = [
        x
        for x in beyond.runs
        if x["config"]["loss"]["name"] == loss and all(x["config"]["dataset"][k] == v for k, v in want.items())
    ]
    assert len(found) == 1, [(x["config"]["loss"]["name"], x["_dir"].name) for x in found]
    assert found[0]["status"] == "done", found[0].get("error")
    return found[0]


def keys(run: dict, kind: str) -> list[str]:
    """The store keys of one kind this run read or built (run.json's metrics.artifacts)."""
    art = run["metrics"]["artifacts"]
    return sorted({k for k in art["hits"] + art["built"] if k.split("/")[0] == kind})


def artifact(beyond, key: str) -> Path:
    d = beyond.store / key
    assert (d / "manifest.json").is_file(), key
    return d


def fields(beyond, key: str) -> dict:
    return json.loads((artifact(beyond, key) / "fields.json").read_text())


def data(beyond, key: str):
    return json.loads((artifact(beyond, key) / "data.json").read_text())


def pairs_of(beyond, run: dict) -> list[dict]:
    (key,) = keys(run, "pairs")
    return data(beyond, key)["train"]


def policy_key(run: dict) -> str:
    """The run's own policy: the one its generations were sampled from (TGDPO also reads its guide policy)."""
    own = [k for k in keys(run, "policy") if k in run["metrics"]["artifacts"]["built"]]
    assert len(own) == 1, run["metrics"]["artifacts"]
    return own[0]


def logged(run: dict, name: str) -> list[float]:
    values = [h[name] for h in run["history"] if name in h]
    assert values, f"{name} was never logged"
    return values


@pytest.mark.slow
def test_every_method_runs_done_and_trains(beyond):
    names = sorted(
        (x["config"]["loss"]["name"], x["config"]["dataset"]["pair_source"], x["config"]["dataset"]["pair_models"])
        for x in beyond.runs
    )
    assert [n for n, _, _ in names] == sorted(
        ["dpo"] * 4
        + ["step_dpo", "tgdpo", "infifpo", "madpo", "sem_dpo", "bco", "lipo", "irpo", "adpo_list"]
        + ["tpo"] * 2
    )
    assert {(s, m) for n, s, m in names if n == "dpo"} == {
        ("annotator", "single"),
        ("pugc", "single"),
        ("annotator", "multi"),
        ("annotator", "strong_chosen"),
    }
    for x in beyond.runs:
        m = x["metrics"]
        assert x["status"] == "done", (x["_dir"].name, x.get("error"))
        assert m["train"]["global_batch"] == BATCH and m["train"]["steps"] >= 2, m["train"]
        assert m["kl_to_ref"] != 0.0 and m["gold_reward"] is not None, x["_dir"].name  # moved off the SFT model
    assert [r.returncode for r in beyond.cli] == [0, 0], [r.stderr[-2000:] for r in beyond.cli]


@pytest.mark.slow
def test_step_dpo_trains_on_one_step_completions_after_a_shared_prefix(beyond):
    from po_bench.data import world

    run, dpo = run_of(beyond, "step_dpo", steps=True), run_of(beyond, "dpo")
    pairs, d = pairs_of(beyond, run), run["metrics"]["data"]
    assert pairs and d["n_pairs"] == len(pairs) and d["step_candidates"] == 4 and d["steps_per_response"] > 1
    for p in pairs:  # prompt = the source prompt + the correct prefix (p["step"] steps); chosen, rejected: one step
        assert p["prompt"].startswith(p["source_prompt"])
        assert len(p["prompt"].split()) >= len(p["source_prompt"].split()) + p["step"]
        for side in ("chosen", "rejected"):
            assert world.split_steps(p[side]) == [p[side].strip()], p
        assert p["chosen"] != p["rejected"]
    # the reference scored the steps as continuations (no <eos>), keyed so
    (ref,) = keys(run, "ref_logps")
    assert fields(beyond, ref)["completion_eos"] is False
    # trained on them: one optimizer step per batch of step pairs, log-probs of single steps (a whole response
    # under plain DPO is several steps long)
    assert run["metrics"]["train"]["steps"] == math.ceil(len(pairs) / BATCH)
    step_lp = -sum(logged(run, "logps/chosen")) / len(logged(run, "logps/chosen"))
    full_lp = -sum(logged(dpo, "logps/chosen")) / len(logged(dpo, "logps/chosen"))
    assert 0 < step_lp < full_lp / 2, (step_lp, full_lp)


@pytest.mark.slow
def test_tgdpo_is_guided_by_the_dpo_policy_on_the_same_pairs(beyond):
    run, dpo = run_of(beyond, "tgdpo"), run_of(beyond, "dpo")
    assert keys(run, "pairs") == keys(dpo, "pairs")
    spec = fields(beyond, policy_key(run))
    guide = f"policy/{fingerprint(spec['guide']['spec'])}"
    assert guide == policy_key(dpo) and guide in keys(run, "policy")  # the plain DPO run's policy, read first
    # its token rewards reached the loss: the guide's margin is logged and not zero (the reference's would be)
    assert any(abs(v) > 1e-6 for v in logged(run, "tgdpo/guide_margin"))


@pytest.mark.slow
def test_infifpo_fuses_sft_models_of_its_source_seeds(beyond):
    run = run_of(beyond, "infifpo")
    spec = fields(beyond, policy_key(run))
    seeds = sorted(s["spec"]["seed"] for s in spec["sources"])
    assert seeds == sorted(s["seed"] for s in run["config"]["loss"]["args"]["sources"]) == [101, 102, 103]
    for s in spec["sources"]:  # each an SFT model of its own seed, trained and read by this run
        key = f"sft/{fingerprint(s['spec'])}"
        assert key in keys(run, "sft") and (artifact(beyond, key) / "model.safetensors").is_file()
    assert run["metrics"]["train"]["steps"] == math.ceil(len(pairs_of(beyond, run)) / BATCH)


@pytest.mark.slow
def test_madpo_trains_a_reward_model_and_weights_pairs_by_its_margins(beyond):
    from po_bench.training.losses import pair_weights

    run = run_of(beyond, "madpo")
    pairs = pairs_of(beyond, run)
    (rm,) = keys(run, "reward_model")  # the reward-model stage: a model and its margin on every training pair
    margins = json.loads((artifact(beyond, rm) / "margins.json").read_text())["margins"]
    facts = json.loads((artifact(beyond, rm) / "train_metrics.json").read_text())
    assert len(margins) == len(pairs) and (artifact(beyond, rm) / "model.safetensors").is_file()
    assert fields(beyond, rm)["pairs"] == fields(beyond, keys(run, "pairs")[0])
    positive = sum(m > 0 for m in margins) / len(margins)
    assert facts["train_accuracy"] == pytest.approx(positive) and positive > 0.5  # it learned the labels
    w = run["metrics"]["pair_weights"]  # what the policy's loss got: the margins, as weights
    assert w["kind"] == "reward_margin" and w["score"]["n"] == len(pairs)
    assert w["score"]["mean"] == pytest.approx(sum(margins) / len(margins)) and w["score_positive"] == positive
    expect = pair_weights("madpo", run["config"]["loss"]["args"], margins)
    assert w["weight"]["mean"] == pytest.approx(float(expect.mean()))
    assert logged(run, "madpo/weight_mean") and run["metrics"]["train"]["steps"] == math.ceil(len(pairs) / BATCH)


@pytest.mark.slow
def test_sem_dpo_weights_pairs_by_stored_semantic_distances(beyond):
    from po_bench.training.pair_scores import semantic_distances

    run = run_of(beyond, "sem_dpo")
    pairs = pairs_of(beyond, run)
    (sd,) = keys(run, "semantic_distance")
    stored = data(beyond, sd)
    embedder = run["config"]["loss"]["pair_scores"]["embedder"]
    assert stored["embedder"] == embedder and len(stored["distance"]) == len(pairs)
    # in the pairs' order: recomputed for the first pairs from the embedder itself
    assert semantic_distances(pairs[:3], embedder) == pytest.approx(stored["distance"][:3], abs=1e-4)
    w = run["metrics"]["pair_weights"]
    alpha = run["config"]["loss"]["args"]["alpha"]
    assert w["kind"] == "semantic_distance" and w["score"]["n"] == len(pairs)
    assert w["weight"]["mean"] == pytest.approx(sum(math.exp(-alpha * x) for x in stored["distance"]) / len(pairs))
    assert logged(run, "sem_dpo/weight_mean")


@pytest.mark.slow
def test_bco_trains_on_the_unpaired_view(beyond):
    run = run_of(beyond, "bco")
    pairs = pairs_of(beyond, run)
    assert keys(run, "ref_logps") == []  # its reference is scored each step, not precomputed per pair
    # each pair is two rows (chosen desirable, rejected undesirable): twice the steps of the pairs
    assert run["metrics"]["train"]["steps"] == math.ceil(2 * len(pairs) / BATCH)
    assert logged(run, "bco/delta")


@pytest.mark.slow
def test_pugc_pairs_are_rated_against_user_generated_content(beyond):
    run = run_of(beyond, "dpo", pair_source="pugc")
    d, pairs = run["metrics"]["data"], pairs_of(beyond, run)
    assert (d["pair_source"], d["k_samples"], d["pair_strategy"]) == ("pugc", 4, "best_worst")
    assert d["n_pairs"] == len(pairs) and len({p["row"] for p in pairs}) == len(pairs)  # best vs worst: one a prompt
    assert all("reference_margin" in p for p in pairs) and 0.0 <= d["chosen_reference_closer"] <= 1.0
    assert d["ugc_examples"] and 0 < d["ugc_keyword_recall"] < 1  # noisy UGC (ugc_noise 0.3)
    assert run["metrics"]["train"]["steps"] == math.ceil(len(pairs) / BATCH)


@pytest.mark.parametrize("models", ["multi", "strong_chosen"])
@pytest.mark.slow
def test_multi_model_pairs_mix_in_a_stronger_sft_model(beyond, models):
    run, own = run_of(beyond, "dpo", pair_models=models), run_of(beyond, "dpo")
    sfts = keys(run, "sft")
    assert len(sfts) == 2 and keys(own, "sft")[0] in sfts  # the policy's own SFT model and the strong one
    (strong,) = [k for k in sfts if k not in keys(own, "sft")]
    assert fields(beyond, strong)["data"]["demonstrator"] == "strong"
    d, pairs = run["metrics"]["data"], pairs_of(beyond, run)
    assert d["pair_models"] == models and d["n_pairs"] == len(pairs)
    assert d["style_rate_strong"] > d["style_rate_own"] + 0.2  # the strong model's samples: its opening word
    # the pairs are built from the first pref-prompt sample of each model (seed + 3000, the samples the run read)
    pref = {
        fingerprint(f["model"]["spec"]): data(beyond, k)
        for k in keys(run, "samples")
        for f in [fields(beyond, k)]
        if f["seed"] == run["config"]["seed"] + 3000
    }
    strong_y, own_y = pref[strong.split("/")[1]], pref[keys(own, "sft")[0].split("/")[1]]
    for p in pairs:
        ys = (strong_y[p["row"]][0], own_y[p["row"]][0])
        assert (
            (p["chosen"], p["rejected"]) == ys if models == "strong_chosen" else {p["chosen"], p["rejected"]} == set(ys)
        )
    if models == "strong_chosen":  # the strong model's answer chosen over the policy's own, always
        assert d["chosen_from_strong"] == 1.0 and d["feature_separability"]["style_word"] > 0.5
    else:  # one answer of each model, labelled by the annotator
        assert d["cross_model_pairs"] > 0.5 and 0 < d["chosen_from_strong"] < 1
    assert run["metrics"]["train"]["steps"] == math.ceil(len(pairs) / BATCH)


@pytest.mark.slow
def test_listwise_losses_train_on_rated_lists(beyond):
    lists = {name: run_of(beyond, name, pair_strategy="list") for name in ("lipo", "irpo", "adpo_list")}
    for run in (x for x in beyond.runs if x["config"]["loss"]["name"] == "tpo"):  # both of the preset's labels
        lists[f"tpo_{run['config']['loss']['args']['label']}"] = run
    assert sorted(lists) == ["adpo_list", "irpo", "lipo", "tpo_score", "tpo_win_rate"]
    for name, run in lists.items():
        rows, d = pairs_of(beyond, run), run["metrics"]["data"]
        assert d["n_rows"] == len(rows) and d["k_mean"] > 2 and d["k_samples"] == 4, name
        assert all(len(r["responses"]) == len(r["scores"]) >= 3 for r in rows), name
        assert min(logged(run, "list/size")) > 2, name  # the trainer's batches held lists, not pairs
        assert run["metrics"]["train"]["steps"] == math.ceil(len(rows) / BATCH), name
    # the fixed-reference losses share one precomputed reference pass over the lists; TPO scores each batch
    assert len({tuple(keys(lists[n], "ref_logps")) for n in ("lipo", "irpo", "adpo_list")}) == 1
    assert len(keys(lists["lipo"], "ref_logps")) == 1
    for name in ("tpo_score", "tpo_win_rate"):
        assert keys(lists[name], "ref_logps") == []
        for r in pairs_of(beyond, lists[name]):  # every response's step spans (TPO's step rewards)
            assert len(r["step_ends"]) == len(r["responses"])
            assert all(ends or not y.strip() for ends, y in zip(r["step_ends"], r["responses"]))


@pytest.mark.slow
def test_style_word_rate_of_every_run_counts_its_answers(beyond):
    for run in beyond.runs:  # samples.jsonl holds every eval answer (n_eval = 32)
        rows = [json.loads(line) for line in (run["_dir"] / "samples.jsonl").read_text().splitlines()]
        assert len(rows) == run["config"]["dataset"]["n_eval"] == 32
        for col, metric in (("policy", "style_word_rate"), ("sft", "style_word_rate_sft")):
            by_hand = sum(r[col].split()[:1] == ["very"] for r in rows) / len(rows)
            assert run["metrics"][metric] == pytest.approx(by_hand), (run["_dir"].name, metric)

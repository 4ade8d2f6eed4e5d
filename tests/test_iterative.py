"""Iterative DPO (loss=iterative_dpo): R rounds of sample -> label -> train, each round's artifacts keyed by every
round before it (po_bench/specs.py iterative_rounds), built in order by the pipeline (pipeline.run_rounds) from the
existing stages (samples, pairs, ref_logps, policy; reward_model for the explicit labeller)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from po_bench.config import ConfigError, inner_loss_config, validate
from po_bench.data import world
from po_bench.specs import ROUND_SEED_STRIDE, exrm_spec, plan, ref, spec_key

from .conftest import SMALL
from .conftest import compose as _compose

ITER = ["loss=iterative_dpo"]


def _plan(*overrides):
    return plan(_compose([*ITER, *overrides]))


# ---- the plan: rounds nest the rounds before them ------------------------------------------------------------


def test_a_longer_run_keeps_every_earlier_rounds_keys():
    """rounds=3 after rounds=2: rounds 1 and 2 have the same keys (a sweep over R builds each round once); the
    run's policy, pairs and ref_logps are the last round's."""
    two, three = _plan("loss.args.rounds=2"), _plan("loss.args.rounds=3")
    k2, k3 = two.keys(), three.keys()
    assert {r: v for r, v in k3.items() if r.startswith(("round1_", "round2_"))} == {
        r: v for r, v in k2.items() if r.startswith("round")
    }
    assert {r for r in k3 if r.startswith("round3_")} == {
        f"round3_{x}" for x in ("samples", "pairs", "ref_logps", "policy")
    }
    assert (k3["policy"], k3["pairs"], k3["ref_logps"]) == (
        k3["round3_policy"],
        k3["round3_pairs"],
        k3["round3_ref_logps"],
    )
    assert k3["generations"] != k2["generations"]
    # round r samples the policy of round r - 1 (round 1: the start), with its own seeds
    rounds = three.rounds
    assert rounds[0]["samples"]["model"] == three.start
    for r in (1, 2):
        assert rounds[r]["samples"]["model"] == ref("policy", rounds[r - 1]["policy"])
        assert rounds[r]["policy"]["start"] == ref("policy", rounds[r - 1]["policy"])
        assert rounds[r]["samples"]["seed"] == rounds[0]["samples"]["seed"] + ROUND_SEED_STRIDE * r
        assert rounds[r]["pairs"]["samples"] == rounds[r]["samples"]


def test_the_reference_rule():
    """ref_update=fixed: every round's reference is the start checkpoint (GSHF / OpenRLHF); per_round: the previous
    round's policy, which is also the round's start (RLHFlow).  The policy spec names a reference only where it is
    not its start, so round 1 is the same artifact under both."""
    fixed, per = _plan("loss.args.rounds=3"), _plan("loss.args.rounds=3", "loss.args.ref_update=per_round")
    assert fixed.keys()["round1_policy"] == per.keys()["round1_policy"]
    assert fixed.keys()["round2_pairs"] == per.keys()["round2_pairs"]  # same samples, same labeller
    for r in (1, 2):
        f, p = fixed.rounds[r], per.rounds[r]
        assert f["policy"]["reference"] == fixed.start and f["ref_logps"]["ref"] == fixed.start
        assert "reference" not in p["policy"] and p["ref_logps"]["ref"] == p["policy"]["start"]
        assert p["ref_logps"]["ref"] == ref("policy", per.rounds[r - 1]["policy"])
    assert "reference" not in fixed.rounds[0]["policy"] and fixed.rounds[0]["ref_logps"]["ref"] == fixed.start


def test_one_annotator_round_is_offline_dpo():
    """labeller=annotator labels as the offline pairs do: round 1 is the plain DPO run's pairs and policy (the
    same store keys), and a later round's pairs are the annotator's on that round's samples."""
    dpo = plan(_compose(["loss=dpo"])).keys()
    p = _plan("loss.args.labeller=annotator", "loss.args.rounds=2")
    k = p.keys()
    for role in ("pref_samples", "pairs", "ref_logps", "policy"):
        assert k[{"pref_samples": "round1_samples"}.get(role, f"round1_{role}")] == dpo[role]
    assert "labeller" not in p.rounds[1]["pairs"] and p.rounds[1]["pairs"]["source"] == p.rounds[0]["pairs"]["source"]
    assert k["round2_policy"] != dpo["policy"]


def test_each_labeller_keys_what_it_reads():
    gold = _plan()
    assert gold.rounds[0]["pairs"]["labeller"] == {"kind": "gold"}
    assert "annotator" not in gold.rounds[0]["pairs"]["source"]  # r* reads no annotator field
    assert _plan("dataset.annotator_length_bias=0.5").keys()["policy"] == gold.keys()["policy"]
    # implicit: round 1 has no trained policy (the annotator's pairs); round 2 the last policy and its reference
    imp = _plan("loss.args.labeller=implicit")
    assert "labeller" not in imp.rounds[0]["pairs"]
    lab = imp.rounds[1]["pairs"]["labeller"]
    assert lab["kind"] == "implicit" and lab["policy"] == ref("policy", imp.rounds[0]["policy"])
    assert lab["reference"] == imp.start and lab["beta"] == 0.1 and lab["implicit_reward"] == "logratio"
    # explicit: one reward model, MADPO's reward_model stage on the start's annotator pairs (the same artifact)
    exp = _plan("loss.args.labeller=explicit")
    madpo = plan(_compose(["loss=madpo"]))
    assert exp.rounds[0]["reward_model"] == madpo.pair_scores and exp.rounds[1]["reward_model"] is None
    for rnd in exp.rounds:
        assert rnd["pairs"]["labeller"] == {"kind": "explicit", "reward_model": ref("reward_model", madpo.pair_scores)}
    assert exp.keys()["round1_reward_model"] == spec_key("reward_model", madpo.pair_scores)
    dpo_cfg = _compose(["loss=dpo", "diagnostics.reward_models=true"])  # and the reward_models diagnostic's EXRM
    assert exrm_spec(dpo_cfg, plan(dpo_cfg)) == exp.rounds[0]["reward_model"]
    rm = _plan("loss.args.labeller=explicit", "+loss.args.reward_model={epochs: 3}").rounds[0]["reward_model"]
    assert rm["train"]["epochs"] == 3 and rm != madpo.pair_scores


def test_the_inner_loss_is_any_pairwise_loss_with_the_iterative_beta_and_lr():
    cfg = _compose([*ITER, "loss.args.inner=ipo", "loss.beta=0.3"])
    inner = inner_loss_config(cfg).loss
    assert inner.name == "ipo" and inner.beta == 0.3 and inner.lr == cfg.loss.lr == cfg.model.lr
    assert list(inner.args.loss_type) == ["ipo"]
    ipo, dpo = plan(cfg), _plan("loss.beta=0.3")
    assert ipo.rounds[0]["samples"] == dpo.rounds[0]["samples"]  # the loss trains, it does not sample
    assert ipo.policy["loss"]["name"] == "ipo" and ipo.keys()["policy"] != dpo.keys()["policy"]
    simpo = _plan("loss.args.inner=simpo")  # reference-free: no reference log-probs
    assert simpo.ref_logps is None and all(r["ref_logps"] is None for r in simpo.rounds)
    validate(_compose([*ITER, "loss.args.inner=cdpo"]))


# ---- config errors: one line each ---------------------------------------------------------------------------

ERRORS = [
    (["loss.args.rounds=0"], "loss.args.rounds=0: must be an integer >= 1 (rounds of sample -> label -> train)"),
    (["loss.args.rounds=1.5"], "loss.args.rounds=1.5: must be an integer >= 1"),
    (["loss.args.inner=nope"], "loss.args.inner='nope': no such loss config in conf/loss"),
    (["loss.args.inner=kto"], "loss.args.inner=kto: each round trains an offline loss on (prompt, chosen, rejected)"),
    (["loss.args.inner=tgdpo"], "loss.args.inner=tgdpo: each round trains an offline loss"),
    (["loss.args.inner=iterative_dpo"], "loss.args.inner=iterative_dpo: each round trains an offline loss"),
    (["loss.args.inner=lipo"], "loss.args.inner=lipo: each round trains an offline loss"),
    (["loss.args.labeller=judge"], "loss.args.labeller='judge': allowed gold, annotator, implicit, explicit"),
    (["loss.args.ref_update=sometimes"], "loss.args.ref_update='sometimes': allowed fixed, per_round"),
    (["+loss.args.k=4"], "loss.args.k is not an option of loss=iterative_dpo"),
    (["+loss.args.reward_model={lr: 0.1}"], "loss.args.reward_model is read by labeller=explicit only (got gold)"),
    (["loss.args.inner=ipo", "loss.beta=-1"], "loss.beta=-1 for iterative_dpo: allowed (0, inf)"),
    (
        ["model=smollm2_135m", "dataset=hh_rlhf", "judge=none"],
        "loss.args.labeller=gold needs the world's gold reward (dataset=world); dataset.kind=hf has none",
    ),
    (
        ["model=smollm2_135m", "dataset=hh_rlhf", "judge=none", "loss.args.labeller=annotator"],
        "loss.args.labeller=annotator needs the world's gold reward (dataset=world)",
    ),
    (
        ["model=smollm2_135m", "dataset=hh_rlhf", "judge=none", "loss.args.labeller=implicit"],
        "loss=iterative_dpo samples the world's pref prompts each round: dataset.kind=hf is not supported yet",
    ),
    (["dataset.k_samples=4", "dataset.pair_strategy=list"], "loss=iterative_dpo builds pairs from the labeller's"),
    (["diagnostics.ches=true"], "loss=iterative_dpo: the CHES filter and diagnostics.ches score one set of pairs"),
]


@pytest.mark.parametrize("overrides,needle", ERRORS, ids=[" ".join(o) for o, _ in ERRORS])
def test_config_errors_are_one_line(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose([*ITER, *overrides]))
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


# ---- labelling k scored samples --------------------------------------------------------------------------------


def test_scored_samples_make_pairs_by_the_strategy_ties_dropped():
    prompts = ["write about apple river =>", "write about stone =>"]
    samples = [["a", "b", "c", "a"], ["x", "y"]]
    scores = [[1.0, 3.0, 2.0, 9.0], [0.5, 0.5]]  # a repeated response keeps its first score; a tie is no preference
    best_rest = world.label_scored(prompts, samples, scores, "best_vs_rest")
    assert [(p["chosen"], p["rejected"], p["gap"]) for p in best_rest] == [("b", "c", 1.0), ("b", "a", 2.0)]
    assert [p["row"] for p in best_rest] == [0, 0]
    best_worst = world.label_scored(prompts, samples, scores, "best_worst", "easy_to_hard")
    assert [(p["chosen"], p["rejected"]) for p in best_worst] == [("b", "a")]
    g = world.gold_reward
    assert best_worst[0]["gold_margin"] == pytest.approx(g(prompts[0], "b") - g(prompts[0], "a"))
    with pytest.raises(ValueError, match="pair strategy 'list'"):
        world.label_scored(prompts, samples, scores, "list")


# ---- real rounds on the tiny world -------------------------------------------------------------------------------

# small world, few steps: real SFT, generation, labelling and DPO rounds in seconds
RUN = [*SMALL, "dataset.n_pref=48", "train.batch_size=8", "train.max_steps=4", "diagnostics.probe=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One store for the module's runs: they share the SFT model (and, where their specs agree, rounds)."""
    return tmp_path_factory.mktemp("iterative_store")


def _run(cache, tmp_path, name, *overrides):
    from po_bench import pipeline

    cfg = _compose([*RUN, *ITER, f"cache_dir={cache}", *overrides])
    return cfg, pipeline.run(cfg, tmp_path / name)


def _store(cache):
    from po_bench.store import Store

    return Store(str(cache))


@pytest.mark.slow  # trains and generates (make test-fast runs no training)
def test_gold_rounds_sample_the_last_policy_and_a_longer_run_builds_only_its_new_round(tmp_path):
    """rounds=2 with the gold labeller: round 2's samples are round 1's policy's (generated again from that
    checkpoint: the same; from the start: not), its pairs are those samples ranked by r*; run.json counts the
    samples, labels and seconds per phase; a rerun builds nothing; rounds=3 builds round 3 only (the store's
    hits and builds).  Its own store: every round is built here first."""
    from po_bench import stages

    cache = tmp_path / "cache"

    cfg, m = _run(cache, tmp_path, "r2", "loss.args.rounds=2")
    p, store = plan(cfg), _store(cache)
    on = m["online"]
    assert (on["rounds"], on["labeller"], on["inner"], on["ref_update"]) == (2, "gold", "dpo", "fixed")
    n, k = cfg.dataset.n_pref, cfg.dataset.k_samples
    for r, x in enumerate(on["per_round"], 1):
        assert x["round"] == r and x["samples_generated"] == x["labels_requested"] == n * k
        assert x["judge_calls"] == x["judge_tokens"] == 0 and x["labeller"] == "gold"
        assert set(x["seconds"]) == {"generate", "label", "train"} and x["seconds"]["train"] > 0
        assert not any(x["from_store"].values()) and 0 < x["pairs"] <= n
        assert x["labeller_gold_agreement"] == 1.0  # the gold labeller ranks by r* itself
    assert on["samples_generated"] == 2 * n * k and on["judge_calls"] == 0
    assert m["seconds"]["label"] == pytest.approx(on["seconds"]["label"], abs=0.01)

    # round 2's samples come from round 1's policy: generated again from it, the same; from the start, not
    r1, r2 = p.rounds
    stored = store.load_json("samples", r2["samples"])
    assert stages.build_samples(r2["samples"], store) == stored
    assert stages.build_samples({**r2["samples"], "model": p.start}, store) != stored
    assert stored != store.load_json("samples", r1["samples"])
    prompts = stages.resolve_prompts(store, r2["samples"]["prompts"])
    gold_mean = sum(world.gold_reward(q, y) for q, ys in zip(prompts, stored) for y in ys) / (n * k)
    assert on["per_round"][1]["gold_reward_samples"] == pytest.approx(gold_mean)
    pairs = store.load_json("pairs", r2["pairs"])["train"]
    assert len(pairs) == on["per_round"][1]["pairs"]
    for q in pairs:  # every pair is two of its prompt's round-2 samples, the better by r* chosen
        ys = stored[q["row"]]
        assert q["prompt"] == prompts[q["row"]] and q["chosen"] in ys and q["rejected"] in ys
        assert world.gold_reward(q["prompt"], q["chosen"]) > world.gold_reward(q["prompt"], q["rejected"])

    # a rerun reads every round from the store; rounds=3 builds round 3 (and what judges its policy) only
    _, again = _run(cache, tmp_path, "r2_again", "loss.args.rounds=2")
    assert again["artifacts"]["built"] == [] and all(
        all(x["from_store"].values()) for x in again["online"]["per_round"]
    )
    assert again["online"]["per_round"][1]["gold_reward_samples"] == on["per_round"][1]["gold_reward_samples"]
    cfg3, m3 = _run(cache, tmp_path, "r3", "loss.args.rounds=3")
    k3 = plan(cfg3).keys()
    built, hits = set(m3["artifacts"]["built"]), set(m3["artifacts"]["hits"])
    for role, key in k3.items():
        if role.startswith(("round1_", "round2_")):  # (reference log-probs are read only to train)
            assert key not in built and (key in hits or role.endswith("ref_logps")), role
        if role.startswith("round3_"):
            assert key in built, role
    assert not any(key.startswith("sft/") for key in built)
    assert [x["from_store"]["policy"] for x in m3["online"]["per_round"]] == [True, True, False]


def _logps(store, ckpt: dict, model_fields: dict, pairs: list[dict], key: str):
    from po_bench import stages
    from po_bench.generation.logprobs import completion_logps

    path = stages.checkpoint_dir(store, ckpt)
    model, tok = stages.load_model(path, model_fields), stages.load_tokenizer(path, model_fields)
    return completion_logps(model, tok, [q["prompt"] for q in pairs], [q[key] for q in pairs])[0].tolist()


@pytest.mark.slow  # trains and generates (make test-fast runs no training)
def test_the_reference_log_probs_come_from_the_reference_the_rule_names(cache, tmp_path):
    """Round 2 trained against the start (fixed) and against round 1's policy (per_round), on the same pairs: each
    stored reference log-prob is that checkpoint's log-prob of the response (and not the other checkpoint's)."""
    cfg, _ = _run(cache, tmp_path, "fixed", "loss.args.rounds=2")
    cfg_p, _ = _run(cache, tmp_path, "per_round", "loss.args.rounds=2", "loss.args.ref_update=per_round")
    fixed, per, store = plan(cfg), plan(cfg_p), _store(cache)
    assert fixed.rounds[1]["pairs"] == per.rounds[1]["pairs"]
    pairs = store.load_json("pairs", fixed.rounds[1]["pairs"])["train"]
    model = fixed.policy["model"]
    start = {k: _logps(store, fixed.start, model, pairs, k) for k in ("chosen", "rejected")}
    round1 = {k: _logps(store, per.policy["start"], model, pairs, k) for k in ("chosen", "rejected")}
    for plan_, want, other in ((fixed, start, round1), (per, round1, start)):
        stored = store.load_json("ref_logps", plan_.ref_logps)
        for k in ("chosen", "rejected"):
            got = stored[f"ref_{k}_logps"]
            assert got == pytest.approx(want[k], abs=1e-3)
            assert got != pytest.approx(other[k], abs=1e-3)


@pytest.mark.slow  # trains and generates (make test-fast runs no training)
def test_the_implicit_and_annotator_labellers(cache, tmp_path):
    """labeller=implicit: round 1 is offline DPO (the annotator's pairs: the loss=dpo run's policy), round 2's
    pairs are ranked by round 1's policy's implicit reward against its reference; labeller=annotator: round 2's
    pairs are the world's annotator's on round 2's samples (WorldSource.make_pairs, as the offline pairs)."""
    from po_bench.data.sources import WorldSource
    from po_bench.judges.implicit import implicit_rewards

    cfg, m = _run(cache, tmp_path, "implicit", "loss.args.rounds=2", "loss.args.labeller=implicit")
    p, store = plan(cfg), _store(cache)
    dpo = plan(_compose([*RUN, "loss=dpo", f"cache_dir={cache}"]))
    assert p.keys()["round1_policy"] == dpo.keys()["policy"] and store.exists("policy", dpo.policy)
    assert [x["labeller"] for x in m["online"]["per_round"]] == ["annotator", "implicit"]
    lab = p.rounds[1]["pairs"]["labeller"]
    pairs = store.load_json("pairs", p.rounds[1]["pairs"])["train"]
    assert pairs and m["online"]["per_round"][1]["pairs"] == len(pairs)
    from po_bench import stages

    pol_dir, ref_dir = (stages.checkpoint_dir(store, lab[k]) for k in ("policy", "reference"))
    model = lab["model"]
    pol, refm = stages.load_model(pol_dir, model), stages.load_model(ref_dir, model)
    tok = stages.load_tokenizer(pol_dir, model)
    prompts = [q["prompt"] for q in pairs]
    rc, rr = (
        implicit_rewards(pol, refm, tok, prompts, [q[key] for q in pairs], "logratio", 0.1)
        for key in ("chosen", "rejected")
    )
    assert bool((rc > rr).all())  # every pair: the implicit reward prefers its chosen response
    assert [q["gap"] for q in pairs] == pytest.approx((rc - rr).tolist(), abs=1e-4)

    cfg_a, m_a = _run(cache, tmp_path, "annotator", "loss.args.rounds=2", "loss.args.labeller=annotator")
    pa = plan(cfg_a)
    assert pa.keys()["round1_policy"] == p.keys()["round1_policy"]
    assert m_a["online"]["per_round"][0]["from_store"]["policy"] is True
    samples = store.load_json("samples", pa.rounds[1]["samples"])
    want = WorldSource.make_pairs(pa.rounds[1]["pairs"]["source"], samples, int(cfg_a.seed))["train"]
    assert store.load_json("pairs", pa.rounds[1]["pairs"])["train"] == want
    assert m_a["online"]["per_round"][1]["labeller"] == "annotator"


@pytest.mark.slow  # trains a reward model, generates (make test-fast runs no training)
def test_the_explicit_labeller_ranks_by_the_reward_model(cache, tmp_path):
    """labeller=explicit: the reward model (MADPO's reward_model stage on the start's annotator pairs) is built
    once, and a round's pairs are its samples ranked by its scores."""
    from po_bench import stages
    from po_bench.training.trl.reward import score_pairs

    cfg, m = _run(cache, tmp_path, "explicit", "loss.args.rounds=1", "loss.args.labeller=explicit")
    p, store = plan(cfg), _store(cache)
    rm = p.rounds[0]["reward_model"]
    assert store.exists("reward_model", rm) and m["online"]["per_round"][0]["labeller"] == "explicit"
    # the reward model's own labels are reported: the start's annotator pairs it learnt from
    rm_pairs = len(store.load_json("pairs", rm["pairs"])["train"])
    assert m["online"]["per_round"][0]["reward_model_pairs"] == m["online"]["reward_model_pairs"] == rm_pairs > 0
    pairs = store.load_json("pairs", p.rounds[0]["pairs"])["train"]
    rm_dir = stages.checkpoint_dir(store, ref("reward_model", rm))
    tok = stages.load_tokenizer(rm_dir, rm["model"])
    train = OmegaConf.create({**rm["train"], "grad_accum": 1, "max_steps": 0, **stages.train_opts({})})
    margins = score_pairs(rm_dir, tok, {"pairs": pairs}, train, tmp_path / "score", 0)["pairs"]
    assert pairs and all(x > 0 for x in margins)  # the reward model prefers every pair's chosen response
    assert [q["gap"] for q in pairs] == pytest.approx(margins, abs=1e-4)

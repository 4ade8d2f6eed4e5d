"""Artifact keys complete by construction: every config field perturbed in turn changes exactly the
artifacts the dependency table (``po_bench.specs.DEPENDS``) declares, and no others."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf, open_dict

from po_bench.specs import DEPENDS, plan

from .conftest import compose as _compose

BASE = _compose()
# Fields of groups that a world run's artifacts cannot depend on, checked like every other field
# (they must change nothing); the preset/scale groups only label tables.
SKIP_GROUPS = ("preset", "scale")


def _leaves(node, prefix=""):
    for k in node:
        key = f"{prefix}{k}"
        v = OmegaConf.select(node, str(k), throw_on_resolution_failure=False) if False else node._get_node(k)
        if OmegaConf.is_dict(v):
            if len(v) == 0:
                yield key, v
            else:
                yield from _leaves(v, key + ".")
        else:
            yield key, v


def _perturbed(value):
    v = value._value() if hasattr(value, "_value") else value
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 1.5 + 0.01
    if isinstance(v, str) and v.startswith("${"):
        return "/tmp/elsewhere"
    if isinstance(v, str):
        return v + "x"
    if v is None:
        return "x"
    if OmegaConf.is_list(value) or isinstance(v, list):
        return list(OmegaConf.to_container(value)) + ["x"] if OmegaConf.is_list(value) else v + ["x"]
    if OmegaConf.is_dict(value):
        return {"x": 1}
    raise AssertionError(f"no perturbation for {v!r}")


# Perturbations that must keep the value valid in kind (others are generic).
SPECIAL = {
    "generation.backend": "vllm",
    "loss.backend": "pobench",
    "noise.kind": "flip",
    "model.kind": "hub",
    "dataset.kind": "world",
    "loss.args.loss_type": ["ipo"],
    "train.lr_scheduler": "linear",
    "model.dtype": "bfloat16",
    "generation.dtype": "bfloat16",
    "dataset.pair_source": "pugc",
    "dataset.pair_models": "multi",
    "dataset.filter.kind": "ches_ln",  # with the default keep (0.95): a filter that drops pairs
}

FIELDS = [k for k, _ in _leaves(BASE) if not k.startswith(SKIP_GROUPS)]


def _keys(cfg):
    return plan(cfg).keys()


BASE_KEYS = _keys(BASE)


def test_the_default_run_has_every_artifact():
    assert sorted(BASE_KEYS) == sorted(
        [
            "sft",
            "sft_samples",
            "heldout_eval",
            "heldout_ood",
            "pref_samples",
            "pairs",
            "ref_logps",
            "policy",
            "generations",
        ]
    )


@pytest.mark.parametrize("field", FIELDS)
def test_perturbing_a_field_changes_exactly_its_artifacts(field):
    cfg = OmegaConf.create(OmegaConf.to_container(BASE, resolve=False))
    node = (
        BASE._get_node(field)
        if "." not in field
        else OmegaConf.select(BASE, field.rsplit(".", 1)[0])._get_node(field.rsplit(".", 1)[1])
    )
    new = SPECIAL.get(field, _perturbed(node))
    with open_dict(cfg):
        OmegaConf.update(cfg, field, new, merge=False, force_add=True)
    keys = _keys(cfg)
    changed = sorted(r for r in set(BASE_KEYS) | set(keys) if BASE_KEYS.get(r) != keys.get(r))
    declared = sorted(DEPENDS.get(field, ()))
    assert changed == declared, f"{field} -> {new!r}: changes {changed}, the table says {declared}"


def test_the_table_names_only_real_fields():
    assert set(DEPENDS) - set(FIELDS) == set()


def test_how_much_is_checked():
    n_artifacts = len(BASE_KEYS)
    print(
        f"dependency table: {len(FIELDS)} config fields x {n_artifacts} artifacts = {len(FIELDS) * n_artifacts} cells"
    )
    assert len(FIELDS) > 100


def test_real_data_keys_follow_the_file_content(tmp_path):
    """Real data: the pairs (and so everything trained on them) are keyed by the files' checksums,
    so editing the data file in place rebuilds; an unrelated file does not."""
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "good", "rejected": "bad"}) + "\n" for i in range(8)))
    cfg = _compose(["model=smollm2_135m", "dataset=file", f"dataset.path={f}", "dataset.eval_split=null", "judge=none"])
    before = _keys(cfg)
    (tmp_path / "other.jsonl").write_text("{}\n")
    assert _keys(cfg) == before
    f.write_text(f.read_text() + json.dumps({"prompt": "q9", "chosen": "good", "rejected": "bad"}) + "\n")
    after = _keys(cfg)
    assert sorted(r for r in before if before[r] != after.get(r)) == [
        "generations",
        "pairs",
        "policy",
        "ref_logps",
        "sft_samples",
    ]


def test_reference_log_probs_are_shared_only_where_trl_computes_the_same():
    dpo, ipo, ld = (_keys(_compose([f"loss={name}"])) for name in ("dpo", "ipo", "ld_dpo"))
    assert dpo["ref_logps"] == ipo["ref_logps"]  # the loss type does not enter the reference pass
    assert ld["ref_logps"] != dpo["ref_logps"]  # LD-DPO's ld_alpha weights the reference's tail tokens
    assert "ref_logps" not in _keys(_compose(["loss=simpo"]))  # reference-free


def test_the_world_size_of_a_process_group_is_part_of_every_training_key():
    one, two = (_keys(_compose(["launch=ddp", f"launch.num_processes={n}"])) for n in (1, 2))
    assert sorted(r for r in one if one[r] != two[r]) == sorted(one)  # everything downstream of SFT
    cfg = _compose(
        ["launch=ddp", "launch.num_processes=2", "launch.main_process_port=1234", "launch.mixed_precision=no"]
    )
    assert _keys(cfg) == two  # ports and launcher flags are how it runs, not what it builds


def test_k_ranked_samples_key_the_samples_and_the_strategy_keys_the_pairs():
    """dataset.k_samples draws k on-policy samples (pref_samples n = k); at k = 4 the pair strategy
    changes the pairs and what is trained on them, not the samples; k = 2 with the defaults keeps
    today's keys (no ranking in the pairs spec)."""
    base = plan(_compose())
    assert base.samples["pref_samples"]["n"] == 2 and "ranking" not in base.pairs["source"]
    k4 = _keys(_compose(["dataset.k_samples=4"]))
    assert plan(_compose(["dataset.k_samples=4"])).samples["pref_samples"]["n"] == 4
    k4_all = _keys(_compose(["dataset.k_samples=4", "dataset.pair_strategy=all"]))
    assert sorted(r for r in k4 if k4[r] != k4_all[r]) == ["generations", "pairs", "policy", "ref_logps"]
    assert _keys(_compose(["dataset.pair_strategy=all"])) == BASE_KEYS  # k = 2: one pair whatever the strategy


class _RecordingStore:
    """The store's JSON artifacts as a judge's answers ask for them: the keys, no generation."""

    def __init__(self):
        self.keys = []

    def get_or_build_json(self, kind, fields, build):
        from po_bench.store import fingerprint

        self.keys.append(f"{kind}/{fingerprint(fields)}")
        return ["an answer "] * 2


REAL = ["model=smollm2_135m", "dataset=hh_rlhf"]
# The answers' keys as judges/runner.py computed them before they were keyed in specs.py (issue 23; computed on
# that commit, 2ba7046): the same values, so no user's cached answers are rebuilt.  Each case: overrides, then
# the keys of the answers at the generation's temperature and at 0.3 (MT-Bench's per-category temperatures).
ANSWER_KEYS = {
    "alpaca_eval": ([*REAL, "judge=alpaca_eval"], ["answers/590b6e53209a79d3", "answers/82b7b9e588db5698"]),
    "mt_bench": (
        [*REAL, "judge=mt_bench", "judge.question_ids=[81,82]", "generation.temperature=0.7"],
        ["answers/62834f04844da7bf", "answers/a2e449b16200e3cd"],
    ),
    "arena_hard": (
        [*REAL, "judge=arena_hard", "judge.subset_size=5", "judge.answer_max_new_tokens=64"],
        ["answers/d914fb6fffefdfca", "answers/3c32cd3e6afd2fea"],
    ),
    "setting": (
        [*REAL, "judge=alpaca_eval", "+setting=llama3_instruct"],
        ["answers/c2921718fc43ecc9", "answers/99ba166ddf227c93"],
    ),
    "vllm": (
        [*REAL, "judge=alpaca_eval", "judge.eval_path=/data/x.json", "generation=vllm"],
        ["answers/13b070e9eba1a9c5", "answers/7cc072a12fd80786"],
    ),
    "also": (  # the second judge of judge.also
        [*REAL, "judge=alpaca_eval", "judge.also=[{name:mt_bench,subset_size:3}]"],
        ["answers/51b30257e73e02e3", "answers/3684c75d621a82b5"],
    ),
}


@pytest.mark.parametrize("case", sorted(ANSWER_KEYS))
def test_judge_answer_keys_are_pinned(case):
    from po_bench.config import judge_configs
    from po_bench.judges.runner import answer_fn, with_judge

    overrides, pinned = ANSWER_KEYS[case]
    cfg = _compose(overrides)
    cfg = with_judge(cfg, judge_configs(cfg)[-1])
    store = _RecordingStore()
    ask = answer_fn(cfg, store, None, "policy_dir", None, "policy", {"stage": "policy", "key": "abc123"})
    conversations = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "x"}]]
    assert ask(conversations) == ["an answer", "an answer"]
    ask(conversations, 0.3)
    assert store.keys == pinned


def test_a_judge_artifact_key_is_the_policy_and_the_judge_fields():
    from po_bench.specs import judge_artifact_spec
    from po_bench.store import fingerprint

    spec = judge_artifact_spec({"stage": "policy", "key": "abc123"}, {"version": "1", "tasks": ["t"], "limit": 8})
    assert spec == {
        "policy": {"stage": "policy", "key": "abc123"},
        "judge": {"version": "1", "tasks": ["t"], "limit": 8},
    }
    assert fingerprint(spec) == "f19145215f4502c0"  # lm-eval's output as judges.runner keyed it before issue 23


def test_the_probe_keys_the_policy_only_when_it_is_on():
    """diagnostics.probe (issue 25) stores its trajectory with the policy: on (the default) the policy spec carries
    its fields; diagnostics=off gives exactly the keys of before the probe existed (the default world run's policy
    key computed on main at 334962d, before this field was read)."""
    off = plan(_compose(["diagnostics=off"]))
    assert "probe" not in off.policy and off.keys()["policy"] == "policy/ad7f4b8e7861319f"
    on = plan(_compose())
    assert on.policy["probe"] == {
        "pairs": 32,
        "unseen": 16,
        "every": 0,
        "gen": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": BASE.generation.max_new_tokens},
    }
    changed = sorted(r for r in on.keys() if on.keys()[r] != off.keys()[r])
    assert changed == ["generations", "policy"]
    # unpaired training rows have nothing to probe: no probe fields, the keys of before (run.json says why)
    rows = ["dataset=hh_rlhf", "model=smollm2_135m", "dataset.format=unpaired", "loss=kto", "loss.paired=false"]
    assert "probe" not in plan(_compose(rows)).policy


# The online methods' policy (po_bench/training/online.py): keyed by the start checkpoint, the model, the pref
# prompts, the generation fields, the preference source, the noise, the loss fields (the loop's arguments too),
# the training fields and the seed; no pairs, no pref samples, no reference log-probs (their fields change nothing)
ONLINE_POLICY = ("generations", "policy")
ONLINE_DEPENDS = {
    "loss.args.labeller": ("annotator", ONLINE_POLICY),
    "loss.args.label_temperature": (0.5, ONLINE_POLICY),
    "loss.args.alpha": (0.1, ONLINE_POLICY),
    "loss.args.accumulate": (True, ONLINE_POLICY),
    "loss.beta": (0.2, ONLINE_POLICY),
    "noise.kind": ("flip", ONLINE_POLICY),
    "generation.temperature": (0.7, ("generations", "heldout_eval", "heldout_ood", "policy", "sft_samples")),
    "dataset.n_pref": (99, ONLINE_POLICY),
    "train.batch_size": (8, ONLINE_POLICY),
    "train.max_steps": (3, ("sft",) + ONLINE_POLICY + ("sft_samples", "heldout_eval", "heldout_ood")),
    "seed": (1, ("sft", "sft_samples", "heldout_eval", "heldout_ood") + ONLINE_POLICY),
    # the offline pairs' fields: nothing of an online run reads them (the annotator's only as its labeller)
    "dataset.annotator_temperature": (0.9, ()),
    "dataset.k_samples": (4, ()),
    "dataset.curriculum": ("easy_to_hard", ()),
    "diagnostics.probe": (False, ()),
}


@pytest.mark.parametrize("field", sorted(ONLINE_DEPENDS))
def test_an_online_policy_is_keyed_by_what_its_loop_reads(field):
    base = _compose(["loss=xpo"])
    bkeys = _keys(base)
    assert sorted(bkeys) == ["generations", "heldout_eval", "heldout_ood", "policy", "sft", "sft_samples"]
    value, declared = ONLINE_DEPENDS[field]
    cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=False))
    with open_dict(cfg):
        OmegaConf.update(cfg, field, value, merge=False, force_add=True)
    keys = _keys(cfg)
    assert sorted(r for r in set(bkeys) | set(keys) if bkeys.get(r) != keys.get(r)) == sorted(declared), field


# brain's own arguments (the number of samples, the proposal, hard or soft targets) key its policy like XPO's
BRAIN_DEPENDS = {"loss.args.n": 3, "loss.args.proposal": "policy", "loss.args.targets": "argmax", "loss.beta": 0.5}


@pytest.mark.parametrize("field", sorted(BRAIN_DEPENDS))
def test_a_brain_policy_is_keyed_by_its_arguments(field):
    base = _compose(["loss=brain"])
    bkeys = _keys(base)
    cfg = _compose(["loss=brain", f"{field}={BRAIN_DEPENDS[field]}"])
    keys = _keys(cfg)
    assert sorted(r for r in set(bkeys) | set(keys) if bkeys.get(r) != keys.get(r)) == sorted(ONLINE_POLICY), field


# OPRL's own arguments (samples per prompt, the step advantage's weight, the clip) and the PRM's beta key its policy
OPRL_DEPENDS = {"loss.args.n": 3, "loss.args.alpha": 0.5, "loss.args.clip": 0.1, "loss.beta": 0.5}


@pytest.mark.parametrize("field", sorted(OPRL_DEPENDS))
def test_an_oprl_policy_is_keyed_by_its_arguments(field):
    base = ["loss=oprl", "dataset.steps=true"]
    bkeys = _keys(_compose(base))
    keys = _keys(_compose([*base, f"{field}={OPRL_DEPENDS[field]}"]))
    assert sorted(r for r in set(bkeys) | set(keys) if bkeys.get(r) != keys.get(r)) == sorted(ONLINE_POLICY), field


def test_the_annotator_settings_key_an_online_policy_labelled_by_the_annotator():
    a = _compose(["loss=online_dpo", "loss.args.labeller=annotator"])
    b = _compose(["loss=online_dpo", "loss.args.labeller=annotator", "dataset.annotator_length_bias=0.1"])
    assert plan(a).policy["online"]["labeller"] == {"kind": "annotator", "temperature": 0.5, "length_bias": 0.03}
    assert _keys(a)["policy"] != _keys(b)["policy"]


def test_rto_nests_the_dpo_policy_of_the_same_data_and_its_sparse_row_has_no_guide():
    """loss=rto (loss.guide=dpo): its guide is loss=dpo's policy on the same data (one artifact, shared); its
    spec nests it; loss.args.dense=false (the sparse-only row) has no guide and a policy key of its own."""
    dense, sparse, dpo = (
        plan(_compose(o)) for o in (["loss=rto"], ["loss=rto", "loss.args.dense=false"], ["loss=dpo"])
    )
    assert dense.guide == dpo.policy and dense.policy["guide"] == {"stage": "policy", "spec": dpo.policy}
    assert sparse.guide is None and "guide" not in sparse.policy and "online" in sparse.policy
    assert _keys(_compose(["loss=rto"]))["policy"] != _keys(_compose(["loss=rto", "loss.args.dense=false"]))["policy"]


# The explicit and judge preference sources (po_bench/training/labellers.py): the explicit source's reward model is
# the reward_model stage's artifact that iterative_dpo's explicit labeller and MADPO read (one artifact), its spec in
# the labeller's spec (so in the online policy's key); the judge's key fields key the policy, its endpoint, key,
# budget, speed and cache do not
def test_the_explicit_source_nests_the_shared_reward_model_in_the_online_policys_key():
    from po_bench.specs import ref

    exp = plan(_compose(["loss=online_dpo", "loss.args.labeller=explicit"]))
    it = plan(_compose(["loss=iterative_dpo", "loss.args.labeller=explicit"]))
    madpo = plan(_compose(["loss=madpo"]))
    rm = it.rounds[0]["reward_model"]
    assert rm == madpo.pair_scores
    assert exp.policy["online"]["labeller"] == {
        "kind": "explicit",
        "temperature": 0.0,
        "inputs": {"reward_model": ref("reward_model", rm)},
    }
    assert "reward_model" not in exp.policy["loss"]["args"]
    gold = _keys(_compose(["loss=online_dpo"]))
    base = _keys(_compose(["loss=online_dpo", "loss.args.labeller=explicit"]))
    assert base["policy"] != gold["policy"] and {r for r in base if base[r] != gold[r]} == set(ONLINE_POLICY)
    # the reward model's fields: its spec (the same as iterative_dpo's with them), so the policy's key
    more = _compose(["loss=online_dpo", "loss.args.labeller=explicit", "+loss.args.reward_model={epochs: 3}"])
    it3 = plan(_compose(["loss=iterative_dpo", "loss.args.labeller=explicit", "+loss.args.reward_model={epochs: 3}"]))
    assert plan(more).policy["online"]["labeller"]["inputs"]["reward_model"]["spec"] == it3.rounds[0]["reward_model"]
    assert _keys(more)["policy"] != base["policy"]
    # what changes the reward model changes the policy (the annotator that labels the reward model's pairs)
    bias = _keys(_compose(["loss=online_dpo", "loss.args.labeller=explicit", "dataset.annotator_length_bias=0.2"]))
    assert bias["policy"] != base["policy"]


JUDGE = ["loss=online_dpo", "loss.args.labeller=judge", "+loss.args.judge.base_url=http://127.0.0.1:1/v1"]
JUDGE += ["+loss.args.judge.model=judge-a"]


@pytest.mark.parametrize(
    "extra, keyed",
    [
        (["++loss.args.judge.model=judge-b"], True),
        (["+loss.args.judge.temperature=0.0"], True),
        (["+loss.args.judge.switch_seed=1"], True),
        (["+loss.args.judge.version=2"], True),
        (["loss.args.label_temperature=1.0"], True),
        (["++loss.args.judge.base_url=http://elsewhere:8000/v1"], False),
        (["+loss.args.judge.api_key_env=JUDGE_KEY"], False),
        (["+loss.args.judge.max_requests=10"], False),
        (["+loss.args.judge.max_cost_usd=1.0"], False),
        (["+loss.args.judge.timeout=5"], False),
        (["+loss.args.judge.max_concurrency=2"], False),
        (["+loss.args.judge.cache.dir=/tmp/elsewhere"], False),
    ],
)
def test_the_judge_sources_key_fields_key_the_online_policy_and_its_endpoint_fields_do_not(extra, keyed):
    base = _keys(_compose(JUDGE))
    other = _keys(_compose([*JUDGE, *extra]))
    changed = {r for r in base if base[r] != other[r]}
    assert changed == (set(ONLINE_POLICY) if keyed else set()), extra


def test_the_judge_sources_spec_holds_no_endpoint():
    lab = plan(_compose(JUDGE)).policy["online"]["labeller"]
    assert lab["kind"] == "judge" and lab["judge"]["model"] == "judge-a" and "base_url" not in json.dumps(lab)
    assert "judge" not in plan(_compose(JUDGE)).policy["loss"]["args"]


# OFS-DPO's own arguments key its policy like XPO's; COFS-DPO (domains > 0) also reads the eval prompts (each
# family's held-out prompts measure its forgetting), OFS-DPO does not
OFS_DEPENDS = {
    "loss.args.chase": 0.5,
    "loss.args.lr_ratio": 2.0,
    "loss.args.lora_r": 4,
    "loss.args.lora_alpha": 8,
    "loss.args.domains": 3,
    "loss.lr": 0.01,
}


@pytest.mark.parametrize("field", sorted(OFS_DEPENDS))
def test_an_ofs_policy_is_keyed_by_its_arguments(field):
    bkeys = _keys(_compose(["loss=ofs_dpo"]))
    keys = _keys(_compose(["loss=ofs_dpo", f"{field}={OFS_DEPENDS[field]}"]))
    assert sorted(r for r in set(bkeys) | set(keys) if bkeys.get(r) != keys.get(r)) == sorted(ONLINE_POLICY), field


@pytest.mark.parametrize("domains, keyed", [(0, False), (3, True)])
def test_only_a_cofs_policy_is_keyed_by_the_eval_prompts(domains, keyed):
    a = _keys(_compose(["loss=ofs_dpo", f"loss.args.domains={domains}"]))
    b = _keys(_compose(["loss=ofs_dpo", f"loss.args.domains={domains}", "dataset.n_eval=99"]))
    assert (a["policy"] != b["policy"]) == keyed

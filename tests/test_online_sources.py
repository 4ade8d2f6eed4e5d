"""The online loop's explicit and judge preference sources (po_bench/training/labellers.py): the explicit source's
verdicts are its reward model's (MADPO's / iterative_dpo's reward_model artifact, built through the store before the
loop); the judge source asks a real OpenAI-compatible server on loopback through the judge client (AlpacaEval's
pairwise annotator), and run.json counts exactly the requests the server received, the cache serves a rerun without
a request, failed judgments are counted (never guessed), a spent budget stops the run; the config's refusals."""

from __future__ import annotations

import math
import re
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.judges.alpaca_eval import is_switched
from po_bench.specs import plan, ref, spec_key
from po_bench.store import Store
from po_bench.training.labellers import LabelRequest, labeller_for, labeller_options, labeller_spec

from .conftest import SMALL
from .conftest import compose as _compose
from .helpers import FakeOpenAI

OUTPUTS = re.compile(r'"output": """(.*?)"""', re.S)


def shorter_wins(body):
    """A judge that prefers the shorter of the two outputs it is shown (m: the first shown, M: the second), its
    probability in the logprobs as AlpacaEval's annotator gives it; equal lengths: 0.5 (no preference)."""
    o1, o2 = OUTPUTS.findall(body["messages"][-1]["content"])[-2:]
    p_m = 0.5 if len(o1) == len(o2) else (0.9 if len(o1) < len(o2) else 0.1)
    top = [{"token": "m", "logprob": math.log(p_m)}, {"token": "M", "logprob": math.log(1 - p_m)}]
    tok = "m" if p_m >= 0.5 else "M"
    return tok, [{"token": tok, "logprob": math.log(max(p_m, 1 - p_m)), "top_logprobs": top}]


def _judge_labeller(url, tmp_path, **judge):
    args = {"labeller": "judge", "label_temperature": 0.0, "judge": {"base_url": url, "model": "fake", **judge}}
    args["judge"].setdefault("max_retries", 0)
    return labeller_for(labeller_spec(args, None), {}, labeller_options(args, tmp_path))


def _request(prompts, first, second):
    return LabelRequest(prompts, first, second, np.random.default_rng(0))


PROMPTS = [f"write about item {i} =>" for i in range(8)]
FIRST = ["a b", "short", "same", "x y z w", "p", "long long long", "m", "k k"]
SECOND = ["a b c d", "much longer one", "same", "x", "p p p", "l", "m m m m", "k"]


def test_the_judge_source_labels_by_the_servers_verdicts_counts_its_calls_and_the_cache_serves_a_rerun(tmp_path):
    assert {is_switched(p) for p in PROMPTS} == {True, False}  # both orders are shown to the judge
    with FakeOpenAI(responder=shorter_wins) as server:
        labels = _judge_labeller(server.url, tmp_path).label(_request(PROMPTS, FIRST, SECOND))
        want = [None if a == b else len(a) < len(b) for a, b in zip(FIRST, SECOND)]
        assert labels.first_wins == want  # the identical pair: no preference, never asked
        assert labels.judge_calls == len(server.requests) == 7 and labels.judge_tokens == 7 * 105
        assert labels.requested == 8 and labels.failed == 0 and labels.details["cache_hits"] == 0
        again = _judge_labeller(server.url, tmp_path).label(_request(PROMPTS, FIRST, SECOND))
        assert again.first_wins == want and again.judge_calls == again.judge_tokens == 0
        assert again.details["cache_hits"] == 7 and len(server.requests) == 7


def test_a_failed_judgment_is_counted_and_its_pair_dropped_and_a_spent_budget_stops_the_run(tmp_path):
    def no_logprobs_for_x(body):
        return ("m", None) if '"""x"""' in body["messages"][-1]["content"] else shorter_wins(body)

    with FakeOpenAI(responder=no_logprobs_for_x, script=["400"]) as server:
        # one request at a time: the first (pair 0's) gets the 400, pair 3's reply has no logprobs
        labels = _judge_labeller(server.url, tmp_path, max_concurrency=1).label(_request(PROMPTS, FIRST, SECOND))
        assert labels.failed == 2 and labels.details["request_failures"] == 1
        assert labels.details["parse_failures"] == 1 and labels.first_wins[0] is labels.first_wins[3] is None
        assert sum(w is None for w in labels.first_wins) == 3  # the identical pair, the 400, the unparsable reply
        assert labels.judge_calls == len(server.requests) == 7
    with FakeOpenAI(responder=shorter_wins) as server:
        lab = _judge_labeller(server.url, tmp_path / "other", max_requests=3, max_concurrency=1)
        with pytest.raises(RuntimeError, match=r"budget exhausted \(loss.args.judge.max_requests=3"):
            lab.label(_request(PROMPTS, FIRST, SECOND))
        assert len(server.requests) == 3


BASE = ["loss=online_dpo", "loss.args.labeller=judge"]


@pytest.mark.parametrize(
    "extra, needle",
    [
        ([], "loss.args.labeller=judge needs an OpenAI-compatible endpoint: set loss.args.judge.base_url"),
        (
            [
                "+loss.args.judge.base_url=http://h/v1",
                "+loss.args.judge.model=m",
                "+loss.args.judge.api_key=sk-planted",
            ],
            "loss.args.judge.api_key: API keys are never read from the config",
        ),
        (
            ["+loss.args.judge.base_url=http://h/v1", "+loss.args.judge.model=m", "+loss.args.judge.colour=1"],
            "loss.args.judge.colour is not a judge field",
        ),
        (
            ["+loss.args.judge.base_url=http://h/v1", "+loss.args.judge.model=m", "+loss.args.judge.max_requests=-1"],
            "loss.args.judge.max_requests=-1: must be a number >= 0",
        ),
    ],
)
def test_the_judge_sources_config_is_refused_in_one_line(extra, needle):
    with pytest.raises(ConfigError) as e:
        validate(_compose([*BASE, *extra]))
    assert needle in str(e.value) and "sk-planted" not in str(e.value)


def test_source_arguments_belong_to_their_source():
    with pytest.raises(ConfigError, match=r"loss.args.reward_model is read by labeller=explicit only \(got gold\)"):
        validate(_compose(["loss=online_dpo", "+loss.args.reward_model={epochs: 3}"]))
    with pytest.raises(ConfigError, match=r"loss.args.judge is read by labeller=judge only \(got explicit\)"):
        validate(_compose(["loss=xpo", "loss.args.labeller=explicit", "+loss.args.judge.model=m"]))
    validate(_compose(["loss=online_dpo", "loss.args.labeller=explicit", "+loss.args.reward_model={epochs: 3}"]))
    validate(_compose(["loss=brain", "loss.args.labeller=explicit"]))  # the reward model's score weights samples
    with pytest.raises(ConfigError, match="loss.args.labeller gold, annotator or explicit \\(got judge\\)"):
        validate(
            _compose(
                ["loss=brain", "loss.args.labeller=judge", "+loss.args.judge.base_url=u", "+loss.args.judge.model=m"]
            )
        )


# ---- real online runs on the tiny world ----------------------------------------------------------------------------

RUN = [*SMALL, "dataset.n_pref=48", "train.batch_size=8", "train.max_steps=3", "diagnostics.probe=false"]
RUN += ["stages.generate=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One store for the module's runs: they share the SFT model."""
    return tmp_path_factory.mktemp("online_sources_store")


def _run(cache, out, *overrides):
    from po_bench import pipeline

    cfg = _compose(["loss=online_dpo", *RUN, f"cache_dir={cache}", *overrides])
    return cfg, pipeline.run(cfg, out)


def _record(store, cfg):
    import json
    from pathlib import Path

    d = Path(store.path("policy", plan(cfg).policy))
    return json.loads((d / "train_metrics.json").read_text())["online_record"]


@pytest.mark.slow  # trains a reward model and a policy online, generates (make test-fast runs no training)
def test_the_explicit_source_labels_by_the_shared_reward_models_scores(cache, tmp_path):
    from po_bench import stages
    from po_bench.training.trl.reward import score_pairs

    cfg, m = _run(cache, tmp_path / "explicit", "loss.args.labeller=explicit")
    store = Store(str(cache))
    rm = plan(_compose(["loss=iterative_dpo", *RUN, f"cache_dir={cache}", "loss.args.labeller=explicit"]))
    rm = rm.rounds[0]["reward_model"]  # iterative_dpo's explicit labeller's reward model: the same artifact
    assert m["online"]["labeller_inputs"] == {"reward_model": spec_key("reward_model", rm)} and store.exists(
        "reward_model", rm
    )
    o = m["online"]
    assert o["reward_model_pairs"] == len(store.load_json("pairs", rm["pairs"])["train"]) > 0  # labels before the loop
    assert o["samples_generated"] == 2 * 8 * 3 and o["labels_requested"] == 24 and o["judge_calls"] == 0
    assert o["labels_used"] + o["ties_dropped"] == 24 and o["labels_failed"] == 0
    pairs = [p for rec in _record(store, cfg) for p in rec["pairs"]]
    rm_dir = stages.checkpoint_dir(store, ref("reward_model", rm))
    tok = stages.load_tokenizer(rm_dir, rm["model"])
    train = OmegaConf.create({**rm["train"], "grad_accum": 1, "max_steps": 0, **stages.train_opts({})})
    margins = score_pairs(rm_dir, tok, {"pairs": pairs}, train, tmp_path / "score", 0)["pairs"]
    # every labelled pair of the first and the last step: the reward model prefers its chosen response
    assert len(pairs) >= 8 and all(x > -1e-5 for x in margins) and sum(x > 1e-4 for x in margins) >= len(pairs) // 2
    # the source as the loop builds it: its verdicts and its scalar rewards (brain's) are the reward model's scores
    lab = labeller_for(plan(cfg).policy["online"]["labeller"], {"reward_model": stages.reward_scorer(rm_dir, rm)})
    xs, ch, rj = ([p[k] for p in pairs] for k in ("prompt", "chosen", "rejected"))
    r_ch, r_rj = lab.rewards(xs, ch), lab.rewards(xs, rj)
    assert [a - b for a, b in zip(r_ch, r_rj)] == pytest.approx(margins, abs=1e-4)
    wins = lab.label(_request(xs, rj, ch)).first_wins  # the rejected response shown first: it never wins
    assert all(w is not True for w in wins) and sum(w is False for w in wins) >= len(pairs) // 2


@pytest.mark.slow  # trains a policy online against a loopback judge server (make test-fast runs no training)
def test_the_judge_source_in_an_online_run_counts_the_servers_requests_and_a_rerun_reads_the_cache(cache, tmp_path):
    with FakeOpenAI(responder=shorter_wins) as server:
        judge = [f"+loss.args.judge.base_url={server.url}", "+loss.args.judge.model=fake-judge"]
        judge += [f"+loss.args.judge.cache.dir={tmp_path / 'judge_cache'}", "+loss.args.judge.max_concurrency=2"]
        cfg, m = _run(cache, tmp_path / "judge", "loss.args.labeller=judge", *judge)
        o, n = m["online"], len(server.requests)
        assert n > 0 and o["judge_calls"] == n and o["judge_tokens"] == 105 * n  # the server's own count
        assert o["labels_failed"] == 0 and o["labeller"]["cache_hits"] == 0  # (a fresh judge cache)
        store = Store(str(cache))
        pairs = [p for rec in _record(store, cfg) for p in rec["pairs"]]
        assert pairs and all(len(p["chosen"]) < len(p["rejected"]) for p in pairs)  # the server's verdicts
        # the same run again without its policy in the store: trained again, every judgment from the judge's cache
        shutil.rmtree(store.path("policy", plan(cfg).policy))
        _, again = _run(cache, tmp_path / "again", "loss.args.labeller=judge", *judge)
        assert len(server.requests) == n and again["online"]["judge_calls"] == again["online"]["judge_tokens"] == 0
        assert again["online"]["labeller"]["cache_hits"] == n and again["online"]["labels_used"] == o["labels_used"]


@pytest.mark.slow  # trains a reward model and OPRL's policy and PRM online (make test-fast runs no training)
def test_oprl_takes_its_outcome_rewards_from_the_explicit_source(cache, tmp_path):
    """loss=oprl with loss.args.labeller=explicit: each sample's outcome is the reward model's score of that sample
    (the source's ``rewards``), not the world's gold reward."""
    from po_bench import pipeline, stages

    cfg = _compose(["loss=oprl", "dataset.steps=true", *RUN, f"cache_dir={cache}", "loss.args.labeller=explicit"])
    m = pipeline.run(cfg, tmp_path / "oprl")
    o, store = m["online"], Store(str(cache))
    ((name, r),) = plan(cfg).policy["online"]["labeller"]["inputs"].items()
    assert name == "reward_model" and o["labeller_inputs"] == {"reward_model": spec_key("reward_model", r["spec"])}
    assert o["labels_requested"] == 4 * 8 * 3 and o["reward_model_pairs"] > 0 and o["judge_calls"] == 0
    rm_dir = stages.checkpoint_dir(store, ref("reward_model", r["spec"]))
    lab = labeller_for(
        plan(cfg).policy["online"]["labeller"], {"reward_model": stages.reward_scorer(rm_dir, r["spec"])}
    )
    for rec in _record(store, cfg):  # the first and the last step: the outcomes are the reward model's scores
        flat = [(x, y) for x, ys in zip(rec["prompts"], rec["samples"]) for y in ys]
        assert rec["rewards"] == pytest.approx(lab.rewards([x for x, _ in flat], [y for _, y in flat]), abs=1e-4)
        assert rec["rewards"] != pytest.approx([world.gold_reward(x, y) for x, y in flat], abs=1e-3)

"""OPRL (loss=oprl, po_bench/training/oprl.py) on the tiny world: its config refusals, the token -> world step
map, and a real short run (SFT, online training with real generation, the world's gold reward as the outcome, an
implicit PRM trained beside the policy): run.json's counts and the step rewards' Spearman correlation with the
world's exact step gains, recomputed with scipy from the stored numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy.stats import spearmanr

from po_bench.config import ConfigError, validate
from po_bench.data import world
from po_bench.specs import plan
from po_bench.stages import checkpoint_dir, load_tokenizer
from po_bench.store import Store
from po_bench.training.oprl import group_pairs, spearman, step_index, token_steps

from .conftest import compose, run_cli

SMALL = [
    "loss=oprl",
    "dataset.steps=true",
    "dataset.n_sft=300",
    "dataset.n_pref=64",
    "dataset.n_eval=32",
    "dataset.n_ood=16",
    "train.sft_epochs=2",
    "train.max_steps=4",
    "train.batch_size=8",
    "tracking=none",
    "threads=1",
]


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["loss=oprl"], "loss=oprl needs dataset.steps=True (got False): the method is defined on that data"),
        (
            ["loss=oprl", "dataset.steps=true", "loss.args.labeller=implicit", "+loss.args.label_temperature=0.5"],
            "loss=oprl scores each sample's outcome by a scalar reward: loss.args.labeller gold, annotator or explicit",
        ),
        (
            ["loss=oprl", "dataset.steps=true", "noise=flip"],
            "loss=oprl scores samples, it labels no pairs: noise does not apply (set noise=none)",
        ),
        (
            ["loss=oprl", "dataset.steps=true", "+loss.args.label_temperature=0.5"],
            "loss.args.label_temperature does not apply (leave it 0)",
        ),
    ],
)
def test_oprl_config_refusals(overrides, needle):
    with pytest.raises(ConfigError) as e:
        validate(compose(overrides))
    assert needle in str(e.value)


def test_oprl_config_validates_and_plans_an_online_policy_without_pairs():
    cfg = compose(["loss=oprl", "dataset.steps=true"])
    validate(cfg)
    p = plan(cfg)
    assert p.pairs is None and p.ref_logps is None and "online" in p.policy and p.guide is None
    assert plan(compose(["loss=oprl", "dataset.steps=true", "loss.args.alpha=0"])).policy != p.policy


def test_group_pairs_and_spearman():
    assert group_pairs([1.0, 0.0, 1.0, 2.0, 2.0, 2.0], 3) == [(0, 1), (2, 1)]  # ties give no pair; per prompt
    assert spearman([1.0, 1.0], [0.0, 1.0]) is None and spearman([1.0], [2.0]) is None
    assert spearman([1.0, 2.0, 3.0], [0.1, 0.5, 0.2]) == pytest.approx(0.5)


class _Words:
    """A word-level decoder like the world's tokenizer (one word a token, id 0 the end-of-sequence)."""

    def __init__(self, words):
        self.words = words

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(self.words[i] for i in ids if i != 0)


def test_token_steps_follow_the_worlds_steps():
    c = list(world.CONTENT_WORDS)[:2]
    words = ["<eos>", "so", c[0], "and", "then", c[1], "ok"]
    tok = _Words(words)
    ids = [1, 2, 3, 4, 5, 6, 0]
    text = tok.decode(ids)
    assert world.split_steps(text) == [f"so {c[0]}", f"and then {c[1]}", "ok"]
    assert token_steps(tok, ids) == [0, 0, 1, 1, 1, 2, 2]  # the end-of-sequence token: the last step
    assert token_steps(tok, [0]) == [-1]  # no steps
    import torch

    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0]])
    assert step_index(mask, [[0, 1, 1], [0, 2]]).tolist() == [[-1, 0, 1, 1, -1], [-1, -1, 0, 2, -1]]


@pytest.mark.slow  # end to end: SFT, OPRL online training with a PRM, generation, judges
def test_oprl_runs_on_the_world_and_its_step_rewards_are_scored_against_the_step_gains(tmp_path):
    cache = tmp_path / "cache"
    r = run_cli([*SMALL, f"cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]
    o = m["online"]
    assert o["samples_generated"] == 4 * 8 * 4 and o["labels_requested"] == o["labels_used"] == 128
    assert o["judge_calls"] == 0 and o["judge_tokens"] == 0 and set(o["seconds"]) == {"generate", "label", "train"}
    assert 0 < o["prm_pairs"] and o["prm_pairs"] + o["ties_dropped"] == 4 * 8 * 6  # 6 pairs per prompt of 4
    assert m["train"]["steps"] == 4 and math.isfinite(m["gold_reward"])
    cfg = compose([*SMALL, f"cache_dir={cache}"])
    p = plan(cfg)
    store = Store(str(cache))
    facts = json.loads((Path(store.path("policy", p.policy)) / "train_metrics.json").read_text())
    first, last = facts["online_record"]
    assert (first["step"], last["step"]) == (0, 3)
    # the outcomes are the world's gold reward of the current policy's own samples, and the step gains the
    # world's exact ones for those samples' steps; the step rewards one per step
    for rec in (first, last):
        flat = [(x, y) for x, ys in zip(rec["prompts"], rec["samples"]) for y in ys]
        assert len(flat) == 32 and rec["rewards"] == pytest.approx([world.gold_reward(x, y) for x, y in flat])
        for (x, y), g, s in zip(flat, rec["step_gains"], rec["step_rewards"]):
            assert g == pytest.approx(world.step_gains(x, world.split_steps(y))) and len(s) == len(g)
    # the correlation, recomputed with scipy from the stored numbers (defined once the PRM has moved)
    a = [v for row in last["step_rewards"] for v in row]
    b = [v for row in last["step_gains"] for v in row]
    assert any(v != 0 for v in a)
    rho = spearmanr(a, b).statistic
    assert last["spearman"] == pytest.approx(rho, abs=1e-12)
    assert o["oprl"]["step_reward_spearman_last"] == pytest.approx(rho, abs=1e-12)
    assert o["oprl"]["steps_scored"] >= 1 and -1 <= o["oprl"]["step_reward_spearman_mean"] <= 1
    tok = load_tokenizer(checkpoint_dir(store, p.policy["start"]), p.policy["model"])
    y = last["samples"][0][0]
    ids = tok(y.strip(), add_special_tokens=False)["input_ids"]
    assert max(token_steps(tok, ids)) == len(world.split_steps(y)) - 1  # the real tokenizer's tokens map to them

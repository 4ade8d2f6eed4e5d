"""OFS-DPO and COFS-DPO (loss=ofs_dpo, po_bench/training/ofs.py): the families, the combination weights, the swap of
the two LoRA modules' roles, the combination of fast modules against the sum of their weight deltas, real short
runs on the tiny world (real generation, the gold labeller) and the end-to-end runs with their run.json counts.
Its loss against a hand transcription: tests/test_online_losses.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from po_bench.data import world
from po_bench.training import models
from po_bench.training.labellers import Labels, labeller_for
from po_bench.training.ofs import ADAPTERS, FastSlow, cofs_weights, families, family_of, swap_roles, train_ofs
from po_bench.training.online import LoopInputs

from .conftest import run_cli

SPEC = world.WorldSpec(n_pref=24, n_eval=48)
PREF, HELD = world.make_prompts(SPEC, "pref"), world.make_prompts(SPEC, "eval")
PSPEC = {"min_keywords": SPEC.min_keywords, "max_keywords": SPEC.max_keywords}
GEN = OmegaConf.create(
    {"backend": "hf", "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12, "batch_size": 128, "progress": False}
)


def _tiny(tokenizer):
    return models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128, seed=0)


def _train(steps: int):
    return OmegaConf.create(
        {
            "batch_size": 4,
            "grad_accum": 1,
            "max_steps": steps,
            "epochs": 1.0,
            "max_length": 48,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
        }
    )


def test_families_are_the_keyword_counts_fewest_first():
    fams = families(PREF, PSPEC, 3)
    assert sum(len(f) for f in fams) == len(PREF) and all(fams)
    for k, fam in enumerate(fams):
        assert {len(world.parse_prompt(p)) for p in fam} == {k + 1}
    assert {family_of(p, 1, 3, 1) for p in PREF} == {0}
    three = fams[2][0]  # a prompt of three keywords: the last family of any number of them
    assert [family_of(three, 1, 3, d) for d in (1, 2, 3)] == [0, 1, 2]
    assert [family_of(fams[0][0], 1, 3, d) for d in (1, 2, 3)] == [0, 0, 0]


def test_cofs_weights_are_normalised_over_the_families_so_far():
    assert cofs_weights(None, 2) == pytest.approx([1 / 3] * 3)
    assert cofs_weights([1, 3, 4], 1) == pytest.approx([0.25, 0.75])
    with pytest.raises(ValueError, match="sum to 0"):
        cofs_weights([0, 0, 1], 1)


def test_a_swap_exchanges_the_modules_roles_and_learning_rates(tokenizer):
    fs = FastSlow(_tiny(tokenizer), 4, 8)
    a, b = (list(fs.params(n).values()) for n in ADAPTERS)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and fs.fast == ADAPTERS[0]  # identical at the start
    from transformers import get_scheduler

    opt = torch.optim.AdamW([{"params": a, "lr": 1e-2}, {"params": b, "lr": 1e-3}], lr=1e-2)
    sched = get_scheduler("linear", opt, num_warmup_steps=0, num_training_steps=4)
    sched.step()  # three quarters of the way up the linear decay
    swap_roles(fs, opt, sched)
    assert (fs.fast, fs.slow) == (ADAPTERS[1], ADAPTERS[0])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.75e-3, 0.75e-2])
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5e-3, 0.5e-2])  # the schedule goes on


def test_the_combination_of_fast_modules_is_the_weighted_sum_of_their_deltas(tokenizer):
    base = _tiny(tokenizer)
    w0 = {k: v.clone() for k, v in base.state_dict().items()}
    fs = FastSlow(base, 4, 8)
    snaps = []
    for seed in (1, 2):  # two hand-made fast modules
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in fs.params(fs.fast).values():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        snaps.append(fs.snapshot(fs.fast))
    fs.combine(snaps, [0.25, 0.75])
    merged = fs.merged("cofs").state_dict()
    scaling = 8 / 4
    checked = 0
    for name, w in w0.items():
        if not name.endswith(".weight") or name not in merged:
            continue
        key = name[: -len(".weight")]
        parts = [
            (s.get(f"base_model.model.{key}.lora_A.{{}}.weight"), s.get(f"base_model.model.{key}.lora_B.{{}}.weight"))
            for s in snaps
        ]
        if parts[0][0] is None:
            continue
        want = w + sum(c * scaling * B @ A for c, (A, B) in zip((0.25, 0.75), parts))
        assert torch.allclose(merged[name], want, atol=1e-6), name
        checked += 1
    assert checked > 0


def _run(tokenizer, args, steps, labeller=None):
    return train_ofs(
        LoopInputs(
            policy=_tiny(tokenizer),
            tokenizer=tokenizer,
            prompts=PREF,
            function="ofs_dpo",
            args=args,
            beta=0.1,
            lr=1e-2,
            train=_train(steps),
            gen=GEN,
            seed=3,
            labeller=labeller or labeller_for({"kind": "gold", "temperature": 0.0}),
            noise={"kind": "none", "rate": 0.0},
            prompts_spec=PSPEC,
            gold=world.gold_reward,
            heldout=HELD,
            logging_steps=1,
        )
    )


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_ofs_trains_both_modules_on_the_fast_modules_labelled_samples(tokenizer):
    start = {k: v.clone() for k, v in _tiny(tokenizer).state_dict().items()}
    res = _run(tokenizer, {"lr_ratio": 4.0}, steps=4)
    model = res["model"]
    assert type(model).__name__ != "PeftModel" and not any("lora" in k for k in model.state_dict())
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items())  # the fast module, merged
    on = res["online"]
    assert on["samples_generated"] == 2 * 4 * 4 and on["labels_requested"] == 16 and on["deployed"] == "fast"
    assert on["swaps"] == sum(bool(h.get("swapped")) for h in res["history"])
    for prev, h in zip(res["history"], res["history"][1:]):  # a swap hands the fast role to the other module
        assert (h["fast"] != prev["fast"]) == bool(prev.get("swapped"))
    for h in res["history"]:
        if "loss" in h:
            assert math.isfinite(h["dpo_loss_fast"]) and math.isfinite(h["dpo_loss_slow"])
            assert h["swapped"] == (h["dpo_loss_slow"] < h["dpo_loss_fast"])
    for rec in res["online_record"]:  # the labelled pairs are the step's two samples of the fast module
        for p in rec["pairs"]:
            i = rec["prompts"].index(p["prompt"])
            assert {p["chosen"], p["rejected"]} == set(rec["samples"][i])


class FailingJudge:
    """A stand-in judge: every other pair it cannot judge (a failed verdict, counted), the rest it gives to the
    shorter response; one call per pair, its own ``failed_requests`` count."""

    name = "failing_judge"

    def label(self, req):
        wins = [None if i % 2 else len(a) < len(b) for i, (a, b) in enumerate(zip(req.first, req.second))]
        failed = sum(i % 2 for i in range(len(wins)))
        return Labels(wins, len(wins), judge_calls=len(wins), failed=failed, details={"failed_requests": failed})


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_ofs_counts_the_sources_failed_verdicts_apart_from_ties(tokenizer):
    """OFS-DPO takes any source through the online loop's labelling: a verdict the source failed to give drops its
    pair and is counted as failed (not as a tie), and the source's own counts reach metrics.online.labeller."""
    res = _run(tokenizer, {"lr_ratio": 4.0}, steps=2, labeller=FailingJudge())
    on = res["online"]
    assert on["labels_requested"] == on["judge_calls"] == 8 and on["labels_failed"] == 4
    assert on["labeller"] == {"failed_requests": 4}
    assert on["labels_used"] + on["ties_dropped"] + on["labels_failed"] == 8 and on["labels_used"] > 0
    for rec in res["online_record"]:
        assert all(
            len(p["chosen"]) < len(p["rejected"]) or len(p["chosen"]) == len(p["rejected"]) for p in rec["pairs"]
        )
        assert all(p["row"] % 2 == 0 for p in rec["pairs"])  # the failed (odd) rows never became pairs


@pytest.mark.slow  # trains (make test-fast runs no training)
def test_cofs_presents_the_families_in_sequence_and_measures_forgetting(tokenizer):
    res = _run(tokenizer, {"domains": 3, "weights": [1, 1, 2]}, steps=2)
    assert [h["domain"] for h in res["history"]] == [0, 0, 1, 1, 2, 2] and res["steps"] == 6
    fams = families(PREF, PSPEC, 3)
    for h, rec in zip(res["history"][:1], res["online_record"][:1]):
        assert all(family_of(p, 1, 3, 3) == h["domain"] for p in rec["prompts"])
    cofs = res["online"]["cofs"]
    assert cofs["prompts"] == [len(f) for f in fams] and res["online"]["deployed"] == "cofs"
    after = cofs["after_domain"]
    assert [a["weights"] for a in after] == [[1.0], [0.5, 0.5], [0.25, 0.25, 0.5]]
    assert all(len(a["combined"]) == 3 and len(a["fast"]) == 3 for a in after)
    assert after[0]["combined"] == after[0]["fast"]  # one module: the combination is the fast module
    for kind in ("combined", "fast"):
        assert len(cofs["forgetting"][kind]) == 2
        for i, f in enumerate(cofs["forgetting"][kind]):
            assert f == pytest.approx(after[i][kind][i] - after[2][kind][i])


SMALL = [
    "dataset.n_sft=200",
    "dataset.n_pref=48",
    "dataset.n_eval=30",
    "dataset.n_ood=8",
    "train.sft_epochs=1",
    "train.max_steps=2",
    "train.batch_size=8",
    "tracking=none",
    "threads=1",
]


def _cli(tmp_path, extra) -> dict:
    args = ["loss=ofs_dpo", *SMALL, *extra, f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    r = run_cli(args, cwd=tmp_path, env_extra={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]


@pytest.mark.slow  # end to end: SFT, OFS training, generation, judges
def test_ofs_runs_end_to_end_and_reports_its_counts(tmp_path):
    ofs = _cli(tmp_path, [])
    assert ofs["online"]["samples_generated"] == 2 * 8 * 2 and ofs["online"]["labels_requested"] == 16
    assert set(ofs["online"]["seconds"]) == {"generate", "label", "train"} and "swaps" in ofs["online"]
    assert math.isfinite(ofs["gold_reward"]) and "cofs" not in ofs["online"] and ofs["online"]["deployed"] == "fast"


@pytest.mark.slow  # end to end: SFT, COFS training over three families, forgetting, generation, judges
def test_cofs_runs_end_to_end_and_reports_forgetting(tmp_path):
    cofs = _cli(tmp_path, ["loss.args.domains=3"])
    assert cofs["train"]["steps"] == 6 and cofs["online"]["samples_generated"] == 2 * 8 * 6
    assert cofs["online"]["deployed"] == "cofs" and math.isfinite(cofs["gold_reward"])
    assert len(cofs["online"]["cofs"]["after_domain"]) == 3 and len(cofs["online"]["cofs"]["forgetting"]["fast"]) == 2

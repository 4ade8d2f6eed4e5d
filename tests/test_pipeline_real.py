"""The real-data pipeline end to end: HH-RLHF pairs (the real file in ../shared), a small Llama
with SmolLM2's tokenizer and chat template, DPO through TRL, generation, implicit-reward accuracy."""

import json

import pytest

from .conftest import ROOT, SHARED, run_cli

pytestmark = pytest.mark.slow
HH = SHARED / "data" / "hh_rlhf" / "harmless-base_test.jsonl.gz"


@pytest.mark.parametrize("loss", ["dpo", "simpo", "kto", "cdpo"])
def test_hh_rlhf_run(loss, tiny_chat_model, tmp_path):
    if not HH.exists():
        pytest.skip(f"{HH} is absent (../shared/data is provided to developers and CI only)")
    args = [
        "model.kind=hub",
        f"model.name_or_path={tiny_chat_model}",
        "model.name=tiny-chat",
        "dataset=hh_rlhf",
        f"dataset.path={HH}",
        "dataset.eval_split=null",
        "dataset.max_rows=40",
        "dataset.n_eval=8",
        "judge=none",
        f"loss={loss}",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.max_length=192",
        "generation.max_new_tokens=8",
        "generation.batch_size=8",
        "generation.progress=false",
        "train.progress=false",
        "tracking=none",
        "threads=1",
        "noise=flip",
        "noise.rate=0.25",
        # The probe still scores real pairs and unseen responses at every step, on 4 + 2 of them instead of
        # 32 + 16: with SmolLM2's 49k vocabulary its full-vocabulary scoring was half of the training time,
        # and nothing here depends on the probe set's size.
        "diagnostics.probe_pairs=4",
        "diagnostics.probe_unseen=2",
        f"cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/run",
    ]
    r = run_cli(args, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "done", rec.get("error")
    m = rec["metrics"]
    conv = m["data"]["conversion"]
    # 40 rows read; the last 8 pairs (n_eval) are held out for evaluation, never trained on
    assert conv["rows"] == 40 and conv["pairs"] + conv["n_skipped"] == 40
    n_train = conv["pairs"] - 8 - m["data"]["skipped_prompt_over_max_length"]
    assert m["data"]["tokens"]["n_pairs"] == n_train
    assert m["data"]["noise_flipped_count"] == round(0.25 * n_train)
    assert set(m["data"]["leakage"]) >= {"alpaca_eval", "mt_bench", "arena_hard"}
    assert 0.0 <= m["implicit_reward_accuracy"] <= 1.0
    assert m["mean_length"] >= 1 and m["kl_to_ref"] is not None
    assert m["gold_reward"] is None  # no gold reward outside the world
    samples = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 8 and isinstance(json.loads(samples[0])["prompt"], list)  # chat prompts

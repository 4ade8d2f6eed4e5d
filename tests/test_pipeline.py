"""po_bench.pipeline's own logic: run.json's ``metrics.pair_weights`` (the per-pair scores and the weights
the loss gives them) and ``metrics.data`` (pair statistics, pairs per prompt, leakage of eval prompts into
training, every count of rows left out).  Whole runs through the pipeline: tests/test_pipeline_e2e.py,
tests/test_stages.py, tests/test_pipeline_real.py."""

from __future__ import annotations

import json
import logging

import pytest

from po_bench.pipeline import data_report, pair_weights_report
from po_bench.specs import plan
from po_bench.training import losses
from po_bench.training.pair_scores import summary

from .conftest import compose


@pytest.mark.parametrize("loss, kind", [("madpo", "reward_margin"), ("sem_dpo", "semantic_distance")])
def test_pair_weights_report_summarises_the_scores_and_the_losss_weights(loss, kind):
    cfg = compose([f"loss={loss}"])
    scores = [-1.0, 0.0, 0.5, 2.0]
    rep = pair_weights_report(cfg, scores)
    weights = losses.pair_weights(loss, dict(cfg.loss.args), scores).tolist()
    assert rep == {"kind": kind, "score": summary(scores), "weight": summary(weights), "score_positive": 0.5}
    assert rep["weight"] != rep["score"]  # the loss's weights, not the scores again
    assert pair_weights_report(cfg, [])["score_positive"] == 0.0


def test_data_report_of_the_world_counts_pairs_per_prompt_and_held_out_leakage(tokenizer, pairs):
    cfg = compose()
    p = plan(cfg)
    assert data_report(cfg, p, None, tokenizer) == {}  # no pairs (an SFT-only run): nothing to report
    n_prompts = len({x["prompt"] for x in pairs})
    art = {"train": pairs + pairs[:8], "stats": {"n_pairs": len(pairs) + 8}}  # 8 prompts with two pairs each
    stats = data_report(cfg, p, art, tokenizer)
    assert stats["n_pairs"] == len(pairs) + 8  # the pairs artifact's own statistics are kept
    assert stats["pairs_per_prompt"] == pytest.approx((len(pairs) + 8) / n_prompts) and n_prompts > 8
    assert stats["k_samples"] == 2  # on-policy: the samples per prompt the pairs were rated from
    assert set(stats["leakage"]) == {"world_eval", "world_ood"}
    assert stats["leakage"]["world_eval"]["count"] == stats["leakage"]["world_ood"]["count"] == 0
    assert "counts" not in stats


def test_data_report_of_a_file_names_eval_prompts_that_occur_in_training(tokenizer, tmp_path, caplog):
    f = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"write about apple {i} =>", "chosen": " the apple", "rejected": " a river"} for i in range(12)]
    f.write_text("".join(json.dumps(r) + "\n" for r in [*rows, rows[0]]))  # the last 3 rows are held out
    cfg = compose(["dataset=file", f"dataset.path={f}", "dataset.eval_split=null", "dataset.n_eval=4", "judge=none"])
    p = plan(cfg)
    art = p.source.make_pairs(p.pairs["source"], None, 0, tokenizer=tokenizer, max_length=cfg.train.max_length)
    assert (len(art["train"]), len(art["eval"])) == (10, 3)
    with caplog.at_level(logging.WARNING, logger="po_bench"):
        stats = data_report(cfg, p, art, tokenizer)
    leak = stats["leakage"]["eval_split"]
    assert (leak["count"], leak["n_eval"], leak["examples"]) == (1, 3, ["write about apple 0 =>"])
    assert "1 of 3 eval prompts also occur among the training prompts (data.leakage.eval_split)" in caplog.text
    assert stats["pairs_per_prompt"] == 1.0 and stats["tokens"]["n_pairs"] == 10
    assert stats["counts"]["rows_read"] == 13 and stats["counts"]["eval_prompts_in_train"] == 1

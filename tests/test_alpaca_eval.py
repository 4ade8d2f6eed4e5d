"""AlpacaEval 2 (po_bench/judges/alpaca_eval.py): the length-controlled win rate on a local calibration file, the leaderboard reproduced from the real GPT-4 annotations of three models (../shared; skipped where absent), the package's prompt, order switch and parse failures on a scripted judge."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
from pathlib import Path

import pytest

from .helpers import FakeOpenAI, client_cfg, shared_or_skip, write_lc_calibration

LEADERBOARD_NAMES = {"alpaca-7b": "Alpaca 7B", "claude-2.1": "Claude 2.1", "gemma-7b-it": "Gemma Instruct (7B)"}

ROOT = Path(__file__).resolve().parent.parent
ALPACA = ROOT.parent / "shared" / "data" / "alpaca_eval"


def _lc_rows(n: int, seed: int = 0, length_bias: bool = True) -> list[dict]:
    """Annotation rows in alpaca_eval's format: the model wins exactly where its answer is the longer one."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        longer = bool(rng.random() < 0.6)
        out2 = "word " * (60 if longer else 10)
        pref = (2.0 if longer else 1.0) if length_bias else float(rng.choice([1.0, 2.0]))
        rows.append(
            {
                "instruction": f"q{i}",
                "output_1": "word " * 30,
                "output_2": out2,
                "preference": pref,
                "index": i,
                "generator_1": "gpt4_1106_preview",
                "generator_2": "policy",
                "annotator": "weighted_alpaca_eval_gpt4_turbo",
            }
        )
    return rows


def test_length_controlled_win_rate_runs_on_a_local_calibration_file(tmp_path, monkeypatch):
    """The LC plumbing end to end: alpaca_eval's GLM fitted on a locally built calibration file,
    po-bench's number equal to alpaca_eval's own call on the same rows, and a win rate bought with
    length discounted towards 50."""
    import huggingface_hub.constants
    import pandas as pd
    from alpaca_eval.metrics import get_length_controlled_winrate

    from po_bench.judges import alpaca_eval as ae

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    lc_dir = write_lc_calibration(tmp_path / "lc")
    rows = _lc_rows(120)
    m = ae.winrate_metrics(rows, lc_data_dir=str(lc_dir))
    assert m["lc_unavailable_reason"] is None, m["lc_unavailable_reason"]
    assert m["win_rate"] == pytest.approx(100 * sum(r["preference"] == 2.0 for r in rows) / len(rows))
    with ae._local_glm_files(str(lc_dir)):
        direct = get_length_controlled_winrate(
            pd.DataFrame(rows),
            save_weights_dir=None,
            is_add_glm_preference_inplace=False,
            is_warn_extreme_changes=False,
        )
    assert m["length_controlled_win_rate"] == pytest.approx(direct["length_controlled_winrate"], abs=1e-9)
    assert m["lc_standard_error"] == pytest.approx(direct["lc_standard_error"], abs=1e-9)
    # every win came with the longer answer: the GLM attributes them to length
    assert abs(m["length_controlled_win_rate"] - 50) < abs(m["win_rate"] - 50)
    # three judged rows (the end-to-end test's size) still fit
    small = ae.winrate_metrics(_lc_rows(3, seed=1), lc_data_dir=str(lc_dir))
    assert small["lc_unavailable_reason"] is None and 0 < small["length_controlled_win_rate"] < 100


def test_length_controlled_win_rate_missing_file_says_which(tmp_path):
    from po_bench.judges import alpaca_eval as ae

    (tmp_path / "lc").mkdir()
    m = ae.winrate_metrics(_lc_rows(20), lc_data_dir=str(tmp_path / "lc"))
    assert m["length_controlled_win_rate"] is None and m["win_rate"] is not None
    assert (
        "FileNotFoundError" in m["lc_unavailable_reason"]
        and "lc_data_dir holds no df_gamed.csv" in m["lc_unavailable_reason"]
    )


@pytest.mark.parametrize("model", sorted(LEADERBOARD_NAMES))
def test_alpaca_eval_reproduces_leaderboard(model, monkeypatch, tmp_path):
    """From the judge's stored logprobs (raw_completion) to the leaderboard's win rate, through
    po-bench's parser, order switch and metrics."""
    import huggingface_hub.constants

    from po_bench.judges.alpaca_eval import score_annotations, winrate_metrics

    ann_file = shared_or_skip(ALPACA / model / "weighted_alpaca_eval_gpt4_turbo_annotations.json.gz")
    board = {
        r["name"]: r
        for r in csv.DictReader(open(shared_or_skip(ALPACA / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv")))
    }
    row = board[LEADERBOARD_NAMES[model]]
    real_lc_dir = os.environ.get(
        "PO_BENCH_ALPACA_LC_DIR"
    )  # df_gamed.csv + instruction_difficulty.csv, if you have them
    # without the real calibration data: a locally built one, so that the GLM really runs (its value is then
    # not the leaderboard's; the real files stay on the Hub)
    lc_dir = real_lc_dir or str(write_lc_calibration(tmp_path / "lc"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never the Hub

    rows = json.load(gzip.open(ann_file))
    scored, counts = score_annotations(rows)
    assert counts["n_parse_failures"] == 0
    # identical outputs are draws without a judge call, as alpaca_eval does
    assert counts["n_same_output"] == sum(r["raw_completion"] is None for r in rows)
    for a, b in zip(scored, rows):  # every stored preference re-derived from the judge's logprobs
        assert abs(a["preference"] - float(b["preference"])) < 1e-6
    m = winrate_metrics([dict(r, index=i) for i, r in enumerate(scored)], lc_data_dir=lc_dir)
    print(
        model,
        "win rate",
        m["win_rate"],
        "leaderboard",
        row["win_rate"],
        "LC",
        m["length_controlled_win_rate"],
        "leaderboard LC",
        row["length_controlled_winrate"],
        "|",
        m["lc_unavailable_reason"],
    )
    assert abs(m["win_rate"] - float(row["win_rate"])) < 1e-3
    assert m["n_total"] == 805
    assert m["lc_unavailable_reason"] is None and 0 < m["length_controlled_win_rate"] < 100
    if real_lc_dir:
        assert abs(m["length_controlled_win_rate"] - float(row["length_controlled_winrate"])) < 1e-3


def test_alpaca_eval_prompt_is_the_packages():
    from alpaca_eval import constants

    from po_bench.judges.alpaca_eval import annotator_config, judge_messages, request_params_default

    cfg = annotator_config()
    assert cfg["fn_completion_parser"] == "logprob_parser" and cfg["completion_parser_kwargs"]["numerator_token"] == "m"
    msgs = judge_messages("Say hi", "hi", "hello")
    assert [m["role"] for m in msgs] == ["system", "user"]
    text = (Path(constants.EVALUATORS_CONFIG_DIR) / cfg["prompt_template"]).read_text()
    assert msgs[0]["content"] in text and '"""Say hi"""' in msgs[1]["content"]
    assert msgs[1]["content"].index('"""hi"""') < msgs[1]["content"].index('"""hello"""')
    assert request_params_default() == {"max_tokens": 1, "temperature": 1, "logprobs": True, "top_logprobs": 5}


def test_alpaca_eval_switch_and_parse_failures(tmp_path):
    from po_bench.judges.alpaca_eval import AlpacaEvalJudge, is_switched

    rows = [
        {
            "instruction": f"instruction {i}",
            "output": f"reference {i}",
            "generator": "gpt4_1106_preview",
            "dataset": "t",
        }
        for i in range(8)
    ]
    assert len({is_switched(r["instruction"]) for r in rows}) == 2  # both orders occur

    def responder(body):  # P(first shown output) = 0.9 if it says GOOD; no logprobs for instruction 7
        user = body["messages"][-1]["content"]
        if "instruction 7" in user:
            return "m", None
        first = user.split('"model_identifier": "m"')[1].split('"model_identifier": "M"')[0]
        pm = 0.9 if "GOOD" in first else 0.1
        return ("m" if pm > 0.5 else "M"), [
            {
                "token": "m",
                "logprob": math.log(pm),
                "top_logprobs": [{"token": "m", "logprob": math.log(pm)}, {"token": "M", "logprob": math.log(1 - pm)}],
            }
        ]

    with FakeOpenAI(responder) as srv:
        cfg = dict(client_cfg(srv.url, tmp_path), eval_path=str(tmp_path / "ref.json"), length_controlled=False)
        Path(cfg["eval_path"]).write_text(json.dumps(rows))
        judge = AlpacaEvalJudge(cfg)
        outs = ["GOOD answer"] * 6 + ["reference 6", "GOOD"]  # row 6 is identical to the reference: a draw
        res = judge.evaluate(outs)
        m = res.metrics
        assert m["n_parse_failures"] == 1 and m["n_judged"] == 7 and len(srv.requests) == 7  # the draw is not asked
        assert [r["preference"] for r in res.records[:6]] == pytest.approx([1.9] * 6)
        assert res.records[6]["preference"] == 1.5 and res.records[7]["preference"] is None
        assert m["win_rate"] == pytest.approx(100 * (0.9 * 6 + 0.5) / 7)
        assert m["length_controlled_win_rate"] is None and "length_controlled=false" in m["lc_unavailable_reason"]
        assert all(b["max_tokens"] == 1 and b["top_logprobs"] == 5 for b in srv.requests)

"""AlpacaEval 2 with the ``weighted_alpaca_eval_gpt4_turbo`` annotator.

Everything that defines the benchmark is taken from the installed ``alpaca_eval`` package (0.6.6),
not re-typed here:

* the annotator config ``evaluators_configs/weighted_alpaca_eval_gpt4_turbo/configs.yaml``: its
  prompt template (``alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt``, ChatML text turned into chat
  messages with ``alpaca_eval.utils.prompt_to_chatml``), its decoding arguments (``max_tokens=1``,
  ``temperature=1``, ``logprobs``, ``top_logprobs=5``) and its parser
  (``completion_parsers.logprob_parser`` with numerator ``m``, denominators ``m``/``M``, not
  binarised: preference = 2 - P(m) / (P(m) + P(M)), in [1, 2], 2 = the model wins);
* the output-order switch: alpaca_eval shows the two outputs in a random order seeded by the
  instruction (``random_seeded_choice("is_switched_outputs" + instruction + str(seed))`` with the
  annotator's seed 0) and maps a preference p back to 3 - p;
* identical outputs are a draw (1.5) without asking the judge;
* the metrics: ``alpaca_eval.metrics.get_winrate`` (raw win rate = mean(preference - 1) x 100)
  and ``get_length_controlled_winrate`` (the GLM of AlpacaEval 2.0 LC).  The GLM needs
  ``df_gamed.csv`` and ``instruction_difficulty.csv`` from the Hub dataset ``tatsu-lab/alpaca_eval``
  (or a local copy in ``lc_data_dir``); where they cannot be had, the length-controlled win rate
  is None and ``lc_unavailable_reason`` says why.

The reference outputs (the 805 instructions with ``gpt4_1106_preview``'s outputs) come from
``eval_path`` (a local JSON list of {instruction, output, generator, dataset}) or, by default,
the Hub (``eval_source``).

:func:`score_annotations` re-derives preferences from alpaca_eval's stored judge completions
(``raw_completion``); applied to the real annotations of the public leaderboard it reproduces the
leaderboard's win rates (tests/test_judges.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from po_bench.judges.api import Judge, JudgeInputs, JudgeResult, Reads, register_judge
from po_bench.judges.client import (
    FailureTally,
    JudgeClient,
    LLMJudgeConfig,
    cfg_get,
    read_json_or_jsonl,
    resolve_data_file,
    stats_delta,
    to_plain,
)

log = logging.getLogger("po_bench.judges")

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
REFERENCE_GENERATOR = "gpt4_1106_preview"
DEFAULT_SOURCE = "hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval_gpt4_baseline.json"
SWITCH_SEED = 0  # alpaca_eval's annotator seed (the order switch of the public annotations)


@lru_cache(maxsize=4)
def annotator_config(name: str = ANNOTATOR) -> dict:
    """The annotator's config from the installed alpaca_eval package, with the prompt template text."""
    from alpaca_eval import constants  # lazy: alpaca_eval, datasets, huggingface_hub, numpy, ... (~1.5 s)

    base = Path(constants.EVALUATORS_CONFIG_DIR)
    cfg = yaml.safe_load((base / name / "configs.yaml").read_text())[name]
    out = dict(cfg)
    out["prompt_template_text"] = (base / cfg["prompt_template"]).read_text()
    return out


def is_switched(instruction: str, seed: int = SWITCH_SEED) -> bool:
    """Whether alpaca_eval shows (output_2, output_1) instead of (output_1, output_2)."""
    # lazy: alpaca_eval, datasets, huggingface_hub, numpy, ... (~1.6 s)
    from alpaca_eval.utils import random_seeded_choice

    return bool(random_seeded_choice(seed="is_switched_outputs" + instruction + str(seed), choices=[False, True]))


def judge_messages(instruction: str, output_1: str, output_2: str, annotator: str = ANNOTATOR) -> list[dict]:
    """The chat messages alpaca_eval sends for one (already ordered) pair."""
    import pandas as pd  # lazy: numpy, pandas, pyarrow (~0.4 s)
    from alpaca_eval.utils import (  # lazy: alpaca_eval, datasets, huggingface_hub, numpy, ... (~1.6 s)
        make_prompts,
        prompt_to_chatml,
    )

    cfg = annotator_config(annotator)
    df = pd.DataFrame([{"instruction": instruction, "output_1": output_1, "output_2": output_2}])
    prompts, _ = make_prompts(df, template=cfg["prompt_template_text"], batch_size=1)
    return prompt_to_chatml(prompts[0].strip())


def request_params_default(annotator: str = ANNOTATOR) -> dict:
    """The annotator's decoding arguments (max_tokens, temperature, logprobs, top_logprobs)."""
    ck = dict(annotator_config(annotator).get("completions_kwargs", {}))
    return {
        "max_tokens": ck.get("max_tokens", 1),
        "temperature": ck.get("temperature", 1.0),
        "logprobs": bool(ck.get("logprobs", True)),
        "top_logprobs": ck.get("top_logprobs", 5),
    }


def preference_from_logprobs(logprobs: Sequence[dict] | None, annotator: str = ANNOTATOR) -> float | None:
    """alpaca_eval's logprob parser on one judge reply (a list of per-token logprob dicts);
    None when the reply has no usable logprobs (a parse failure)."""
    import numpy as np  # lazy: numpy (~0.1 s)

    # lazy: alpaca_eval, datasets, huggingface_hub, numpy, ... (~1.4 s)
    from alpaca_eval.completion_parsers import logprob_parser

    if not logprobs:
        return None
    kw = annotator_config(annotator).get("completion_parser_kwargs", {})
    with _quiet("root"):
        try:
            out = logprob_parser({"logprobs": {"content": list(logprobs[:1])}}, **kw)[0]
        except (AssertionError, KeyError, TypeError, ValueError):
            return None
    if out is None or (isinstance(out, float) and np.isnan(out)):
        return None
    return float(out)


@contextlib.contextmanager
def _quiet(name: str):
    lg = logging.getLogger(name)
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(old)


def score_annotations(
    rows: Sequence[dict], seed: int = SWITCH_SEED, annotator: str = ANNOTATOR
) -> tuple[list[dict], dict]:
    """Preferences re-derived from stored judge completions (alpaca_eval's annotation rows:
    instruction, output_1, output_2, raw_completion).  Returns (rows with ``preference``, counts)."""
    out, counts = [], {"n_rows": len(rows), "n_same_output": 0, "n_parse_failures": 0}
    for r in rows:
        r = dict(r)
        if r["output_1"] == r["output_2"]:
            r["preference"] = 1.5
            counts["n_same_output"] += 1
        else:
            raw = r.get("raw_completion") or {}
            lp = (raw.get("logprobs") or {}).get("content") if isinstance(raw, dict) else None
            p = preference_from_logprobs(lp, annotator)
            if p is None:
                counts["n_parse_failures"] += 1
            elif is_switched(r["instruction"], seed):
                p = 3.0 - p
            r["preference"] = p
        out.append(r)
    return out, counts


@contextlib.contextmanager
def _local_glm_files(lc_data_dir: str | None):
    """Serve alpaca_eval's GLM Hub files (df_gamed.csv, instruction_difficulty.csv) from a folder."""
    if not lc_data_dir:
        yield
        return
    from alpaca_eval.metrics import glm_winrate  # lazy: alpaca_eval, datasets, huggingface_hub, numpy, ... (~1.5 s)

    orig = glm_winrate.hf_hub_download

    def local(repo_id=None, filename=None, **_):
        p = Path(lc_data_dir).expanduser() / filename
        if not p.is_file():
            raise FileNotFoundError(f"{p} (lc_data_dir holds no {filename})")
        return str(p)

    glm_winrate.hf_hub_download = local
    try:
        yield
    finally:
        glm_winrate.hf_hub_download = orig


def winrate_metrics(
    annotations: Sequence[dict], length_controlled: bool = True, lc_data_dir: str | None = None
) -> dict:
    """alpaca_eval's metrics of annotation rows (instruction, output_1 = reference, output_2 = model,
    preference in [1, 2] or None for a failed judgment, index = position in the 805 instructions,
    generator_1, generator_2).  Rows without a preference are left out (and must be counted by
    the caller)."""
    import pandas as pd  # lazy: numpy, pandas, pyarrow (~0.4 s)
    from alpaca_eval.metrics import get_winrate  # lazy: alpaca_eval, datasets, huggingface_hub, numpy, ... (~1.5 s)

    rows = [r for r in annotations if r.get("preference") is not None and not _isnan(r["preference"])]
    if not rows:
        return {
            "win_rate": None,
            "length_controlled_win_rate": None,
            "n_total": 0,
            "lc_unavailable_reason": "no judged rows",
        }
    df = pd.DataFrame(rows)
    df["preference"] = df["preference"].astype(float)
    m = {k: _num(v) for k, v in get_winrate(df).items()}
    m["avg_length"] = float(df["output_2"].str.len().mean())
    m["length_controlled_win_rate"] = None
    m["lc_standard_error"] = None
    m["lc_unavailable_reason"] = None
    if not length_controlled:
        m["lc_unavailable_reason"] = "length_controlled=false in the judge config"
        return m
    if _LC_FAILURE.get(lc_data_dir):  # the GLM's data could not be had earlier in this process: no retry
        m["lc_unavailable_reason"] = _LC_FAILURE[lc_data_dir]
        return m
    try:
        # lazy: alpaca_eval, datasets, huggingface_hub, numpy, ... (~1.4 s)
        from alpaca_eval.metrics import get_length_controlled_winrate

        df = df.assign(annotator=df.get("annotator", ANNOTATOR))
        with _local_glm_files(lc_data_dir), _quiet("root"):
            lc = get_length_controlled_winrate(
                df, save_weights_dir=None, is_add_glm_preference_inplace=False, is_warn_extreme_changes=False
            )
        m["length_controlled_win_rate"] = _num(lc["length_controlled_winrate"])
        m["lc_standard_error"] = _num(lc.get("lc_standard_error"))
    except Exception as e:  # the GLM's data could not be had: say so, never invent a number
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        m["lc_unavailable_reason"] = (
            "alpaca_eval's length-control GLM needs df_gamed.csv and instruction_difficulty.csv from the Hub "
            f"dataset tatsu-lab/alpaca_eval (or a local copy via lc_data_dir): {type(e).__name__}: {msg}"
        )
        if _is_missing_data(e):
            _LC_FAILURE[lc_data_dir] = m["lc_unavailable_reason"]
    return m


_LC_FAILURE: dict = {}  # lc_data_dir -> reason, once the GLM's files could not be had


def _is_missing_data(e: BaseException) -> bool:
    names = {type(x).__name__ for x in (e, e.__cause__, e.__context__) if x is not None}
    return bool(
        names
        & {
            "LocalEntryNotFoundError",
            "FileNotFoundError",
            "OfflineModeIsEnabled",
            "ConnectionError",
            "ConnectError",
            "HfHubHTTPError",
            "EntryNotFoundError",
            "RepositoryNotFoundError",
        }
    )


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and not isinstance(v, float) else f


@dataclass
class AlpacaEvalConfig(LLMJudgeConfig):
    """judge=alpaca_eval (conf/judge/alpaca_eval.yaml)."""

    annotator: str = "weighted_alpaca_eval_gpt4_turbo"
    top_logprobs: int | None = None
    eval_path: str | None = None
    eval_source: str | None = None
    subset_size: int = 0
    subset_seed: int = 0
    switch_seed: int = 0
    length_controlled: bool = True
    lc_data_dir: str | None = None


@register_judge("alpaca_eval")
class AlpacaEvalJudge(Judge):
    """``instructions()`` -> generate one output per instruction -> ``evaluate(outputs)``."""

    config_class = AlpacaEvalConfig
    reads = Reads.ANSWERS
    uses_client = True
    headline_metric = "alpaca_eval_win_rate"
    reports_interval = True
    order = 20

    def __init__(self, cfg: Any, client: JudgeClient | None = None):
        self.cfg = cfg
        self.annotator = cfg_get(cfg, "annotator", ANNOTATOR)
        self.ann_cfg = annotator_config(self.annotator)
        self.client = client
        self._reference: list[dict] | None = None

    def _client(self) -> JudgeClient:
        if self.client is None:
            self.client = JudgeClient(self.cfg)
        return self.client

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        """The policy's answer to each instruction against the reference outputs."""
        return self.evaluate(policy.answers([[{"role": "user", "content": q}] for q in self.instructions()]))

    def reference(self) -> list[dict]:
        """The evaluation set (with the subset applied): rows {index, instruction, output, generator, dataset}."""
        if self._reference is None:
            path = resolve_data_file(
                cfg_get(self.cfg, "eval_path"),
                cfg_get(self.cfg, "eval_source", DEFAULT_SOURCE),
                "alpaca_eval reference outputs",
            )
            rows = read_json_or_jsonl(path)
            rows = [dict(r, index=i) for i, r in enumerate(rows)]
            n = int(cfg_get(self.cfg, "subset_size", 0))
            if 0 < n < len(rows):
                idx = sorted(random.Random(int(cfg_get(self.cfg, "subset_seed", 0))).sample(range(len(rows)), n))
                rows = [rows[i] for i in idx]
            self._reference = rows
        return self._reference

    def instructions(self) -> list[str]:
        return [r["instruction"] for r in self.reference()]

    def structured_outputs(self) -> dict | None:
        so = cfg_get(self.cfg, "structured_outputs")
        if so is True:
            kw = self.ann_cfg.get("completion_parser_kwargs", {})
            return {"choice": list(kw.get("denominator_tokens", ["m", "M"]))}
        return to_plain(so) if so else None

    def request_params(self) -> dict:
        p = request_params_default(self.annotator)
        for k in ("max_tokens", "temperature", "top_logprobs"):  # config overrides (None: the annotator's)
            v = cfg_get(self.cfg, k)
            if v is not None:
                p[k] = v
        return p

    def evaluate(self, outputs: Sequence[str], generator: str = "po-bench-policy") -> JudgeResult:
        """Judge ``outputs`` (one per :meth:`instructions`, in order) against the reference outputs."""
        ref = self.reference()
        if len(outputs) != len(ref):
            raise ValueError(f"alpaca_eval: {len(outputs)} outputs for {len(ref)} instructions")
        seed = int(cfg_get(self.cfg, "switch_seed", SWITCH_SEED))
        rows, requests, pending = [], [], []
        for r, out in zip(ref, outputs):
            out = (out or "").strip()
            row = {
                "index": r["index"],
                "instruction": r["instruction"],
                "output_1": r["output"],
                "output_2": out,
                "generator_1": r.get("generator", REFERENCE_GENERATOR),
                "generator_2": generator,
                "annotator": self.annotator,
                "dataset": r.get("dataset"),
            }
            if row["output_1"] == out:
                row["preference"] = 1.5
            else:
                sw = is_switched(r["instruction"], seed)
                row["is_switched_outputs"] = sw
                a, b = (out, r["output"]) if sw else (r["output"], out)
                requests.append(
                    {
                        "messages": judge_messages(r["instruction"], a, b, self.annotator),
                        "structured_outputs": self.structured_outputs(),
                        **self.request_params(),
                    }
                )
                pending.append(len(rows))
            rows.append(row)
        client = self._client()
        before = client.stats.as_dict()
        results = client.chat_many(requests, desc="alpaca_eval")
        n_parse, failures, examples = 0, FailureTally(len(requests)), []
        for i, res in zip(pending, results):
            row = rows[i]
            if not res.ok:
                failures.add(res.error)
                row.update(preference=None, error=res.error)
                continue
            p = preference_from_logprobs(res.logprobs, self.annotator)
            row["raw_completion"] = {"text": res.text, "logprobs": (res.logprobs or [])[:1]}
            if p is None:
                n_parse += 1
                row["preference"] = None
                if len(examples) < 5:
                    examples.append({"index": row["index"], "text": res.text, "logprobs": (res.logprobs or [])[:1]})
                continue
            row["preference"] = 3.0 - p if row["is_switched_outputs"] else p
        if n_parse:
            log.warning("alpaca_eval: %d judge replies without usable logprobs for m/M (left out)", n_parse)
        m = winrate_metrics(rows, bool(cfg_get(self.cfg, "length_controlled", True)), cfg_get(self.cfg, "lc_data_dir"))
        m.update(
            benchmark="alpaca_eval",
            annotator=self.annotator,
            judge=client.identity(),
            n_instructions=len(rows),
            n_judged=len(rows) - n_parse - failures.n_request_failures - failures.n_not_judged_budget,
            n_parse_failures=n_parse,
            parse_failure_examples=examples,
            client=stats_delta(before, client.stats.as_dict()),
            **failures.metrics(client, "alpaca_eval"),
        )
        return JudgeResult(metrics=m, records=rows)

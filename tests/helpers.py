"""Plain helpers shared by several test files (fixtures live in conftest.py).  A test file imports
from here or from conftest, never from another test file (tests/test_suite_layout.py checks it)."""

from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from .conftest import SHARED

# ---- what a process imported ------------------------------------------------------------------------------

# packages a light path (--help, a config error, a fully cached rerun) must not import
HEAVY = frozenset({"torch", "transformers", "trl", "vllm", "datasets", "peft", "wandb"})


def imported(importtime_log: str) -> set[str]:
    """The modules a Python process imported, from its import-time log on stderr (run it with
    PYTHONPROFILEIMPORTTIME=1, the environment's -X importtime)."""
    return {
        line.split("|")[2].strip()
        for line in importtime_log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2 and "imported package" not in line
    }


# ---- a scriptable OpenAI-compatible server (the judge client and judges against real sockets) ------------


class FakeOpenAI:
    """A real HTTP server on loopback speaking the chat-completions API.  ``script`` is a list of
    actions consumed one per request ("429", "500", "400", "timeout"); afterwards (or for "ok")
    ``responder(body) -> (text, logprobs or None)`` answers.  A "timeout" request is held unanswered
    until the next request arrives (the client gave up on it and retried) or ``timeout_hold`` seconds
    pass: the client's own timeout decides, not a race between two sleeps.  Every request's
    Authorization header is kept in ``auth``; with ``require_key`` a request without
    ``Bearer <require_key>`` gets a 401."""

    def __init__(
        self,
        responder=None,
        script=(),
        delay: float = 0.0,
        timeout_hold: float = 60.0,
        require_key: str | None = None,
        usage: bool = True,
        hold_first: int = 0,
    ):
        self.hold_first = hold_first  # the first N requests are answered only once N have arrived (or after 60 s)
        self.arrived = threading.Condition()
        self.responder = responder or (lambda body: ("ok", None))
        self.script = list(script)
        self.delay = delay
        self.timeout_hold = timeout_hold
        self.require_key = require_key
        self.usage = usage
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.requests.append(body)
                    outer.auth.append(self.headers.get("Authorization"))
                    action = outer.script.pop(0) if outer.script else "ok"
                    if outer.require_key is not None and outer.auth[-1] != f"Bearer {outer.require_key}":
                        action = "401"
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    n_arrived = len(outer.requests)
                with outer.arrived:
                    outer.arrived.notify_all()
                    if n_arrived <= outer.hold_first:
                        outer.arrived.wait_for(lambda: len(outer.requests) >= outer.hold_first, timeout=60)
                try:
                    if action == "timeout":
                        with outer.arrived:
                            outer.arrived.wait_for(lambda: len(outer.requests) > n_arrived, timeout=outer.timeout_hold)
                    if action in ("429", "500", "400", "401"):
                        payload = json.dumps({"error": {"message": f"scripted {action}", "type": "x"}}).encode()
                        self.send_response(int(action))
                        if action == "429":
                            self.send_header("Retry-After", "0")
                    else:
                        if outer.delay:
                            time.sleep(outer.delay)
                        text, lp = outer.responder(body)
                        payload = json.dumps(
                            {
                                "id": "cmpl-1",
                                "object": "chat.completion",
                                "created": 0,
                                "model": body["model"],
                                "choices": [
                                    {
                                        "index": 0,
                                        "finish_reason": "stop",
                                        "logprobs": {"content": lp} if lp else None,
                                        "message": {"role": "assistant", "content": text},
                                    }
                                ],
                                "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}
                                if outer.usage
                                else None,
                            }
                        ).encode()
                        self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with outer._lock:
                        outer.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mt_data(tmp_path: Path) -> dict:
    qs = [
        {"question_id": 1, "category": "writing", "turns": ["Write a poem.", "Make it shorter."]},
        {"question_id": 2, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]},
    ]
    refs = [{"question_id": 2, "choices": [{"index": 0, "turns": ["4", "6"]}]}]
    src = SHARED / "data" / "mt_bench" / "judge_prompts.jsonl"
    if src.exists():
        prompts = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    else:  # stand-ins with FastChat's names and placeholders
        prompts = [
            {
                "name": n,
                "type": "single",
                "system_prompt": "Judge.",
                "output_format": "[[rating]]",
                "prompt_template": t,
            }
            for n, t in [
                ("single-v1", "Q: {question}\nA: {answer}"),
                ("single-math-v1", "Q: {question}\nRef: {ref_answer_1}\nA: {answer}"),
                ("single-v1-multi-turn", "Q1: {question_1}\nA1: {answer_1}\nQ2: {question_2}\nA2: {answer_2}"),
                (
                    "single-math-v1-multi-turn",
                    "Q1: {question_1}\nR1: {ref_answer_1}\nA1: {answer_1}\n"
                    "Q2: {question_2}\nR2: {ref_answer_2}\nA2: {answer_2}",
                ),
            ]
        ]
    return {
        "questions_path": str(write_jsonl(tmp_path / "q.jsonl", qs)),
        "reference_path": str(write_jsonl(tmp_path / "ref.jsonl", refs)),
        "judge_prompts_path": str(write_jsonl(tmp_path / "jp.jsonl", prompts)),
    }


# ---- a judge inside real po-bench runs (tests/test_runner.py, tests/test_judge_partial.py) ------------


def alpaca_verdict(body):
    """AlpacaEval's annotator reply: the token m with logprobs for m and M (the first output wins)."""
    return "m", [
        {
            "token": "m",
            "logprob": math.log(0.7),
            "top_logprobs": [{"token": "m", "logprob": math.log(0.7)}, {"token": "M", "logprob": math.log(0.3)}],
        }
    ]


def judge_run_data(tmp_path, n_instructions):
    d = tmp_path / "data"
    d.mkdir()
    rows = [
        {
            "prompt": [{"role": "user", "content": f"question {i} about the topic"}],
            "chosen": f"good answer {i}",
            "rejected": f"bad {i}",
        }
        for i in range(16)
    ]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ref = [
        {"instruction": f"Name a colour ({i}).", "output": "Blue.", "generator": "gpt4_1106_preview", "dataset": "t"}
        for i in range(n_instructions)
    ]
    (d / "ref.json").write_text(json.dumps(ref))
    return d


def judge_run_args(model_dir, data, url, cache):
    return [
        "model.kind=hub",
        f"model.name_or_path={model_dir}",
        "model.name=tiny-chat",
        "dataset=file",
        f"dataset.path={data / 'train.jsonl'}",
        "dataset.format=conversational",
        "dataset.n_eval=4",
        "train.max_steps=1",
        "train.batch_size=4",
        "train.max_length=64",
        "generation.max_new_tokens=4",
        "generation.progress=false",
        "train.progress=false",
        "threads=1",
        f"cache_dir={cache}",
        "judge=alpaca_eval",
        f"judge.eval_path={data / 'ref.json'}",
        "judge.length_controlled=false",
        f"judge.base_url={url}",
        "judge.model=fake-judge",
        "judge.answer_max_new_tokens=4",
        "judge.max_concurrency=2",
        "judge.timeout=10",
        "judge.max_retries=1",
    ]


# ---- a planted pipeline (a sitecustomize on PYTHONPATH replaces po_bench.pipeline in every process) ------

FAKE_PIPELINE = """
import os, sys, types
if os.environ.get("PO_BENCH_FAKE_PIPELINE"):
    import po_bench
    from po_bench.config import ConfigError

    def run(cfg, out_dir):
        if cfg.judge.name == "reward_model":
            raise ConfigError("judge=reward_model: planted config error")
        if int(cfg.seed) == 13:
            raise RuntimeError("planted failure at run time")
        none = cfg.judge.name == "none"
        return {"gold_reward": None if none else 0.5, "gold_reward_sft": None if none else 0.25,
                "win_rate_vs_sft": None if none else 0.75, "kl_to_ref": 1.5, "train_loss_final": 0.6,
                "seconds": {"total": 0.1},
                "artifacts": {"hits": ["sft/abc", "policy/def"], "built": [] if int(cfg.seed) == 0 else ["policy/x"]},
                "history": []}

    fake = types.ModuleType("po_bench.pipeline")
    fake.run = run
    sys.modules["po_bench.pipeline"] = fake
    po_bench.pipeline = fake
"""


def client_cfg(url, tmp_path, **kw):
    """A judge config against a FakeOpenAI server at ``url``: fast retries, prices, a disk cache in ``tmp_path``."""
    cfg = {
        "name": "fake",
        "version": "1",
        "model": "fake-judge",
        "base_url": url,
        "api_key_env": None,
        "max_concurrency": 4,
        "timeout": 30,  # a loopback answer never takes this long; only a scripted "timeout" times out
        "max_retries": 4,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "price_input_per_mtok": 1.0,
        "price_output_per_mtok": 2.0,
        "cache": {"enabled": True, "dir": str(tmp_path / "cache")},
    }
    cfg.update(kw)
    return cfg


def step_args(train, steps: int, **overrides) -> NS:
    """A trainer-test recipe: ``train`` (a config's train section) for ``steps`` logged optimizer steps on batches
    of 8, no progress bar, a constant learning rate without warmup unless ``overrides`` say otherwise."""
    fields = {"max_steps": steps, "batch_size": 8, "logging_steps": 1, "progress": False, "warmup_ratio": 0.0}
    return NS(**{**train, **fields, "lr_scheduler": "constant", **overrides})


def loss_args(loss, lr: float) -> NS:
    """A config's loss section as the trainer takes it, at learning rate ``lr``."""
    return NS(**{**loss, "args": dict(loss.args), "lr": lr})


# ---- the listwise trainer ---------------------------------------------------------------------------------


def two_steps(tokenizer, rows, loss_cfg, train, tmp_path):
    """Two optimizer steps of the listwise trainer on one batch of ``rows`` (a fresh tiny model, a copied
    reference, the store hook recording what it is given): (result, model, reference, state before, saved)."""
    import torch

    from po_bench.training import models
    from po_bench.training.trl.preference import train_preference

    train = step_args(train, 2)
    model = models.build_tiny_model(tokenizer, hidden_size=64, num_layers=1, intermediate_size=128)
    ref = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    saved = {}
    res = train_preference(
        model,
        ref,
        tokenizer,
        rows,
        loss_cfg,
        train,
        tmp_path,
        0,
        ref_logps_cache=(lambda: None, lambda obj: saved.update(obj)),
    )
    assert res["steps"] == 2 and math.isfinite(res["train_loss_final"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    return res, model, ref, before, saved


# ---- a check CI must run: skipped locally where its tools are missing, a failure where they are required ----

REQUIRE_BROWSER = "PO_BENCH_REQUIRE_BROWSER"  # .ci/run sets it to 1 after installing chromium


def browser_or_skip(chromium: str | None, chromedriver: str | None) -> None:
    """The headless-browser test's tools (chromium, chromedriver, selenium): where one is missing the test
    is skipped with the reason, or fails with it under PO_BENCH_REQUIRE_BROWSER=1 (so CI cannot pass it
    by skipping)."""
    import importlib.util

    if chromium is None or chromedriver is None:
        reason = "chromium / chromedriver not installed (apt-get install -y chromium chromium-driver)"
    elif importlib.util.find_spec("selenium") is None:
        reason = "selenium not installed (pip install selenium; the dev extra)"
    else:
        return
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{reason}; {REQUIRE_BROWSER}=1 requires the browser test to run", pytrace=False)
    pytest.skip(reason)


# ---- golden values: behaviour pinned before a refactoring -------------------------------------------------

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = "PO_BENCH_UPDATE_GOLDEN"  # =1 records the values instead of comparing them


def training_trace(res: dict) -> dict:
    """What a few optimizer steps leave that a refactoring must not change: every logged loss and
    gradient norm, in step order."""
    return {key: [h[key] for h in res["history"] if key in h] for key in ("loss", "grad_norm")}


def check_golden(name: str, key: str, values: dict, rel: float = 1e-4) -> None:
    """``values`` (lists of floats by name) equal the ones recorded in ``tests/golden/<name>.json`` under
    ``key``, to ``rel`` (summation order differs with the thread count; a changed loss differs by far more).
    With PO_BENCH_UPDATE_GOLDEN=1 they are recorded instead (in one process: `-p no:xdist`, since two workers
    would write one file at once): do that only on code whose behaviour is the
    reference, and say so in the commit."""
    path = GOLDEN / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if os.environ.get(UPDATE_GOLDEN) == "1":
        GOLDEN.mkdir(exist_ok=True)
        data[key] = values
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return
    assert key in data, f"{path.name} has no values for {key!r}: record them with {UPDATE_GOLDEN}=1"
    assert set(values) == set(data[key]), (key, sorted(values), sorted(data[key]))
    for field, want in data[key].items():
        assert len(values[field]) == len(want) and values[field] == pytest.approx(want, rel=rel, abs=1e-6), (
            key,
            field,
            values[field],
            want,
        )


# ---- Hydra's override parser (the union-of-grids sweeper's expansion takes it as an argument) ----------------


def parse_overrides(args: list[str]) -> list:
    """Hydra's own parse of command-line overrides (what ``hydra/sweeper=grid`` hands ``sweep.expand``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(args)


# ---- the embedded world's demonstrations and sources (tests/test_world.py, test_pair_data.py, test_sources.py) --


def world_demos(spec, prompts, k: int, seed: int, prefix: str = "") -> list[list[str]]:
    """k demonstrations per prompt by the demonstrator of the world ``spec``, from one numpy generator."""
    import numpy as np

    from po_bench.data import world

    rng = np.random.default_rng(seed)
    return [[prefix + world.demonstrate(spec, p, rng) for _ in range(k)] for p in prompts]


def world_k_samples(n_prompts: int = 24, k: int = 4):
    """(prompts, k samples per prompt): the preference prompts of a world with ``n_pref=n_prompts``."""
    from po_bench.data import world

    spec = world.WorldSpec(n_pref=n_prompts)
    prompts = world.make_prompts(spec, "pref")
    return prompts, world_demos(spec, prompts, k, 0, " ")


def world_source(n_pref: int, **fields):
    """The world's data source for a dataset config with these fields."""
    from po_bench.data.schema import DatasetConfig
    from po_bench.data.sources import WorldSource

    return WorldSource(WorldSource.spec_of(DatasetConfig(n_pref=n_pref, **fields)))


# ---- real benchmark data in ../shared, and a stand-in for alpaca_eval's length-control data ------------------


def shared_or_skip(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared holds the real benchmark data; a fresh clone does not have it)")
    return path


def write_lc_calibration(folder: Path, n_instructions: int = 805, seed: int = 0) -> Path:
    """A small, valid stand-in for alpaca_eval's length-control calibration data (the Hub dataset
    tatsu-lab/alpaca_eval: ``df_gamed.csv``, ``instruction_difficulty.csv``), in the columns that
    ``alpaca_eval.metrics.glm_winrate._get_featurized_data`` reads: two "gamed" baselines (a verbose and
    a concise one) whose preferences follow alpaca_eval's own GLM formula with known weights through
    its ``_logistic``.  The first ``n_instructions`` rows are instructions 0.. in order (alpaca_eval
    looks difficulties up by the row label of each index's first row)."""
    import numpy as np
    import pandas as pd
    from alpaca_eval.metrics.glm_winrate import _logistic

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    difficulty = rng.normal(0.0, 1.0, n_instructions)
    rows = []
    for model, shift in (("gamed_verbose", 1.5), ("gamed_concise", -1.5)):
        for i in range(n_instructions):
            d = shift + rng.normal(0.0, 0.3)
            pref = float(_logistic(1.2 * np.tanh(d) + 0.4 * difficulty[i] - 0.2))
            rows.append(
                {
                    "model": model,
                    "index": i,
                    "preference": pref,
                    "std_delta_len": d,
                    "instruction_difficulty": difficulty[i],
                    "not_gamed_baseline": False,
                }
            )
    pd.DataFrame(rows).to_csv(folder / "df_gamed.csv", index=False)
    pd.Series(difficulty, name="instruction_difficulty").to_csv(folder / "instruction_difficulty.csv")
    return folder


# ---- hand-made run records (po-bench-table's input) ------------------------------------------------------


def write_run(tmp, name, method, label, seed=0, model=None, judge="gold", metrics=None, **loss):
    """A done run.json of a SimPO-table preset under ``tmp/name`` (po-bench-table's input)."""
    cfg = {
        "loss": {
            "name": method,
            "label": label,
            "beta": loss.get("beta", 0.1),
            "lr": loss.get("lr", 2e-4),
            "args": loss.get("args", {}),
        },
        "model": model or {"name": "tiny", "name_or_path": None, "reference_id": None},
        "judge": {"name": judge},
        "seed": seed,
        "preset": {
            "name": "simpo_table",
            "scale": "paper" if model else "tiny",
            "title": "SimPO Table 4",
            "select_best": "win_rate_vs_sft",
            "ours": ["win_rate_vs_sft"],
            "reference": {
                "csv": "simpo_table4.csv",
                "columns": ["alpacaeval2_lc"],
                "models": ["mistral-7b-base", "llama-3-8b-instruct"],
                "citation": "SimPO",
            },
        },
    }
    d = tmp / name
    d.mkdir(parents=True)
    rec = {
        "status": "done",
        "config": cfg,
        "metrics": {"seconds": {"total": 10.0}, **(metrics or {})},
        "versions": {"torch": "2.13.0+cpu", "trl": "1.16.0"},
        "host": {"platform": "x", "cpu": "CPU-X", "cpus": 2},
    }
    (d / "run.json").write_text(json.dumps(rec))


def pairs_file(tmp_path):
    """Eight plain prompt / chosen / rejected rows in tmp_path/pairs.jsonl."""
    f = tmp_path / "pairs.jsonl"
    f.write_text(
        "".join(
            json.dumps({"prompt": f"Say something about item {i}.", "chosen": "A kind answer.", "rejected": "No."})
            + "\n"
            for i in range(8)
        )
    )
    return f


def conv(user, answer):
    """A one-turn conversation: the user's message and the assistant's answer."""
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


LIST_DATA = ["dataset.pair_strategy=list", "dataset.k_samples=4"]  # the world's rated lists of k = 4 responses


def world_lists(n=24, k=4, seed=0):
    """The world's rated lists (pair_strategy=list) of ``k`` demonstrations for ``n`` prompts: (rows, prompts,
    samples)."""
    from po_bench.data import world

    spec = world.WorldSpec(n_pref=n)
    prompts = world.make_prompts(spec, "pref")
    rng = __import__("numpy").random.default_rng(seed)
    samples = [[" " + world.demonstrate(spec, p, rng) for _ in range(k)] for p in prompts]
    return world.label_ranked(prompts, samples, world.Annotator(), 0, "list"), prompts, samples


def preference_losses() -> list[str]:
    """Every loss config of conf/loss/ with a preference trainer of its own on fixed pairs, by name: not SFT's, not an
    iterative method's (its rounds train its inner loss, one of these: tests/test_iterative.py), not an online
    method's (backend: online, po-bench's online loop: tests/test_online.py)."""
    import yaml

    from po_bench.cli.app import CONF_DIR

    return sorted(
        p.stem
        for p in (Path(CONF_DIR) / "loss").glob("*.yaml")
        if p.stem != "sft" and yaml.safe_load(p.read_text())["backend"] not in ("iterative", "online")
    )


def config_with_loss(name: str):
    """The app's config with ``loss=name`` (tests/conftest.py's compose)."""
    from .conftest import compose

    return compose([f"loss={name}"])


PLUGINS = Path(__file__).parent / "plugins"  # the plug-ins of CONTRIBUTING.md's recipes (toy loss, judge, source)
PLUGIN_SEARCH_PATH = f"hydra.searchpath=[file://{PLUGINS / 'conf'}]"  # their yamls


def plugin_env(tmp_path: Path, group: str, entries: dict[str, str]) -> dict:
    """Environment for a CLI run that has plug-ins installed: ``entries`` (name -> module) of the entry-point
    ``group`` written as a distribution's metadata into a folder on PYTHONPATH, as ``pip install`` of a plug-in
    package leaves it."""
    from .conftest import ROOT

    site = tmp_path / f"site-{group.replace('.', '-')}"
    dist = site / "po_bench_test_plugins-0.1.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: po-bench-test-plugins\nVersion: 0.1\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entries.items())
    (dist / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    return {"PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}

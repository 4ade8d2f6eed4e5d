import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

# Property tests draw the same examples on every run (a failure reproduces; CI cannot pass by luck);
# HYPOTHESIS_PROFILE=random draws fresh ones locally, to look for new failures.
hypothesis_settings.register_profile("derandomized", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("random", derandomize=False, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))

# The suite runs on pytest-xdist workers (`make test`: TEST_WORKERS, 2 by default, one per core here), so
# every process a test trains or generates in gets one thread: two workers with two threads each would
# oversubscribe 2 cores (OpenMP spin-waits make that several times slower, not just twice).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Small world sizes: real SFT + preference training + generation in a few seconds.
SMALL = [
    "dataset.n_sft=400",
    "dataset.n_pref=96",
    "dataset.n_eval=48",
    "dataset.n_ood=32",
    "train.sft_epochs=2",
    "train.epochs=1",
    "train.batch_size=16",
    "train.logging_steps=2",
    "generation.progress=false",
    "train.progress=false",
    "threads=1",
    "tracking=none",
]


def compose(overrides=(), return_hydra_config=False):
    """The app's config as Hydra composes it for these overrides (no validation, no run).  Inside a
    caller's ``initialize_config_dir(CONF_DIR)`` (one initialisation for many composes) it composes there."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from po_bench.cli.app import CONF_DIR

    args = dict(config_name="config", overrides=list(overrides), return_hydra_config=return_hydra_config)
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(**args)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(**args)


def run_cli(args, cwd, env_extra=None, timeout=900):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    env.pop("PO_BENCH_CACHE", None)
    if env_extra:
        env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "po_bench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def read_runs(folder):
    return [json.loads(p.read_text()) | {"_dir": p.parent} for p in sorted(Path(folder).rglob("run.json"))]


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory):
    """Every cache a test could otherwise share with the developer or with another test session (the
    artifact store's default, PO_BENCH_CACHE; SmolLM2's converted checkpoint, ~/.cache/po-bench or
    PO_BENCH_SMOLLM2_DIR; XDG_CACHE_HOME's Hugging Face / wandb / torch caches) lives in this session's
    temporary folder.  The processes the tests start inherit the variables (run_cli's runs name their
    cache_dir: it drops PO_BENCH_CACHE)."""
    root = tmp_path_factory.mktemp("caches")
    # SmolLM2's conversion (~30 s) is shared by the session's xdist workers: their temporary folders sit
    # side by side under one base, and smollm2_path() publishes the folder with an atomic rename.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PO_BENCH_CACHE", str(root / "po_bench_cache"))
        mp.setenv("PO_BENCH_SMOLLM2_DIR", str(shared / "smollm2-135m-instruct"))
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        yield root


@pytest.fixture(scope="session")
def tokenizer():
    from po_bench.training.models import train_world_tokenizer

    return train_world_tokenizer()


LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def llama3_tok():
    """A Llama-3-style tokenizer built offline: EOS <|end_of_text|>, turns end with <|eot_id|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    words = ["user", "assistant", "q", "hello", "world", "[UNK]"]
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        unk_token="[UNK]",
        additional_special_tokens=specials[2:],
    )
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def smollm2_path_or_skip():
    """SmolLM2's converted checkpoint folder, or skip with the reason its GGUF file is unavailable."""
    from po_bench.training import smollm2

    try:
        smollm2.gguf_file()
    except RuntimeError as e:
        pytest.skip(f"SmolLM2 GGUF unavailable: {e}")
    return smollm2.smollm2_path()


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory):
    """A one-layer random Llama with SmolLM2's tokenizer and chat template: real-data po-bench runs
    (dataset.kind=hf, model.kind=hub) in seconds.  Skipped where SmolLM2's GGUF file is unavailable."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from po_bench.training.smollm2 import smollm2_tokenizer

    try:
        tok = smollm2_tokenizer()
    except RuntimeError as e:
        pytest.skip(f"SmolLM2 tokenizer unavailable: {e}")
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    d = tmp_path_factory.mktemp("tiny_chat_model")
    LlamaForCausalLM(cfg).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="session")
def pairs():
    """32 labelled world pairs (two demonstrations per prompt, the default annotator, seed 0)."""
    import numpy as np

    from po_bench.data import world

    spec = world.WorldSpec(n_pref=32)
    prompts = world.make_prompts(spec, "pref")
    rng = np.random.default_rng(0)
    samples = [[" " + world.demonstrate(spec, p, rng), " " + world.demonstrate(spec, p, rng)] for p in prompts]
    return world.label_pairs(prompts, samples, world.Annotator(), seed=0)


@pytest.fixture(autouse=True)
def fast_tests_do_not_train(request):
    """`make test-fast` (-m "not slow") runs no training: in a test without the slow marker, a
    transformers Trainer's train() (every TRL and po-bench trainer goes through it) fails the test with
    the reason.  Runs in subprocesses (run_cli) are not seen here: those tests are slow already."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    import transformers

    def refuse(self, *args, **kwargs):
        pytest.fail(
            f"{request.node.nodeid} trains ({type(self).__name__}.train): mark it @pytest.mark.slow "
            "(make test-fast runs no training)",
            pytrace=False,
        )

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.Trainer, "train", refuse)
        yield


def pytest_collection_modifyitems(config, items):
    """The costliest test files first (seconds measured in a full run, tests/durations.json; files not
    listed last): `make test` hands whole files to its xdist workers in this order, so the long files
    start at once instead of making a tail.  The order within a file is kept."""
    seconds = json.loads((Path(__file__).parent / "durations.json").read_text())
    position = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-seconds.get(item.path.name, 0), position[id(item)]))

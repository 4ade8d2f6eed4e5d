"""On-policy preference data from a model's own samples (``po-bench-data onpolicy``): where the
prompts come from (the world's splits or a file), how the k samples of a prompt are seeded, and the
scorers that rate them (the world's gold reward, or a sequence-classification reward model)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from po_bench.data import world
from po_bench.data.formats.leakage import prompt_key
from po_bench.data.formats.read import read_file
from po_bench.data.schema import DatasetConfig
from po_bench.data.sources import WorldSource
from po_bench.data.sources import prompts as split_prompts

log = logging.getLogger("po_bench.data")


class OnPolicyError(ValueError):
    """A scorer or a prompt file that cannot be used (po-bench-data prints it as one line, exit 1)."""


# ---------------------------------------------------------------------------------------------
# scorers
# ---------------------------------------------------------------------------------------------


class GoldScorer:
    """The embedded world's exact reward r*(prompt, response)."""

    def __init__(self):
        self.desc = {"kind": "gold", "name": "po_bench.data.world.gold_reward"}

    def __call__(self, prompts: list, responses: list[str]) -> list[float]:
        out = []
        for p, r in zip(prompts, responses):
            text = p if isinstance(p, str) else prompt_key(p)
            out.append(float(world.gold_reward(text, r)))
        return out


class RewardModelScorer:
    """A sequence-classification reward model (one logit): score(prompt, response).

    Conversations go through the reward model tokenizer's chat template when it has one
    (user prompt + assistant response); otherwise the text is prompt + response.
    """

    def __init__(self, path: str, batch_size: int = 16, device: str | None = None):
        import torch  # lazy: torch and transformers (~2 s) only where a model is loaded
        from transformers import (  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.9 s)
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        self.tok = AutoTokenizer.from_pretrained(path)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token or self.tok.unk_token
        self.tok.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(path)
        if self.model.config.num_labels != 1:
            raise OnPolicyError(f"reward model {path} has num_labels={self.model.config.num_labels}; need 1")
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tok.pad_token_id
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.desc = {
            "kind": "reward_model",
            "path": str(path),
            "architecture": type(self.model).__name__,
            "chat_template": bool(self.tok.chat_template),
        }

    def _text(self, prompt, response: str) -> str:
        if self.tok.chat_template:
            msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            return self.tok.apply_chat_template(
                msgs + [{"role": "assistant", "content": response.strip()}], tokenize=False
            )
        return (prompt if isinstance(prompt, str) else prompt_key(prompt)) + response

    def __call__(self, prompts: list, responses: list[str]) -> list[float]:
        import torch  # lazy: as in __init__

        texts = [self._text(p, r) for p, r in zip(prompts, responses)]
        out: list[float] = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                enc = self.tok(
                    texts[s : s + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    add_special_tokens=not bool(self.tok.chat_template),
                ).to(self.device)
                logits = self.model(**enc).logits
                out += [float(x) for x in logits[:, 0].float().cpu()]
        return out


def make_scorer(spec: str, batch_size: int = 16):
    if spec == "gold":
        return GoldScorer()
    if not Path(spec).expanduser().exists():
        raise OnPolicyError(f"--scorer {spec}: not 'gold' and no such reward-model folder")
    return RewardModelScorer(str(Path(spec).expanduser()), batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# prompts
# ---------------------------------------------------------------------------------------------


def world_prompts(split: str, n: int, world_seed: int) -> list[str]:

    dcfg = DatasetConfig(seed=world_seed)
    if n > 0:  # a split's first n prompts do not depend on its size
        dcfg.n_pref = dcfg.n_eval = n
    return split_prompts(WorldSource(WorldSource.spec_of(dcfg)).prompt_spec(split))


def file_prompts(path: str, column: str, n: int) -> list:
    p = Path(path).expanduser()
    if p.suffix == ".txt":
        lines = [ln.rstrip("\n") for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return lines[:n] if n > 0 else lines
    rows = read_file(p, n if n > 0 else 0)
    out, bad = [], 0
    for r in rows:
        v = r.get(column)
        if isinstance(v, str) and v.strip() or isinstance(v, list) and v:
            out.append(v)
        else:
            bad += 1
    if bad:
        log.warning("%s: %d rows without a usable %r column skipped", p, bad, column)
    if not out:
        raise OnPolicyError(f"{p}: no prompts in column {column!r}")
    return out


# ---------------------------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------------------------


def sample_seeds(seed: int, k: int) -> list[int]:
    """One seed per sample index, distinct across (run seed, j)."""
    return [int(np.random.SeedSequence([int(seed), j, 7]).generate_state(1)[0]) for j in range(k)]

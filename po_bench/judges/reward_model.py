"""A local reward model as judge: ``AutoModelForSequenceClassification`` with one output (the
reward), e.g. a Skywork / ArmoRM-style RM checkpoint on disk or on the Hub.

Each (prompt, response) is rendered with the reward model's chat template when its tokenizer has
one ([user prompt, assistant response]; message-list prompts are extended with the response),
else as ``prompt + response`` text; the reward is the logit of the last non-padding token (the
model's own pooling).  Metrics: mean reward of the policy and of the SFT policy's responses on the
same prompts, and the win rate of the policy over the SFT response (ties count half).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from po_bench.judges.api import (
    BaseJudgeConfig,
    ConfigChecks,
    Judge,
    JudgeConfigError,
    JudgeInputs,
    JudgeResult,
    Reads,
    check,
    register_judge,
)
from po_bench.judges.client import cfg_get


@dataclass
class RewardModelConfig(BaseJudgeConfig):
    """judge=reward_model (conf/judge/reward_model.yaml)."""

    model_path: str | None = None  # a local folder or a Hub id (required)
    dtype: str = "float32"
    batch_size: int = 8
    max_length: int = 2048

    def check_data(self, world_data: bool) -> None:
        self.refuse_world(world_data)

    def validate(self, checks: ConfigChecks) -> None:
        super().validate(checks)
        check(bool(self.model_path), "judge=reward_model: set judge.model_path (a sequence-classification model)")
        check_reward_model(str(self.model_path))


def check_reward_model(path: str) -> None:
    """The reward model's shape from its config.json alone (no weights): one output.  A local folder
    must exist; a Hub id is checked only when its config is in the local cache (no download here)."""
    from transformers import AutoConfig  # lazy: huggingface_hub, torch, transformers (~2.4 s)

    local = Path(path).expanduser()
    is_local = local.exists() or path.startswith((".", "/", "~"))
    if is_local:
        check(
            local.is_dir() and (local / "config.json").is_file(),
            f"judge.model_path={path}: no such model folder (a folder with config.json)",
        )
    try:
        mc = AutoConfig.from_pretrained(str(local) if is_local else path, local_files_only=True)
    except Exception as e:  # noqa: BLE001  (a Hub id not cached here: the judge loads it later)
        if is_local:
            raise JudgeConfigError(
                f"judge.model_path={path}: its config.json does not load: {type(e).__name__}: {e}"
            ) from None
        return
    n = getattr(mc, "num_labels", None)
    check(
        n == 1,
        f"judge=reward_model: judge.model_path={path} has {n} outputs (num_labels={n}); a reward "
        "model has exactly 1 (a sequence-classification head with num_labels=1)",
    )


@register_judge("reward_model")
class RewardModelJudge(Judge):
    config_class = RewardModelConfig
    reads = Reads.SAMPLES
    metric_prefix = "rm_"
    headline_metric = "rm_score"
    order = 10

    def __init__(self, cfg: Any = None, model=None, tokenizer=None):
        """``cfg.model_path`` (a local folder or Hub id), ``cfg.dtype``, ``cfg.batch_size``,
        ``cfg.max_length``; or a ready ``model`` and ``tokenizer``."""
        self.cfg = cfg
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = int(cfg_get(cfg, "batch_size", 8))
        self.max_length = int(cfg_get(cfg, "max_length", 2048))

    def judge(self, policy: JudgeInputs) -> JudgeResult:
        """The policy's and the SFT policy's samples on the eval prompts, under the reward model."""
        return self.evaluate(policy.prompts, policy.samples, policy.sft_samples)

    def _load(self):
        if self.model is None:
            import torch  # lazy: torch (~0.9 s)
            from transformers import (  # lazy: accelerate, huggingface_hub, numpy, pandas, ... (~4.9 s)
                AutoModelForSequenceClassification,
                AutoTokenizer,
            )

            path = cfg_get(self.cfg, "model_path")
            if not path:
                raise ValueError("reward_model judge: model_path is not set")
            self.tokenizer = self.tokenizer or AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(path), dtype=getattr(torch, cfg_get(self.cfg, "dtype", "float32"))
            )
        tok = self.tokenizer
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = tok.pad_token_id
        if self.model.config.num_labels != 1:
            raise ValueError(f"reward_model judge: the model has {self.model.config.num_labels} outputs, expected 1")
        return self.model, tok

    def render(self, prompt, response: str) -> str:
        tok = self.tokenizer
        response = response.strip()
        if isinstance(prompt, str):
            msgs = [{"role": "user", "content": prompt}]
        else:
            msgs = [dict(m) for m in prompt]
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(msgs + [{"role": "assistant", "content": response}], tokenize=False)
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in msgs)
        return text + " " + response

    def score(self, prompts: Sequence, responses: Sequence[str]) -> list[float]:
        import torch  # lazy: torch (~0.9 s)

        model, tok = self._load()
        model.eval()
        device = next(model.parameters()).device
        texts = [self.render(p, r) for p, r in zip(prompts, responses)]
        out: list[float] = []
        side = tok.padding_side
        tok.padding_side = "right"  # sequence classifiers pool the last non-pad token
        try:
            with torch.no_grad():
                for s in range(0, len(texts), self.batch_size):
                    enc = tok(
                        texts[s : s + self.batch_size],
                        return_tensors="pt",
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        add_special_tokens=not getattr(tok, "chat_template", None),
                    )
                    logits = model(**enc.to(device)).logits.float()
                    out += logits[:, 0].cpu().tolist()
        finally:
            tok.padding_side = side
        return out

    def evaluate(self, prompts: Sequence, policy_responses: Sequence[str], sft_responses: Sequence[str]) -> JudgeResult:
        if not (len(prompts) == len(policy_responses) == len(sft_responses)):
            raise ValueError("reward_model: prompts, policy and SFT responses differ in length")
        rp = np.asarray(self.score(prompts, policy_responses))
        rs = np.asarray(self.score(prompts, sft_responses))
        wins = (rp > rs).astype(float) + 0.5 * (rp == rs)
        m = {
            "benchmark": "reward_model",
            "model_path": str(cfg_get(self.cfg, "model_path", "")),
            "reward": float(rp.mean()),
            "reward_sft": float(rs.mean()),
            "win_rate_vs_sft": float(wins.mean()),
            "n": int(len(rp)),
            "n_ties": int((rp == rs).sum()),
        }
        recs = [
            {
                "prompt": p if isinstance(p, str) else list(p),
                "policy": a,
                "sft": b,
                "reward": float(x),
                "reward_sft": float(y),
            }
            for p, a, b, x, y in zip(prompts, policy_responses, sft_responses, rp, rs)
        ]
        return JudgeResult(metrics=m, records=recs)

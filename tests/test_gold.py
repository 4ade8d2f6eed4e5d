"""The pipeline's own judges (po_bench/judges/gold.py): ``judge=gold`` (the world's exact gold reward, scored
by the pipeline itself) and ``judge=none``."""

import pytest

from po_bench.config import ConfigError, validate
from po_bench.judges.api import JudgeInputs, Reads, judge_class, runner_judge_names

from .conftest import compose


def test_gold_and_none_are_registered_as_the_pipelines_own_judges():
    gold, none = judge_class("gold"), judge_class("none")
    assert (gold.reads, none.reads) == (Reads.WORLD, Reads.NOTHING)
    # the runner leaves them to the pipeline, which scores gold itself on every eval prompt
    assert "gold" not in runner_judge_names() and "none" not in runner_judge_names()
    nothing = JudgeInputs(cfg=None, prompts=[], samples=[], sft_samples=[], checkpoint="")
    assert gold().judge(nothing).metrics == {} and none().judge(nothing).metrics == {}


def test_gold_needs_the_world():
    validate(compose(["judge=gold"]))  # the default dataset is the world
    with pytest.raises(ConfigError, match="judge=gold needs dataset=world"):
        validate(compose(["judge=gold", "dataset=hh_rlhf", "model=smollm2_135m"]))
    validate(compose(["judge=none", "dataset=hh_rlhf", "model=smollm2_135m"]))

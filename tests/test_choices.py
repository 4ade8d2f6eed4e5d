"""po_bench/choices.py: the config's closed sets, defined once.  Each set's values are exactly what its config
section accepts (a value outside it is one config error line naming the set), and no module spells a set out
again."""

from __future__ import annotations

import re
import warnings

import pytest

from po_bench import choices
from po_bench.config import ConfigError, validate

from .conftest import ROOT, compose

# the config key of each closed set
KEYS = {
    choices.ModelKind: "model.kind",
    choices.ImplicitReward: "loss.implicit_reward",
    choices.NoiseKind: "noise.kind",
    choices.FilterKind: "dataset.filter.kind",
    choices.OnError: "dataset.on_error",
    choices.Precision: "train.precision",
    choices.GenerationBackend: "generation.backend",
    choices.Strategy: "launch.strategy",
    choices.Launcher: "launch.launcher",
    choices.TrackingBackend: "tracking.backend",
    choices.TrackingMode: "tracking.mode",
}
SETS = [
    c
    for c in vars(choices).values()
    if isinstance(c, type) and issubclass(c, choices.Choice) and c is not choices.Choice
]


def test_every_set_has_its_config_key():
    assert set(SETS) == set(KEYS)


@pytest.mark.parametrize("choice", SETS, ids=lambda c: c.__name__)
def test_allows_and_listed(choice):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Enum.__contains__ with a non-member warns on 3.11: allows() never asks it
        assert all(choice.allows(m.value) for m in choice)
        assert not choice.allows("no-such-value") and not choice.allows(None) and not choice.allows(1)
    assert choice.listed() == ", ".join(m.value for m in choice)
    assert all(m == m.value for m in choice)  # a member equals its string: code compares config values with it


@pytest.mark.parametrize("choice", SETS, ids=lambda c: c.__name__)
def test_a_value_outside_the_set_is_one_line_naming_the_set(choice):
    key = KEYS[choice]
    real_data = ["dataset=file", "dataset.path=/dev/null", "model=smollm2_135m", "judge=none"]
    extra = real_data if key == "dataset.on_error" else []  # (the world ignores it)
    with pytest.raises(ConfigError) as e:
        validate(compose([*extra, f"{key}=bogus"]))
    msg = str(e.value)
    assert "\n" not in msg and "'bogus'" in msg and msg.endswith(f"allowed {choice.listed()}"), msg


def test_no_module_spells_a_set_out_again():
    """A tuple or list literal holding two or more values of one set, outside choices.py, is a second
    definition (openllm's lm-eval backends hf/vllm are lm-eval's own set, named there)."""
    allowed = {("judges/openllm.py", "GenerationBackend")}
    found = []
    for path in sorted((ROOT / "po_bench").rglob("*.py")):
        rel = str(path.relative_to(ROOT / "po_bench"))
        if rel == "choices.py":
            continue
        text = path.read_text()
        for choice in SETS:
            values = [re.escape(f'"{m.value}"') for m in choice]
            literal = re.compile(r"[(\[]\s*(?:" + "|".join(values) + r")\s*,\s*(?:" + "|".join(values) + r")")
            if literal.search(text) and (rel, choice.__name__) not in allowed:
                found.append((rel, choice.__name__))
    assert found == []

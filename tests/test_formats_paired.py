"""po_bench/data/formats/paired.py: rows to preference pairs and SFT examples."""

from po_bench.data.formats.paired import to_pairs, to_sft

from .helpers import conv as _conv


def test_conversational_trl_style_and_shared_prefix():
    """TRL's conversational layout (prompt messages + one-message answers) and prompt-less rows
    whose prompt is the shared message prefix."""
    sys_user = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    rows = [
        {
            "prompt": sys_user,
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        },
        {
            "chosen": sys_user + [{"role": "assistant", "content": "c"}],
            "rejected": sys_user + [{"role": "assistant", "content": "d"}],
        },
        {"prompt": "q", "chosen": "plain a", "rejected": "plain b"},
    ]
    pairs, report = to_pairs(rows, "conversational")
    assert report["skipped"] == {}
    assert pairs[0] == {
        "prompt": sys_user,
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    }
    assert pairs[1]["prompt"] == sys_user and pairs[1]["chosen"][0]["content"] == "c"
    assert pairs[2]["prompt"] == [{"role": "user", "content": "q"}]
    sft, rep = to_sft(
        [{"messages": _conv("u", "v")}, {"messages": [{"role": "user", "content": "x"}]}], "conversational"
    )
    assert sft == [{"messages": _conv("u", "v")}] and rep["skipped"] == {"no_assistant_turn": 1}

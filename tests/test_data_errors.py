"""dataset.on_error: skip counts every bad row by kind; fail names the file and the first bad row.
Wrong role orders; and (slow) a real run whose run.json counts everything skipped, dropped for
length, truncated, noted, and the eval prompts that also occur in training."""

import json
from types import SimpleNamespace as NS

import pytest

from po_bench.data.formats.base import DataError
from po_bench.data.formats.paired import load_pairs, to_pairs
from po_bench.data.formats.unpaired import to_unpaired
from po_bench.data.sources import apply_error_policy

from .conftest import ROOT, run_cli


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_skip_counts_and_fail_names_row(tmp_path):
    f = tmp_path / "pairs.jsonl"
    _write(
        f,
        [
            {"prompt": "a", "chosen": "x", "rejected": "y"},
            '{"prompt": "broken json',  # malformed JSON line
            {"prompt": "b", "chosen": "same", "rejected": "same"},  # chosen == rejected
            {"prompt": "c", "chosen": "", "rejected": "y"},  # empty answer: kept, counted in notes
            {"prompt": "d", "rejected": "y"},  # missing column
            {"prompt": "e", "chosen": "x2", "rejected": "y2"},
        ],
    )
    d = NS(
        path=str(f), hub_id=None, split="train", format="pairs", columns={}, max_rows=0, on_error="skip", name="file"
    )
    pairs, rep = load_pairs(d)
    assert [p["prompt"] for p in pairs] == ["a", "c", "e"]
    assert rep["notes"]["empty_chosen_kept"] == 1
    assert rep["rows"] + rep.get("n_unreadable", 0) >= 5
    assert rep["n_skipped"] + len(pairs) == rep["rows"]
    assert len(rep["skipped"]) >= 3  # distinct reasons, each counted
    apply_error_policy(d, rep)  # skip: no error

    d.on_error = "fail"
    with pytest.raises(DataError) as e:
        apply_error_policy(d, rep)
    msg = str(e.value)
    assert "pairs.jsonl" in msg and "row " in msg and "dataset.on_error=skip" in msg


def test_empty_after_filtering_is_an_error(tmp_path):
    f = tmp_path / "bad.jsonl"
    _write(f, [{"prompt": "b", "chosen": "same", "rejected": "same"}])
    d = NS(
        path=str(f), hub_id=None, split="train", format="pairs", columns={}, max_rows=0, on_error="skip", name="file"
    )
    with pytest.raises(DataError, match="bad.jsonl"):
        load_pairs(d)


def _u(text):
    return {"role": "user", "content": text}


def _a(text):
    return {"role": "assistant", "content": text}


def _s(text):
    return {"role": "system", "content": text}


def test_role_order_skipped_by_reason_and_fail_names_line(tmp_path):
    """Conversations in the wrong role order: assistant first, a system message not first and a
    prompt ending with the assistant are skipped by reason; two user turns in a row are kept and
    noted; under on_error=fail the first one stops the run naming the file and its line."""
    f = tmp_path / "conv.jsonl"
    rows = [
        {"prompt": [_s("be brief"), _u("q0")], "chosen": "a", "rejected": "b"},  # fine
        {"prompt": [_a("hello"), _u("q1")], "chosen": "a", "rejected": "b"},  # assistant first
        {"prompt": [_u("q2"), _s("late system"), _u("q2b")], "chosen": "a", "rejected": "b"},  # system not first
        {"prompt": [_u("q3"), _a("already answered")], "chosen": "a", "rejected": "b"},  # ends with assistant
        {"prompt": [_u("q4"), _u("q4 again")], "chosen": "a", "rejected": "b"},  # user twice: kept, noted
        {
            "chosen": [_s("s"), _a("x"), _u("q5"), _a("a")],
            "rejected": [_s("s"), _a("x"), _u("q5"), _a("b")],
        },  # shared prefix: assistant first
        {"prompt": [_u("q6"), _a("r"), _u("q6b")], "chosen": "a", "rejected": "b"},  # fine (alternating)
    ]
    f.write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows))  # a blank first line: line != row + 1
    d = NS(
        path=str(f),
        hub_id=None,
        split="train",
        format="conversational",
        columns={},
        max_rows=0,
        on_error="skip",
        name="file",
    )
    pairs, rep = load_pairs(d)
    assert [p["prompt"][-1]["content"] for p in pairs] == ["q0", "q4 again", "q6b"]
    assert rep["skipped"] == {"first_turn_not_user": 2, "system_not_first": 1, "prompt_ends_with_assistant": 1}
    assert rep["skipped_examples"]["first_turn_not_user"] == [1, 5]
    assert rep["notes"] == {"non_alternating_roles": 1}
    apply_error_policy(d, rep)
    d.on_error = "fail"
    with pytest.raises(DataError) as e:
        apply_error_policy(d, rep)
    assert str(e.value).startswith(f"{f}: line 3 (row 1): first_turn_not_user (4 bad rows in all;")

    # the same checks in the other formats that build conversations
    hh = [
        {
            "chosen": "\n\nAssistant: hi\n\nHuman: q\n\nAssistant: good",
            "rejected": "\n\nAssistant: hi\n\nHuman: q\n\nAssistant: bad",
        },
        {
            "chosen": "\n\nHuman: q\n\nHuman: q2\n\nAssistant: good",
            "rejected": "\n\nHuman: q\n\nHuman: q2\n\nAssistant: bad",
        },
    ]
    pairs, rep = to_pairs(hh, "hh")
    assert (
        len(pairs) == 1 and rep["skipped"] == {"first_turn_not_user": 1} and rep["notes"]["non_alternating_roles"] == 1
    )
    un = [
        {"prompt": [_u("q"), _a("x")], "completion": "c", "label": True},
        {"prompt": [_u("q")], "completion": "c", "label": False},
    ]
    out, rep = to_unpaired(un, "unpaired")
    assert len(out) == 1 and rep["skipped"] == {"prompt_ends_with_assistant": 1}


def _train_and_test_files(tmp_path):
    good = [
        {"prompt": [_u(f"question {i} about the topic")], "chosen": f"good answer {i}", "rejected": f"bad {i}"}
        for i in range(16)
    ]
    bad = [
        '{"prompt": [broken',  # invalid_json
        json.dumps({"prompt": [_a("hi"), _u("q")], "chosen": "a", "rejected": "b"}),  # first_turn_not_user
        json.dumps({"prompt": [_u("q"), _s("s"), _u("q2")], "chosen": "a", "rejected": "b"}),  # system_not_first
        json.dumps({"prompt": [_u("q"), _a("x")], "chosen": "a", "rejected": "b"}),  # prompt_ends_with_assistant
        json.dumps({"prompt": [_u("same")], "chosen": "same", "rejected": "same"}),  # identical_responses
        json.dumps({"prompt": [_u("first"), _u("second")], "chosen": "a", "rejected": "b"}),  # kept, noted
        json.dumps({"prompt": [_u("word " * 300)], "chosen": "a", "rejected": "b"}),  # prompt over max_length: dropped
        json.dumps({"prompt": [_u("short")], "chosen": "long " * 300, "rejected": "b"}),  # kept, truncated
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good) + "\n".join(bad) + "\n")
    test = [{"prompt": [_u(f"held out {i}")], "chosen": "yes", "rejected": "no"} for i in range(3)]
    test += [
        {"prompt": [_u("question 3 about the topic")], "chosen": "yes", "rejected": "no"},  # also in train
        {"prompt": [_u("eval")], "chosen": "same", "rejected": "same"},
    ]  # identical_responses
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return tmp_path / "{split}.jsonl"


@pytest.mark.slow
def test_run_json_counts_every_skip_drop_truncation_and_leak(tiny_chat_model, tmp_path):
    path = _train_and_test_files(tmp_path)
    args = [
        "model.kind=hub",
        f"model.name_or_path={tiny_chat_model}",
        "model.name=tiny-chat",
        "dataset=file",
        f"dataset.path='{path}'",
        "dataset.format=conversational",
        "dataset.eval_split=test",
        "dataset.n_eval=8",
        "judge=none",
        "train.max_steps=1",
        "train.batch_size=4",
        "train.max_length=128",
        "generation.max_new_tokens=4",
        "generation.progress=false",
        "train.progress=false",
        "tracking=none",
        "threads=1",
        f"cache_dir={tmp_path}/cache",
    ]
    r = run_cli([*args, f"hydra.run.dir={tmp_path}/run"], ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    assert rec["status"] == "done", rec.get("error")
    data = rec["metrics"]["data"]
    assert data["counts"] == {
        "rows_read": 24,
        "skipped": {
            "invalid_json": 1,
            "first_turn_not_user": 1,
            "system_not_first": 1,
            "prompt_ends_with_assistant": 1,
            "identical_responses": 1,
        },
        "eval_skipped": {"identical_responses": 1},
        "dropped": {"prompt_over_max_length": 1},
        "truncated": {"over_max_length": 1},
        "kept_with_notes": {"non_alternating_roles": 1},
        "eval_prompts_in_train": 1,
    }
    assert data["tokens"]["n_pairs"] == 24 - 5 - 1
    assert data["leakage"]["eval_split"]["examples"] == ["question 3 about the topic"]
    assert len((tmp_path / "run" / "samples.jsonl").read_text().splitlines()) == 4

    # on_error=fail: the first bad row stops the run, naming the file and its line
    r = run_cli([*args, "dataset.on_error=fail", f"hydra.run.dir={tmp_path}/fail"], ROOT)
    assert r.returncode == 1
    rec = json.loads((tmp_path / "fail" / "run.json").read_text())
    assert rec["status"] == "failed"
    assert rec["error"].startswith(f"DataError: {tmp_path / 'train.jsonl'}: line 17 (row 16): invalid_json (5 bad rows")

"""po-bench-online (po_bench/cli/online_table.py): the command line over po_bench/results/online_view.py (a
missing folder or one without runs is one line and exit 2; a sweep folder gives the three files)."""

from __future__ import annotations

import json

from po_bench.cli.online_table import main


def _write(root, runs):
    for i, r in enumerate(runs):
        d = root / str(i)
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps(r))
    return root


def _dpo(seed: int) -> dict:
    return {
        "status": "done",
        "config": {"loss": {"name": "dpo", "label": "DPO", "args": {}}, "seed": seed},
        "metrics": {"gold_reward": 0.5 + 0.01 * seed, "gold_reward_sft": 0.3, "data": {"n_pairs": 1600}},
    }


def test_po_bench_online_cli(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"po-bench-online: {tmp_path / 'nope'}: no such folder"
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("po-bench-online: no run.json under")
    runs = [_dpo(s) for s in range(3)]
    assert main([str(_write(tmp_path / "sweep", runs)), "--out", str(tmp_path / "o"), "--name", "x"]) == 0
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"x.csv", "x.md", "x.png"}

"""Tables that show what ran: a setting every run shares is printed under the title, columns that
carry no information are dropped, no std for one seed, the final training loss of differently scaled
losses is no column, merged tables are grouped by model, the footer's times say what they are."""

from __future__ import annotations

import csv
import json

from po_bench.results import table, writers

BETAS = {"dpo": 0.1, "ipo": 0.5, "sft": 1.0}
TYPES = {"dpo": ["sigmoid"], "ipo": ["ipo"], "sft": None}


def _run(tmp, name, loss, seed=0, model="tiny", overrides=(), metrics=None, beta=None):
    cfg = {
        "loss": {
            "name": loss,
            "label": loss.upper(),
            "beta": beta or BETAS[loss],
            "lr": 2e-4,
            "backend": "sft" if loss == "sft" else "dpo",
            "args": {} if loss == "sft" else {"loss_type": TYPES[loss]},
        },
        "model": {"name": model},
        "judge": {"name": "gold"},
        "seed": seed,
        "cache_dir": f"/tmp/{name}",
        "dataset": {"name": "world", "path": None if model == "tiny" else "/data/hh.jsonl"},
    }
    d = tmp / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(
        "".join(f"- {o}\n" for o in [f"loss={loss}", f"seed={seed}", f"cache_dir=/tmp/{name}", "threads=1", *overrides])
    )
    rec = {
        "status": "done",
        "config": cfg,
        "metrics": {
            "gold_reward": 0.5 + seed / 10,
            "train_loss_final": 23.2 if loss == "ipo" else 0.64,
            "seconds": {"total": 2.0},
            "artifacts": {"hits": ["sft/1"], "built": []},
            **(metrics or {}),
        },
        "versions": {},
        "host": {"platform": "x", "cpu": "CPU-X", "cpus": 2},
    }
    (d / "run.json").write_text(json.dumps(rec))


def test_a_shared_override_is_shown_and_restating_columns_are_not(tmp_path):
    for i, loss in enumerate(("sft", "dpo", "ipo")):
        _run(tmp_path, f"{i}", loss, overrides=["loss.beta=2.5", "generation.temperature=0.7"])
    paths = writers.write_tables(tmp_path, tmp_path / "out", "t", title="A sweep", wall_seconds=10)
    md = paths["md"].read_text()
    lines = md.splitlines()
    assert lines[0] == "## A sweep"
    assert lines[2] == "Every run: `loss.beta=2.5`, `generation.temperature=0.7`"  # no cache_dir, threads, seed
    header = next(line for line in lines if line.startswith("| method"))
    assert "loss.beta" not in header and "loss.args" not in header and "dataset.path" not in header
    assert "train_loss_final" not in header  # SFT, DPO and IPO losses are on different scales
    assert "Final training loss per row" in md and "IPO 23.200" in md and "DPO 0.640" in md
    # one seed: the CSV has no std (an empty cell, not 0.0)
    row = next(csv.DictReader(open(paths["csv"])))
    assert row["gold_reward_std"] == "" and row["gold_reward_mean"] == "0.5"
    # the footer says what each time is
    assert "sweep wall time 10 s (start to end of the make target or sweep)" in md
    assert "runs' own time added up 6 s" in md and "Runs: 3 done, 0 failed" in md


def test_one_loss_keeps_the_training_loss_column_and_std_over_seeds(tmp_path):
    for s in (0, 1):
        _run(tmp_path, f"a{s}", "dpo", seed=s, beta=0.1)
        _run(tmp_path, f"b{s}", "dpo", seed=s, beta=0.3)
    hp, rows, _ = table.build_table(table.load_runs(tmp_path))
    assert hp == ["loss.beta"]  # varies within DPO: a real column
    md = writers.to_markdown(hp, rows, [])
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    assert "train_loss_final" in header and "Final training loss per row" not in md
    assert rows[0]["gold_reward_std"] is not None and rows[0]["n_seeds"] == 2


def test_a_merged_table_of_two_models_is_grouped_by_model(tmp_path):
    for m in ("tiny", "smollm2"):
        for loss in ("sft", "dpo"):
            _run(tmp_path / m, f"{loss}", loss, model=m)
    hp, rows, _ = table.build_table(table.load_runs(tmp_path))
    assert hp[0] == "model.name" and "dataset.path" not in hp  # the path restates the model
    assert [(r["model.name"], r["method"]) for r in rows] == [
        ("smollm2", "DPO"),
        ("smollm2", "SFT"),
        ("tiny", "DPO"),
        ("tiny", "SFT"),
    ]
    md = writers.to_markdown(hp, rows, [])
    assert "None" not in md


def test_a_presets_method_columns_put_rows_of_different_data_in_one_comparison():
    """beyond_pairs: the data shape is part of each method (preset.method_columns: [dataset.]), so every
    row is compared with the baseline, not only the rows with the baseline's data; without it each data
    setting is its own comparison."""
    from po_bench.results import analysis

    rows = [
        {"method": m, "dataset.k_samples": k, "gold_reward_mean": g, "n_seeds": 1, "_runs": []}
        for m, k, g in (("DPO", 2, 0.6), ("Curry-DPO", 4, 0.7), ("DPO", 4, 0.5))
    ]
    per_setting = analysis.analyse([dict(r) for r in rows], ["dataset.k_samples"], ["gold_reward"], ["gold_reward"])
    assert per_setting.setting_cols == ["dataset.k_samples"]
    assert per_setting.labels == ["DPO", "Curry-DPO", "DPO"]
    one = analysis.analyse(
        [dict(r) for r in rows], ["dataset.k_samples"], ["gold_reward"], ["gold_reward"], method_cols=("dataset.",)
    )
    assert one.setting_cols == []  # one comparison: every row against DPO
    assert one.labels == ["DPO (k_samples=2)", "Curry-DPO", "DPO (k_samples=4)"]

#!/usr/bin/env python
"""Generate docs/losses.md from conf/loss/*.yaml (so the table never drifts from the configs).

    python scripts/gen_loss_docs.py          # write docs/losses.md
    python scripts/gen_loss_docs.py --check  # exit 1 if docs/losses.md is stale
"""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BACKEND = {
    "dpo": "TRL DPOTrainer", "cpo": "TRL CPOTrainer (trl.experimental)", "orpo": "TRL ORPOTrainer (trl.experimental)",
    "kto": "TRL KTOTrainer", "pobench": "po-bench (po_bench/training/losses.py) on TRL DPOTrainer", "sft": "TRL SFTTrainer (SFT stage only)",
}
SKIP_ARGS = {"loss_type"}


def render() -> str:
    rows = []
    for p in sorted((ROOT / "conf" / "loss").glob("*.yaml")):
        d = yaml.safe_load(p.read_text())
        args = d.get("args") or {}
        backend = BACKEND[d["backend"]]
        if d["backend"] in ("dpo", "cpo") and "loss_type" in args:
            backend += f" `loss_type={args['loss_type']}`"
        if d["backend"] == "pobench":
            backend += f" `{d['function']}`"
        hp = [f"beta={d.get('beta', 0.1):g}", f"lr={float(d.get('lr', 2e-4)):g}"]
        hp += [f"{k}={v}" for k, v in args.items() if k not in SKIP_ARGS]
        ref = "no" if d.get("reference_free") else "yes"
        data = "pairs (used as unpaired: chosen=desirable, rejected=undesirable)" if d.get("paired") is False else (
            "demonstrations" if d["backend"] == "sft" else "pairs")
        cite = d.get("citation", "").replace("|", "/")
        rows.append(f"| `{p.stem}` | {d.get('label', p.stem)} | {cite} | {d.get('formula', '').replace('|', '/')} | "
                    f"{', '.join(hp)} | {backend} | {ref} | {data} |")
    head = [
        "# Losses",
        "",
        "Generated from `conf/loss/*.yaml` by `scripts/gen_loss_docs.py`; a test fails when this file is stale.",
        "`loss=<config>` selects a row. h = log pi/ref(y_w) - log pi/ref(y_l); |y| = completion tokens;",
        "sig = logistic sigmoid. Learning rates are the embedded world's (one shared value, 2e-4, for every",
        "preference loss, 10x lower for sft_lowlr); paper-scale learning rates are in",
        "results/reference/baseline_grids.yaml.",
        "",
        "| config | method | paper | loss | hyperparameters (defaults) | backend | reference model | data |",
        "|---|---|---|---|---|---|---|---|",
    ]
    tail = [
        "",
        "Not available: unpaired BCO (TRL 1.16 has no BCOTrainer; `bco_pair` is the paired form), and the",
        "f-divergence SFT objectives of arXiv:2507.00018 (only its learning-rate-reduction recipe, `sft_lowlr`,",
        "is here).",
    ]
    return "\n".join(head + rows + tail) + "\n"


def main() -> int:
    out = ROOT / "docs" / "losses.md"
    text = render()
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            print("docs/losses.md is stale: run python scripts/gen_loss_docs.py", file=sys.stderr)
            return 1
        return 0
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} ({sum(1 for l in text.splitlines() if l.startswith('| `'))} losses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

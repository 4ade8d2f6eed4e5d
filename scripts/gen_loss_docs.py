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
    "dpo": "TRL DPOTrainer",
    "cpo": "TRL CPOTrainer (trl.experimental)",
    "orpo": "TRL ORPOTrainer (trl.experimental)",
    "kto": "TRL KTOTrainer",
    "pobench": "po-bench (po_bench/training/losses.py) on TRL DPOTrainer",
    "listwise": "po-bench listwise (po_bench/training/listwise.py) on TRL DPOTrainer",
    "sft": "TRL SFTTrainer (SFT stage only)",
    "iterative": "rounds of its inner loss's trainer (po_bench/specs.py iterative_rounds)",
    "online": "po-bench online loop (po_bench/training/online.py)",
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
        if d["backend"] in ("pobench", "listwise", "online"):
            backend += f" `{d['function']}`"
        if d["backend"] == "pobench" and d.get("paired") is False:  # unpaired po-bench losses (BCO): KTO's trainer
            backend = backend.replace("TRL DPOTrainer", "TRL KTOTrainer (KL rows off)")
        lr = str(d.get("lr", "${model.lr}"))
        lr = {"${model.lr}": "model's", "${pob_mul:${model.lr},0.1}": "model's/10"}.get(lr, lr)
        hp = [f"beta={d.get('beta', 0.1):g}", f"lr={lr}"]
        hp += [f"{k}={v}" for k, v in args.items() if k not in SKIP_ARGS]
        ref = "no" if d.get("reference_free") else "yes"
        data = (
            "pairs (used as unpaired: chosen=desirable, rejected=undesirable)"
            if d.get("paired") is False
            else (
                "demonstrations"
                if d["backend"] == "sft"
                else "rated lists (k responses + scores per prompt)"
                if d["backend"] == "listwise"
                else "n samples per prompt drawn online from loss.args.proposal, scored by loss.args.labeller's "
                "scalar reward (docs/online.md)"
                if d["backend"] == "online" and d.get("function") == "brain"
                else "pairs sampled online and labelled by loss.args.labeller (docs/online.md)"
                if d["backend"] == "online"
                else "pairs"
            )
        )
        ps = d.get("pair_scores") or {}  # per-pair weights from scores computed before training (MADPO, Sem-DPO)
        data += {
            "reward_margin": " + a reward model trained first on them (its margin per pair)",
            "semantic_distance": f" + prompt/chosen embedding distances ({ps.get('embedder')})",
        }.get(ps.get("kind"), "")
        if d["backend"] == "online" and d.get("guide"):  # RTO: scored samples, a guide policy's token rewards
            backend = "po-bench online loop (po_bench/training/rto.py) `rto`"
            data = (
                "two policy samples per prompt each step, each scored by the world's gold reward; "
                f"+ a `{d['guide']}` guide policy trained first on the pairs (docs/online.md)"
            )
        if d["backend"] == "online" and d.get("function") == "oprl":  # scored groups, an implicit PRM beside
            backend = "po-bench online loop (po_bench/training/oprl.py) `oprl`"
            data = (
                "n policy samples per prompt each step, each scored by loss.args.labeller's scalar reward (the "
                "outcome); + an implicit PRM trained online on them; the world's steps (docs/online.md)"
            )
        if d["backend"] == "online" and d.get("function") == "ofs_dpo":  # two LoRA modules; COFS: families in turn
            backend = "po-bench online loop (po_bench/training/ofs.py) `ofs_dpo`"
            ref = "yes: the start checkpoint (the base with the LoRA modules off)"
            data = (
                "pairs of two samples of the fast LoRA module, labelled online by loss.args.labeller; "
                "`domains` > 0: the world's prompt families in turn (docs/online.md)"
            )
        if d["backend"] == "iterative":  # samples and labels its own pairs each round (docs/online.md)
            ref = "yes: the start (`ref_update=fixed`) or the previous round's policy (`per_round`)"
            data = "its own each round: k samples per world pref prompt from the last policy, labelled, pairs"
        cite = d.get("citation", "").replace("|", "/")
        rows.append(
            f"| `{p.stem}` | {d.get('label', p.stem)} | {cite} | {d.get('formula', '').replace('|', '/')} | "
            f"{', '.join(hp)} | {backend} | {ref} | {data} |"
        )
    head = [
        "# Losses",
        "",
        "Generated from `conf/loss/*.yaml` by `scripts/gen_loss_docs.py`; a test fails when this file is stale.",
        "`loss=<config>` selects a row. h = log pi/ref(y_w) - log pi/ref(y_l); |y| = completion tokens;",
        "sig = logistic sigmoid. Learning rates are the model config's `lr` (`model.lr`; the world's tiny model: 2e-4,",
        "one shared value for every preference loss, 10x lower for sft_lowlr); paper-scale learning rates are in",
        "results/reference/baseline_grids.yaml.",
        "",
        "| config | method | paper | loss | hyperparameters (defaults) | backend | reference model | data |",
        "|---|---|---|---|---|---|---|---|",
    ]
    tail = [
        "",
        "Differences from the papers' equations kept on purpose (each is the authors' own code):",
        "",
        "* `cpo`: the NLL term is one token mean over the batch's chosen completion tokens (CPO's code, TRL),",
        "  not a per-example mean.",
        "* `orpo`: the NLL term is one token mean over the prompt *and* completion tokens of the batch's chosen",
        "  sequences (ORPO's code, TRL); the odds use the length-normalised likelihood.",
        "* `apo_zero`, `apo_down`: a constant +1 added to the paper's eqs. 7-8 (the APO authors' implementation",
        "  in TRL): the same gradient, the loss shifted by 1.",
        "* `ipo`: log-ratios averaged per token (TRL; confirmed with the IPO authors, see TRL's comment).",
        "",
        "Where TRL 1.16 differs from the paper and has no option for the paper's form, the loss is a po-bench",
        "function (tests/test_losses.py checks loss and gradient against a transcription of the paper's equation):",
        "`rpo` and `mpo` (per-example length-normalised SFT term, TRL's is a batch token mean), `bco_pair` and",
        "`mpo` (BCO's running-mean reward shift delta, dropped by TRL), `fdpo_alpha` (the paper's alpha; TRL's",
        "coefficient is 1 - alpha).  `kto` stays on TRL with its rows ordered so that every KL row pairs a",
        "prompt with another prompt's completion (`trl/unpaired.py`: `kto_order`), and `tr_dpo`'s sync interval is a",
        "fraction of the run (`ref_model_sync_fraction`).",
        "`beta_dpo` is a po-bench function whose running statistics (M_0, sigma, the step) go in and come back",
        "updated (`LossOutput.state`), held by the trainer between training steps (not across a resume from a",
        "checkpoint: they restart at 0, as BCO's delta does).  As the authors' code: M_i is the log-ratio margin h",
        "without beta_0, the moments are updated before the loss, the draw keeps floor(rho*B) pairs; under a process",
        "group the moments and the draw are per rank (the authors gather the margins across ranks).",
        "`curry_dpo` is DPO's loss on data it requires (`loss.requires`: `dataset.k_samples=4`,",
        "`dataset.pair_strategy=best_vs_rest`, `dataset.curriculum=easy_to_hard`): the world ranks k on-policy",
        "samples by its annotator (a Plackett-Luce draw consistent with its Bradley-Terry pairs), and the trainer",
        "keeps the pairs' order (transformers' `train_sampling_strategy=\"sequential\"`).  The paper's iterative",
        "variant (one round per rejected rank, the reference replaced by the previous round's policy) is not here.",
        "`lipo`, `irpo`, `adpo_list` are listwise: one example is one prompt with k responses and their annotator",
        "scores (`dataset.pair_strategy=list`: the world rates its k on-policy samples, a Plackett-Luce draw; files:",
        "`format: ranked`).  The listwise trainer scores every response under the policy and the reference (precomputed",
        "once; ADPO's `anchor=dynamic` moves it each step) and hands [B, k] statistics to the function.  Labels psi of",
        "LiPO / IRPO default to each response's average win rate against its list (LiPO's label construction).  IRPO is",
        "the authors' released code (`rdpo_loss`), not the paper's equations (unavailable here); the world's k samples",
        "stand for its in-context list, positions are ranks by the policy's rewards (`position=policy`): assumptions",
        "listed in conf/loss/irpo.yaml.  ADPO's targets are q = softmax(scores / tau) with tau = 1 (not a paper value).",
        "`iterative_dpo` trains R rounds of its inner loss (`loss.args.inner`, DPO by default; `loss.beta` and",
        "`loss.lr` are the inner loss's) on pairs it samples from the last round's policy and labels (gold, the",
        "world's annotator, the last policy's implicit reward, or a reward model): each round a policy artifact keyed",
        "by every round before it; docs/online.md has its sources and where it departs from them.",
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

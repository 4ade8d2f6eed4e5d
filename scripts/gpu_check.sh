#!/usr/bin/env bash
# The GPU check of the paper-scale issue, for a machine with one NVIDIA GPU (the `device` tool):
#   1. SmolLM2-135M-Instruct DPO on real HH-RLHF pairs, trained as its own process group
#      (launch=ddp, 1 GPU, train.precision=bf16-mixed: fp32 master weights, bf16 autocast);
#   2. generation with vLLM on the GPU (generation=vllm) after the training process has exited;
#   3. KL and implicit-reward scoring on the GPU (token-bounded batches);
#   4. online DPO (po-bench's online loop, loss=online_dpo) with its samples from a vLLM engine colocated with
#      the policy and synced to it in place each step: the tiny world through the CLI (generation=vllm), then
#      SmolLM2-135M-Instruct through scripts/gpu_online_check.py (the CLI's online methods need dataset=world,
#      which needs model=tiny), a few steps each, with the synced engine checked against a fresh one;
# printing the time and peak GPU memory of each.  A fresh machine installs first (EXTRA=gpu: vllm,
# deepspeed).  Usage: scripts/gpu_check.sh [extra po-bench overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
HH=${HH:-../shared/data/hh_rlhf/harmless-base_test.jsonl.gz}
[ -f "$HH" ] || { echo "gpu_check: $HH is absent (set HH=<an HH-RLHF jsonl.gz>)"; exit 2; }
t0=$(date +%s)
make install EXTRA=gpu >/tmp/gpu_check_install.log 2>&1 || { tail -30 /tmp/gpu_check_install.log; exit 1; }
echo "install: $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
OUT=${OUT:-/tmp/po-bench-gpu-check}
rm -rf "$OUT"
t1=$(date +%s)
.venv/bin/po-bench model=smollm2_135m dataset=hh_rlhf dataset.path="$HH" dataset.eval_split=null \
    dataset.max_rows=512 dataset.n_eval=64 judge=none loss=dpo loss.lr=5e-7 \
    launch=ddp launch.num_processes=1 train.precision=bf16-mixed train.max_length=512 train.batch_size=8 \
    train.global_batch_size=32 train.epochs=1 generation=vllm generation.max_new_tokens=256 \
    generation.gpu_memory_utilization=0.5 tracking=none threads=8 \
    cache_dir="$OUT/cache" hydra.run.dir="$OUT/run" "$@"
echo "run: $(( $(date +%s) - t1 )) s"
.venv/bin/python - "$OUT/run/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
print("status", r["status"], r.get("error", ""))
print("train", m.get("train"), "precision", r["config"]["train"]["precision"])
print("seconds", m.get("seconds"))
print("gpu peak memory GiB (pipeline process: generation + scoring)", m.get("gpu_peak_memory_gib"))
print({k: m.get(k) for k in ("kl_to_ref", "mean_length", "implicit_reward_accuracy", "train_loss_final")})
PY
t2=$(date +%s)
.venv/bin/po-bench loss=online_dpo generation=vllm generation.gpu_memory_utilization=0.3 train.max_steps=8 \
    tracking=none cache_dir="$OUT/cache" hydra.run.dir="$OUT/online_tiny"
echo "online (tiny world, vLLM colocated): $(( $(date +%s) - t2 )) s"
.venv/bin/python - "$OUT/online_tiny/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("status", r["status"], r.get("error", ""), "online", r["metrics"].get("online"))
PY
t3=$(date +%s)
PYTHONPATH=. .venv/bin/python scripts/gpu_online_check.py "$OUT" 8 128
echo "online (SmolLM2, vLLM colocated): $(( $(date +%s) - t3 )) s"

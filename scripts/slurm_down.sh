#!/usr/bin/env bash
# Stop the single-node Slurm cluster that scripts/slurm_up.sh started in DIR
#   scripts/slurm_down.sh [DIR]        (default $PO_BENCH_SLURM_DIR or /tmp/po-bench-slurm)
# Cancels its jobs, stops its slurmd, slurmctld and munged (by their pid files in DIR, checked
# against /proc), then any process still carrying DIR's marker (slurmstepd).  Logs stay in DIR/log
# (slurm_up.sh wipes DIR when it starts again).  Nothing else is touched.
set -uo pipefail
# shellcheck source=slurm/common.sh
. "$(dirname "$0")/slurm/common.sh"

[[ -d "$SLURM_DIR" ]] || { log "no cluster in $SLURM_DIR"; exit 0; }
export SLURM_CONF="$SLURM_DIR/slurm.conf"

if pid_of "$SLURM_DIR/run/slurmctld.pid" slurmctld >/dev/null && command -v scancel >/dev/null; then
  timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [[ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]] && break; sleep 0.2
  done
fi

rc=0
for d in slurmd:run/slurmd.pid slurmctld:run/slurmctld.pid munged:munge/munged.pid; do
  name="${d%%:*}"; file="$SLURM_DIR/${d#*:}"
  if pid="$(pid_of "$file" "$name")"; then stop_pid "$pid" "$name" || rc=1; fi
  rm -f "$file"
done
# left when slurmctld was gone (no scancel) or a job step hung: slurmstepd and the job under it
for pid in $(marked_pids); do
  kill_tree "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null || echo process)" || rc=1
done
rm -f "$SLURM_DIR/munge/run/munge.socket.2" "$SLURM_DIR/munge/run/munge.socket.2.lock"
exit $rc

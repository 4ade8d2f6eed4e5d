#!/usr/bin/env bash
# Bring up a single-node Slurm cluster on this machine, from fresh state, in a folder of its own:
#   sudo scripts/slurm_up.sh [DIR]      (default $PO_BENCH_SLURM_DIR or /tmp/po-bench-slurm)
#   export SLURM_CONF=DIR/slurm.conf    (or: . DIR/env)   then sbatch/srun/squeue/sinfo as usual
#   sudo scripts/slurm_down.sh [DIR]    stops exactly what this started
# For tests and local trials of `hydra/launcher=submitit_slurm` (partition `debug`), not production.
# Needs root and Debian/Ubuntu packages slurmctld, slurmd, slurm-client, munge (installed with
# apt-get if missing).  No systemd: munged (as user munge), slurmctld and slurmd are started
# directly, with their own munge key, socket, state, logs and pid files under DIR, on ports
# $PO_BENCH_SLURM_PORT and +1 (default 16817/16818).  The node advertises this machine's real CPUs
# and memory (slurmd -C).  No accounting (sacct does not work; submitit warns and carries on).
# Prints the SLURM_CONF path on stdout.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=slurm/common.sh
. "$HERE/slurm/common.sh"
PORT="${PO_BENCH_SLURM_PORT:-16817}"
PARTITION="${PO_BENCH_SLURM_PARTITION:-debug}"

[[ "$(id -u)" == 0 ]] || { log "must run as root (munged runs as user munge, slurmd as root)"; exit 1; }

# --- packages (idempotent) -------------------------------------------------------------------
need=()
for b in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
  command -v "${b%%:*}" >/dev/null 2>&1 || need+=("${b#*:}")
done
if ((${#need[@]})); then
  command -v apt-get >/dev/null || { log "missing ${need[*]} and no apt-get"; exit 3; }
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >"$1" 2>&1; }
  tmplog="$(mktemp)"
  if ! apt_install "$tmplog"; then
    apt-get update -q >>"$tmplog" 2>&1 || true
    apt_install "$tmplog" || { tail -20 "$tmplog" >&2; log "apt-get install failed"; exit 3; }
  fi
  rm -f "$tmplog"
fi
id munge >/dev/null 2>&1 || { log "no user munge (package munge should have created it)"; exit 3; }

# --- fresh state: stop a cluster left in DIR, wipe DIR --------------------------------------
if [[ -d "$SLURM_DIR" && -n "$(ls -A "$SLURM_DIR")" ]] \
   && ! grep -qs '^# written by scripts/slurm_up.sh' "$SLURM_DIR/slurm.conf"; then
  log "$SLURM_DIR is not empty and holds no cluster of slurm_up.sh: not wiping it"; exit 2
fi
"$HERE/slurm_down.sh" "$SLURM_DIR" >/dev/null 2>&1 || true
rm -rf "$SLURM_DIR"
mkdir -p "$SLURM_DIR"/{state/ctld,state/d,log,run,munge/run}
chmod 0755 "$SLURM_DIR"
M="$SLURM_DIR/munge"
chown -R munge:munge "$M"
chmod 0711 "$M" "$M/run"   # munged: every folder on the socket path must be 0711 (x for all)
mungekey --create --keyfile="$M/munge.key" 2>/dev/null \
  || dd if=/dev/urandom of="$M/munge.key" bs=1 count=1024 status=none
chown munge:munge "$M/munge.key"; chmod 0400 "$M/munge.key"
SOCK="$M/run/munge.socket.2"

# --- munged ------------------------------------------------------------------------------------
env PO_BENCH_SLURM_DAEMON_OF="$SLURM_DIR" runuser -u munge -- munged \
  --socket="$SOCK" --key-file="$M/munge.key" --pid-file="$M/munged.pid" \
  --log-file="$M/munged.log" --seed-file="$M/munged.seed" \
  || { cat "$M/munged.log" >&2 2>/dev/null; log "munged failed to start"; exit 4; }
for ((i = 0; i < 50; i++)); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
munge --socket="$SOCK" -n </dev/null | unmunge --socket="$SOCK" >/dev/null \
  || { log "munge round trip failed (see $M/munged.log)"; exit 4; }

# --- slurm.conf ----------------------------------------------------------------------------------
HOST="$(hostname -s)"
NODE="$(slurmd -C | head -1)"                  # NodeName=<host> CPUs=.. Boards=.. RealMemory=..
[[ "$NODE" == NodeName=* ]] || { log "slurmd -C gave: $NODE"; exit 5; }
cat > "$SLURM_DIR/slurm.conf" <<CONF
# written by scripts/slurm_up.sh: single-node test cluster, state in $SLURM_DIR
ClusterName=pobench
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state/ctld
SlurmdSpoolDir=$SLURM_DIR/state/d
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
echo "export SLURM_CONF=$SLURM_DIR/slurm.conf" > "$SLURM_DIR/env"
export SLURM_CONF="$SLURM_DIR/slurm.conf"

# --- daemons -------------------------------------------------------------------------------------
env PO_BENCH_SLURM_DAEMON_OF="$SLURM_DIR" slurmctld -c -f "$SLURM_CONF" \
  || { tail -20 "$SLURM_DIR/log/slurmctld.log" >&2; log "slurmctld failed"; exit 6; }
env PO_BENCH_SLURM_DAEMON_OF="$SLURM_DIR" slurmd -f "$SLURM_CONF" \
  || { tail -20 "$SLURM_DIR/log/slurmd.log" >&2; log "slurmd failed"; exit 6; }

state=""
for ((i = 0; i < 150; i++)); do
  state="$(timeout 5 sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)"
  [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]] && break
  sleep 0.2
done
if [[ "$state" != idle* && "$state" != mixed* && "$state" != allocated* ]]; then
  log "node not ready (state '${state}'); logs:"; tail -15 "$SLURM_DIR"/log/*.log >&2
  "$HERE/slurm_down.sh" "$SLURM_DIR" >&2 || true
  exit 7
fi
log "up: partition $PARTITION, node $HOST ($NODE) -- export SLURM_CONF=$SLURM_CONF"
echo "$SLURM_CONF"

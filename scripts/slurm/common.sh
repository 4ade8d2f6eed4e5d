# Shared by scripts/slurm_up.sh and scripts/slurm_down.sh (sourced, not run).
# The cluster lives in one folder: $PO_BENCH_SLURM_DIR, default /tmp/po-bench-slurm.
SLURM_DIR="${1:-${PO_BENCH_SLURM_DIR:-/tmp/po-bench-slurm}}"
SLURM_DIR="$(realpath -m "$SLURM_DIR")"
case "$SLURM_DIR" in
  /|/tmp|/usr|/usr/*|/etc|/etc/*|/var|/home|/root|/bin|/sbin|/lib|/lib64|/opt|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*)
    echo "slurm: refusing to use $SLURM_DIR as the cluster folder" >&2; exit 2 ;;
esac

log() { echo "slurm: $*" >&2; }

# A pid is alive when /proc says so and its state is not zombie/dead (exited processes may stay
# zombies for a while here: the pid alone proves nothing).
alive() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '/^State:/{print $2; exit}' "/proc/$pid/status" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# pid from a pid file, only if that process is alive and is the expected program (comm)
pid_of() {
  local file="$1" comm="$2" pid
  [[ -r "$file" ]] || return 1
  pid="$(tr -dc '0-9' < "$file")"
  alive "$pid" || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] || return 1
  echo "$pid"
}

# stop_pid PID NAME: TERM, wait up to 15 s (zombie counts as stopped), then KILL
stop_pid() {
  local pid="$1" name="$2" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do alive "$pid" || { log "stopped $name ($pid)"; return 0; }; sleep 0.1; done
  log "$name ($pid) ignored SIGTERM; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$pid" || return 0; sleep 0.1; done
  log "could not stop $name ($pid)"; return 1
}

# processes carrying this cluster's marker in their environment: the daemons slurm_up.sh started
# (it sets PO_BENCH_SLURM_DAEMON_OF for them alone) and the slurmstepd they spawned
marked_pids() {
  local marker="PO_BENCH_SLURM_DAEMON_OF=$SLURM_DIR" p
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    [[ "$p" == "$$" || "$p" == "$BASHPID" ]] && continue
    alive "$p" || continue
    { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qxF "$marker" && echo "$p"
  done
  return 0
}

# all live descendants of PID (children first listed after their parent)
descendants() {
  local root="$1" p stat ppid
  declare -A kids=()
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
    stat="${stat##*) }"                       # fields after "(comm) ": state ppid ...
    ppid="${stat#* }"; ppid="${ppid%% *}"
    kids[$ppid]+=" $p"
  done
  local queue=("$root") cur c
  while ((${#queue[@]})); do
    cur="${queue[0]}"; queue=("${queue[@]:1}")
    for c in ${kids[$cur]:-}; do alive "$c" && echo "$c"; queue+=("$c"); done
  done
}

# kill_tree PID NAME: the job processes under a slurmstepd, then the stepd itself (stepd ignores TERM)
kill_tree() {
  local pid="$1" name="$2" d rc=0
  local desc=($(descendants "$pid"))
  ((${#desc[@]})) && kill -TERM "${desc[@]}" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    local left=0; for d in "${desc[@]}"; do alive "$d" && left=1; done
    ((left)) || break; sleep 0.1
  done
  for d in "${desc[@]}"; do alive "$d" && kill -KILL "$d" 2>/dev/null; done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do alive "$pid" || { log "stopped $name ($pid) and ${#desc[@]} job process(es)"; return 0; }; sleep 0.1; done
  log "could not stop $name ($pid)"; return 1
}

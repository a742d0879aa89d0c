#!/usr/bin/env bash
# SLURM test: a private one-node SLURM cluster on this machine, and the sbatch scripts of
# launcher/slurm/ run in it.
#
#   tests/slurm/run.sh [--bin PATH] [--timeout SECONDS] [--keep]
#
# Starts, all under one temporary directory and touching nothing of a system SLURM or munge
# that may exist (own munge key and socket, own state/spool/log/pid paths, own ports
# 16817/16818 instead of 6817/6818):
#   munged (as the munge user, --socket in the temp dir), slurmctld -c, slurmd
# with a slurm.conf following shared/notes/slurm-single-node.md (NodeName = `hostname -s`,
# NodeAddr=127.0.0.1, CPUs=4 with SlurmdParameters=config_overrides so that a 3-task job fits
# on 2 cores, proctrack/linuxproc, task/none, no accounting, MpiDefault=pmix), waits for
# `sinfo` to say idle, then submits, from a scratch submit directory:
#   1. train.sbatch, mpirun (default): Fashion-MNIST, 1 epoch of 20 steps, 1000 val samples
#      (the synthetic config when Fashion-MNIST is not installed)
#      -> JobState=COMPLETED ExitCode=0:0, runs/slurm-<id>.out, runs/slurm-<id>/summary.json
#         (state completed, 3 ranks)
#   2. the same with ARCEUS_LAUNCH=srun (srun --mpi=pmix)         -> the same checks
#   3. train.sbatch with a bad key            -> JobState=FAILED ExitCode=1:0 (not hidden)
#   4. serve.sbatch, only when `arceus --help` lists `serve`: GET /healthz answers, scancel
#      -> JobState=CANCELLED
# and stops every daemon it started (by the PIDs in their pid files), also on failure or
# Ctrl-C. A run left behind by a killed run is stopped first.
#
# Exit: 0 pass, 1 fail, 77 skipped (not root, packages missing: slurmctld slurmd
# slurm-client munge, see scripts/install-deps), with the reason printed.
#
# --timeout is the limit of each job (default 180 s); all jobs together stop waiting after
# $ARCEUS_SLURM_DEADLINE seconds (default 480, under the CTest TIMEOUT of 600).
# Environment: ARCEUS_SLURMCTLD_PORT, ARCEUS_SLURMD_PORT (16817, 16818), ARCEUS_SERVE_PORT
# (14000) when those are taken.
set -euo pipefail

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=${ARCEUS_BIN:-$root/build/arceus}
JOB_TIMEOUT=180
KEEP=0
CTLD_PORT=${ARCEUS_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${ARCEUS_SLURMD_PORT:-16818}
SERVE_PORT=${ARCEUS_SERVE_PORT:-14000}

while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --timeout) JOB_TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -d "$(dirname "$BIN")" ] && BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

log() { echo "[slurm] $*"; }
skip() { echo "[slurm] SKIPPED: $*"; exit "$SKIP"; }
fail() { echo "[slurm] FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Can this machine run the test?
[ "$(id -u)" -eq 0 ] || skip "needs root (munged runs as the munge user, slurmd as root)"
missing=()
for p in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || skip "Debian packages missing: ${missing[*]} (scripts/install-deps installs them)"
for c in slurmctld slurmd sbatch squeue scontrol sinfo scancel munged mungekey munge unmunge \
         runuser python3 flock ss; do
  command -v "$c" >/dev/null 2>&1 || skip "command '$c' not found"
done
id munge >/dev/null 2>&1 || skip "no 'munge' user (package munge not configured?)"
[ -x "$BIN" ] || fail "arceus binary '$BIN' not found or not executable (build it: scripts/build)"

lockdir=/run/lock
[ -d "$lockdir" ] || lockdir=/tmp
exec 9>"$lockdir/arceus-slurm.lock"
flock -w 60 9 || fail "another tests/slurm/run.sh holds $lockdir/arceus-slurm.lock"
current=$lockdir/arceus-slurm.current   # the temp dir of the run in progress

# ---------------------------------------------------------------------------------------
# Stopping what a run (this one, or a killed earlier one) started. A PID is only signalled
# when the process still refers to that run's directory (command line or environment).
ours() {  # ours PID DIR
  local pid=$1 dir=$2
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir" && return 0
  tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qF "$dir" && return 0
  return 1
}
stop_pid() {  # stop_pid PID DIR NAME
  local pid=$1 dir=$2 name=$3
  ours "$pid" "$dir" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    [ -d "/proc/$pid" ] || return 0
    sleep 0.1
  done
  echo "[slurm] $name (pid $pid) did not stop on TERM: KILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
stop_run() {  # stop_run DIR
  local dir=$1 pid jobs
  [ -n "$dir" ] && [ -d "$dir" ] || return 0
  if [ -f "$dir/slurm/slurm.conf" ] && [ -f "$dir/slurm/slurmctld.pid" ]; then
    jobs=$(SLURM_CONF=$dir/slurm/slurm.conf timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      SLURM_CONF=$dir/slurm/slurm.conf timeout 10 scancel $jobs 2>/dev/null || true
      for _ in $(seq 1 50); do
        [ -z "$(SLURM_CONF=$dir/slurm/slurm.conf timeout 10 squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.2
      done
    fi
  fi
  [ -f "$dir/slurm/slurmd.pid" ] && stop_pid "$(cat "$dir/slurm/slurmd.pid")" "$dir" slurmd
  [ -f "$dir/slurm/slurmctld.pid" ] && stop_pid "$(cat "$dir/slurm/slurmctld.pid")" "$dir" slurmctld
  # Job step daemons that outlived slurmd: they carry our SLURM_CONF in their environment.
  for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    stop_pid "$pid" "$dir" slurmstepd
  done
  [ -f "$dir/munge/munged.pid" ] && stop_pid "$(cat "$dir/munge/munged.pid")" "$dir" munged
  return 0
}

T=""
on_exit() {
  local status=$?
  set +e
  stop_run "$T"
  rm -f "$current"
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ "$status" -eq 0 ] && [ "$KEEP" -eq 0 ]; then
      rm -rf "$T"
    else
      echo "[slurm] work directory kept: $T (logs in $T/slurm/log, job output in $T/submit/runs)"
    fi
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t_start=$SECONDS
DEADLINE=$((SECONDS + ${ARCEUS_SLURM_DEADLINE:-480}))  # all jobs together: below CTest's TIMEOUT
if [ -f "$current" ]; then
  prev=$(cat "$current")
  log "stopping what a previous run left in $prev"
  stop_run "$prev"
  case $prev in /tmp/arceus-slurm.*) rm -rf "$prev" ;; esac
  rm -f "$current"
fi
for port in "$CTLD_PORT" "$SLURMD_PORT"; do
  if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
    fail "TCP port $port is in use (set ARCEUS_SLURMCTLD_PORT / ARCEUS_SLURMD_PORT)"
  fi
done

T=$(mktemp -d /tmp/arceus-slurm.XXXXXX)
chmod 0755 "$T"   # munged (user munge) must reach its socket directory
echo "$T" > "$current"

# ---------------------------------------------------------------------------------------
# munge: own key, socket, pid and log; run as the munge user.
install -d -o munge -g munge -m 0755 "$T/munge"
install -d -o munge -g munge -m 0700 "$T/munge/private"
runuser -u munge -- mungekey --create --keyfile="$T/munge/private/munge.key"
MUNGE_SOCKET=$T/munge/munge.socket
# (9>&-: daemons must not inherit the lock, or a killed run would keep it held.)
runuser -u munge -- munged --socket="$MUNGE_SOCKET" 9>&- \
  --key-file="$T/munge/private/munge.key" --pid-file="$T/munge/munged.pid" \
  --log-file="$T/munge/private/munged.log" --seed-file="$T/munge/private/munged.seed" \
  || fail "munged did not start: $(tail -n 3 "$T/munge/private/munged.log" 2>/dev/null)"
munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null \
  || fail "munge credentials do not round-trip through $MUNGE_SOCKET"

# ---------------------------------------------------------------------------------------
# slurm.conf and the two daemons.
node=$(hostname -s)
S=$T/slurm
mkdir -p "$S/state" "$S/spool" "$S/log"
export SLURM_CONF=$S/slurm.conf
cat > "$SLURM_CONF" <<EOF
# written by tests/slurm/run.sh: a one-node cluster private to this test
ClusterName=arceustest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/slurmd-%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=pmix
MailProg=/bin/true
ReturnToService=2
MinJobAge=300
# 2 real cores here: declare 4 (config_overrides) or a 3-task job pends forever.
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=arceus Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
slurmctld -c 9>&- || fail "slurmctld did not start: $(tail -n 5 "$S/log/slurmctld.log" 2>/dev/null)"
slurmd 9>&- || fail "slurmd did not start: $(tail -n 5 "$S/log/slurmd.log" 2>/dev/null)"
t0=$SECONDS
state=""
for _ in $(seq 1 60); do
  state=$(timeout 10 sinfo -h -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "$state" = idle ] || { tail -n 5 "$S/log/slurmctld.log" "$S/log/slurmd.log" >&2; fail "node not idle after 30 s (sinfo: '$state')"; }
log "cluster up: node $node idle after $((SECONDS - t0)) s (slurmctld :$CTLD_PORT, slurmd :$SLURMD_PORT, munge $MUNGE_SOCKET)"

# ---------------------------------------------------------------------------------------
# Jobs, submitted from a scratch directory (the job's working directory): runs/ there.
SUBMIT=$T/submit
mkdir -p "$SUBMIT/runs"
export ARCEUS_ROOT=$root ARCEUS_BIN=$BIN

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" | head -n 1; }
job_info() { timeout 10 scontrol show job -o "$1" 2>/dev/null || true; }
# wait_job ID: until a final state; sets W_STATE, W_EXIT, W_SECS. (Runs in this shell, not
# in a $(...) subshell that would outlive a killed run.)
wait_job() {
  local id=$1 info t0=$SECONDS
  while :; do
    info=$(job_info "$id")
    W_STATE=$(field JobState <<< "$info")
    W_EXIT=$(field ExitCode <<< "$info")
    W_SECS=$((SECONDS - t0))
    case $W_STATE in
      PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|"") ;;
      *) return 0 ;;
    esac
    if [ "$W_SECS" -ge "$JOB_TIMEOUT" ] || [ "$SECONDS" -ge "$DEADLINE" ]; then
      echo "[slurm] job $id still '$W_STATE' after ${JOB_TIMEOUT} s (Reason=$(field Reason <<< "$info"))" >&2
      echo "$info" >&2
      W_STATE="TIMEOUT(test)"
      return 0
    fi
    sleep 0.5
  done
}
submit() {  # submit SCRIPT ARGS... (environment as given): prints the job id
  (cd "$SUBMIT" && sbatch --parsable "$@") | cut -d';' -f1
}

if [ -d /usr/share/datasets/fashion-mnist ]; then
  JOB=(configs/fashion_mnist_mlp.yaml --set training.epochs=1 --set training.max_steps=20
       --set dataset_config.max_val_samples=1000 --quiet)
else
  log "Fashion-MNIST not installed: the jobs train configs/synthetic_mlp.yaml"
  JOB=(configs/synthetic_mlp.yaml --set training.epochs=1 --quiet)
fi

problems=()
check_train_job() {  # check_train_job ID LABEL
  local id=$1 label=$2 st ec secs out sum
  wait_job "$id"
  st=$W_STATE ec=$W_EXIT secs=$W_SECS
  out=$SUBMIT/runs/slurm-$id.out
  sum=$SUBMIT/runs/slurm-$id/summary.json
  log "$label: job $id JobState=$st ExitCode=$ec after ${secs} s"
  [ -f "$out" ] && sed 's/^/    /' "$out"
  if [ "$st" != COMPLETED ] || [ "$ec" != 0:0 ]; then
    problems+=("$label: job $id JobState=$st ExitCode=$ec (expected COMPLETED 0:0)")
    return
  fi
  [ -f "$out" ] || { problems+=("$label: no output file $out"); return; }
  grep -q "exit status 0" "$out" || problems+=("$label: $out does not end with 'exit status 0'")
  if [ ! -f "$sum" ]; then
    problems+=("$label: no $sum (the run directory should be runs/slurm-\$SLURM_JOB_ID)")
    return
  fi
  python3 - "$sum" "$label" <<'EOF' || problems+=("$label: summary.json check failed")
import json, sys
s = json.load(open(sys.argv[1]))
ok = s.get("state") == "completed" and s.get("world_size") == 3 and len(s.get("ranks", [])) == 3
print(f"[slurm] {sys.argv[2]}: summary.json state={s.get('state')} world_size={s.get('world_size')} "
      f"val_accuracy={s.get('final', {}).get('val_accuracy')} seconds={s.get('seconds', 0):.1f}")
sys.exit(0 if ok else 1)
EOF
  # The job's last step: arceus report beside the summary.
  local report=$SUBMIT/runs/slurm-$id/report.html
  if [ -f "$report" ] && grep -q 'id="arceus-report"' "$report"; then
    log "$label: report.html written ($(wc -c < "$report") bytes)"
  else
    problems+=("$label: no report.html with the run's data in runs/slurm-$id")
  fi
}

# 1. train.sbatch with mpirun.
id=$(submit "$root/launcher/slurm/train.sbatch" "${JOB[@]}")
log "submitted train.sbatch (mpirun): job $id: sbatch launcher/slurm/train.sbatch ${JOB[*]}"
check_train_job "$id" "train.sbatch mpirun"

# 2. train.sbatch with srun --mpi=pmix.
id=$(ARCEUS_LAUNCH=srun submit "$root/launcher/slurm/train.sbatch" "${JOB[@]}")
log "submitted train.sbatch (ARCEUS_LAUNCH=srun): job $id"
check_train_job "$id" "train.sbatch srun"

# 3. A failing job must show as FAILED.
id=$(submit "$root/launcher/slurm/train.sbatch" configs/synthetic_mlp.yaml --set training.epoch=1)
wait_job "$id"
st=$W_STATE ec=$W_EXIT secs=$W_SECS
log "bad-key job $id: JobState=$st ExitCode=$ec after ${secs} s (expected FAILED 1:0)"
[ "$st" = FAILED ] && [ "$ec" = 1:0 ] || problems+=("bad-key job $id: JobState=$st ExitCode=$ec, expected FAILED 1:0")

# 4. Requeue: `scontrol requeue` once the job has a checkpoint; SLURM starts the script again
#    (SLURM_RESTART_COUNT=1), which resumes from the run directory's checkpoint.
REQUEUE_JOB=(configs/synthetic_mlp.yaml --set "model_config.layer_sizes=[64,512,512,10]"
             --set "dataset_config.synthetic={train_size: 65536, val_size: 512, features: 64, classes: 10, noise: 2.0}"
             --set training.epochs=2 --set output.checkpoint_every_steps=64 --quiet)
id=$(submit "$root/launcher/slurm/train.sbatch" "${REQUEUE_JOB[@]}")
log "submitted train.sbatch for the requeue: job $id"
ck=$SUBMIT/runs/slurm-$id/checkpoint.h5
for _ in $(seq 1 240); do
  [ -f "$ck" ] && break
  st=$(job_info "$id" | field JobState)
  case $st in PENDING|RUNNING|CONFIGURING|"") sleep 0.25 ;; *) break ;; esac
done
if [ ! -f "$ck" ]; then
  problems+=("requeue: job $id wrote no checkpoint to requeue from (JobState=$(job_info "$id" | field JobState))")
else
  log "requeue: job $id has $ck: scontrol requeue $id"
  scontrol requeue "$id" || problems+=("requeue: scontrol requeue $id failed")
  check_train_job "$id" "train.sbatch requeued"
  out=$SUBMIT/runs/slurm-$id.out
  restarts=$(job_info "$id" | field Restarts)
  log "requeue: job $id Restarts=$restarts"
  grep -q "requeued (restart 1): resuming from" "$out" || problems+=("requeue: $out lacks the script's 'requeued (restart 1): resuming from' line")
  grep -q "resumed from epoch" "$out" || problems+=("requeue: $out lacks the trainer's 'resumed from epoch' line")
fi

# 5. serve.sbatch, when the binary has the serve command.
# (`arceus serve --help` exits 0 even without the subcommand: look for it in the list.)
if "$BIN" --help 2>/dev/null | grep -Eq '^[[:space:]]+serve([[:space:]]|$)'; then
  if [ -n "$(ss -Hltn "sport = :$SERVE_PORT" 2>/dev/null)" ]; then
    problems+=("serve.sbatch: TCP port $SERVE_PORT in use (set ARCEUS_SERVE_PORT)")
  else
    id=$(submit "$root/launcher/slurm/serve.sbatch" --port "$SERVE_PORT")
    log "submitted serve.sbatch --port $SERVE_PORT: job $id"
    up=0
    for _ in $(seq 1 120); do
      if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$SERVE_PORT/healthz', timeout=2)" 2>/dev/null; then
        up=1; break
      fi
      st=$(job_info "$id" | field JobState)
      case $st in PENDING|RUNNING|CONFIGURING) sleep 0.5 ;; *) break ;; esac
    done
    if [ "$up" -eq 1 ]; then
      log "serve.sbatch: GET /healthz answered on 127.0.0.1:$SERVE_PORT"
    else
      problems+=("serve.sbatch: job $id: no answer on http://127.0.0.1:$SERVE_PORT/healthz (JobState=$st)")
    fi
    scancel "$id" || true
    wait_job "$id"
    st=$W_STATE ec=$W_EXIT
    log "serve.sbatch: job $id after scancel: JobState=$st ExitCode=$ec"
    [ -f "$SUBMIT/runs/slurm-serve-$id.out" ] && sed 's/^/    /' "$SUBMIT/runs/slurm-serve-$id.out" | tail -n 20
    [ "$st" = CANCELLED ] || problems+=("serve.sbatch: job $id JobState=$st after scancel (expected CANCELLED)")
  fi
else
  log "serve.sbatch not run: '$BIN --help' lists no serve subcommand (not in this build yet)"
fi

if [ ${#problems[@]} -gt 0 ]; then
  for p in "${problems[@]}"; do echo "[slurm] FAIL: $p" >&2; done
  exit 1
fi
log "PASS in $((SECONDS - t_start)) s"

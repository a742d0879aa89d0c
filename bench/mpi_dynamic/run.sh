#!/usr/bin/env bash
# What Open MPI 4.1 does when a device that joined through MPI_Comm_connect/accept dies,
# leaves cleanly, or is replaced (issue 23, part 1). Small programs, one line per case.
#
#   bench/mpi_dynamic/run.sh [--list] [CASE ...]     (no CASE: every case)
#
# Builds srv.c, dev.c and shim.c with mpicc into the work directory, and for each case:
# starts a fresh `ompi-server` (the rendezvous arceus serve starts), the server under
# `mpirun --ompi-server URI -np 2`, devices under their own `mpirun --ompi-server URI -np 1`
# (each mpirun in a process group of its own, as a device's would be), kills with SIGKILL
# (the device's MPI process, or its whole process group: mpirun included) or stops it with
# SIGSTOP, and prints one line: what the server saw and when, relative to the kill.
# Loopback only (127.0.0.0/8); BTL tcp,self unless BTL=... (devices are other machines, so
# TCP is what they use; BTL=tcp,vader,self shows the same-machine variant).
#
# Every program bounds each of its phases with a watchdog (exit 124 naming the phase that
# never returned), every mpirun runs under `timeout`, and every process group started here is
# SIGKILLed at the end of its case (also on Ctrl-C); the case line ends with `left=0` when
# no process of the case survived that. Each case takes the measuring lock
# (flock /tmp/arceus-measure.lock) for its own duration only.
#
# Environment: OUT (work directory, default a new /tmp/mpi_dynamic.XXXX), BOUND (seconds the
# server waits for the device's message, default 10), BTL.
# The cases, the results and what they decide: README.md next to this file.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
CASES=()
ALL=(clean-merged clean-inter reconnect merged-disconnect
     kill-proc-merged-test kill-mpirun-merged-test kill-all-merged-test kill-proc-inter-test kill-all-inter-test
     kill-proc-merged-wait kill-proc-merged-iprobe kill-proc-merged-fatal kill-all-merged-60s
     dead-free dead-disconnect stop-heartbeat kill-proc-vader
     side-abort send-after-small send-after-large kill-repeat
     kill-in-connect-0 kill-in-connect-5 kill-in-connect-20 kill-in-connect-40
     child-clean child-kill-all child-kill-proc child-kill-in-connect)
while [ $# -gt 0 ]; do
  case $1 in
    --list) printf '%s\n' "${ALL[@]}"; exit 0 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) CASES+=("$1"); shift ;;
  esac
done
[ ${#CASES[@]} -eq 0 ] && CASES=("${ALL[@]}")

OUT=${OUT:-$(mktemp -d /tmp/mpi_dynamic.XXXX)}
BOUND=${BOUND:-10}
BTL=${BTL:-tcp,self}
LOCK=/tmp/arceus-measure.lock
mkdir -p "$OUT/bin"
for p in srv dev shim; do
  [ -e "$HERE/$p.c" ] || continue
  mpicc -O1 -Wall -o "$OUT/bin/$p" "$HERE/$p.c" -lpthread || { echo "run.sh: cannot build $p.c" >&2; exit 1; }
done

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NET=127.0.0.0/8
mca() {  # the mpirun options every job of the study gets
  echo "--oversubscribe --mca btl ${1:-$BTL} --mca btl_tcp_if_include $NET --mca oob_tcp_if_include $NET"
}
now() { date +%s%3N; }

PGIDS=()   # process groups started in the current case
WRAPS=()   # the wrapper subshells (they record exit code and time)
# start NAME TIMEOUT CMD...: runs CMD in a process group of its own, output in $CD/NAME.log,
# pid in $CD/NAME.pid, "rc ms" in $CD/NAME.exit when it ends.
start() {
  local name=$1 limit=$2; shift 2
  ( setsid timeout -s KILL "$limit" "$@" >"$CD/$name.log" 2>&1 &
    p=$!; echo $p >"$CD/$name.pid"; wait $p; echo "$? $(now)" >"$CD/$name.exit" ) 2>/dev/null &
  WRAPS+=($!)
  for _ in $(seq 100); do [ -s "$CD/$name.pid" ] && break; sleep 0.01; done
  PGIDS+=("$(cat "$CD/$name.pid")")   # setsid made the pid a process group leader
}
# ev_ms FILE REGEX: the stamp of the first EV line matching, or empty
# (REGEX may hold alternatives: it is grouped, so only EV lines ever match)
ev_ms() { grep -h -m1 -E "^EV [^ ]+ [0-9]+ .*($2)" "$1" 2>/dev/null | awk '{print $3}'; }
ev_text() { grep -h -m1 -E "^EV [^ ]+ [0-9]+ .*($2)" "$1" 2>/dev/null | cut -d' ' -f4-; }
# wait_ev FILE REGEX SECONDS: wait until such a line appears (0) or not (1)
wait_ev() {
  local end=$(( $(now) + ${3}000 ))
  while [ "$(now)" -lt $end ]; do
    [ -n "$(ev_ms "$1" "$2")" ] && return 0
    sleep 0.05
  done
  return 1
}
alive() { [ ! -e "$CD/$1.exit" ]; }   # the job named $1 (as started) still runs
exit_of() { [ -e "$CD/$1.exit" ] && cut -d' ' -f1 "$CD/$1.exit" || echo running; }
exit_ms() { [ -e "$CD/$1.exit" ] && cut -d' ' -f2 "$CD/$1.exit"; }
wait_exit() {  # wait_exit NAME SECONDS
  local end=$(( $(now) + ${2}000 ))
  while alive "$1" && [ "$(now)" -lt $end ]; do sleep 0.05; done
  ! alive "$1"
}
# victims WHAT NAME: what to SIGKILL/SIGSTOP of the device job NAME:
#   proc:   its MPI process (mpirun lives on and notices);
#   mpirun: the process group of its mpirun (mpirun's launcher puts the MPI process in a
#           process group of its own, so that process is not in it);
#   all:    both groups at once (a machine that dies).
victims() {
  local app; app=$(grep -h -m1 -E "^EV [^ ]+ [0-9]+ PID " "$CD/$2.log" | awk '{print $5}')
  case $1 in
    proc) echo "$app" ;;
    mpirun) echo "-$(cat "$CD/$2.pid")" ;;
    all) echo "-$(cat "$CD/$2.pid") -$app" ;;
  esac
}
# The MPI processes of the case (each in a process group of its own, see victims), named by
# their own "PID" lines, if they still run one of the study's programs.
app_pids() {
  local p
  for p in $(grep -rh -E "^EV [^ ]+ [0-9]+ PID " "$CD" 2>/dev/null | awk '{print $5}'); do
    grep -q "$OUT/bin/" "/proc/$p/cmdline" 2>/dev/null && echo "$p"
  done
}
# Any process still running with the work directory in its command line (timeout, mpirun,
# ompi-server, a job runner's mpirun forked by shim.c that is in no group recorded here).
stray_pids() {
  local f p
  for f in /proc/[0-9]*/cmdline; do
    p=${f#/proc/}; p=${p%/cmdline}
    [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
    { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qF "$OUT/" && echo "$p"
  done
}
dt() { [ -n "$1" ] && [ -n "$2" ] && echo "$(( $1 - $2 ))ms" || echo "-"; }

cleanup_case() {
  local g
  for g in "${PGIDS[@]}"; do kill -9 -- "-$g" 2>/dev/null; done
  for g in $(app_pids); do kill -9 -- "-$g" "$g" 2>/dev/null; done
  for g in $(stray_pids); do kill -9 "$g" 2>/dev/null; done
  for g in "${WRAPS[@]}"; do wait "$g" 2>/dev/null; done
  # a killed process is gone once its (killed) parent's orphans are reaped: allow 3 s
  local end=$(( $(now) + 3000 ))
  while :; do
    LEFT=0
    for g in "${PGIDS[@]}"; do
      [ -n "$(ps -o pid= -g "$g" 2>/dev/null)" ] && LEFT=$((LEFT + 1))
    done
    LEFT=$((LEFT + $(app_pids | wc -l) + $(stray_pids | wc -l)))
    [ $LEFT = 0 ] || [ "$(now)" -gt $end ] && break
    sleep 0.1
  done
  PGIDS=(); WRAPS=()
}
trap 'cleanup_case; exec 9>&-; echo "run.sh: interrupted; every process group of the case killed"; exit 130' INT TERM
trap 'cleanup_case' EXIT

rendezvous() {  # a fresh ompi-server of the case; sets URI
  start ompi-server 600 ompi-server --no-daemonize -r "$CD/uri" --mca oob_tcp_if_include $NET
  for _ in $(seq 200); do [ -s "$CD/uri" ] && break; sleep 0.05; done
  URI=$(cat "$CD/uri")
}
server() {  # server NP ARGS...: srv under its own mpirun
  local np=$1; shift
  start srv 120 mpirun $(mca) --ompi-server "$URI" -np "$np" "$OUT/bin/srv" --dir "$CD" --bound "$BOUND" "$@"
}
device() {  # device NAME DIR ARGS...
  local name=$1 dir=$2; shift 2
  start "$name" 90 mpirun $(mca "${DEV_BTL:-$BTL}") --ompi-server "$URI" -np 1 "$OUT/bin/dev" --dir "$dir" \
    --side-file "$CD/side" --name "$name" "$@"
}
line() { printf '%-24s %s\n' "$1" "$2"; }

# ---- cases -----------------------------------------------------------------------------------

# A device does one job and leaves (disconnect, finalize, exit 0) while the server lives on and
# accepts a second device for its next job. $1: merge or not.
case_clean() {
  local merge=$1
  rendezvous
  server 2 --rounds 2 --merge "$merge"
  wait_ev "$CD/srv.log" "ACCEPTING round=1" 20
  device devA "$CD" --merge "$merge" --act clean
  wait_exit devA 30
  local a_rc=$(exit_of devA) a_exit=$(exit_ms devA) srv_alive=no
  wait_ev "$CD/srv.log" "ACCEPTING round=2" 10 && alive srv && srv_alive=yes
  device devB "$CD" --merge "$merge" --act clean
  wait_exit devB 30
  wait_exit srv 30
  local d1=$(ev_text "$CD/srv.log" "DISCONNECTED round=1" | grep -o 'in [0-9]* ms')
  local dd=$(ev_text "$CD/devA.log" "DISCONNECTED job=1" | grep -o 'in [0-9]* ms')
  local fin=$(ev_text "$CD/devA.log" "FINALIZED" | grep -o 'in [0-9]* ms')
  RESULT="devA disconnect $dd, finalize $fin, exit $a_rc (its mpirun ended $(dt "$a_exit" "$(ev_ms "$CD/devA.log" "DISCONNECTED job=1")") after its disconnect); server disconnect $d1, alive after devA left: $srv_alive; devB exit $(exit_of devB); server exit $(exit_of srv)"
}
case_clean-merged() { case_clean 1; }
case_clean-inter() { case_clean 0; }

# The same device stays for a second job: disconnect, then connect again on the same port.
case_reconnect() {
  rendezvous
  server 2 --rounds 2 --merge 1
  wait_ev "$CD/srv.log" "ACCEPTING round=1" 20
  device devA "$CD" --merge 1 --act clean --jobs 2
  wait_exit devA 30
  wait_exit srv 30
  RESULT="job 2 connect $(ev_text "$CD/devA.log" "CONNECTED job=2" | grep -o 'in [0-9]* ms'), server accept $(ev_text "$CD/srv.log" "ACCEPTED round=2" | grep -o 'in [0-9]* ms'); device exit $(exit_of devA), server exit $(exit_of srv)"
}

# MPI_Comm_disconnect on the merged intracommunicator (instead of MPI_Comm_free), by all three.
case_merged-disconnect() {
  rendezvous
  server 2 --rounds 1 --merge 1 --merged-end disconnect
  wait_ev "$CD/srv.log" "ACCEPTING round=1" 20
  device devA "$CD" --merge 1 --act clean --merged-end disconnect
  wait_exit devA 40
  wait_exit srv 10
  local s=$(ev_text "$CD/srv.log" "TIMEOUT|DISCONNECTED round=1") d=$(ev_text "$CD/devA.log" "TIMEOUT|DISCONNECTED job=1")
  RESULT="server: ${s:-nothing}; device: ${d:-nothing}; exits: device $(exit_of devA), server $(exit_of srv)"
}

# A device is killed while the server's rank 0 waits for its message; then a second device
# joins and completes a job. $1 proc|mpirun|all (what is killed, see victims), $2 merge, $3 wait mode, $4 errh,
# $5 what the server does with the dead communicator.
case_kill() {
  local what=$1 merge=$2 wait=$3 errh=$4 dead=${5:-abandon}; shift 5
  rendezvous
  server 2 --rounds 2 --merge "$merge" --wait "$wait" --errh "$errh" --dead "$dead" "$@"
  wait_ev "$CD/srv.log" "ACCEPTING round=1" 20
  device devA "$CD" --merge "$merge" --act die ${HB:-}
  if ! wait_ev "$CD/devA.log" "ARMED" 30 || ! wait_ev "$CD/srv.log" "WAITING round=1" 10; then
    RESULT="setup failed (device never armed)"; return
  fi
  sleep 0.5
  local kill_ms
  kill_ms=$(now)
  if [ "$what" = stop ]; then kill -STOP -- $(victims all devA); else kill -9 -- $(victims "$what" devA); fi
  # what the server saw about round 1: an error, nothing within the bound, a hang, or its end
  local end=$(( kill_ms + (BOUND + 12) * 1000 ))
  while [ "$(now)" -lt $end ]; do
    [ -n "$(ev_ms "$CD/srv.log" "ERROR round=1|NOTHING round=1|LOST round=1|RECEIVED round=1|TIMEOUT")" ] && break
    alive srv || break
    sleep 0.05
  done
  [ "$what" = stop ] || wait_exit devA 10
  local os_alive=yes srv_alive=yes
  alive ompi-server || os_alive=no
  alive srv || srv_alive=no
  local seen=$(ev_text "$CD/srv.log" "ERROR round=1|NOTHING round=1|LOST round=1|RECEIVED round=1|TIMEOUT" | sed 's/ after [0-9]* ms//')
  local seen_ms=$(ev_ms "$CD/srv.log" "ERROR round=1|NOTHING round=1|LOST round=1|RECEIVED round=1|TIMEOUT")
  local r2="not tried (server gone)"
  if alive srv && wait_ev "$CD/srv.log" "ACCEPTING round=2" 25; then
    device devB "$CD" --merge "$merge" --act clean
    wait_exit devB 40
    wait_exit srv 40
    if [ -n "$(ev_ms "$CD/srv.log" "RECEIVED round=2")" ] && [ "$(exit_of devB)" = 0 ]; then
      r2="ok (accept $(ev_text "$CD/srv.log" "ACCEPTED round=2" | grep -o 'in [0-9]* ms'), devB exit 0)"
    else
      r2="FAILED: $(ev_text "$CD/srv.log" "ERROR round=2|TIMEOUT|NOTHING round=2" ) devB exit $(exit_of devB)"
    fi
  elif alive srv; then
    r2="never reached: $(ev_text "$CD/srv.log" "TIMEOUT" )"
  fi
  wait_exit srv 20
  RESULT="server saw: ${seen:-nothing} at +$(dt "$seen_ms" "$kill_ms"); side TCP $( [ "$what" = stop ] && echo "heartbeat silent +$(dt "$(ev_ms "$CD/srv.log" "SIDE silent device=1")" "$kill_ms"), eof +$(dt "$(ev_ms "$CD/srv.log" "SIDE eof device=1")" "$kill_ms")" || echo "eof +$(dt "$(ev_ms "$CD/srv.log" "SIDE eof device=1")" "$kill_ms")"); devA mpirun ended +$(dt "$(exit_ms devA)" "$kill_ms") rc $(exit_of devA); after it: server mpirun alive=$srv_alive ompi-server alive=$os_alive; world: $( [ -n "$(ev_ms "$CD/srv.log" "WORLD ok round=1")" ] && echo ok || echo "no")$( ev_text "$CD/srv.log" "ABANDONED|FREED|DISCONNECTED dead" | sed 's/ (.*//; s/round=1 //' | sed 's/^/; /')$( ev_text "$CD/srv.log" "SEND-AFTER" | sed 's/round=1 //; s/^/; /'); next device: $r2; server $(f=$(ev_text "$CD/srv.log" "FINALIZED|TIMEOUT phase=finalize" | sed 's/;.*//'); echo "${f:-never finalized}"), exit $(exit_of srv)"
}
case_kill-proc-merged-test() { case_kill proc 1 test return abandon; }
case_kill-mpirun-merged-test() { case_kill mpirun 1 test return abandon; }
case_kill-all-merged-test() { case_kill all 1 test return abandon; }
case_kill-proc-inter-test() { case_kill proc 0 test return abandon; }
case_kill-all-inter-test() { case_kill all 0 test return abandon; }
case_kill-proc-merged-wait() { case_kill proc 1 wait return abandon; }
case_kill-proc-merged-iprobe() { case_kill proc 1 iprobe return abandon; }
case_kill-proc-merged-fatal() { case_kill proc 1 test fatal abandon; }
case_dead-free() { case_kill proc 1 test return free; }
case_dead-disconnect() { case_kill proc 1 test return disconnect; }
# the same kill with a 60 s bound: is a dead peer ever reported, or only never within 10 s?
case_kill-all-merged-60s() { BOUND=60 case_kill all 1 test return abandon; }
case_kill-proc-vader() { BTL=tcp,vader,self case_kill proc 1 test return abandon; }
# the in-process design's detector: rank 0 gives the wait up when the side channel closes
case_side-abort() { case_kill all 1 test return abandon --side-abort 1; }
# then a stage that would feed the dead device sends to it: 4 bytes (eager), 1 MiB (rendezvous)
case_send-after-small() { case_kill proc 1 test return abandon --side-abort 1 --send-after 4; }
case_send-after-large() { case_kill proc 1 test return abandon --side-abort 1 --send-after 1048576; }

# Five devices in a row die mid-job (process group SIGKILLed; noticed by the side channel),
# then a sixth does a clean job on the same server: does anything accumulate or break?
case_kill-repeat() {
  local n=5 i kills=() seen=() acc=()
  rendezvous
  server 2 --rounds $((n + 1)) --merge 1 --side-abort 1
  wait_ev "$CD/srv.log" "ACCEPTING round=1" 20
  local spid
  spid=$(grep -h -m1 "^EV srv0 [0-9]* PID" "$CD/srv.log" | awk '{print $5}')
  local fd0="" fdn=""
  for i in $(seq 1 $n); do
    device dev$i "$CD" --merge 1 --act die
    if ! wait_ev "$CD/dev$i.log" "ARMED" 30; then break; fi
    [ $i = 1 ] && fd0=$(ls /proc/$spid/fd 2>/dev/null | wc -l)
    sleep 0.3
    local k=$(now); kill -9 -- $(victims all dev$i)
    wait_ev "$CD/srv.log" "LOST round=$i|NOTHING round=$i|ERROR round=$i|TIMEOUT" $((BOUND + 5))
    seen+=("$(dt "$(ev_ms "$CD/srv.log" "LOST round=$i|NOTHING round=$i|ERROR round=$i|TIMEOUT")" "$k")")
    acc+=("$(ev_text "$CD/srv.log" "ACCEPTED round=$i" | grep -o '[0-9]* ms' | tr -d ' ms')")
    wait_ev "$CD/srv.log" "ACCEPTING round=$((i + 1))" 20 || break
  done
  fdn=$(ls /proc/$spid/fd 2>/dev/null | wc -l)
  device dev6 "$CD" --merge 1 --act clean
  wait_exit dev6 30
  wait_exit srv 30
  RESULT="$n deaths noticed at +$(IFS=/; echo "${seen[*]}"); accepts ${acc[*]} ms; server rank 0 fds $fd0 -> $fdn; then device 6: $(ev_text "$CD/srv.log" "RECEIVED round=$((n + 1))|TIMEOUT" | sed 's/ after.*//'), exit $(exit_of dev6); server $(f=$(ev_text "$CD/srv.log" "FINALIZED" | sed 's/;.*//'); echo "${f:-never finalized$(grep -q 'signal 13' "$CD/srv.log" && echo ' (rank 0 killed by SIGPIPE)')}"), exit $(exit_of srv)"
}

# The device is stopped (SIGSTOP of both its groups: a laptop that sleeps) instead of killed:
# nothing closes. The device sends a heartbeat byte every 1 s on the side channel; the server
# calls it silent after 3 s. Then a second device joins, and the server finalizes with the
# stopped device still connected (SIGKILLed at the end of the case).
case_stop-heartbeat() { HB="--hb 1000" case_kill stop 1 test return abandon --silent 3000; }

# The child-process design: shim (mpirun -np 2, the server's world) forks a job runner per
# device job under its own mpirun; the device connects to the runner; the shim watches the
# device's side channel and the runner's mpirun. Job 1's device dies, job 2's device is clean.
# $1: none | proc | all | connect (dies inside MPI_Comm_connect, as kill-in-connect-5)
case_child() {
  local what=$1
  rendezvous
  start srv 120 mpirun $(mca) --ompi-server "$URI" -np 2 "$OUT/bin/shim" --dir "$CD" --uri "$URI" \
    --mca-net $NET --btl "$BTL" --runner "$OUT/bin/srv" --jobs 2 --bound "$BOUND"
  wait_ev "$CD/srv.log" "RUNNER started job=1" 20
  wait_ev "$CD/srv.log" "RUNNER ready job=1" 20
  local kill_ms=""
  if [ "$what" = none ]; then
    device devA "$CD/job1" --merge 1 --act clean
    wait_exit devA 30
  elif [ "$what" = connect ]; then   # the device kills itself 5 ms into MPI_Comm_connect
    device devA "$CD/job1" --merge 1 --act clean --suicide-ms 5
    wait_ev "$CD/devA.log" "SUICIDE" 20
    kill_ms=$(ev_ms "$CD/devA.log" "SUICIDE")
  else
    device devA "$CD/job1" --merge 1 --act die
    wait_ev "$CD/devA.log" "ARMED" 30
    sleep 0.5
    kill_ms=$(now); kill -9 -- $(victims "$what" devA)
  fi
  local r2="not tried"
  if wait_ev "$CD/srv.log" "RUNNER ready job=2" $((BOUND + 15)); then
    device devB "$CD/job2" --merge 1 --act clean
    wait_exit devB 30
    wait_ev "$CD/srv.log" "JOB 2 " 15   # the shim reports the runner's end after the device's
    r2="devB exit $(exit_of devB), runner 2: $(ev_text "$CD/srv.log" "JOB 2 " | sed 's/^JOB 2 //')"
  fi
  wait_exit srv 30
  local j1=$(ev_text "$CD/srv.log" "JOB 1 " | sed 's/^JOB 1 //')
  if [ -n "$kill_ms" ]; then
    wait_exit devA 10   # a device's mpirun outlives its killed MPI process by about 2 s
    RESULT="shim: side eof +$(dt "$(ev_ms "$CD/srv.log" "SIDE eof device=1")" "$kill_ms"), job 1 $j1 at +$(dt "$(ev_ms "$CD/srv.log" "JOB 1 ")" "$kill_ms"); devA mpirun ended +$(dt "$(exit_ms devA)" "$kill_ms"); world after: $(ev_text "$CD/srv.log" "WORLD ok job=1" >/dev/null && [ -n "$(ev_ms "$CD/srv.log" "WORLD ok job=1")" ] && echo ok || echo no); job 2: $r2; shim exit $(exit_of srv), ompi-server alive=$(alive ompi-server && echo yes || echo no)"
  else
    RESULT="job 1 $j1; devA exit $(exit_of devA); job 2: $r2; shim exit $(exit_of srv)"
  fi
}
case_child-clean() { case_child none; }
case_child-kill-all() { case_child all; }
case_child-kill-proc() { case_child proc; }
case_child-kill-in-connect() { case_child connect; }

# A device dies inside the handshake: it SIGKILLs itself $1 ms after entering
# MPI_Comm_connect, while every server rank is in MPI_Comm_accept (which has no time limit).
# 3 s later a second device connects to the same port: does the pending accept take it?
case_kill-in-connect() {
  local ms=$1
  rendezvous
  server 2 --rounds 1 --merge 1 --accept-bound 20
  wait_ev "$CD/srv.log" "ACCEPTING round=1" 20
  device devA "$CD" --merge 1 --act clean --suicide-ms "$ms"
  wait_ev "$CD/devA.log" "SUICIDE" 20
  local kill_ms; kill_ms=$(ev_ms "$CD/devA.log" "SUICIDE")
  local a1; a1=$(ev_text "$CD/devA.log" "CONNECTED job=1" | grep -o 'in [0-9]* ms')
  sleep 3
  local st="still in accept"
  [ -n "$(ev_ms "$CD/srv.log" "ACCEPTED round=1")" ] && st="accept returned at +$(dt "$(ev_ms "$CD/srv.log" "ACCEPTED round=1")" "$kill_ms")"
  alive srv || st="server gone: $(ev_text "$CD/srv.log" "ERROR|TIMEOUT")"
  local r2="not tried"
  if alive srv; then
    device devB "$CD" --merge 1 --act clean
    wait_exit devB 25
    local b; b=$(ev_text "$CD/devB.log" "CONNECTED|TIMEOUT|ERROR")
    alive devB && [ -z "$b" ] && b="still in MPI_Comm_connect 25 s later"
    wait_exit srv 25
    r2="devB ${b:-no event}, exit $(exit_of devB); server: $(ev_text "$CD/srv.log" "RECEIVED round=1|NOTHING round=1|ERROR|TIMEOUT" | sed 's/ after.*//; s/ (bound passed.*//')"
  fi
  wait_exit srv 10
  RESULT="devA ${a1:+connected $a1 then }killed itself ${ms} ms into MPI_Comm_connect; 3 s later the server: $st; then $r2; server exit $(exit_of srv)"
}
case_kill-in-connect-0() { case_kill-in-connect 0; }
case_kill-in-connect-5() { case_kill-in-connect 5; }
case_kill-in-connect-20() { case_kill-in-connect 20; }
case_kill-in-connect-40() { case_kill-in-connect 40; }

# ---- main --------------------------------------------------------------------------------------
echo "# Open MPI $(mpirun --version 2>/dev/null | head -1 | awk '{print $NF}'), btl $BTL, wait bound ${BOUND}s, logs in $OUT"
exec 9>"$LOCK"
for c in "${CASES[@]}"; do
  if ! declare -F "case_$c" >/dev/null; then echo "run.sh: no case $c (see --list)" >&2; continue; fi
  CD=$OUT/$c; rm -rf "$CD"; mkdir -p "$CD"
  flock -n 9 || { echo "# $c: waiting for $LOCK (someone is measuring)"; flock 9; }
  t0=$(now); RESULT=""
  "case_$c"
  cleanup_case
  flock -u 9
  line "$c" "$RESULT [case $(( ($(now) - t0) / 1000 ))s, left=$LEFT]"
done
echo "# logs kept in $OUT (delete with rm -r)"

#!/usr/bin/env bash
# Multi-host test on one machine: three "hosts" as network namespaces on a private bridge.
#
#   tests/netns/run.sh [--bin PATH] [--rate RATE] [--wifi] [--timeout SECONDS] [--keep]
#
# Builds arceus-h1..arceus-h3 with tests/netns/cluster (each: lo + one veth `arc0` with
# 10.77.0.N/24, IPv6 off, its own host name), joined by the bridge `arceus-br` that lives in a
# fourth namespace `arceus-sw` (nothing is added to the machine's own network namespace, and
# the namespaces have no route anywhere but 10.77.0.0/24). Then, from arceus-h1:
#
#   mpirun --hostfile {10.77.0.1,10.77.0.2,10.77.0.3 slots=1} -np 3
#          --mca plm_rsh_agent tests/netns/netns-agent   (enters a namespace instead of ssh)
#          --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include ...
#          arceus train configs/fashion_mnist_mlp.yaml --set training.epochs=1 ...
#
# and the same job with `scripts/mpirun -np 3` on the machine itself, and checks:
#   - both runs complete; final.val_accuracy agrees within 1 percentage point;
#   - summary.json names 3 different hosts (arceus-h1..h3);
#   - the bytes the ranks sent (summary bytes_wire) all went through the veths (tx counters);
#   - Open MPI's TCP BTL (btl_base_verbose) used 10.77.0.x addresses only;
#   - the tiny transformer of tests/configs/e2e_gpt.yaml (clipping on) across the 3 hosts gives
#     the same per-step losses as on the machine itself (within 1e-6).
#
# Options:
#   --bin PATH       the arceus binary (default: $ARCEUS_BIN or build/arceus)
#   --rate RATE      limit every veth, both directions, with `tc ... tbf rate RATE burst (1 ms of RATE)
#                    latency 50ms` (e.g. 100mbit); default: $ARCEUS_NETNS_RATE or no limit
#   --wifi           the same as --rate 100mbit (a Wi-Fi-like link)
#   --timeout S      limit of each mpirun (default 240)
#   --keep           keep the work directory (logs, hostfile, summaries) even on success
#
# Exit: 0 pass, 1 fail, 77 skipped (not root, no `ip netns`, no mpirun, no data, ...), with
# the reason printed. Namespaces, bridge and veths are removed on exit, also on failure or
# Ctrl-C, and a run left behind by a killed run is cleaned up first.
set -euo pipefail

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
agent=$here/netns-agent

BIN=${ARCEUS_BIN:-$root/build/arceus}
CONFIG=$root/configs/fashion_mnist_mlp.yaml
DATA_DIR=/usr/share/datasets/fashion-mnist
RATE=${ARCEUS_NETNS_RATE:-}
RUN_TIMEOUT=240
KEEP=0

while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --wifi) RATE=100mbit; shift ;;
    --timeout) RUN_TIMEOUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

export ARCEUS_NETNS_PREFIX=arceus-h
export ARCEUS_NETNS_SUBNET=10.77.0
HOSTS=(1 2 3)
SWITCH=arceus-sw
ns_of() { echo "$ARCEUS_NETNS_PREFIX$1"; }

log() { echo "[netns] $*"; }
skip() { echo "[netns] SKIPPED: $*"; exit "$SKIP"; }
fail() { echo "[netns] FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Can this machine run the test at all? Anything missing is a skip that says why.
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, veths, a bridge); run as root"
for c in ip unshare mpirun python3 flock timeout; do
  command -v "$c" >/dev/null 2>&1 || skip "command '$c' not found"
done
[ -x "$BIN" ] || fail "arceus binary '$BIN' not found or not executable (build it: scripts/build)"
[ -d "$DATA_DIR" ] || skip "Fashion-MNIST not installed in $DATA_DIR (Debian package dataset-fashion-mnist)"
[ -x "$agent" ] || fail "rsh agent '$agent' missing or not executable"

# One run at a time on a machine (the namespace names are fixed).
lockdir=/run/lock
[ -d "$lockdir" ] || lockdir=/tmp
exec 9>"$lockdir/arceus-netns.lock"
flock -w 60 9 || fail "another tests/netns/run.sh holds $lockdir/arceus-netns.lock"

# ---------------------------------------------------------------------------------------
# The hosts are built and removed by tests/netns/cluster (namespaces, bridge, veths, rate).
cluster=$here/cluster
all_ns() { for h in "${HOSTS[@]}"; do ns_of "$h"; done; echo "$SWITCH"; }
cleanup_net() { "$cluster" down; }

work=""
status=1
on_exit() {
  status=$?
  set +e
  cleanup_net
  local left
  left=$(for ns in $(all_ns); do [ -e "/run/netns/$ns" ] && echo "$ns"; done)
  [ -z "$left" ] || echo "[netns] warning: namespaces left behind: $left" >&2
  if [ -n "$work" ] && [ -d "$work" ]; then
    if [ "$status" -eq 0 ] && [ "$KEEP" -eq 0 ]; then
      rm -rf "$work"
    else
      echo "[netns] work directory kept: $work"
    fi
  fi
  exit "$status"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t_start=$SECONDS
cleanup_net  # a previous run that was killed may have left its namespaces

work=$(mktemp -d /tmp/arceus-netns.XXXXXX)
export ARCEUS_NETNS_TMP=$work/tmp

# ---------------------------------------------------------------------------------------
# The network (the cluster script checks that the hosts have only loopback and
# $ARCEUS_NETNS_SUBNET.x addresses; exit 77 when this machine cannot build it).
rc=0
"$cluster" up --hosts "${#HOSTS[@]}" ${RATE:+--rate "$RATE"} || rc=$?
[ "$rc" -eq 0 ] || { [ "$rc" -eq "$SKIP" ] && exit "$SKIP"; fail "tests/netns/cluster up failed (status $rc)"; }

for h in "${HOSTS[@]}"; do
  ns=$(ns_of "$h")
  log "$ns: addresses: $(ip -n "$ns" -o addr show | awk '{print $4}' | tr '\n' ' ')"
  routes=$(ip -n "$ns" route show | tr '\n' ';')
  log "$ns: routes: $routes"
done
[ -n "$RATE" ] && log "links limited to $RATE each way (tbf, a bucket of 1 ms of the rate, latency 50ms)"

# Reachability, when ping is installed (mpirun's own errors are clear enough otherwise).
if command -v ping >/dev/null 2>&1; then
  for h in 2 3; do
    ip netns exec "$(ns_of 1)" ping -c 1 -W 2 "$ARCEUS_NETNS_SUBNET.$h" >/dev/null \
      || fail "$(ns_of 1) cannot ping $ARCEUS_NETNS_SUBNET.$h"
  done
fi

cat > "$work/hostfile" <<EOF
# written by tests/netns/run.sh: one slot per namespace "host"
$ARCEUS_NETNS_SUBNET.1 slots=1
$ARCEUS_NETNS_SUBNET.2 slots=1
$ARCEUS_NETNS_SUBNET.3 slots=1
EOF

# veth byte counters, seen from inside each host: "rx tx".
# shellcheck disable=SC2016
counters() { "$cluster" counters "$1"; }
declare -A before
for h in "${HOSTS[@]}"; do before[$h]=$(counters "$h"); done

# ---------------------------------------------------------------------------------------
# run_bg LOG CMD...: CMD under `timeout`, output to LOG, waited for with `wait` so that a
# Ctrl-C or TERM reaches the EXIT trap at once (the trap kills what runs in the namespaces).
run_bg() {
  local out=$1
  shift
  timeout -k 10 "$RUN_TIMEOUT" "$@" > "$out" 2>&1 9>&- &  # (the lock stays with this script)
  wait $!
}

# The 3-host run: mpirun itself runs on "host" 1, started through the agent like any host.
TRAIN_ARGS=(train "$CONFIG" --set training.epochs=1 --threads 1 --quiet)
# shellcheck disable=SC2054  # (tcp,self is one argument)
mpi_base=(mpirun --allow-run-as-root
  --hostfile "$work/hostfile" -np 3
  --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1
  --mca btl tcp,self
  --mca btl_tcp_if_include "$ARCEUS_NETNS_SUBNET.0/24"
  --mca oob_tcp_if_include "$ARCEUS_NETNS_SUBNET.0/24")
# The "hosts" start from the agent's environment: hand them the BLAS kernel choice of this
# machine (set here on some processors), so both runs compute with the same kernels and their
# losses can be compared bit for bit.
for v in OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; do
  if [ -n "${!v:-}" ]; then mpi_base+=(-x "$v=${!v}"); fi
done
mpi_cmd=("${mpi_base[@]}" --mca btl_base_verbose 30 "$BIN" "${TRAIN_ARGS[@]}" --set "output.dir=$work/netns")
log "3 hosts: $(printf '%q ' "${mpi_cmd[@]}")"
t0=$SECONDS
rc=0
run_bg "$work/netns.log" "$agent" "$ARCEUS_NETNS_SUBNET.1" "$(printf '%q ' "${mpi_cmd[@]}")" || rc=$?
t_netns=$((SECONDS - t0))
grep -E '^(epoch|arceus:|  rank|summary)' "$work/netns.log" | sed 's/^/  /' || true
if [ "$rc" -ne 0 ]; then
  tail -n 40 "$work/netns.log" >&2
  fail "the 3-host mpirun exited with status $rc (124 = timeout after ${RUN_TIMEOUT}s); log: $work/netns.log"
fi
declare -A after
for h in "${HOSTS[@]}"; do after[$h]=$(counters "$h"); done

# ---------------------------------------------------------------------------------------
# The same job on the machine itself.
log "local: scripts/mpirun -np 3 $BIN ${TRAIN_ARGS[*]} --set output.dir=$work/local"
t0=$SECONDS
rc=0
run_bg "$work/local.log" "$root/scripts/mpirun" -np 3 "$BIN" "${TRAIN_ARGS[@]}" \
  --set "output.dir=$work/local" || rc=$?
t_local=$((SECONDS - t0))
grep -E '^epoch' "$work/local.log" | sed 's/^/  /' || true
if [ "$rc" -ne 0 ]; then
  tail -n 40 "$work/local.log" >&2
  fail "the local mpirun exited with status $rc; log: $work/local.log"
fi

# ---------------------------------------------------------------------------------------
# The transformer across the same 3 hosts, then locally: token ids, activations of
# [B*T, n_emb] and the gradient-norm exchange (clipping on) over TCP. Same seed, so the
# per-step losses must agree.
GPT_ARGS=(train "$root/tests/configs/e2e_gpt.yaml"
  --set "dataset_config.source=$root/tests/configs/e2e_hello.txt"
  --set training.grad_clip=0.3 --set output.sample_tokens=20 --threads 1 --quiet)
gpt_cmd=("${mpi_base[@]}" "$BIN" "${GPT_ARGS[@]}" --set "output.dir=$work/gpt-netns")
log "transformer, 3 hosts: $(printf '%q ' "${gpt_cmd[@]}")"
rc=0
run_bg "$work/gpt-netns.log" "$agent" "$ARCEUS_NETNS_SUBNET.1" "$(printf '%q ' "${gpt_cmd[@]}")" || rc=$?
grep -E '^epoch' "$work/gpt-netns.log" | sed 's/^/  /' || true
if [ "$rc" -ne 0 ]; then
  tail -n 40 "$work/gpt-netns.log" >&2
  fail "the 3-host transformer mpirun exited with status $rc; log: $work/gpt-netns.log"
fi
rc=0
run_bg "$work/gpt-local.log" "$root/scripts/mpirun" -np 3 "$BIN" "${GPT_ARGS[@]}" \
  --set "output.dir=$work/gpt-local" || rc=$?
if [ "$rc" -ne 0 ]; then
  tail -n 40 "$work/gpt-local.log" >&2
  fail "the local transformer mpirun exited with status $rc; log: $work/gpt-local.log"
fi

# ---------------------------------------------------------------------------------------
# Checks.
counter_args=()
for h in "${HOSTS[@]}"; do
  read -r rx0 tx0 <<< "${before[$h]}"
  read -r rx1 tx1 <<< "${after[$h]}"
  counter_args+=("$(ns_of "$h")" "$rx0" "$tx0" "$rx1" "$tx1")
done
python3 - "$work" "$ARCEUS_NETNS_SUBNET" "$t_netns" "$t_local" "${counter_args[@]}" <<'EOF'
import json, re, sys

work, subnet, t_netns, t_local = sys.argv[1:5]
rest = sys.argv[5:]
problems = []

def load(name):
    with open(f"{work}/{name}/summary.json") as f:
        return json.load(f)

net, loc = load("netns"), load("local")
for name, s in (("3-host", net), ("local", loc)):
    if s.get("state") != "completed":
        problems.append(f"{name} run: state {s.get('state')!r} (error: {s.get('error')})")
acc_n, acc_l = net["final"]["val_accuracy"], loc["final"]["val_accuracy"]
diff = abs(acc_n - acc_l) * 100
print(f"[netns] val_accuracy: 3 hosts {acc_n*100:.2f}%, local {acc_l*100:.2f}% "
      f"(difference {diff:.2f} points); wall {t_netns} s vs {t_local} s "
      f"(summary seconds {net['seconds']:.1f} vs {loc['seconds']:.1f})")
if diff > 1.0:
    problems.append(f"val_accuracy differs by {diff:.2f} points (> 1)")

gpt_n, gpt_l = load("gpt-netns"), load("gpt-local")
for name, s in (("transformer 3-host", gpt_n), ("transformer local", gpt_l)):
    if s.get("state") != "completed":
        problems.append(f"{name} run: state {s.get('state')!r} (error: {s.get('error')})")
steps_n = [l for e in gpt_n.get("epochs", []) for l in e["step_losses"]]
steps_l = [l for e in gpt_l.get("epochs", []) for l in e["step_losses"]]
worst = max((abs(a - b) for a, b in zip(steps_n, steps_l)), default=float("inf"))
print(f"[netns] transformer: {len(steps_n)} steps on 3 hosts vs {len(steps_l)} local, max per-step "
      f"loss difference {worst:.3g}; val loss {gpt_n['final']['val_loss']:.4f} vs "
      f"{gpt_l['final']['val_loss']:.4f}; hosts {[r['host'] for r in gpt_n['ranks']]}")
if len(steps_n) != len(steps_l) or not steps_n or worst > 1e-6:
    problems.append(f"transformer per-step losses differ between 3 hosts and local (max {worst:.3g} > 1e-6)")
if len({r["host"] for r in gpt_n["ranks"]}) != 3:
    problems.append("the transformer run did not span 3 hosts")

hosts = [r["host"] for r in net["ranks"]]
print(f"[netns] ranks[].host of the 3-host run: {hosts}")
if len(set(hosts)) != 3:
    problems.append(f"expected 3 different hosts in ranks[].host, got {hosts}")

# Every byte a rank sent must have left its host through its veth: tx of host i >= the
# bytes_wire of the rank on host i (summed over epochs), and the totals agree.
wire = net["bytes_wire"]
sent_by_host = {}
for ep in net["epochs"]:
    for t in ep["timing"]:
        sent_by_host[t["host"]] = sent_by_host.get(t["host"], 0) + t["bytes_wire"]
total_tx = total_rx = 0
for i in range(0, len(rest), 5):
    ns, rx0, tx0, rx1, tx1 = rest[i], *map(int, rest[i + 1:i + 5])
    rx, tx = rx1 - rx0, tx1 - tx0
    total_rx += rx
    total_tx += tx
    sent = sent_by_host.get(ns, 0)
    print(f"[netns] {ns} arc0: rx {rx/2**20:7.2f} MiB, tx {tx/2**20:7.2f} MiB "
          f"(its rank sent {sent/2**20:7.2f} MiB of messages)")
    if sent == 0:
        problems.append(f"no rank reported host {ns} in epochs[].timing[]")
    if tx < sent:
        problems.append(f"{ns}: its veth sent {tx} bytes, less than the {sent} its rank sent")
print(f"[netns] veths total tx {total_tx/2**20:.2f} MiB, rx {total_rx/2**20:.2f} MiB; "
      f"ranks sent {wire/2**20:.2f} MiB of messages (summary bytes_wire)")
if total_tx < wire:
    problems.append(f"the veths carried {total_tx} bytes, less than the {wire} bytes the ranks sent")

# Open MPI's TCP BTL, verbose: which peers it used, and every IPv4 address it named.
log = open(f"{work}/netns.log", errors="replace").read()
btl = [l for l in log.splitlines() if "btl" in l and "tcp" in l]
peers = re.findall(r"Using tcp btl for send to \[\[\d+,\d+\],(\d+)\] on node (\S+)", log)
addrs = set(re.findall(r"\b(\d{1,3}(?:\.\d{1,3}){3})\b", "\n".join(btl)))
print(f"[netns] TCP BTL: {len(btl)} verbose lines; sends over tcp to "
      f"{sorted(set(f'rank {r} on {a}' for r, a in peers))}; IPv4 addresses named: {sorted(addrs)}")
if len(peers) < 2:
    problems.append("the verbose output shows fewer than 2 'Using tcp btl for send to' (TCP BTL not used?)")
# Peers are named by address (10.77.0.x from the hostfile) or, for mpirun's own node, by its
# host name (arceus-h1).
ipv4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
bad = sorted(a for a in addrs | {a for _, a in peers if ipv4.match(a)}
             if not (a.startswith(subnet + ".") or a == "0.0.0.0"))
bad += sorted({a for _, a in peers if not ipv4.match(a) and not a.startswith("arceus-h")})
if bad:
    problems.append(f"the TCP BTL named addresses outside {subnet}.x: {bad}")

if problems:
    for p in problems:
        print(f"[netns] FAIL: {p}", file=sys.stderr)
    sys.exit(1)
EOF

# ---------------------------------------------------------------------------------------
# Devices that join (the original's workflow): `arceus serve` on host 1 without mpirun, two
# `arceus device` processes on hosts 2 and 3, the seed README's MNIST job (Fashion-MNIST's
# files standing in) trained on them, then a shutdown that ends every process.
in_ns() { local h=$1; shift; ip netns exec "$(ns_of "$h")" "$@"; }
if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v ompi-server >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  log "devices: SKIPPED (needs /usr/share/datasets/fashion-mnist, ompi-server and curl)"
else
  seed=$work/seed
  mkdir -p "$seed/data/MNIST/raw"
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz "$seed/data/MNIST/raw/"
  api=http://$ARCEUS_NETNS_SUBNET.1:4000
  (cd "$seed" && exec ip netns exec "$(ns_of 1)" timeout -k 10 "$RUN_TIMEOUT" "$BIN" serve \
      --host "$ARCEUS_NETNS_SUBNET.1" --port 4000 --quiet > "$work/devices-serve.log" 2>&1 9>&-) &
  serve_pid=$!
  up=0
  for _ in $(seq 1 120); do
    if in_ns 2 curl -sf --max-time 2 "$api/healthz" > /dev/null 2>&1; then up=1; break; fi
    sleep 0.5
  done
  [ "$up" -eq 1 ] || fail "devices: arceus serve on host 1 did not answer; log: $work/devices-serve.log"
  in_ns 2 curl -sf -X POST "$api/api/jobs" -H "Content-Type: application/json" -d '{
       "model_config": {"layer_sizes": [784, 128, 64, 10]},
       "dataset_config": {"name": "MNIST", "batch_size": 256, "val_batch_size": 1000,
                          "normalize": {"mean": [0.1307], "std": [0.3081]}}}' > "$work/devices-job.json" \
    || fail "devices: POST /api/jobs failed; log: $work/devices-serve.log"
  dev_pids=()
  # start_devices JOB: an `arceus device` for job JOB on hosts 2 and 3 (logs device<JOB>-h<H>.log).
  start_devices() {
    for h in 2 3; do
      in_ns "$h" timeout -k 10 "$RUN_TIMEOUT" "$BIN" device --api-url "$api" --job-id "$1" --threads 1 \
        > "$work/device$1-h$h.log" 2>&1 9>&- &
      dev_pids+=($!)
    done
  }
  # wait_connected N: until N devices answer their heartbeats (bounded), else fail.
  wait_connected() {
    local connected=0
    for _ in $(seq 1 180); do
      connected=$(in_ns 2 curl -s --max-time 2 "$api/api/devices" | python3 -c \
        'import json,sys; print(sum(d.get("role")=="device" and d.get("connected") is True for d in json.load(sys.stdin)["devices"]))' 2>/dev/null || echo 0)
      [ "$connected" = "$1" ] && return 0
      sleep 0.5
    done
    fail "devices: $connected of $1 devices connected; logs: $work/device*-h*.log"
  }
  start_devices 1
  wait_connected 2
  in_ns 2 curl -sf -X POST "$api/api/network/initialize/1" > /dev/null || fail "devices: initialize failed"
  in_ns 2 curl -sf -X POST "$api/api/network/train/1" -H "Content-Type: application/json" \
    -d '{"epochs": 1, "learning_rate": 0.1}' > /dev/null || fail "devices: train failed"
  state=""
  for _ in $(seq 1 360); do
    state=$(in_ns 2 curl -s --max-time 2 "$api/api/jobs/1" | python3 -c \
      'import json,sys; j=json.load(sys.stdin); print(j["status"], j["devices"], (j.get("final") or {}).get("val_accuracy"))' 2>/dev/null || true)
    case $state in completed*|failed*|stopped*) break ;; esac
    sleep 0.5
  done
  log "devices: job 1 on the devices of hosts 2 and 3: status, devices, val_accuracy = $state"
  case $state in "completed 2 "*) ;; *) fail "devices: the job did not complete on 2 devices ($state); log: $work/devices-serve.log" ;; esac

  # Host 3 dies mid-job: job 2 (checkpoints every 25 steps) on two new devices of hosts 2 and 3;
  # every process of host 3's namespace is SIGKILLed after 100 steps. The job resumes from its
  # last checkpoint on host 2's device and completes, with no restart of the server.
  in_ns 2 curl -sf -X POST "$api/api/jobs" -H "Content-Type: application/json" -d '{
       "model_config": {"layer_sizes": [784, 128, 64, 10]},
       "dataset_config": {"name": "MNIST", "batch_size": 256, "val_batch_size": 1000,
                          "normalize": {"mean": [0.1307], "std": [0.3081]}},
       "output": {"checkpoint_every_steps": 25}}' > /dev/null || fail "devices: POST /api/jobs (job 2) failed"
  start_devices 2
  wait_connected 4
  in_ns 2 curl -sf -X POST "$api/api/network/initialize/2" > /dev/null || fail "devices: initialize 2 failed"
  in_ns 2 curl -sf -X POST "$api/api/network/train/2" -H "Content-Type: application/json" \
    -d '{"epochs": 2, "learning_rate": 0.1}' > /dev/null || fail "devices: train 2 failed"
  steps=0
  for _ in $(seq 1 600); do
    steps=$(in_ns 2 curl -s --max-time 2 "$api/api/jobs/2/metrics" | python3 -c \
      'import json,sys; print(len(json.load(sys.stdin)["steps"]))' 2>/dev/null || echo 0)
    [ "$steps" -ge 100 ] && break
    sleep 0.2
  done
  [ "$steps" -ge 100 ] || fail "devices: job 2 did not reach step 100 ($steps)"
  ip netns pids "$(ns_of 3)" | xargs -r kill -9
  t_kill=$SECONDS
  for _ in $(seq 1 900); do
    state=$(in_ns 2 curl -s --max-time 2 "$api/api/jobs/2" | python3 -c \
      'import json,sys; j=json.load(sys.stdin); l=j["device_losses"]; print(j["status"], len(l), l[0]["resumed_from_step"] if l else None, l[0]["steps_redone"] if l else None)' 2>/dev/null || true)
    case $state in completed*|failed*|stopped*) break ;; esac
    sleep 0.5
  done
  log "devices: job 2 with host 3 killed at step $steps: status, losses, resumed from step, steps redone = $state ($((SECONDS - t_kill)) s after the kill)"
  case $state in "completed 1 "*) ;; *) fail "devices: job 2 did not complete after host 3 died ($state); log: $work/devices-serve.log" ;; esac
  health=$(in_ns 2 curl -s --max-time 2 "$api/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
  [ "$health" = ok ] || fail "devices: /healthz says '$health' after the loss"

  in_ns 2 curl -sf -X POST "$api/api/shutdown" > /dev/null || fail "devices: shutdown failed"
  wait "$serve_pid" || fail "devices: arceus serve exited with status $?; log: $work/devices-serve.log"
  # Host 2's devices leave with status 0; host 3's were killed with their host.
  wait "${dev_pids[0]}" || fail "devices: host 2's first device exited with status $?"
  wait "${dev_pids[2]}" || fail "devices: host 2's second device exited with status $?"
  wait "${dev_pids[1]}" "${dev_pids[3]}" || true
  log "devices: the server and host 2's devices exited 0"
fi

log "PASS in $((SECONDS - t_start)) s (3-host run ${t_netns} s, local run ${t_local} s)"

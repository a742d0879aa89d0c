#!/usr/bin/env bash
# Replicas across hosts: 4 "hosts" (network namespaces, tests/netns/cluster), one replica of the
# whole model on each (partition.replicas=4, stages=1), rank 0 beside replica 0 on host 1.
#
#   tests/netns/replicas-test.sh [--bin PATH]
#
# Checks:
#   - the run completes; summary.json names 4 hosts for the 4 replicas, replica r on host r+1;
#   - the gradient sums crossed the veths: with 8-bit sums (our ring) every host's veth sent at
#     least the bytes its replica's ring sends per step (summary step_links between worker ranks)
#     times the steps, plus, for host 1, rank 0's inputs and labels to the other hosts; with
#     32-bit sums (MPI's own MPI_Iallreduce, whose algorithm Open MPI picks: for 4 ranks hosts 1-2
#     sent 2N per step and hosts 3-4 N, not a ring's 1.5N each) the veths together sent at least
#     the ring's total, the least any allreduce moves;
#   - 8-bit gradient sums (the compressed ring) send fewer bytes than 32-bit ones.
# Exit 0 pass, 1 fail, 77 skipped (with the reason). The cluster is removed on exit.
set -euo pipefail

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=${ARCEUS_BIN:-$root/build/arceus}
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    *) echo "replicas-test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
NAME=replicas-test
. "$here/common.sh"

netns_require "network namespaces" ip mpirun python3 flock timeout unshare

netns_begin
netns_up --hosts 4
printf '10.77.0.1 slots=2\n10.77.0.2 slots=1\n10.77.0.3 slots=1\n10.77.0.4 slots=1\n' > "$work/hostfile"

counters_all() { for h in 1 2 3 4; do "$here/cluster" counters "$h"; done | tr '\n' ' '; }

for bits in 32 8; do
  before=$(counters_all)
  cmd=(mpirun --allow-run-as-root --hostfile "$work/hostfile" -np 5
    --mca plm_rsh_agent "$here/netns-agent" --mca plm_rsh_no_tree_spawn 1
    --mca btl tcp,vader,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24
    "$BIN" train "$root/configs/synthetic_mlp.yaml" --threads 1 --quiet
    --set "model_config.layer_sizes=[256,512,512,10]" --set dataset_config.synthetic.features=256
    --set partition.replicas=4 --set partition.stages=1 --set communication.gradient_bits=$bits
    --set training.epochs=1 --set training.max_steps=12 --set output.metrics=false --set "output.dir=$work/run$bits")
  log "$(printf '%q ' "${cmd[@]}")"
  rc=0
  timeout -k 10 300 "$here/netns-agent" 10.77.0.1 "$(printf '%q ' "${cmd[@]}")" > "$work/run$bits.log" 2>&1 9>&- || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$work/run$bits.log" >&2
    fail "the 4-host run with $bits-bit gradients exited with status $rc"
  fi
  after=$(counters_all)
  echo "$bits $before $after" >> "$work/counters"
done

python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
problems, sync_tx = [], {}
for line in open(f"{work}/counters"):
    f = line.split()
    bits, c = int(f[0]), list(map(int, f[1:]))
    before, after = c[:8], c[8:]
    tx = {h: after[2 * (h - 1) + 1] - before[2 * (h - 1) + 1] for h in (1, 2, 3, 4)}
    s = json.load(open(f"{work}/run{bits}/summary.json"))
    host = {r["rank"]: r["host"] for r in s["ranks"]}
    replica_host = {r["replica"]: r["host"] for r in s["ranks"] if "replica" in r}
    print(f"[replicas-test] {bits}-bit gradient sums: replicas on hosts {replica_host}")
    if sorted(replica_host) != [0, 1, 2, 3] or [replica_host[r] for r in range(4)] != [f"arceus-h{r + 1}" for r in range(4)]:
        problems.append(f"{bits} bits: expected replica r on arceus-h(r+1), got {replica_host}")
    if s.get("replicas") != 4 or s.get("state") != "completed":
        problems.append(f"{bits} bits: summary replicas {s.get('replicas')}, state {s.get('state')}")
    steps = sum(e["steps"] for e in s["epochs"])
    need = {h: 0.0 for h in (1, 2, 3, 4)}
    ring = {h: 0.0 for h in (1, 2, 3, 4)}
    for l in s["step_links"]:
        a, b = host[l["from"]], host[l["to"]]
        if a == b:
            continue
        h = int(a.rsplit("h", 1)[1])
        need[h] += l["bytes_wire"] * steps
        if l["from"] >= 1 and l["to"] >= 1:
            ring[h] += l["bytes_wire"] * steps
    for h in (1, 2, 3, 4):
        print(f"[replicas-test]   host {h}: veth sent {tx[h] / 2**20:.2f} MiB; its messages {need[h] / 2**20:.2f} MiB "
              f"of which the gradient ring {ring[h] / 2**20:.2f} MiB ({steps} steps)")
        if ring[h] <= 0:
            problems.append(f"{bits} bits: host {h} has no gradient-sum bytes in step_links")
        if bits < 32 and tx[h] < need[h]:
            problems.append(f"{bits} bits: host {h}'s veth sent {tx[h]} bytes, less than its {need[h]:.0f} of messages")
    if bits == 32 and sum(tx.values()) < sum(need.values()):
        problems.append(f"32 bits: the veths sent {sum(tx.values())} bytes, less than the {sum(need.values()):.0f} "
                        f"of the messages (a ring's sums are the least an allreduce moves)")
    sync_tx[bits] = sum(ring.values())
if 8 in sync_tx and 32 in sync_tx and not sync_tx[8] < 0.5 * sync_tx[32]:
    problems.append(f"8-bit gradient sums moved {sync_tx[8]:.0f} bytes, not under half the 32-bit {sync_tx[32]:.0f}")
for p in problems:
    print(f"[replicas-test] FAIL: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
log "PASS"

#!/usr/bin/env bash
# The simulated cluster of bench/cluster.py, checked: 2 hosts with their own CPU shares and a
# rate-limited link, one short pipeline job across them.
#
#   tests/netns/cluster-test.sh [--bin PATH]
#
# tests/netns/cluster up --hosts 2 --cpus 0-1,1 --quota 1.5,0.5 --rate 50mbit, then from host
# 1: mpirun -np 3 (rank 0 and stage 1 on host 1, stage 2 on host 2) arceus train (synthetic
# MLP, --threads auto). Checks:
#   - each host's ranks see their own share: host 1 two CPUs and a quota of 1.5 cores, so its
#     stage rank runs 2 threads; host 2 one CPU and 0.5 core, so 1 thread (timing[].threads,
#     cpus, cpu_quota of summary.json);
#   - every message between the hosts crossed the limited veths: each veth carried at least
#     the bytes its host's ranks sent to (and received from) the other host, counted from the
#     messages (summary step_links x steps), and both tbf qdiscs of the link sent them;
#   - the link's limit held: the bytes of the busiest direction took at least bytes / rate.
# Exit 0 pass, 1 fail, 77 skipped (with the reason). The cluster is removed on exit.
set -euo pipefail

SKIP=77
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=${ARCEUS_BIN:-$root/build/arceus}
RATE=50mbit
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    *) echo "cluster-test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
NAME=cluster-test
. "$here/common.sh"

netns_require "network namespaces, cgroups" ip tc mpirun python3 flock timeout unshare
[ "$(nproc --all)" -ge 2 ] || skip "needs 2 CPUs (host 1 gets CPUs 0-1, host 2 CPU 1)"

netns_begin
netns_up --hosts 2 --cpus 0-1,1 --quota 1.5,0.5 --rate "$RATE"
"$here/cluster" status

printf '10.77.0.1 slots=2\n10.77.0.2 slots=1\n' > "$work/hostfile"
read -r rx1a tx1a <<< "$("$here/cluster" counters 1)"
read -r rx2a tx2a <<< "$("$here/cluster" counters 2)"
cmd=(mpirun --allow-run-as-root --hostfile "$work/hostfile" -np 3
  --mca plm_rsh_agent "$here/netns-agent" --mca plm_rsh_no_tree_spawn 1
  --mca btl tcp,vader,self --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24
  "$BIN" train "$root/configs/synthetic_mlp.yaml" --threads auto --quiet
  --set "model_config.layer_sizes=[256,512,512,10]" --set dataset_config.synthetic.features=256
  --set training.epochs=1 --set output.metrics=false --set "output.dir=$work/run")
log "$(printf '%q ' "${cmd[@]}")"
t0=$(date +%s.%N)
rc=0
timeout -k 10 300 "$here/netns-agent" 10.77.0.1 "$(printf '%q ' "${cmd[@]}")" > "$work/run.log" 2>&1 9>&- || rc=$?
t1=$(date +%s.%N)
if [ "$rc" -ne 0 ]; then
  tail -n 30 "$work/run.log" >&2
  fail "the 2-host run exited with status $rc"
fi
read -r rx1b tx1b <<< "$("$here/cluster" counters 1)"
read -r rx2b tx2b <<< "$("$here/cluster" counters 2)"
sent_h1=$(tc -s -n arceus-h1 qdisc show dev arc0 | awk '/Sent/ {print $2; exit}')
sent_sw2=$(tc -s -n arceus-sw qdisc show dev h2 | awk '/Sent/ {print $2; exit}')

python3 - "$work/run/summary.json" "$RATE" "$t0" "$t1" \
  $((rx1b - rx1a)) $((tx1b - tx1a)) $((rx2b - rx2a)) $((tx2b - tx2a)) "$sent_h1" "$sent_sw2" <<'EOF'
import json, sys
path, rate, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rx1, tx1, rx2, tx2, sent_h1, sent_sw2 = map(int, sys.argv[5:11])
s = json.load(open(path))
problems = []
host = {r["rank"]: r["host"] for r in s["ranks"]}
print(f"[cluster-test] ranks on hosts: {host}")
if host.get(0) != "arceus-h1" or host.get(1) != "arceus-h1" or host.get(2) != "arceus-h2":
    problems.append(f"expected ranks 0, 1 on arceus-h1 and rank 2 on arceus-h2, got {host}")
want = {1: (2, 2, 1.5), 2: (1, 1, 0.5)}  # stage rank: threads, cpus, quota
for t in s["epochs"][0]["timing"]:
    print(f"[cluster-test] rank {t['rank']} on {t['host']}: threads {t['threads']}, cpus {t['cpus']}, "
          f"cpu_quota {t['cpu_quota']}")
    if t["rank"] in want:
        th, cp, q = want[t["rank"]]
        if (t["threads"], t["cpus"]) != (th, cp) or abs(t["cpu_quota"] - q) > 1e-6:
            problems.append(f"rank {t['rank']}: threads/cpus/quota {t['threads']}/{t['cpus']}/{t['cpu_quota']}, "
                            f"expected {th}/{cp}/{q} (its host's share)")
# Message bytes between the hosts: per training step from step_links, times the steps; the
# evaluation passes only add to what the veths must carry.
steps = sum(e["steps"] for e in s["epochs"])
up1 = sum(l["bytes_wire"] for l in s["step_links"] if host[l["from"]] == "arceus-h1" and host[l["to"]] == "arceus-h2") * steps
up2 = sum(l["bytes_wire"] for l in s["step_links"] if host[l["from"]] == "arceus-h2" and host[l["to"]] == "arceus-h1") * steps
print(f"[cluster-test] {steps} steps: messages host 1 -> 2 {up1/2**20:.2f} MiB, 2 -> 1 {up2/2**20:.2f} MiB; "
      f"veth h1 tx {tx1/2**20:.2f} rx {rx1/2**20:.2f}, h2 tx {tx2/2**20:.2f} rx {rx2/2**20:.2f} MiB; "
      f"tbf sent: h1 upload {sent_h1/2**20:.2f}, h2 download {sent_sw2/2**20:.2f} MiB")
if up1 <= 0 or up2 <= 0:
    problems.append("no message bytes between the hosts in step_links")
if tx1 < up1 or rx2 < up1:
    problems.append(f"host 1 -> 2: the veths carried {tx1}/{rx2} bytes, less than the {up1:.0f} of the messages")
if tx2 < up2 or rx1 < up2:
    problems.append(f"host 2 -> 1: the veths carried {tx2}/{rx1} bytes, less than the {up2:.0f} of the messages")
if sent_h1 < up1 or sent_sw2 < up1:
    problems.append(f"the tbf qdiscs sent {sent_h1}/{sent_sw2} bytes, less than the {up1:.0f} of the messages")
bits = float(rate.replace("mbit", "")) * 1e6
least = max(tx1, tx2) * 8 / bits
print(f"[cluster-test] run took {t1 - t0:.1f} s; the busiest direction needs at least {least:.1f} s at {rate}")
if t1 - t0 < least:
    problems.append(f"the run took {t1 - t0:.1f} s, less than the {least:.1f} s its bytes need at {rate}: no limit?")
for p in problems:
    print(f"[cluster-test] FAIL: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
log "PASS"

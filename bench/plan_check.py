#!/usr/bin/env python3
"""Validation of `arceus plan`: its predicted rate against the rate measured on the simulated cluster.

For each configuration (model, hosts x CPU share, link, schedule, bits, and for replica rows
R x S and gradient bits) it runs the job on the simulated LAN of bench/cluster.py (its
functions: network namespaces, CPU quotas, tbf links), and asks `arceus plan` for the same job
on the same cluster (--hosts H --host-speed SHARE --link RATE --set ...; the 'given'
prediction). A replica row passes partition.replicas, partition.stages and
communication.gradient_bits to both, on H = R x S hosts (one worker per host, as the planner
places them). It prints every pair, the error, the mean absolute error, and for every group of
runs on one cluster whether the configuration the planner predicts fastest is within 10% of
the fastest measured. With --best it also measures the planner's own best configuration over
its default search space for some clusters.

    sudo python3 bench/plan_check.py [--quick] [--best] [--replicas] [--group MODEL:HOSTS:SHARE:LINK]
                                     [--replica-rows] [--limit N] [--json out.json] [--out table.md]

Needs root. Each cluster group holds the measurement lock (/tmp/arceus-measure.lock) and the
netns lock while it runs (a few minutes at most), released between groups. Speed is reported,
never asserted.
"""
import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as cl  # noqa: E402

# The default job (configs/fashion_mnist_mlp.yaml, the question of issue 21): its own M; many
# more steps than the big models, since one of its steps takes a millisecond or two.
cl.MODELS.setdefault("mlp", dict(label="default MLP [784,128,64,10], batch 256", config="configs/fashion_mnist_mlp.yaml",
                                 sets=["dataset_config.max_val_samples=1000"], unit="samples", m=4))

# (model, hosts, CPU share, link, [(schedule, bits[, R, S, gradient_bits]), ...]): one group per
# simulated cluster. A run without R is a pipeline of one stage per host (R = 1); with R, R x S
# must be the hosts.
GROUPS = [
    ("even", 1, 1.0, "unlimited", [("1f1b", 32)]),
    ("even", 2, 1.0, "unlimited", [("eager1f1b", 32), ("1f1b", 8), ("1f1b", 32, 2, 1, 32)]),
    ("even", 2, 1.0, "1gbit", [("eager1f1b", 32), ("eager1f1b", 8), ("1f1b", 8, 2, 1, 32), ("1f1b", 8, 2, 1, 8)]),
    ("even", 2, 1.0, "100mbit", [("1f1b", 32), ("eager1f1b", 32), ("eager1f1b", 8), ("eager1f1b", 4),
                                 ("1f1b", 8, 2, 1, 8)]),
    ("even", 4, 0.45, "unlimited", [("1f1b", 8), ("1f1b", 8, 4, 1, 32), ("eager1f1b", 8, 2, 2, 32)]),
    ("even", 4, 0.45, "100mbit", [("eager1f1b", 32), ("eager1f1b", 8), ("1f1b", 8, 4, 1, 8), ("eager1f1b", 8, 2, 2, 8)]),
    ("wide", 1, 1.0, "unlimited", [("1f1b", 32)]),
    ("wide", 2, 1.0, "100mbit", [("eager1f1b", 32), ("eager1f1b", 8), ("1f1b", 8, 2, 1, 8)]),
    ("gpt", 1, 1.0, "unlimited", [("1f1b", 32)]),
    ("gpt", 2, 1.0, "1gbit", [("1f1b", 32), ("eager1f1b", 8), ("1f1b", 8, 2, 1, 32), ("1f1b", 8, 2, 1, 8)]),
    ("gpt", 4, 0.45, "unlimited", [("eager1f1b", 8), ("eager1f1b", 8, 4, 1, 32), ("eager1f1b", 8, 2, 2, 32)]),
    ("gpt", 4, 0.45, "100mbit", [("eager1f1b", 8, 4, 1, 32), ("eager1f1b", 8, 4, 1, 8), ("eager1f1b", 8, 2, 2, 8)]),
    ("shallow", 2, 1.0, "100mbit", [("eager1f1b", 32), ("eager1f1b", 8), ("eager1f1b", 4)]),
    ("mlp", 1, 1.0, "unlimited", [("1f1b", 32)]),
    ("mlp", 2, 1.0, "unlimited", [("1f1b", 8), ("1f1b", 32, 2, 1, 32)]),
    ("mlp", 2, 1.0, "1gbit", [("1f1b", 8), ("1f1b", 8, 2, 1, 32), ("1f1b", 8, 2, 1, 8)]),
    ("mlp", 4, 0.45, "1gbit", [("1f1b", 8, 4, 1, 32), ("1f1b", 8, 4, 1, 8), ("1f1b", 8, 2, 2, 8)]),
    ("mlp", 4, 0.45, "100mbit", [("1f1b", 8, 4, 1, 8), ("1f1b", 4, 4, 1, 4)]),
]
QUICK = {("even", 2, 1.0, "100mbit"), ("even", 1, 1.0, "unlimited"), ("shallow", 2, 1.0, "100mbit"),
         ("gpt", 2, 1.0, "1gbit")}
# clusters whose planner-chosen best configuration is also measured (--best)
BEST = {("even", 2, 1.0, "100mbit"), ("wide", 2, 1.0, "100mbit"), ("gpt", 2, 1.0, "1gbit"),
        ("even", 4, 0.45, "100mbit")}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Locks:
    """The netns and measurement locks, held for one cluster group."""

    def __enter__(self):
        self.files = []
        for path in ("/run/lock/arceus-netns.lock" if os.path.isdir("/run/lock") else "/tmp/arceus-netns.lock",
                     "/tmp/arceus-measure.lock"):
            f = open(path, "w")
            fcntl.flock(f, fcntl.LOCK_EX)
            self.files.append(f)
        return self

    def __exit__(self, *a):
        for f in reversed(self.files):
            f.close()


def plan(model, hosts, share, link, sets, extra_args=()):
    m = cl.MODELS[model]
    args = [cl.ARCEUS, "plan", os.path.join(cl.ROOT, m["config"]), "--hosts", str(hosts), "--host-speed",
            f"{share:g}", "--link", link, "--json"] + list(extra_args)
    for s in m["sets"] + sets:
        args += ["--set", s]
    t0 = time.time()
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"arceus plan failed: {' '.join(args)}\n{proc.stderr}")
    j = json.loads(proc.stdout)
    j["_wall"] = time.time() - t0
    j["_stderr"] = proc.stderr
    return j


def replica_sets(replicas, stages, gradient_bits):
    """The replicas keys of a row (none for R = 1: a pipeline of one stage per host)."""
    if replicas == 1:
        return []
    return [f"partition.replicas={replicas}", f"partition.stages={stages}",
            f"communication.gradient_bits={gradient_bits}"]


def given_sets(model, schedule, bits, replicas=1, stages=0, gradient_bits=32):
    m = cl.MODELS[model]
    sets = [f"training.schedule={schedule}", f"training.micro_batches={m['m']}", "partition.method=balanced",
            f"communication.quantization_bits={bits}"]
    return sets + replica_sets(replicas, stages, gradient_bits)


def row_shape(run):
    """(schedule, bits, R, S, gradient bits) of a GROUPS run."""
    schedule, bits, *rest = run
    replicas, stages, gradient_bits = rest if rest else (1, 0, 32)
    return schedule, bits, replicas, stages, gradient_bits


def best_sets(best):
    sets = [f"training.schedule={best['schedule']}" if best["schedule"] != "(one process)" else "training.schedule=1f1b",
            f"training.micro_batches={best['micro_batches']}", f"communication.quantization_bits={best['bits']}",
            f"partition.chunks_per_rank={best['chunks_per_rank']}"]
    replicas = best.get("replicas", 1)
    if best["partition_method"] in ("balanced", "uniform"):
        sets.append(f"partition.method={best['partition_method']}")
        if replicas == 1:
            sets.append(f"partition.stages={best['stages']}")
    elif best["stages"] > 1:
        chunks = [[int(x) for x in part.split("-")] for part in best["partition"].split("|")]
        layers = [list(range(a, (b if len(r) > 1 else a) + 1)) for r in chunks for a, b in [(r[0], r[-1])]]
        sets.append("partition.layers=" + json.dumps(layers).replace(" ", ""))
    return sets + replica_sets(replicas, best["stages"], best.get("gradient_bits", 32))


def best_label(best):
    shape = f"{best['replicas']} replicas x {best['stages']} stages" if best.get("replicas", 1) > 1 else f"{best['stages']} stages"
    grads = f", {best['gradient_bits']}-bit gradients" if best.get("replicas", 1) > 1 else ""
    return (f"plan best: {shape} {best['partition']}, {best['schedule']}, M={best['micro_batches']}, "
            f"v={best['chunks_per_rank']}, {best['bits']} bits{grads}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only 4 of the clusters")
    ap.add_argument("--best", action="store_true", help="also measure the planner's best configuration on some clusters")
    ap.add_argument("--replicas", action="store_true", help="only the clusters with replica rows (all their rows)")
    ap.add_argument("--group", action="append", default=[],
                    help="only this cluster, MODEL:HOSTS:SHARE:LINK, e.g. mlp:2:1:1gbit (repeatable)")
    ap.add_argument("--replica-rows", action="store_true", help="in each cluster, measure only the rows with R > 1")
    ap.add_argument("--limit", type=int, default=0, help="measure at most N rows per cluster (0 = all)")
    ap.add_argument("--steps", type=int, default=6, help="MLP training steps per measured epoch")
    ap.add_argument("--mlp-steps", type=int, default=200, help="training steps per measured epoch of the default MLP")
    ap.add_argument("--gpt-steps", type=int, default=6, help="GPT training steps per measured epoch")
    ap.add_argument("--json", help="write every pair as JSON to this file")
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("SKIPPED: needs root (network namespaces, cgroups)")
    work = tempfile.mkdtemp(prefix="arceus-plan-check-")
    cluster = cl.Cluster(work)
    rows, groups, calib = [], [], []
    try:
        wanted = set()
        for g in args.group:
            try:
                gm, gh, gs, gl = g.split(":")
                wanted.add((gm, int(gh), float(gs), gl))
            except ValueError:
                sys.exit(f"--group '{g}': expected MODEL:HOSTS:SHARE:LINK, e.g. mlp:2:1:1gbit")
        unknown = wanted - {(m_, h_, s_, l_) for m_, h_, s_, l_, _ in GROUPS}
        if unknown:
            sys.exit(f"--group: no such cluster in GROUPS: {sorted(unknown)}")
        for model, hosts, share, link, runs in GROUPS:
            key = (model, hosts, share, link)
            if args.quick and key not in QUICK:
                continue
            if wanted and key not in wanted:
                continue
            if args.replicas and not any(row_shape(r)[2] > 1 for r in runs):
                continue
            if args.replica_rows:
                runs = [r for r in runs if row_shape(r)[2] > 1]
            if args.limit > 0:
                runs = runs[:args.limit]
            if not runs:
                continue
            steps = args.gpt_steps if model == "gpt" else (args.mlp_steps if model == "mlp" else args.steps)
            unit = cl.MODELS[model]["unit"]
            with Locks():
                # the planner first (it calibrates what it has not measured yet, on the whole machine)
                preds = {}
                for run in runs:
                    j = plan(model, hosts, share, link, given_sets(model, *row_shape(run)))
                    if j["_stderr"].strip():
                        calib.append(j["_stderr"].strip())
                    preds[row_shape(run)] = j
                best = None
                if args.best and key in BEST:
                    best = plan(model, hosts, share, link, given_sets(model, runs[0][0], runs[0][1]))["best"]
                cluster.up(hosts, link, share)
                try:
                    group = []
                    todo = [(row_shape(r), "given") for r in runs]
                    if best is not None:
                        todo.append(((best["schedule"], best["bits"], 1, 0, 32), "planner's best"))
                    for (schedule, bits, replicas, stages, gbits), kind in todo:
                        if kind == "given":
                            if replicas > 1 and replicas * stages != hosts:
                                raise RuntimeError(f"{model} {hosts} hosts: a row of {replicas} x {stages} needs "
                                                   f"{replicas * stages} hosts")
                            s = cl.run(cluster, model, hosts, steps, schedule, bits,
                                       extra=replica_sets(replicas, stages, gbits))
                            j = preds[(schedule, bits, replicas, stages, gbits)]["given"]
                            what = f"{schedule}, {bits} bits, M={cl.MODELS[model]['m']}"
                            if replicas > 1:
                                what = f"{replicas} replicas x {stages} stages, " + what + f", {gbits}-bit gradients"
                        else:
                            run_hosts = hosts if best["stages"] * best.get("replicas", 1) > 1 else 1
                            if run_hosts == 1 and hosts > 1:
                                cluster.down()
                                cluster.up(1, link, share)
                            s = cl.run(cluster, model, run_hosts, steps, "1f1b", 32, extra=best_sets(best))
                            j = best
                            what = best_label(best)
                        measured = cl.rate_of(s, unit)
                        predicted = j[f"predicted_{unit}_per_second"]
                        err = (predicted - measured) / measured
                        row = dict(model=model, label=cl.MODELS[model]["label"], hosts=hosts, share=share, link=link,
                                   what=what, kind=kind, measured=measured, predicted=predicted, error=err, unit=unit,
                                   bound=j["bound"], bubble_predicted=j["bubble"],
                                   bubble_measured=s["epochs"][-1].get("bubble_measured"),
                                   replicas=replicas if kind == "given" else j.get("replicas", 1),
                                   # where the time went (per rank: fwd, bwd, wait, sync s ...), for a miss
                                   timing=s["epochs"][-1].get("timing"), steps=s["epochs"][-1].get("steps"),
                                   predicted_stage_busy=j.get("stage_busy_seconds"),
                                   predicted_step_seconds=j.get("step_seconds"))
                        if row["replicas"] > 1:  # the sums: predicted and measured time waiting for them
                            timing = s["epochs"][-1].get("timing", [])
                            steps_done = max(1, s["epochs"][-1].get("steps", 1))
                            row["sync_s_predicted"] = j.get("sync_seconds")
                            row["sync_s_measured"] = (sum(t.get("sync_s", 0) for t in timing if t.get("stage", 0) >= 1)
                                                      / max(1, sum(1 for t in timing if t.get("stage", 0) >= 1))
                                                      / steps_done)
                        log(f"  {model} {hosts} x {share:g} {link} {what}: measured {measured:,.0f}, "
                            f"predicted {predicted:,.0f} ({100 * err:+.1f}%)")
                        group.append(row)
                        rows.append(row)
                    groups.append(group)
                finally:
                    cluster.down()
    finally:
        cluster.down()
        subprocess.run(["rm", "-rf", work])

    lines = ["| model | hosts x CPU | link | configuration | measured | predicted | error | predicted bound |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        r["what"] = r["what"].replace("|", " \\| ")  # partitions inside a markdown cell
        lines.append(f"| {r['model']} | {r['hosts']} x {r['share']:g} core | {r['link']} | {r['what']} | "
                     f"{r['measured']:,.0f} {r['unit']}/s | {r['predicted']:,.0f} | {100 * r['error']:+.1f}% | "
                     f"{r['bound']} |")
    given = [r for r in rows if r["kind"] == "given"]
    mae = sum(abs(r["error"]) for r in given) / max(1, len(given))
    within = sum(1 for r in given if abs(r["error"]) <= 0.15)
    lines += ["", f"Mean absolute error over the {len(given)} configurations as given: {100 * mae:.1f}% "
              f"({within} of {len(given)} within 15%)"]
    if any(r["kind"] != "given" for r in rows):
        allr = rows
        mae_all = sum(abs(r["error"]) for r in allr) / len(allr)
        lines.append(f"With the planner's best configurations: {100 * mae_all:.1f}% over {len(allr)}")
    lines += ["", "| cluster | fastest measured | the planner's pick (measured) | within 10% |", "|---|---|---|---|"]
    for g in groups:
        if len(g) < 2:
            continue
        fastest = max(g, key=lambda r: r["measured"])
        pick = max(g, key=lambda r: r["predicted"])
        ok = pick["measured"] >= 0.9 * fastest["measured"]
        lines.append(f"| {g[0]['model']} {g[0]['hosts']} x {g[0]['share']:g} core, {g[0]['link']} | {fastest['what']}: "
                     f"{fastest['measured']:,.0f} | {pick['what']}: {pick['measured']:,.0f} "
                     f"({pick['measured'] / fastest['measured']:.2f}) | {'yes' if ok else 'NO'} |")
    reps = [r for r in rows if r.get("replicas", 1) > 1]
    if reps:
        lines += ["", "Replica rows: time waiting for the gradient sums after the backward, per step (the planner's "
                  "sync_seconds against summary.json's sync_s per worker rank / steps)", "",
                  "| model | hosts x CPU | link | configuration | predicted sync ms/step | measured sync ms/step |",
                  "|---|---|---|---|---|---|"]
        for r in reps:
            lines.append(f"| {r['model']} | {r['hosts']} x {r['share']:g} core | {r['link']} | {r['what']} | "
                         f"{1e3 * (r.get('sync_s_predicted') or 0):.2f} | {1e3 * r.get('sync_s_measured', 0):.2f} |")
    text = "\n".join(lines)
    print(text)
    if calib:
        print("\n" + "\n".join(calib))
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "mean_absolute_error": mae, "calibration_log": calib}, f, indent=1)


if __name__ == "__main__":
    main()

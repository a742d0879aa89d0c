#!/usr/bin/env python3
"""Replicas on this machine: does the default job train faster as 2 replicas than alone?

Runs scripts/demo's job (configs/fashion_mnist_mlp.yaml) in alternating pairs:
  A: np=1, the one-process run, 2 threads (all of this machine's cores);
  B: np=3 as R=2 replicas of S=1 stage (`--set partition.replicas=2`), 1 thread per replica
     (`--threads auto`: the host's cores divided among its stage ranks);
and prints each pair's training rate (samples over training seconds, every epoch), the ratio
B/A of each pair, the median ratio against the issue's bound (>= 1.6x), and B's per-rank
timing of its last epoch (where the time went). Optional variants add other B's (e.g. the
2-stage pipeline np=3, 8-bit gradient sums).

    python3 bench/replicas.py [--pairs 3] [--epochs 5] [--variants pipeline,grad8] [--json out.json]

Holds /tmp/arceus-measure.lock while it runs (as the other benchmarks do): nothing else should
use the cores meanwhile. Speed is reported, never asserted.
"""
import argparse
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCEUS = os.path.join(ROOT, "build", "arceus")
MPIRUN = os.path.join(ROOT, "scripts", "mpirun")
CONFIG = os.path.join(ROOT, "configs", "fashion_mnist_mlp.yaml")
BOUND = 1.6

RUNS = {
    "np1": ("np=1, 2 threads (reference)", 1, ["--threads", "2"], []),
    "replicas": ("np=3, 2 replicas x 1 stage", 3, ["--threads", "auto"], ["partition.replicas=2"]),
    "pipeline": ("np=3, 2-stage pipeline (1f1b M=4)", 3, ["--threads", "auto"], []),
    "grad8": ("np=3, 2 replicas, 8-bit gradient sums", 3, ["--threads", "auto"],
              ["partition.replicas=2", "communication.gradient_bits=8"]),
    # One-stage replicas gain nothing from micro-batches (they only shrink the products), and
    # reading the data locally takes the input encoding off rank 0, which shares the cores.
    "tuned": ("np=3, 2 replicas, M=1, feed local", 3, ["--threads", "auto"],
              ["partition.replicas=2", "training.micro_batches=1", "dataset_config.feed=local"]),
    "np1m1": ("np=1, 2 threads, M=1", 1, ["--threads", "2"], ["training.micro_batches=1"]),
}


def run(key, epochs):
    label, np, opts, sets = RUNS[key]
    out = tempfile.mkdtemp(prefix="arceus-replicas-")
    cmd = [] if np == 1 else [MPIRUN, "-np", str(np)]
    cmd += [ARCEUS, "train", CONFIG, "--progress", "none"] + opts
    for s in sets + [f"training.epochs={epochs}", f"output.dir={out}", "output.checkpoint_every=0"]:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{label} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    samples = sum(e["train_samples"] for e in s["epochs"])
    seconds = sum(e["train_seconds"] for e in s["epochs"])
    return {"label": label, "rate": samples / seconds, "val_accuracy": s["final"]["val_accuracy"],
            "timing": s["epochs"][-1]["timing"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--variants", default="", help="more B runs: pipeline, grad8, tuned, np1m1")
    ap.add_argument("--json")
    a = ap.parse_args()
    variants = ["replicas"] + [v for v in a.variants.split(",") if v]
    with open("/tmp/arceus-measure.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = {k: [] for k in ["np1"] + variants}
        for i in range(a.pairs):
            for k in ["np1"] + variants:
                r = run(k, a.epochs)
                results[k].append(r)
                print(f"pair {i + 1}: {r['label']}: {r['rate']:,.0f} samples/s, val accuracy {100 * r['val_accuracy']:.2f}%",
                      file=sys.stderr, flush=True)
    print(f"Default job (configs/fashion_mnist_mlp.yaml, {a.epochs} epochs), {a.pairs} alternating pairs:\n")
    print("| run | samples/s per pair | median | vs np=1 per pair | median ratio | val accuracy |")
    print("|---|---|---|---|---|---|")
    report = {}
    for k in ["np1"] + variants:
        rates = [r["rate"] for r in results[k]]
        ratios = [r["rate"] / b["rate"] for r, b in zip(results[k], results["np1"])]
        med = statistics.median(ratios)
        report[k] = {"rates": rates, "ratios": ratios, "median_ratio": med,
                     "val_accuracy": [r["val_accuracy"] for r in results[k]]}
        print(f"| {results[k][0]['label']} | {', '.join(f'{x:,.0f}' for x in rates)} | {statistics.median(rates):,.0f} | "
              f"{', '.join(f'{x:.2f}x' for x in ratios)} | **{med:.2f}x** | "
              f"{100 * statistics.median(report[k]['val_accuracy']):.2f}% |")
    for k in variants:
        med = report[k]["median_ratio"]
        print(f"\n{RUNS[k][0]} vs one process: median {med:.2f}x against the bound {BOUND}x: "
              f"{'met' if med >= BOUND else 'missed'}")
    print("\nPer-rank timing of the last epoch of the last 2-replica run (seconds):\n")
    print("| rank | replica | fwd | bwd | opt | codec | wait | sync | wall | cpu |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in results["replicas"][-1]["timing"]:
        print(f"| {t['rank']} | {t.get('replica', '-') if t['stage'] >= 1 else '-'} | {t['forward_s']:.2f} | "
              f"{t['backward_s']:.2f} | {t['optimizer_s']:.2f} | {t['codec_s']:.2f} | {t['comm_wait_s']:.2f} | "
              f"{t.get('sync_s', 0):.2f} | {t['wall_s']:.2f} | {t['cpu_s']:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

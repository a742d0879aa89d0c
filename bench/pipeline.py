#!/usr/bin/env python3
"""Pipelining benchmark: samples/s of the Fashion-MNIST MLPs on this machine, one table.

Runs, for the small MLP [784,128,64,10] and the wide MLP [784,1024,1024,1024,10]:
  np=1 reference with 1 and with 2 threads, np=3 sequential (M=1), np=3 gpipe M=4,
  np=3 1f1b M=4,
each for a fixed number of training steps, reads summary.json, and prints a markdown table
with samples/s, the ratio to the better of the two np=1 runs, and the measured vs
theoretical pipeline bubble. Speed is reported, never asserted.

    python3 bench/pipeline.py [--steps 80] [--repeat 2] [--bits 8] [--out bench/results.md]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCEUS = os.path.join(ROOT, "build", "arceus")
MPIRUN = os.path.join(ROOT, "scripts", "mpirun")

MODELS = {
    "small [784,128,64,10]": ("configs/fashion_mnist_mlp.yaml", "[784,128,64,10]"),
    "wide [784,1024,1024,1024,10]": ("configs/fashion_mnist_wide.yaml", "[784,1024,1024,1024,10]"),
}

RUNS = [
    # label, np, threads, schedule, M
    ("np=1, 1 thread", 1, "1", "sequential", 1),
    ("np=1, 2 threads", 1, "2", "sequential", 1),
    ("np=3 sequential", 3, "auto", "sequential", 1),
    ("np=3 gpipe M=4", 3, "auto", "gpipe", 4),
    ("np=3 1f1b M=4", 3, "auto", "1f1b", 4),
]


def run(config, layers, np, threads, schedule, m, steps, bits):
    out = tempfile.mkdtemp(prefix="arceus-bench-")
    cmd = [] if np == 1 else [MPIRUN, "-np", str(np)]
    cmd += [ARCEUS, "train", os.path.join(ROOT, config), "--quiet", "--threads", threads,
            "--set", f"model_config.layer_sizes={layers}",
            "--set", "training.epochs=1",
            "--set", f"training.max_steps={steps}",
            "--set", f"training.schedule={schedule}",
            "--set", f"training.micro_batches={m}",
            "--set", "partition.method=balanced",
            "--set", f"communication.quantization_bits={bits}",
            "--set", "dataset_config.max_val_samples=1000",
            "--set", f"output.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80, help="training steps per run (batch 256)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per row; the best samples/s is kept")
    ap.add_argument("--bits", type=int, default=8, help="message bits for np=3 runs")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()
    if not os.access(ARCEUS, os.X_OK):
        sys.exit(f"{ARCEUS} not found: build first (scripts/build)")

    lines = [f"Pipelining benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
             f"{args.steps} steps of batch 256, {args.bits}-bit messages, best of {args.repeat}",
             "",
             "| model | run | samples/s | vs best np=1 | bubble measured | bubble theoretical | stage busy % |",
             "|---|---|---|---|---|---|---|"]
    for model, (config, layers) in MODELS.items():
        results = []
        for label, np, threads, schedule, m in RUNS:
            best = None
            for _ in range(args.repeat):
                s = run(config, layers, np, threads, schedule, m, args.steps, args.bits)
                if best is None or s["epochs"][0]["samples_per_second"] > best["epochs"][0]["samples_per_second"]:
                    best = s
            results.append((label, np, best))
            e = best["epochs"][0]
            print(f"  {model:30s} {label:18s} {e['samples_per_second']:10.0f} samples/s", file=sys.stderr)
        ref = max(r[2]["epochs"][0]["samples_per_second"] for r in results if r[1] == 1)
        for label, np, s in results:
            e = s["epochs"][0]
            sps = e["samples_per_second"]
            busy = " / ".join(f"{100 * t['busy_fraction']:.0f}" for t in e["timing"] if t["stage"] >= 0)
            bubble = f"{100 * e['bubble_measured']:.1f}%" if np > 1 else "-"
            theory = f"{100 * e['bubble_theoretical']:.1f}%" if np > 1 else "-"
            lines.append(f"| {model} | {label} | {sps:,.0f} | {sps / ref:.2f}x | {bubble} | {theory} | {busy} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()

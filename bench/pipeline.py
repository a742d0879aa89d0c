#!/usr/bin/env python3
"""Pipelining benchmark: throughput of the shipped models on this machine, one table.

Runs, for the small MLP [784,128,64,10], the wide MLP [784,1024,1024,1024,10] (samples/s,
batch 256) and the default char-level GPT of configs/gpt_char.yaml (tokens/s, batch 128 x
context 128):
  np=1 reference with 1 and with 2 threads, np=3 sequential (M=1), np=3 gpipe M=4,
  np=3 1f1b M=4,
each for a fixed number of training steps, reads summary.json, and prints a markdown table
with the rate, the ratio to the better of the two np=1 runs, and the measured vs
theoretical pipeline bubble. Speed is reported, never asserted.

    python3 bench/pipeline.py [--steps 80] [--gpt-steps 12] [--repeat 2] [--bits 8]
                              [--models small,wide,gpt] [--out bench/results.md]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCEUS = os.path.join(ROOT, "build", "arceus")
MPIRUN = os.path.join(ROOT, "scripts", "mpirun")

# key: (label, config, extra --set overrides, rate key in summary.json, unit)
MODELS = {
    "small": ("small [784,128,64,10]", "configs/fashion_mnist_mlp.yaml",
              ["model_config.layer_sizes=[784,128,64,10]", "dataset_config.max_val_samples=1000"],
              "samples_per_second", "samples/s"),
    "wide": ("wide [784,1024,1024,1024,10]", "configs/fashion_mnist_wide.yaml",
             ["model_config.layer_sizes=[784,1024,1024,1024,10]", "dataset_config.max_val_samples=1000"],
             "samples_per_second", "samples/s"),
    "gpt": ("GPT n_emb 128, 3 blocks, ctx 128", "configs/gpt_char.yaml",
            ["output.sample_tokens=0", "dataset_config.max_val_samples=8"],
            "tokens_per_second", "tokens/s"),
}

RUNS = [
    # label, np, threads, schedule, M
    ("np=1, 1 thread", 1, "1", "sequential", 1),
    ("np=1, 2 threads", 1, "2", "sequential", 1),
    ("np=3 sequential", 3, "auto", "sequential", 1),
    ("np=3 gpipe M=4", 3, "auto", "gpipe", 4),
    ("np=3 1f1b M=4", 3, "auto", "1f1b", 4),
]


def run(config, extra, np, threads, schedule, m, steps, bits):
    out = tempfile.mkdtemp(prefix="arceus-bench-")
    cmd = [] if np == 1 else [MPIRUN, "-np", str(np)]
    cmd += [ARCEUS, "train", os.path.join(ROOT, config), "--quiet", "--threads", threads]
    for s in extra:
        cmd += ["--set", s]
    cmd += ["--set", "training.epochs=1",
            "--set", f"training.max_steps={steps}",
            "--set", f"training.schedule={schedule}",
            "--set", f"training.micro_batches={m}",
            "--set", "partition.method=balanced",
            "--set", f"communication.quantization_bits={bits}",
            "--set", f"output.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    shutil.rmtree(out, ignore_errors=True)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80, help="training steps per MLP run (batch 256)")
    ap.add_argument("--gpt-steps", type=int, default=12, help="training steps per GPT run (128 x 128 tokens)")
    ap.add_argument("--models", default="small,wide,gpt", help="comma-separated: small, wide, gpt")
    ap.add_argument("--repeat", type=int, default=2, help="runs per row; the best samples/s is kept")
    ap.add_argument("--bits", type=int, default=8, help="message bits for np=3 runs")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()
    if not os.access(ARCEUS, os.X_OK):
        sys.exit(f"{ARCEUS} not found: build first (scripts/build)")

    lines = [f"Pipelining benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
             f"MLPs {args.steps} steps of batch 256, GPT {args.gpt_steps} steps of 128 x 128 tokens, "
             f"{args.bits}-bit messages, best of {args.repeat}",
             "",
             "| model | run | rate | vs best np=1 | bubble measured | bubble theoretical | stage busy % |",
             "|---|---|---|---|---|---|---|"]
    for key in args.models.split(","):
        if key not in MODELS:
            sys.exit(f"--models: unknown model '{key}' (expected {', '.join(MODELS)})")
        model, config, extra, rate, unit = MODELS[key]
        steps = args.gpt_steps if key == "gpt" else args.steps
        if key == "gpt":  # exactly `steps` batches of 128 windows per epoch
            extra = extra + [f"dataset_config.windows_per_epoch={steps * 128}"]
        results = []
        for label, np, threads, schedule, m in RUNS:
            best = None
            for _ in range(args.repeat):
                s = run(config, extra, np, threads, schedule, m, steps, args.bits)
                if best is None or s["epochs"][0][rate] > best["epochs"][0][rate]:
                    best = s
            results.append((label, np, best))
            e = best["epochs"][0]
            print(f"  {model:32s} {label:18s} {e[rate]:10.0f} {unit}", file=sys.stderr)
        ref = max(r[2]["epochs"][0][rate] for r in results if r[1] == 1)
        for label, np, s in results:
            e = s["epochs"][0]
            value = e[rate]
            busy = " / ".join(f"{100 * t['busy_fraction']:.0f}" for t in e["timing"] if t["stage"] >= 0)
            bubble = f"{100 * e['bubble_measured']:.1f}%" if np > 1 else "-"
            theory = f"{100 * e['bubble_theoretical']:.1f}%" if np > 1 else "-"
            lines.append(f"| {model} | {label} | {value:,.0f} {unit} | {value / ref:.2f}x | {bubble} | {theory} | {busy} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Pipelining benchmark: throughput of the shipped models on this machine, one table.

Runs, for the small MLP [784,128,64,10], the wide MLP [784,1024,1024,1024,10] (samples/s,
batch 256) and the default char-level GPT of configs/gpt_char.yaml (tokens/s, batch 128 x
context 128):
  np=1 reference with 1 and with 2 threads, np=3 sequential (M=1), np=3 gpipe M=4,
  np=3 1f1b M=4,
each for a fixed number of training steps, reads summary.json, and prints a markdown table
with the rate, the ratio to the better of the two np=1 runs, and the measured vs
simulated pipeline bubble (the validator's simulation of the run's action lists).

With --suite schedules it compares the schedules instead, on the wide MLP with 7 layers
[784, 1024 x 6, 10] and the GPT with 4 blocks (6 layers), so that 3 stages x 2 chunks fit:
1f1b, zb1p and interleaved (v=2) at S = 2 and 3 stages, M = 4 and 8, each with the
samples/s (tokens/s), the measured and the simulated bubble, each stage's busy % inside the
training steps, and the ratios the schedules promise (zb1p bubble / 1f1b bubble <= 0.5,
interleaved / 1f1b <= 0.65, measured - simulated <= 5 points). Speed is reported, never
asserted.

    python3 bench/pipeline.py [--suite scaling|schedules] [--steps 80] [--gpt-steps 12]
                              [--repeat 2] [--bits 8] [--models small,wide,gpt] [--out FILE]
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


# The schedules suite: models deep enough for S=3 x v=2 chunks.
SCHEDULE_MODELS = {
    "wide": ("wide-7 [784,1024x6,10]", "configs/fashion_mnist_wide.yaml",
             ["model_config.layer_sizes=[784,1024,1024,1024,1024,1024,1024,10]",
              "dataset_config.max_val_samples=1000"],
             "samples_per_second", "samples/s"),
    "gpt": ("GPT n_emb 128, 4 blocks, ctx 128", "configs/gpt_char.yaml",
            ["output.sample_tokens=0", "dataset_config.max_val_samples=8", "model_config.n_blocks=4"],
            "tokens_per_second", "tokens/s"),
}
SCHEDULES = [("1f1b", 1), ("zb1p", 1), ("interleaved", 2)]


def run(config, extra, np, threads, schedule, m, steps, bits, chunks=1):
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
            "--set", f"partition.chunks_per_rank={chunks}",
            "--set", f"output.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"benchmark run failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    shutil.rmtree(out, ignore_errors=True)
    return summary


def stage_busy(epoch):
    """Each stage's busy % inside the training steps, in stage order."""
    stages = sorted((t for t in epoch["timing"] if t["stage"] >= 1), key=lambda t: t["stage"])
    return " / ".join(f"{100 * t['train_busy_fraction']:.0f}" for t in stages)


def best_of(repeat, *args, rate, **kw):
    best = None
    for _ in range(repeat):
        s = run(*args, **kw)
        if best is None or s["epochs"][0][rate] > best["epochs"][0][rate]:
            best = s
    return best


def schedules_suite(args):
    lines = [f"Schedules benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
             f"MLP {args.steps} steps of batch 256, GPT {args.gpt_steps} steps of 128 x 128 tokens, "
             f"{args.bits}-bit messages, --threads auto, best of {args.repeat}",
             "",
             "| model | S | M | schedule | rate | vs np=1 | bubble measured | bubble simulated | measured / 1f1b's | "
             "stage busy % (train) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key in args.models.split(","):
        if key not in SCHEDULE_MODELS:
            continue
        model, config, extra, rate, unit = SCHEDULE_MODELS[key]
        steps = args.gpt_steps if key == "gpt" else args.steps
        if key == "gpt":
            extra = extra + [f"dataset_config.windows_per_epoch={steps * 128}"]
        ref = best_of(args.repeat, config, extra, 1, "2", "sequential", 1, steps, args.bits, rate=rate)
        ref_rate = ref["epochs"][0][rate]
        print(f"  {model:32s} np=1 {ref_rate:10.0f} {unit}", file=sys.stderr)
        lines.append(f"| {model} | 1 | 1 | (np=1, 2 threads) | {ref_rate:,.0f} {unit} | 1.00x | - | - | - | - |")
        for stages in (2, 3):
            for m in (4, 8):
                base = None
                for schedule, chunks in SCHEDULES:
                    s = best_of(args.repeat, config, extra, stages + 1, "auto", schedule, m, steps, args.bits,
                                rate=rate, chunks=chunks)
                    e = s["epochs"][0]
                    if schedule == "1f1b":
                        base = e["bubble_measured"]
                    name = schedule + (f" v={chunks}" if chunks > 1 else "")
                    print(f"  {model:32s} S={stages} M={m} {name:14s} {e[rate]:10.0f} {unit}", file=sys.stderr)
                    ratio = f"{e['bubble_measured'] / base:.2f}" if base and schedule != "1f1b" else "-"
                    lines.append(f"| {model} | {stages} | {m} | {name} | {e[rate]:,.0f} {unit} | "
                                 f"{e[rate] / ref_rate:.2f}x | {100 * e['bubble_measured']:.1f}% | "
                                 f"{100 * e['bubble_simulated']:.1f}% | {ratio} | {stage_busy(e)} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80, help="training steps per MLP run (batch 256)")
    ap.add_argument("--gpt-steps", type=int, default=12, help="training steps per GPT run (128 x 128 tokens)")
    ap.add_argument("--models", default="small,wide,gpt", help="comma-separated: small, wide, gpt")
    ap.add_argument("--repeat", type=int, default=2, help="runs per row; the best samples/s is kept")
    ap.add_argument("--bits", type=int, default=8, help="message bits for np=3 runs")
    ap.add_argument("--out", help="also write the table to this file")
    ap.add_argument("--suite", default="scaling", choices=["scaling", "schedules"],
                    help="scaling: np=1 vs np=3 runs per model; schedules: 1f1b / zb1p / interleaved")
    args = ap.parse_args()
    if not os.access(ARCEUS, os.X_OK):
        sys.exit(f"{ARCEUS} not found: build first (scripts/build)")
    if args.suite == "schedules":
        table = "\n".join(schedules_suite(args))
        print(table)
        if args.out:
            with open(args.out, "w") as f:
                f.write(table + "\n")
        return

    lines = [f"Pipelining benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
             f"MLPs {args.steps} steps of batch 256, GPT {args.gpt_steps} steps of 128 x 128 tokens, "
             f"{args.bits}-bit messages, best of {args.repeat}",
             "",
             "| model | run | rate | vs best np=1 | bubble measured | bubble simulated | stage busy % |",
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
            busy = " / ".join(f"{100 * t['busy_fraction']:.0f}" for t in e["timing"] if t["stage"] >= 1)
            bubble = f"{100 * e['bubble_measured']:.1f}%" if np > 1 else "-"
            theory = f"{100 * e['bubble_simulated']:.1f}%" if np > 1 else "-"
            lines.append(f"| {model} | {label} | {value:,.0f} {unit} | {value / ref:.2f}x | {bubble} | {theory} | {busy} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()

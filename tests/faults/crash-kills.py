#!/usr/bin/env python3
"""Crash consistency: kill a 3-rank training run with SIGKILL at random moments and check what
it leaves.

Each trial starts `mpirun -np 3 arceus train` (a [32, 512, 512, 10] MLP on synthetic data, 3
epochs of 256 steps, a checkpoint every 32 steps and every epoch, 32-bit messages) in a fresh
directory, waits a random time within the run's length (from start-up to the end), and SIGKILLs one victim chosen at random: rank 0, a stage
rank, or mpirun itself. Then, for the files the run left:
  checkpoint.h5  `arceus inspect` reads it, and its position is at least the last checkpoint
                 the run reported as written ("checkpoint: ... (epoch E, step S" in its log);
  summary.json   valid JSON;
  metrics.h5     `arceus inspect` reads it, and it holds at least the steps up to that
                 checkpoint (the trainer flushes it with every checkpoint);
and then a resume (`--set resume=true`) continues from the checkpoint (its log says "resumed
from epoch E, step S" with the checkpoint's position, or starts afresh when there was none) and
completes, with metrics.h5 holding every step of the 3 epochs exactly once. (A kill after the
last checkpoint leaves a finished job: its resume says "nothing left to train".)

    tests/faults/crash-kills.py --bin build/arceus [--kills 30] [--seed 1]

Exit 0 when every trial passed, 1 otherwise (each failure named); prints one line per trial
and a summary.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "tests", "configs", "e2e_synthetic.yaml")
MPIRUN = os.path.join(ROOT, "scripts", "mpirun")
EPOCHS, STEPS = 3, 256
SETS = ["model_config.layer_sizes=[32,512,512,10]",
        "dataset_config.synthetic={train_size: 16384, val_size: 256, features: 32, classes: 10, noise: 1.0}",
        f"training.epochs={EPOCHS}", "output.checkpoint_every_steps=32", "communication.quantization_bits=32"]


def children(pid):
    """Every descendant of pid (from /proc)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p:
                out.append(c)
                todo.append(c)
    return out


def mpi_rank(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(item.split(b"=")[1])
    except OSError:
        pass
    return -1


def train(binary, out, extra, log):
    cmd = [MPIRUN, "-np", "3", binary, "train", CONFIG, "--quiet", "--set", f"output.dir={out}"]
    for s in SETS + extra:
        cmd += ["--set", s]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait(p, timeout):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return None


def inspect(binary, path):
    r = subprocess.run([binary, "inspect", path], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def position_of_checkpoint(text):
    m = re.search(r"^epoch: (\d+)\s+step: (\d+)", text, re.M)
    return (int(m.group(1)), int(m.group(2))) if m else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="arceus-kills.")
    failures, rows = [], []
    try:
        # The run's length, to draw the moments from.
        with open(os.path.join(work, "calibrate.log"), "w") as log:
            t0 = time.time()
            code = wait(train(binary, os.path.join(work, "calibrate"), [], log), 300)
            length = time.time() - t0
        if code != 0:
            sys.exit(f"the uninterrupted run failed (exit {code}): see {work}/calibrate.log")
        print(f"[kills] an uninterrupted run takes {length:.1f} s; {args.kills} kills at random moments in it", flush=True)
        for i in range(args.kills):
            out = os.path.join(work, f"run{i}")
            logpath = out + ".log"
            victim = rng.choice(["rank 0", "stage", "mpirun"])
            delay = rng.uniform(0.3, length)
            with open(logpath, "w") as log:
                p = train(binary, out, [], log)
                time.sleep(delay)
                target = None
                if victim == "mpirun":
                    target = p.pid
                else:
                    want = {0} if victim == "rank 0" else {1, 2}
                    ranks = [(c, mpi_rank(c)) for c in children(p.pid)]
                    chosen = [c for c, r in ranks if r in want]
                    if chosen:
                        target = rng.choice(chosen)
                finished_first = p.poll() is not None
                if target and not finished_first:
                    try:
                        os.kill(target, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                code = wait(p, 60)
                # mpirun killed: its ranks are orphans; end them as a user's Ctrl-C would not.
                for c in children(p.pid) if victim == "mpirun" else []:
                    try:
                        os.kill(c, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.2)
            problems = []
            if code is None:
                problems.append("the killed run hung (killed after 60 s)")
            with open(logpath) as f:
                text = f.read()
            written = re.findall(r"checkpoint: \S+ \(epoch (\d+), step (\d+)", text)
            last = tuple(map(int, written[-1])) if written else None
            ck = os.path.join(out, "checkpoint.h5")
            ck_pos = None
            if os.path.exists(ck):
                rc, txt = inspect(binary, ck)
                ck_pos = position_of_checkpoint(txt) if rc == 0 else None
                if rc != 0:
                    problems.append(f"checkpoint.h5 unreadable: {txt.strip()[:200]}")
                elif ck_pos is None:
                    problems.append(f"arceus inspect printed no epoch/step for checkpoint.h5: {txt[:200]}")
                elif last and ck_pos < last:
                    problems.append(f"checkpoint.h5 is at {ck_pos}, older than the last one written {last}")
            elif last:
                problems.append(f"no checkpoint.h5 but the log reports one written at {last}")
            sm = os.path.join(out, "summary.json")
            if os.path.exists(sm):
                try:
                    json.load(open(sm))
                except ValueError as e:
                    problems.append(f"summary.json is not valid JSON: {e}")
            mf = os.path.join(out, "metrics.h5")
            metric_rows = None
            if os.path.exists(mf):
                rc, txt = inspect(binary, mf)
                m = re.search(r"steps: (\d+) rows", txt)
                if rc != 0 or not m:
                    problems.append(f"metrics.h5 unreadable: {txt.strip()[:200]}")
                else:
                    metric_rows = int(m.group(1))
                    if ck_pos and metric_rows < ck_pos[0] * STEPS + ck_pos[1]:
                        problems.append(f"metrics.h5 has {metric_rows} step rows, fewer than the checkpoint's {ck_pos}")
            finished_first = finished_first or code == 0  # the kill came after the run's end
            # The resume (of a run that was killed: a finished one has nothing left to train).
            rcode, rtext = 0, ""
            if not finished_first:
                with open(out + ".resume.log", "w") as log:
                    rcode = wait(train(binary, out, ["resume=true"], log), 300)
                with open(out + ".resume.log") as f:
                    rtext = f.read()
            done = ck_pos == (EPOCHS, 0)  # killed after the last checkpoint: the resume has nothing to do
            if done and rcode != 0:
                if "nothing left to train" not in rtext:
                    problems.append(f"the resume of a finished checkpoint failed otherwise: {rtext.strip()[:300]}")
            elif rcode != 0:
                problems.append(f"the resume failed (exit {rcode}): {rtext.strip()[-300:]}")
            else:
                r = re.search(r"resumed from epoch (\d+), step (\d+)", rtext)
                if not finished_first and ck_pos and (not r or (int(r.group(1)), int(r.group(2))) != ck_pos):
                    problems.append(f"the resume did not start from the checkpoint {ck_pos}: "
                                    f"{r.group(0) if r else 'no resumed-from line'}")
                rc, txt = inspect(binary, mf)
                m = re.search(r"steps: (\d+) rows", txt)
                if not m or int(m.group(1)) != EPOCHS * STEPS:
                    problems.append(f"after the resume metrics.h5 has {m.group(1) if m else '?'} step rows, "
                                    f"expected {EPOCHS * STEPS}")
            state = "finished before the kill" if finished_first else f"killed after {delay:.2f} s"
            line = (f"[kills] {i + 1:2d}/{args.kills} {victim:6s} {state}: exit {code}; checkpoint {ck_pos}; "
                    f"metrics rows {metric_rows}; resume {'ok' if not problems else 'FAILED'}")
            print(line + ("" if not problems else "\n    " + "\n    ".join(problems)), flush=True)
            rows.append({"victim": victim, "delay": delay, "killed": not finished_first, "checkpoint": ck_pos,
                         "metric_rows": metric_rows, "problems": problems})
            if problems:
                failures.append((i + 1, problems))
            else:
                shutil.rmtree(out, ignore_errors=True)
        killed = sum(r["killed"] for r in rows)
        with_ck = sum(1 for r in rows if r["killed"] and r["checkpoint"])
        by = {v: sum(1 for r in rows if r["victim"] == v and r["killed"]) for v in ("rank 0", "stage", "mpirun")}
        print(f"[kills] {len(rows)} trials, {killed} killed mid-run (rank 0 {by['rank 0']}, stage {by['stage']}, "
              f"mpirun {by['mpirun']}), {with_ck} of them after a checkpoint; {len(failures)} failed")
        if failures:
            print(f"[kills] files of the failed trials are in {work}")
            return 1
        shutil.rmtree(work, ignore_errors=True)
        return 0
    except BaseException:
        print(f"[kills] interrupted; files in {work}")
        raise


if __name__ == "__main__":
    sys.exit(main())

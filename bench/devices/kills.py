#!/usr/bin/env python3
"""Devices killed mid-job: how long recovery takes, how many steps are redone, and whether a
kill at any phase leaves the server healthy and no process behind.

Two modes (one or both per run):

  --intervals 10,50,200
      For each checkpoint interval K: a fresh `arceus serve` in a temp directory, a synthetic
      MLP job ([64, 384, 384, 10], batch 64, 256 steps per epoch, 32-bit messages, a checkpoint
      every K steps, --epochs epochs: ~30-45 s on 2 devices here), 2 devices. One device is
      SIGKILLed at a random step of the middle third (once the step is reached, after a further
      random delay of up to K steps' time, so that the kill falls at a uniform phase of the
      checkpoint interval). Measured from this script (polling GET /api/jobs/<id> every
      --poll s): seconds from the kill to the loss being recorded
      (device_losses non-empty), to the job being `training` again after it, and to the first
      new step reported after the resume; the loss record's step, resumed_from_step and
      steps_redone; the final state. One table row per interval; the raw results to --json.

  --random-kills N
      N rounds on one long-lived server, each a fresh job (the same MLP, 40 x 64 steps) on
      fresh devices (2; 1 at a phase's 2nd, 5th, ... round, except joining), one of which is SIGKILLed at a random phase:
        joining          right after it starts, before it is connected: at a random moment in
                         its first 0.3 s (before it registers), or the moment it is listed as
                         registered (before or as its first heartbeat makes it connected);
        after-initialize after POST /api/network/initialize, before (0-H s) POST .../train;
        mid-training     at a random step (10-50% of the job);
        between-jobs     idle, after its job completed.
      The contract, checked after each round:
        - the job ends `completed`; or `failed` with an error naming the device and the reason
          when no device is left (a job of 1 device killed after initialize or mid-training;
          after a group kill the orphaned MPI process may still finish the job: completed, no
          loss, noted); between-jobs: the job stays completed and the device becomes `gone`;
        - GET /healthz says ok;
        - within --leftover-wait s (15) after the round (the surviving devices told to leave with
          DELETE /api/devices/<port>), no process of the round is left: no `arceus device` (agent
          or MPI process) started for it and no job runner (`mpirun ... job-runner`, `arceus
          job-runner`) the server started for its job.
      One line per round and a summary; exit 1 if any round broke the contract (named).

How a device is killed (--kill-scope): `group` (the default) sends SIGKILL to the agent's
process group (`kill -KILL -<agent pid>`). The agent starts its MPI process (`mpirun ... arceus
device`) in process groups of its own, inside the agent's session: a group kill ends the
agent, its mpirun follows (PR_SET_PDEATHSIG) and then the MPI rank. The script records how long
each of them outlived the kill (`outlived`): the rank went on training for ~1.07 s before
42e73a7 (until Open MPI ended it), ~0.08 s since (it has PR_SET_PDEATHSIG too). `session`
kills every process of the agent's session at once, as a machine losing power would.

Every process this script starts carries ARCEUS_BENCH_KILLS=<run>/<role> in its environment
(inherited by what they start: mpirun, job runners), which is how processes are found in /proc.
The binary is a copy of build/arceus taken at start (a concurrent rebuild replaces
build/arceus, and a server whose executable was replaced cannot start job runners: it execs
/proc/self/exe, "(deleted)"). Every wait is bounded; on exit, also on Ctrl-C or SIGTERM, the
server and the devices are killed.

    python3 bench/devices/kills.py --intervals 10,50,200 [--heartbeat-timeout 5] [--epochs 30]
    python3 bench/devices/kills.py --random-kills 20 [--seed 1]

Python 3 standard library only. Holds /tmp/arceus-measure.lock (as bench/served.py does) while
it runs, waiting at most --lock-wait s for it.
"""
import argparse
import contextlib
import fcntl
import http.client
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_BIN = os.path.join(ROOT, "build", "arceus")
TAG = "ARCEUS_BENCH_KILLS"

# The intervals job: 256 steps per epoch, 180-350 steps/s on 2 devices here (2 cores, with or
# without a concurrent build), so 30 epochs take 25-45 s.
INTERVAL_JOB = {"model_config": {"layer_sizes": [64, 384, 384, 10]},
                "dataset_config": {"name": "synthetic", "batch_size": 64,
                                   "synthetic": {"train_size": 16384, "val_size": 256, "features": 64, "classes": 10}},
                "communication": {"quantization_bits": 32}}
# The random-kill rounds' job: the same model, 64 steps per epoch, 40 epochs (2,560 steps: 5-8 s
# of training on 2 devices here, ~4 s on 1), a checkpoint every 32 steps.
ROUND_JOB = {"model_config": {"layer_sizes": [64, 384, 384, 10]},
             "dataset_config": {"name": "synthetic", "batch_size": 64,
                                "synthetic": {"train_size": 4096, "val_size": 128, "features": 64, "classes": 10}},
             "communication": {"quantization_bits": 32},
             "output": {"checkpoint_every_steps": 32}, "training": {"epochs": 40}}
PHASES = ["joining", "after-initialize", "mid-training", "between-jobs"]
ENDED = ("completed", "failed", "stopped")


class Abort(Exception):
    """Something this script needs did not happen (within its bound)."""


def mono():
    return time.monotonic()


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------
# Processes, from /proc.

def proc_info(pid, light=False):
    """(ppid, pgid, sid, state, starttime, cmdline, tag) of pid, or None when it is gone; light:
    from /proc/<pid>/stat only (no cmdline, no tag)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        cmd = ""
        if not light:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    tag = None
    try:
        if light:
            raise OSError
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(TAG.encode() + b"="):
                    tag = item.split(b"=", 1)[1].decode(errors="replace")
    except OSError:
        pass
    # rest: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    #       cutime cstime priority nice num_threads itrealvalue starttime ...
    return {"pid": pid, "ppid": int(rest[1]), "pgid": int(rest[2]), "sid": int(rest[3]), "state": rest[0],
            "start": int(rest[19]), "cmd": cmd, "tag": tag}


def all_procs(light=False):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            p = proc_info(int(d), light)
            if p:
                out.append(p)
    return out


def tagged(prefix):
    """Live (not zombie) processes whose tag starts with prefix."""
    return [p for p in all_procs() if p["tag"] and p["tag"].startswith(prefix) and p["state"] != "Z"]


def still_there(p):
    """The same process (pid and start time) still exists (zombies included)."""
    q = proc_info(p["pid"])
    return q is not None and q["start"] == p["start"]


def kill_pids(pids):
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def sweep(prefix):
    """SIGKILLs every live process tagged with prefix (twice: a parent may fork meanwhile)."""
    for _ in range(2):
        kill_pids([p["pid"] for p in tagged(prefix)])
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------
# HTTP.

def call(port, method, path, body=None, timeout=10.0):
    """(status, parsed JSON or text); (None, error) when there is no answer."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        data = json.dumps(body) if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data is not None else {})
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            return r.status, json.loads(raw or b"null")
        except ValueError:
            return r.status, raw.decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        return None, f"{type(e).__name__}: {e}"


def global_step(progress):
    if not isinstance(progress, dict):
        return 0
    return (progress.get("epoch", 1) - 1) * progress.get("steps", 0) + progress.get("step", 0)


# ------------------------------------------------------------------------------------------
# The binary, the server, the devices.

def snapshot_binary(dest, timeout=300):
    """Copies build/arceus into dest once it is complete (not written in the last 3 s, runs
    --help); retries while a rebuild replaces it."""
    t0 = mono()
    last = "missing"
    while mono() - t0 < timeout:
        try:
            st = os.stat(BUILD_BIN)
            if time.time() - st.st_mtime >= 3:
                dst = os.path.join(dest, "arceus")
                shutil.copy2(BUILD_BIN, dst)
                st2 = os.stat(BUILD_BIN)
                if st2.st_mtime == st.st_mtime and os.stat(dst).st_size == st.st_size:
                    r = subprocess.run([dst, "device", "--help"], capture_output=True, timeout=60)
                    if r.returncode == 0:
                        return dst, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))
                    last = f"--help exited {r.returncode}"
            else:
                last = "being written"
        except (OSError, subprocess.TimeoutExpired) as e:
            last = str(e)
        time.sleep(1)
    raise Abort(f"no usable {BUILD_BIN} within {timeout} s ({last})")


def environment(tag):
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", **{TAG: tag})


class Server:
    def __init__(self, binary, work, heartbeat, tag):
        self.binary, self.work, self.heartbeat, self.tag = binary, work, heartbeat, tag
        self.log_path = os.path.join(work, "serve.log")
        self.proc = None
        self.port = None
        self.baseline = []  # the server's own processes once it is up
        self.rendezvous_left = None

    def start(self, timeout=90):
        cmd = [self.binary, "serve", "--port", "0", "--heartbeat-timeout", str(self.heartbeat), "--quiet"]
        self.command = " ".join(cmd)
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.work, stdout=out, stderr=subprocess.STDOUT,
                                         env=environment(self.tag), start_new_session=True)
        t0 = mono()
        while mono() - t0 < timeout:
            if self.proc.poll() is not None:
                raise Abort(f"the server exited {self.proc.returncode}: see {self.log_path}")
            if self.port is None:
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.text())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None:
                status, body = call(self.port, "GET", "/healthz", timeout=2)
                if status == 200:
                    time.sleep(0.5)
                    self.baseline = tagged(self.tag)
                    return
            time.sleep(0.2)
        raise Abort(f"the server did not answer /healthz within {timeout} s: see {self.log_path}")

    def api(self, method, path, body=None, timeout=10.0):
        return call(self.port, method, path, body, timeout)

    def job(self, job_id):
        status, body = self.api("GET", f"/api/jobs/{job_id}")
        return body if status == 200 and isinstance(body, dict) else None

    def text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def new_processes(self):
        """The server's live processes that were not there when it came up (job runners)."""
        base = {(p["pid"], p["start"]) for p in self.baseline}
        return [p for p in tagged(self.tag) if (p["pid"], p["start"]) not in base]

    def stop(self, timeout=30):
        """POST /api/shutdown, else SIGKILL; returns the exit status (None when killed)."""
        if self.proc is None:
            return None
        rendezvous = f"/tmp/arceus-rendezvous-{self.proc.pid}"  # the server's ompi-server URI file
        code = None
        if self.proc.poll() is None and self.port:
            self.api("POST", "/api/shutdown", timeout=5)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.proc.wait(timeout)
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        sweep(self.tag)
        self.rendezvous_left = os.path.exists(rendezvous)
        if code is None:
            shutil.rmtree(rendezvous, ignore_errors=True)  # killed: it could not remove it
        return code


class Device:
    def __init__(self, binary, port, job_id, work, name, tag, extra=()):
        self.name, self.tag = name, tag
        self.log_path = os.path.join(work, f"{name}.log")
        cmd = [binary, "device", "--api-url", f"http://127.0.0.1:{port}", "--job-id", str(job_id), "--threads", "1",
               *extra]
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=environment(tag),
                                         start_new_session=True)
        self.pid = self.proc.pid
        self.started = mono()
        self.killed_at = None

    def session(self, light=False):
        """Live processes of the agent's session (the agent, its mpirun, its MPI rank)."""
        return [p for p in all_procs(light) if p["sid"] == self.pid and p["state"] != "Z"]

    def kill(self, scope):
        """SIGKILL to the agent's process group (scope group) or its whole session. Returns the
        other processes of its session that were alive just before (to watch them)."""
        before = [p for p in self.session(light=True) if p["pid"] != self.pid]
        self.killed_at = mono()
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        if scope == "session":
            kill_pids([p["pid"] for p in before])
            kill_pids([p["pid"] for p in self.session(light=True)])
        self.wait(5)  # reaped: not a zombie of this script
        for p in before:  # their command lines, for the record (while they live)
            q = proc_info(p["pid"])
            if q and q["start"] == p["start"]:
                p["cmd"] = q["cmd"]
        return before

    def poll(self):
        return self.proc.poll()

    def wait(self, timeout):
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.proc.wait(timeout)
        return None

    def text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def cleanup(self):
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        kill_pids([p["pid"] for p in self.session()])
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def devices_listed(server):
    status, body = server.api("GET", "/api/devices")
    if status != 200 or not isinstance(body, dict):
        return []
    return [d for d in body.get("devices", []) if d.get("role") == "device"]


def device_entry(server, dev):
    for d in devices_listed(server):
        if str(d.get("port")) == str(dev.pid):
            return d
    return None


def wait_connected(server, devs, timeout):
    t0 = mono()
    while mono() - t0 < timeout:
        entries = [device_entry(server, d) for d in devs]
        if all(e and e.get("connected") for e in entries):
            return True
        if any(d.poll() is not None for d in devs):
            return False
        time.sleep(0.1)
    return False


def wait_job(server, job_id, states, timeout, poll=0.2):
    t0 = mono()
    job = None
    while mono() - t0 < timeout:
        job = server.job(job_id)
        if job and job.get("state") in states:
            return job
        time.sleep(poll)
    return job


def checkpoint_seconds(text):
    return [float(s) for s in re.findall(r"checkpoint: \S+ \(epoch \d+, step \d+, ([0-9.]+) s\)", text)]


# ------------------------------------------------------------------------------------------
# Mode 1: checkpoint intervals.

def run_interval(args, binary, root, interval, rng):
    work = tempfile.mkdtemp(prefix=f"interval-{interval}.", dir=root)
    tag = f"{args.run}/interval-{interval}"
    server = Server(binary, work, args.heartbeat_timeout, tag + "/server")
    devs = []
    row = {"interval": interval, "work": work, "kill_scope": args.kill_scope, "heartbeat_timeout": args.heartbeat_timeout}
    try:
        server.start()
        body = json.loads(json.dumps(INTERVAL_JOB))
        body["output"] = {"checkpoint_every_steps": interval}
        body["training"] = {"epochs": args.epochs}
        status, r = server.api("POST", "/api/jobs", body)
        if status != 201:
            raise Abort(f"POST /api/jobs: {status} {r}")
        job_id = r["job_id"]
        devs = [Device(binary, server.port, job_id, work, f"device{i + 1}", f"{tag}/devices") for i in range(2)]
        if not wait_connected(server, devs, 60):
            raise Abort("2 devices did not connect within 60 s")
        for method, path, b in (("POST", f"/api/network/initialize/{job_id}", None),
                                ("POST", f"/api/network/train/{job_id}", {})):
            status, r = server.api(method, path, b, timeout=30)
            if status != 200:
                raise Abort(f"{method} {path}: {status} {r}")
        t_train = mono()
        total = args.epochs * 256
        target = rng.randint(total // 3, 2 * total // 3)
        row.update(total_steps=total, kill_target=target)
        # Wait for the target step (bounded).
        job = None
        while True:
            job = server.job(job_id)
            if job and job.get("state") in ENDED:
                raise Abort(f"the job ended ({job.get('state')}) before step {target}: {job.get('error')}")
            if job and job.get("state") == "training" and global_step(job.get("progress")) >= target:
                break
            if mono() - t_train > 300:
                raise Abort(f"step {target} not reached within 300 s")
            time.sleep(args.poll / 2)
        # The server reads the runner's steps when its output wakes it (a checkpoint's log line,
        # an epoch's) or every 0.1 s, so the step is often first seen right after a checkpoint:
        # a further random delay of up to one interval's time puts the kill at a uniform phase.
        rate = (job.get("progress") or {}).get("samples_per_second", 0) / 64 or 100
        delay = rng.uniform(0, interval / rate)
        time.sleep(delay)
        row["phase_delay_s"] = round(delay, 3)
        job = server.job(job_id) or job
        seen_step = global_step(job.get("progress"))
        row["seconds_train_to_kill"] = round(mono() - t_train, 2)  # the runner's start and the joins included
        victim = rng.randrange(2)
        entry = device_entry(server, devs[victim])
        row["victim"] = {"device_id": entry and entry.get("device_id"), "rank": entry and entry.get("rank"),
                         "pid": devs[victim].pid}
        others = devs[victim].kill(args.kill_scope)
        t_kill = devs[victim].killed_at
        row["step_seen_at_kill"] = seen_step
        # After a group kill, the agent's MPI processes are watched (in the poll loop below).
        pending = [p for p in others if still_there(p)]
        outlived = []
        t_loss = t_training = t_first = None
        progress_at_loss = None
        states = []
        while mono() - t_kill < args.recovery_timeout:
            job = server.job(job_id)
            t = mono() - t_kill
            for p in list(pending):
                q = proc_info(p["pid"])
                if q is None or q["start"] != p["start"] or q["state"] == "Z":
                    outlived.append({"cmd": p["cmd"][:90], "outlived_s": round(t, 2)})
                    pending.remove(p)
            if job is None:
                time.sleep(args.poll)
                continue
            state = job.get("state")
            if not states or states[-1][1] != state:
                states.append((round(t, 3), state))
            losses = job.get("device_losses") or []
            if losses and t_loss is None:
                t_loss = t
                progress_at_loss = job.get("progress")
            if t_loss is not None and t_training is None and state == "training":
                t_training = t
            if t_training is not None and t_first is None and job.get("progress") != progress_at_loss:
                t_first = t
            if state in ENDED:
                break
            if t_first is not None and not pending:
                break
            time.sleep(args.poll)
        for p in pending:
            outlived.append({"cmd": p["cmd"][:90], "outlived_s": None, "still_alive_after_s": round(mono() - t_kill, 1)})
        row.update(seconds_to_loss=t_loss and round(t_loss, 2), seconds_to_training=t_training and round(t_training, 2),
                   seconds_to_first_new_step=t_first and round(t_first, 2), states_after_kill=states, outlived=outlived)
        job = wait_job(server, job_id, ENDED, args.job_timeout)
        if not job:
            raise Abort("no answer for the job")
        loss = (job.get("device_losses") or [None])[0]
        row.update(final_state=job.get("state"), error=job.get("error"), job_seconds=job.get("seconds"),
                   device_losses=job.get("device_losses"), loss=loss)
        status, metrics = server.api("GET", f"/api/jobs/{job_id}/metrics", timeout=30)
        if status == 200 and isinstance(metrics, dict):
            row["steps_reported"] = len(metrics.get("steps") or [])
        cks = checkpoint_seconds(server.text())
        row["checkpoints"] = len(cks)
        # Whole epochs on 2 devices: those the kill did not cut.
        epochs = [(int(n), float(x)) for n, x in
                  re.findall(r"^epoch (\d+)/\d+: .*\| ([0-9.]+) s, \d+ samples/s", server.text(), re.M)]
        row["epoch_seconds"] = epochs
        before = [x for n, x in epochs if loss and n <= loss.get("step", 0) // 256]
        row["steps_per_second_2_devices"] = round(256 / statistics.median(before), 1) if before else None
        row["checkpoint_seconds_median"] = statistics.median(cks) if cks else None
        row["checkpoint_seconds_max"] = max(cks) if cks else None
        row["server_log_device_lines"] = [l for l in server.text().splitlines()
                                          if "lost" in l or "resum" in l or "gone" in l or "job runner" in l][:20]
    except Abort as e:
        row["abort"] = str(e)
    finally:
        row["shutdown_exit"] = server.stop()
        row["rendezvous_dir_left"] = server.rendezvous_left
        for d in devs:
            d.wait(10)
            row.setdefault("device_exits", []).append(d.poll())
            d.cleanup()
        sweep(tag)
    return row


def fmt(v, spec="{:.1f}"):
    return "-" if v is None else spec.format(v)


def intervals_mode(args, binary, root, rng):
    intervals = [int(x) for x in args.intervals.split(",") if x.strip()]
    rows = []
    log(f"[intervals] job: MLP {INTERVAL_JOB['model_config']['layer_sizes']}, {args.epochs} epochs x 256 steps, "
        f"2 devices, --heartbeat-timeout {args.heartbeat_timeout}, kill scope {args.kill_scope}")
    header = ("| interval | killed at step | loss step | resumed from | steps redone | s to loss recorded "
              "| s to training again | s to first new step | final | job s | steps/s (2 devices) | checkpoints "
              "| one checkpoint s (median) |")
    for k in intervals:
        row = run_interval(args, binary, root, k, rng)
        rows.append(row)
        loss = row.get("loss") or {}
        if row.get("abort"):
            log(f"[intervals] interval {k}: ABORTED: {row['abort']} (see {row['work']})")
        else:
            log(f"[intervals] interval {k}: killed device {row['victim']['device_id']} (rank {row['victim']['rank']}) at "
                f"step {row['step_seen_at_kill']}; loss recorded +{fmt(row['seconds_to_loss'], '{:.2f}')} s, training "
                f"+{fmt(row['seconds_to_training'], '{:.2f}')} s, first new step +{fmt(row['seconds_to_first_new_step'], '{:.2f}')} s; "
                f"redone {loss.get('steps_redone')}; {row['final_state']}; outlived {row['outlived']}")
    log("")
    log(header)
    log("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in rows:
        loss = row.get("loss") or {}
        log(f"| {row['interval']} | {row.get('step_seen_at_kill', '-')} | {loss.get('step', '-')} | "
            f"{loss.get('resumed_from_step', '-')} | {loss.get('steps_redone', '-')} | "
            f"{fmt(row.get('seconds_to_loss'), '{:.2f}')} | {fmt(row.get('seconds_to_training'), '{:.2f}')} | "
            f"{fmt(row.get('seconds_to_first_new_step'), '{:.2f}')} | {row.get('final_state', row.get('abort', '-'))} | "
            f"{fmt(row.get('job_seconds'))} | {fmt(row.get('steps_per_second_2_devices'), '{:.0f}')} | "
            f"{row.get('checkpoints', '-')} | {fmt(row.get('checkpoint_seconds_median'), '{:.3f}')} |")
    bad = [r for r in rows if r.get("abort") or r.get("final_state") != "completed"]
    return rows, bad


# ------------------------------------------------------------------------------------------
# Mode 2: random kills.

def names_device(error, dev_id):
    """The job's error names the lost device and a reason."""
    if not error:
        return False
    e = error.lower()
    return (f"device {dev_id}" in e or f"device_id {dev_id}" in e) and ("lost" in e or "gone" in e) and \
        ("no device" in e or "heartbeat" in e or "exit" in e or "left" in e)


def run_round(args, binary, server, work, n, phase, ndev, rng):
    tag = f"{args.run}/round-{n}"
    rec = {"round": n, "phase": phase, "devices": ndev, "violations": [], "notes": []}
    devs = []
    seen = {}  # (pid, start) -> proc: every process of the round seen, to check they end
    log_from = len(server.text())

    def observe():
        for p in tagged(tag) + server.new_processes():
            seen.setdefault((p["pid"], p["start"]), p)

    def violation(msg):
        rec["violations"].append(msg)

    try:
        status, r = server.api("POST", "/api/jobs", ROUND_JOB)
        if status != 201:
            raise Abort(f"POST /api/jobs: {status} {r}")
        job_id = r["job_id"]
        rec["job_id"] = job_id
        devs = [Device(binary, server.port, job_id, work, f"round{n}-device{i + 1}", tag) for i in range(ndev)]
        victim = rng.randrange(ndev)
        rec["victim_pid"] = devs[victim].pid
        expect = "completed" if ndev > 1 or phase in ("joining", "between-jobs") else "failed"
        rec["expected"] = expect
        victim_id = None
        train_refused = None

        if phase == "joining":
            how = rng.choice(["early", "at-registration"])
            rec["joining_kill"] = how
            if how == "early":
                rec["joining_delay_s"] = round(rng.uniform(0.0, 0.3), 3)
                time.sleep(rec["joining_delay_s"])
            else:
                t0 = mono()
                while mono() - t0 < 30 and not device_entry(server, devs[victim]) and devs[victim].poll() is None:
                    time.sleep(0.01)
            entry = device_entry(server, devs[victim])
            rec["victim_registered_before_kill"] = bool(entry)
            rec["victim_connected_before_kill"] = bool(entry and entry.get("connected"))
            victim_id = entry and entry.get("device_id")
            devs[victim].kill(args.kill_scope)
            rec["killed_after_s"] = round(devs[victim].killed_at - devs[victim].started, 2)
            survivors = [d for i, d in enumerate(devs) if i != victim]
            if not wait_connected(server, survivors, 60):
                raise Abort("the surviving device did not connect within 60 s")
            entry = device_entry(server, devs[victim])
            victim_id = victim_id or (entry and entry.get("device_id"))
            time.sleep(rng.uniform(0, args.heartbeat_timeout + 1))  # initialize before or after it is gone
            rec["victim_state_at_initialize"] = (device_entry(server, devs[victim]) or {}).get("state")
        else:
            if not wait_connected(server, devs, 60):
                raise Abort(f"{ndev} devices did not connect within 60 s")
            victim_id = device_entry(server, devs[victim]).get("device_id")
        rec["victim_device_id"] = victim_id
        observe()

        status, r = server.api("POST", f"/api/network/initialize/{job_id}", timeout=30)
        if status != 200:
            raise Abort(f"POST initialize: {status} {r}")
        if phase == "after-initialize":
            devs[victim].kill(args.kill_scope)
            rec["train_delay_s"] = round(rng.uniform(0, args.heartbeat_timeout), 2)
            time.sleep(rec["train_delay_s"])
            rec["victim_state_at_train"] = (device_entry(server, devs[victim]) or {}).get("state")
        status, r = server.api("POST", f"/api/network/train/{job_id}", {}, timeout=30)
        if status != 200:
            train_refused = f"{status} {r}"
            rec["train_refused"] = train_refused
        t_train = mono()
        observe()

        if phase == "mid-training" and train_refused is None:
            total = ROUND_JOB["training"]["epochs"] * 64
            target = rng.randint(total // 10, total // 2)
            while mono() - t_train < 120:
                job = server.job(job_id)
                if job and (job.get("state") in ENDED or
                            (job.get("state") == "training" and global_step(job.get("progress")) >= target)):
                    break
                time.sleep(0.05)
            observe()
            rec["killed_at_step"] = global_step((job or {}).get("progress"))
            if job and job.get("state") in ENDED:
                rec["notes"].append(f"the job ended ({job.get('state')}) before the kill's step {target}")
            devs[victim].kill(args.kill_scope)

        job = None
        if train_refused is None:
            t0 = last = mono()
            while mono() - t0 < args.job_timeout:
                job = server.job(job_id)
                if job and job.get("state") in ENDED:
                    break
                if mono() - last > 1:
                    observe()
                    last = mono()
                time.sleep(0.2)
            if not job or job.get("state") not in ENDED:
                violation(f"the job did not end within {args.job_timeout} s (state {job and job.get('state')})")
        else:
            job = server.job(job_id)
        rec["state"] = job and job.get("state")
        rec["error"] = job and job.get("error")
        rec["device_losses"] = [{k: l.get(k) for k in ("device_id", "step", "why", "resumed_from_step", "steps_redone")}
                                for l in (job and job.get("device_losses")) or []]

        if phase == "between-jobs":
            devs[victim].kill(args.kill_scope)
            t_kill = mono()
            gone = None
            while mono() - t_kill < args.heartbeat_timeout + 10:
                e = device_entry(server, devs[victim])
                if e and e.get("state") == "gone":
                    gone = mono() - t_kill
                    break
                time.sleep(0.2)
            rec["seconds_to_gone"] = gone and round(gone, 2)
            if gone is None:
                violation(f"the idle device killed between jobs is not `gone` {args.heartbeat_timeout + 10:.0f} s later "
                          f"(state {(device_entry(server, devs[victim]) or {}).get('state')})")
            job = server.job(job_id)
            if job and job.get("state") != "completed":
                violation(f"the completed job became {job.get('state')} after a device was killed between jobs")

        # The job's end.
        state = rec["state"]
        if train_refused is not None:
            if expect == "failed" and names_device(str(r), victim_id):
                rec["notes"].append(f"train refused: {train_refused}")
            else:
                violation(f"POST train refused: {train_refused}")
        elif expect == "completed" and state != "completed":
            violation(f"the job ended {state}, expected completed: {rec['error']}")
        elif expect == "failed":
            if state == "completed" and phase == "mid-training" and rec["notes"]:
                pass  # the job ended before the kill
            elif state == "completed" and not rec["device_losses"] and args.kill_scope == "group":
                # The agent's MPI process outlives a group kill by ~1 s and may finish the job.
                rec["notes"].append("completed: the agent's MPI process, orphaned by the group kill, finished the job")
            elif state != "failed":
                violation(f"the job ended {state}, expected failed (its only device killed)")
            elif not names_device(rec["error"], victim_id):
                violation(f"the failed job's error does not name device {victim_id} and a reason: {rec['error']!r}")

        status, health = server.api("GET", "/healthz")
        rec["healthz"] = health.get("status") if isinstance(health, dict) else f"{status} {health}"
        if rec["healthz"] != "ok":
            violation(f"/healthz: {rec['healthz']}")

        # The devices left leave (DELETE: the agent exits 0 at its next heartbeat).
        for i, d in enumerate(devs):
            if i == victim or d.poll() is not None:
                continue
            status, r = server.api("DELETE", f"/api/devices/{d.pid}")
            if status != 200:
                violation(f"DELETE /api/devices/{d.pid}: {status} {r}")
        t0 = mono()
        for i, d in enumerate(devs):
            if i != victim:
                code = d.wait(max(0.1, args.leftover_wait - (mono() - t0)))
                if code is None:
                    violation(f"device {d.name} (pid {d.pid}) did not exit within {args.leftover_wait} s of its DELETE")
                elif code != 0:
                    rec["notes"].append(f"{d.name} exited {code}")
        # No process of the round left (bounded wait); a zombie counts when its parent is not
        # this script (whose devices are reaped by poll()).
        left, zombies = [], []
        while True:
            for d in devs:
                d.poll()
            left = [p for p in seen.values() if still_there(p) and proc_info(p["pid"])["state"] != "Z"]
            left += [p for p in tagged(tag) + server.new_processes() if (p["pid"], p["start"]) not in seen]
            zombies = []
            for p in seen.values():
                q = proc_info(p["pid"])
                if q and q["start"] == p["start"] and q["state"] == "Z" and q["ppid"] != os.getpid():
                    parent = proc_info(q["ppid"])
                    zombies.append(dict(p, ppid=q["ppid"], parent=parent and parent["cmd"][:60]))
            if (not left and not zombies) or mono() - t0 > args.leftover_wait:
                break
            time.sleep(0.25)
        rec["seconds_to_no_process"] = None if left else round(mono() - t0, 2)
        if left:
            violation(f"{len(left)} process(es) left {args.leftover_wait} s after the round: " +
                      "; ".join(f"pid {p['pid']} ppid {p['ppid']} [{p['cmd'][:70]}]" for p in left))
            kill_pids([p["pid"] for p in left])
        if zombies:
            violation(f"{len(zombies)} zombie(s) not reaped {args.leftover_wait} s after the round: " +
                      "; ".join(f"pid {p['pid']} [{p['cmd'][:50]}] parent {p['ppid']} [{p['parent']}]" for p in zombies))
    except Abort as e:
        violation(f"aborted: {e}")
    finally:
        for d in devs:
            d.cleanup()
        sweep(tag)
        # The server's own lines of the round (no access log, checkpoint or epoch lines).
        rec["server_log"] = [l for l in server.text()[log_from:].splitlines()
                             if l.strip() and "HTTP/1.1" not in l and not l.startswith(("  checkpoint:", "epoch "))][:40]
    return rec


def random_mode(args, binary, root, rng):
    work = tempfile.mkdtemp(prefix="random-kills.", dir=root)
    server = Server(binary, work, args.heartbeat_timeout, f"{args.run}/random/server")
    phases = (PHASES * (args.random_kills // len(PHASES) + 1))[:args.random_kills]
    rng.shuffle(phases)
    recs = []
    log(f"[random] {args.random_kills} rounds on one server (--heartbeat-timeout {args.heartbeat_timeout}, kill scope "
        f"{args.kill_scope}), job MLP {ROUND_JOB['model_config']['layer_sizes']}, "
        f"{ROUND_JOB['training']['epochs']} x 64 steps, a checkpoint every 32 steps; work dir {work}")
    try:
        server.start()
        count = {}
        for n, phase in enumerate(phases, 1):
            # 2 devices, or 1 at the 2nd, 5th, ... round of a phase (joining: always 2, one survives).
            count[phase] = count.get(phase, 0) + 1
            ndev = 1 if phase != "joining" and count[phase] % 3 == 2 else 2
            t0 = mono()
            rec = run_round(args, binary, server, work, n, phase, ndev, rng)
            rec["seconds"] = round(mono() - t0, 1)
            recs.append(rec)
            losses = ", ".join(f"device {l['device_id']} at step {l['step']} ({l['why']}), resumed from "
                               f"{l['resumed_from_step']}" for l in rec.get("device_losses", []))
            verdict = "ok" if not rec["violations"] else "VIOLATION: " + " | ".join(rec["violations"])
            log(f"[round {n:2d}] {phase:16s} {ndev} dev: job {rec.get('job_id')} {rec.get('state')}"
                f"{' (' + rec['error'] + ')' if rec.get('error') else ''}; losses [{losses}]; "
                f"healthz {rec.get('healthz')}; no process left after {rec.get('seconds_to_no_process')} s; "
                f"{rec['seconds']} s; {verdict}" + (f"; notes: {rec['notes']}" if rec["notes"] else ""))
            if server.proc.poll() is not None:
                log(f"[random] the server exited ({server.proc.returncode}): stopping")
                break
    except Abort as e:
        recs.append({"round": len(recs) + 1, "violations": [f"aborted: {e}"]})
    finally:
        shutdown = server.stop()
    bad = [r for r in recs if r["violations"]]
    by_phase = {}
    for r in recs:
        if "phase" in r:
            s = by_phase.setdefault(r["phase"], {"rounds": 0, "ok": 0, "completed": 0, "failed": 0, "losses": 0})
            s["rounds"] += 1
            s["ok"] += not r["violations"]
            s["completed"] += r.get("state") == "completed"
            s["failed"] += r.get("state") == "failed"
            s["losses"] += len(r.get("device_losses") or [])
    log("")
    log(f"[random] {len(recs) - len(bad)}/{len(recs)} rounds kept the contract; server shutdown exit {shutdown}")
    for phase, s in by_phase.items():
        log(f"  {phase:16s} {s['ok']}/{s['rounds']} kept the contract: {s['completed']} completed, {s['failed']} failed "
            f"(no device left), {s['losses']} device loss(es) recorded")
    for r in bad:
        log(f"  round {r['round']} ({r.get('phase')}): " + " | ".join(r["violations"]))
    if server.rendezvous_left:
        log(f"[random] note: /tmp/arceus-rendezvous-{server.proc.pid} was left by the server")
    return {"rounds": recs, "by_phase": by_phase, "server_shutdown_exit": shutdown, "work": work,
            "rendezvous_dir_left": server.rendezvous_left,
            "server_log_tail": server.text().splitlines()[-60:]}, bad


# ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--intervals", help="checkpoint intervals, comma-separated (e.g. 10,50,200)")
    ap.add_argument("--random-kills", type=int, default=0, help="rounds of random-phase kills")
    ap.add_argument("--heartbeat-timeout", type=float, default=5.0, help="serve --heartbeat-timeout (default 5)")
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the intervals job (256 steps each)")
    ap.add_argument("--kill-scope", choices=["group", "session"], default="group",
                    help="SIGKILL the agent's process group (default), or its whole session (its MPI process too)")
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between polls of the job (default 0.05)")
    ap.add_argument("--recovery-timeout", type=float, default=120, help="bound on the wait for the first new step")
    ap.add_argument("--job-timeout", type=float, default=300, help="bound on the wait for a job's end")
    ap.add_argument("--leftover-wait", type=float, default=15, help="bound on the wait for a round's processes to end")
    ap.add_argument("--lock-wait", type=float, default=1800, help="bound on the wait for /tmp/arceus-measure.lock")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: the time)")
    ap.add_argument("--json", help="raw results (default: /tmp/arceus-device-kills-<time>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if not args.intervals and not args.random_kills:
        ap.error("give --intervals and/or --random-kills")
    args.seed = args.seed if args.seed is not None else int(time.time())
    args.run = f"{os.getpid()}-{args.seed}"
    rng = random.Random(args.seed)

    def on_signal(signum, frame):
        # Once: a second Ctrl-C must not interrupt the clean-up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    root = tempfile.mkdtemp(prefix="arceus-device-kills.")
    lock = open("/tmp/arceus-measure.lock", "w")
    code = 0
    try:
        t0 = mono()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if mono() - t0 > args.lock_wait:
                    sys.exit(f"/tmp/arceus-measure.lock still held after {args.lock_wait} s")
                time.sleep(1)
        binary, built = snapshot_binary(root)
        log(f"[kills] seed {args.seed}; binary: a copy of build/arceus built {built}; work {root}; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        results = {"seed": args.seed, "binary_built": built, "cores": os.cpu_count(), "heartbeat_timeout": args.heartbeat_timeout,
                   "kill_scope": args.kill_scope, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   "load_average_at_start": os.getloadavg()}
        failed = []
        if args.intervals:
            rows, bad = intervals_mode(args, binary, root, rng)
            results["intervals"] = {"epochs": args.epochs, "job": INTERVAL_JOB, "rows": rows}
            failed += [f"interval {r['interval']}: {r.get('abort') or r.get('final_state')}" for r in bad]
        if args.random_kills:
            out, bad = random_mode(args, binary, root, rng)
            results["random_kills"] = out
            failed += [f"round {r['round']} ({r.get('phase')}): " + " | ".join(r["violations"]) for r in bad]
        results["load_average_at_end"] = os.getloadavg()
        path = args.json or f"/tmp/arceus-device-kills-{time.strftime('%Y%m%d-%H%M%S')}.json"
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        log(f"[kills] raw results: {path}")
        if failed:
            log("[kills] FAILED: " + "; ".join(failed))
            code = 1
    except KeyboardInterrupt:
        log("[kills] interrupted: cleaning up")
        code = 130
    except Abort as e:
        log(f"[kills] aborted: {e}")
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sweep(args.run + "/")
        lock.close()
        if not args.keep and code == 0:
            shutil.rmtree(root, ignore_errors=True)
        elif code != 0 or args.keep:
            log(f"[kills] work directory kept: {root}")
    sys.exit(code)


if __name__ == "__main__":
    main()

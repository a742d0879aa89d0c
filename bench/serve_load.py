#!/usr/bin/env python3
"""The REST shim under load while a job trains: does training slow down, do requests get answered?

Starts `mpirun -np 3 arceus serve` on a free loopback port and trains the same job twice (then a
third time without load, to see the drift), measuring samples/s over a window of --seconds:
  quiet  no client;
  load   for the whole window:
           --pollers clients (50), each on a keep-alive connection, polling GET /api/jobs/<id>,
             /metrics and /logs?offset=N once per --interval (1 s: the dashboard's fallback);
           --streams event-stream clients (20) reading GET /api/jobs/<id>/events;
           --silent clients (5) that connect and send nothing (reconnecting when dropped);
           --trickle clients (5) that send a request one byte per second;
           one client posting 1 MiB bodies (POST /api/jobs: a job body of 1 MiB, refused 400).
It prints requests served per kind, p50 / p99 latency and errors; the rate with and without
load and their ratio (target: at most 10% slower); and how long the trainer's thread waited for
the server's lock (GET /api/jobs/<id> `trainer_lock_wait`): the requests' only way to hold it up.

    python3 bench/serve_load.py [--seconds 60] [--pollers 50] [--streams 20] [--json out.json]
    python3 bench/serve_load.py --check --seconds 6 --pollers 20 --streams 5   # CTest: fails on any error

Loopback only; every client and the server end with it. Holds /tmp/arceus-measure.lock.
"""
import argparse
import http.client
import json
import socket
import statistics
import sys
import threading
import time

from served import served
BATCH = 256
JOB = {"model_config": {"layer_sizes": [784, 1024, 1024, 10]},
       "dataset_config": {"name": "synthetic", "batch_size": BATCH,
                          "synthetic": {"train_size": BATCH * 400, "val_size": 256, "features": 784, "classes": 10}},
       "training": {"epochs": 1000, "micro_batches": 4, "schedule": "1f1b"},
       "output": {"checkpoint_every": 0, "metrics": False}}



class Api:
    def __init__(self, port):
        self.port = port

    def call(self, method, path, body=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = json.dumps(body) if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = json.loads(r.read() or b"null")
        c.close()
        return r.status, out


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = {}
        self.errors = {}
        self.notes = []

    def add(self, kind, seconds, ok, note=None):
        with self.lock:
            self.latency.setdefault(kind, [])
            self.errors.setdefault(kind, 0)
            if ok:
                self.latency[kind].append(seconds)
            else:
                self.errors[kind] += 1
                if note and len(self.notes) < 20:
                    self.notes.append(f"{kind}: {note}")


def poller(port, job, stop, stats, interval):
    conn = None
    offset = 0
    while not stop.is_set():
        t_round = time.time()
        for kind, path in (("job", f"/api/jobs/{job}"), ("metrics", f"/api/jobs/{job}/metrics"),
                           ("logs", f"/api/jobs/{job}/logs?offset={offset}")):
            t0 = time.time()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200
                if kind == "logs" and ok:
                    offset = json.loads(body).get("next_offset", offset)
                stats.add(kind, time.time() - t0, ok, None if ok else f"HTTP {r.status}")
            except (OSError, http.client.HTTPException) as e:
                stats.add(kind, time.time() - t0, False, repr(e))
                conn = None
        stop.wait(max(0.0, interval - (time.time() - t_round)))
    if conn:
        conn.close()


def streamer(port, job, stop, out):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(f"GET /api/jobs/{job}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    while not stop.is_set():
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    s.close()
    idx = [int(line.split(b'"index":')[1].split(b",")[0].split(b"}")[0])
           for line in data.split(b"\n") if line.startswith(b"data: ") and b'"step"' in line and b'"index":' in line]
    out.append({"steps": len(idx), "in_order": all(b == a + 1 for a, b in zip(idx, idx[1:])),
                "dropped": data.count(b"event: dropped"), "status_ok": data.startswith(b"HTTP/1.1 200")})


def silent(port, stop, stats):
    while not stop.is_set():
        t0 = time.time()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.settimeout(1)
            while not stop.is_set():
                try:
                    if s.recv(1) == b"":
                        break  # the server closed it: its read timeout
                except socket.timeout:
                    continue
            s.close()
            stats.add("silent (held)", time.time() - t0, True)
        except OSError as e:
            stats.add("silent (held)", time.time() - t0, False, repr(e))
            stop.wait(1)


def trickle(port, stop, stats):
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    while not stop.is_set():
        t0 = time.time()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            for b in request:
                if stop.wait(1.0):
                    break
                s.sendall(bytes([b]))
            s.close()
            stats.add("trickle", time.time() - t0, True)
        except OSError:
            stats.add("trickle (cut by the server)", time.time() - t0, True)  # read timeout: expected


def poster(port, stop, stats):
    body = json.dumps({"model_config": {"layer_sizes": [4, 2]}, "padding": "x" * ((1 << 20) - 64)})
    while not stop.is_set():
        t0 = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("POST", "/api/jobs", body=body, headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            c.close()
            stats.add("post 1 MiB", time.time() - t0, r.status in (400, 413), f"HTTP {r.status}")
        except (OSError, http.client.HTTPException) as e:
            stats.add("post 1 MiB", time.time() - t0, False, repr(e))
        stop.wait(1.0)


def global_step(api, job):
    _, v = api.call("GET", f"/api/jobs/{job}")
    p = v.get("progress") or {}
    return ((p.get("epoch", 1) - 1) * p.get("steps", 0) + p.get("step", 0)), v


def measure(api, args, load):
    status, created = api.call("POST", "/api/jobs", JOB)
    job = created["id"]
    api.call("POST", f"/api/network/initialize/{job}", {})
    api.call("POST", f"/api/network/train/{job}", {})
    while global_step(api, job)[0] < 20:
        time.sleep(0.2)
    time.sleep(args.warmup)
    stop = threading.Event()
    stats, streams, threads = Stats(), [], []
    if load:
        for _ in range(args.pollers):
            threads.append(threading.Thread(target=poller, args=(api.port, job, stop, stats, args.interval)))
        for _ in range(args.streams):
            threads.append(threading.Thread(target=streamer, args=(api.port, job, stop, streams)))
        for _ in range(args.silent):
            threads.append(threading.Thread(target=silent, args=(api.port, stop, stats)))
        for _ in range(args.trickle):
            threads.append(threading.Thread(target=trickle, args=(api.port, stop, stats)))
        threads.append(threading.Thread(target=poster, args=(api.port, stop, stats)))
        for t in threads:
            t.start()
    g0, _ = global_step(api, job)
    t0 = time.time()
    time.sleep(args.seconds)
    g1, view = global_step(api, job)
    t1 = time.time()
    stop.set()
    for t in threads:
        t.join(40)
    api.call("POST", f"/api/jobs/{job}/stop", {})
    while api.call("GET", f"/api/jobs/{job}")[1]["state"] == "training":
        time.sleep(0.2)
    rate = (g1 - g0) * BATCH / (t1 - t0)
    return {"job": job, "rate": rate, "steps": g1 - g0, "stats": stats, "streams": streams,
            "lock": view.get("trainer_lock_wait", {})}


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--silent", type=int, default=5)
    ap.add_argument("--trickle", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="exit 1 on any request error or a stream out of order")
    ap.add_argument("--json")
    args = ap.parse_args()
    with served("arceus-load.") as (port, work, server):
        api = Api(port)
        runs = [("quiet", measure(api, args, False)), ("load", measure(api, args, True))]
        if not args.check:
            runs.append(("quiet again", measure(api, args, False)))
        for name, r in runs:
            print(f"{name:12s} job {r['job']}: {r['rate']:8.0f} samples/s ({r['steps']} steps in {args.seconds:.0f} s); "
                  f"trainer waited {1e3 * r['lock'].get('total_s', 0):.2f} ms in all for the server's lock over "
                  f"{r['lock'].get('events', 0)} events (max {1e6 * r['lock'].get('max_s', 0):.0f} us)")
        load = runs[1][1]
        quiet = statistics.mean([r["rate"] for n, r in runs if n != "load"])
        print(f"\nload / quiet = {load['rate'] / quiet:.3f} (target >= 0.90)\n")
        print("| requests | served | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|")
        errors = 0
        for kind in sorted(load["stats"].latency):
            lat = load["stats"].latency[kind]
            errors += load["stats"].errors[kind]
            print(f"| {kind} | {len(lat)} | {1e3 * pct(lat, 0.5):.1f} | {1e3 * pct(lat, 0.99):.1f} | "
                  f"{load['stats'].errors[kind]} |")
        st = load["streams"]
        bad_streams = [s for s in st if not (s["status_ok"] and s["in_order"] and s["steps"] > 0)]
        print(f"| event streams | {len(st)} | | | {len(bad_streams)} |")
        print(f"\nevent streams: {min((s['steps'] for s in st), default=0)}..{max((s['steps'] for s in st), default=0)} "
              f"step events each, all in order: {not bad_streams}, dropped: {sum(s['dropped'] for s in st)}")
        for n in load["stats"].notes:
            print("  error:", n)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"runs": [{"name": n, "rate": r["rate"], "steps": r["steps"], "lock": r["lock"]} for n, r in runs],
                           "ratio": load["rate"] / quiet,
                           "requests": {k: {"served": len(v), "p50": pct(v, 0.5), "p99": pct(v, 0.99),
                                            "errors": load["stats"].errors[k]} for k, v in load["stats"].latency.items()},
                           "streams": st}, f, indent=1)
        try:
            api.call("POST", "/api/shutdown", {})
        except OSError:
            pass
        server.wait(30)
        if args.check and (errors or bad_streams):
            print(f"FAILED: {errors} request errors, {len(bad_streams)} bad event streams")
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())

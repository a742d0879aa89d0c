#!/usr/bin/env python3
"""Does a dashboard that stops reading slow training down?

Starts `mpirun -np 3 arceus serve` on a free loopback port and trains the same job several
times, alternating:
  quiet    no client at all;
  stalled  N clients open GET /api/jobs/<id>/events?since=0 with a 4 KiB receive buffer and never
           read (a browser tab frozen, a laptop that went to sleep), plus one client that reads
           every event (a dashboard that keeps up).
Each run's training time is the job's `seconds` (GET /api/jobs/<id>). It prints both medians, the
ratio stalled / quiet, the spread between the quiet runs (the noise), and how many events the
reading client got. The server's per-client queues are bounded (drop-oldest): the trainer never
waits on a client, so the ratio should sit within the noise.

    python3 bench/sse_clients.py [--clients 20] [--repeats 3] [--steps-per-epoch 256] [--json out.json]

Loopback only. Holds /tmp/arceus-measure.lock while it measures (nothing else should run).
"""
import argparse
import json
import socket
import statistics
import sys
import threading
import time
import urllib.request

from served import served



def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def stalled_client(port, job):
    """Opens the event stream, sends the request, never reads: the server's writes fill the
    socket buffers, then block that request's thread until its write timeout."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /api/jobs/{job}/events?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def reading_client(port, job, out):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /api/jobs/{job}/events?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    data = b""
    s.settimeout(120)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    out["steps"] = data.count(b"event: step\n")
    out["dropped"] = data.count(b"event: dropped\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20, help="stalled event-stream clients per stalled run")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each kind (alternating)")
    ap.add_argument("--steps-per-epoch", type=int, default=1024)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    with served("arceus-sse-bench.") as (port, work, server):
        batch = 64
        job = {"model_config": {"layer_sizes": [784, 512, 512, 10]},
               "dataset_config": {"name": "synthetic", "batch_size": batch,
                                  "synthetic": {"train_size": batch * args.steps_per_epoch, "val_size": 256,
                                                "features": 784, "classes": 10}},
               "training": {"epochs": 2, "micro_batches": 4, "schedule": "1f1b"},
               "output": {"checkpoint_every": 0}}
        results = {"quiet": [], "stalled": []}
        readers = []
        warm = call(port, "POST", "/api/jobs", job)["id"]  # the first job pays for start-up: not counted
        call(port, "POST", f"/api/network/initialize/{warm}", {})
        call(port, "POST", f"/api/network/train/{warm}", {})
        while call(port, "GET", f"/api/jobs/{warm}")["state"] not in ("completed", "failed", "stopped"):
            time.sleep(0.1)
        for r in range(args.repeats):
            for kind in ("quiet", "stalled"):
                jid = call(port, "POST", "/api/jobs", job)["id"]
                call(port, "POST", f"/api/network/initialize/{jid}", {})
                sockets, threads, got = [], [], {}
                if kind == "stalled":
                    sockets = [stalled_client(port, jid) for _ in range(args.clients)]
                    t = threading.Thread(target=reading_client, args=(port, jid, got))
                    t.start()
                    threads.append(t)
                    time.sleep(0.3)
                call(port, "POST", f"/api/network/train/{jid}", {})
                while True:
                    view = call(port, "GET", f"/api/jobs/{jid}")
                    if view["state"] in ("completed", "failed", "stopped"):
                        break
                    time.sleep(0.1)
                if view["state"] != "completed":
                    sys.exit(f"job {jid} {view['state']}: {view.get('error')}")
                for t in threads:
                    t.join(60)
                for s in sockets:
                    s.close()
                results[kind].append(view["seconds"])
                if kind == "stalled":
                    readers.append(got)
                print(f"run {r + 1} {kind:8s} job {jid}: {view['seconds']:.2f} s"
                      + (f"  (reading client: {got.get('steps')} step events, {got.get('dropped')} drops)"
                         if got else ""), flush=True)
        quiet, stalled = statistics.median(results["quiet"]), statistics.median(results["stalled"])
        spread = (max(results["quiet"]) - min(results["quiet"])) / quiet
        steps = 2 * args.steps_per_epoch
        print(f"\n{args.clients} stalled event-stream clients + 1 reading: median {stalled:.2f} s vs {quiet:.2f} s "
              f"without clients: ratio {stalled / quiet:.3f} (quiet runs' spread {100 * spread:.1f}%); "
              f"the reading client got {min(g.get('steps', 0) for g in readers)}..{max(g.get('steps', 0) for g in readers)}"
              f" of {steps} steps")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"clients": args.clients, "quiet_s": results["quiet"], "stalled_s": results["stalled"],
                           "ratio": stalled / quiet, "quiet_spread": spread, "reader": readers, "steps": steps}, f,
                          indent=1)
        try:
            call(port, "POST", "/api/shutdown", {})
        except OSError:
            pass
        server.wait(30)


if __name__ == "__main__":
    main()

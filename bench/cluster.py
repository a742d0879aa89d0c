#!/usr/bin/env python3
"""Cluster benchmark: does adding a machine make training faster, and what does the network cost?

Builds a simulated LAN with tests/netns/cluster (H hosts as network namespaces on a bridge, each
with its own host name, its own CPU share as a cpuset and/or a CPU quota, and a tbf-limited link
in both directions), runs arceus on it as a user with H laptops would (rank 0 and stage 1 on
host 1, `mpirun --hostfile`, `--threads auto`), and prints markdown tables, also written as JSON.

  scaling  for each model: H = 1, 2 hosts at 1 core each and H = 1..4 at 0.45 core each, links
           unlimited / 1gbit / 100mbit, schedules 1f1b and eager1f1b, 32- and 8-bit messages. Each row:
           the rate, the speed-up over one host with the same CPU share, the bound and the
           efficiency (measured / bound). The bound is the lower of
             compute: one host's rate x total work / the busiest stage's work (FLOPs per stage);
             link:    link rate / bytes per sample on the busiest link direction, counted from
                      the run's messages (summary.json step_links mapped onto hosts).
  replicas for each model: R x S on 2 hosts at 1 core, 2 and 4 at 0.45 core, each link, with 32- and
           8-bit gradient sums, inputs from rank 0 or read locally (dataset_config.feed): the rate,
           the speed-up over one host of the same CPU share, the bounds (the link's now with the
           ring's gradient bytes from step_links), the sync seconds per step, the accuracy.
  flush    link-bound cases with and without the per-step flush (training.pipeline_flush): rate,
           bound, efficiency, and the losses after the same steps (no flush updates one step late).
  bits     link-bound cases, each at 32, 16, 8 and 4 bits and 4 bits with error feedback: rate,
           MiB per step on the busiest link (counted from the messages), speed-up over 32 bits,
           and the validation accuracy and loss after the same steps.

    sudo python3 bench/cluster.py [--suite scaling,bits,replicas] [--models even,wide,gpt,default]
                                  [--rates unlimited,1gbit,100mbit] [--quick] [--out results.md]
                                  [--json results.json]

Needs root (namespaces, cgroups); everything is removed on exit, also on failure or Ctrl-C.
Speed is reported, never asserted. The runs take the machine's two cores: nothing else should
run meanwhile (the script holds /tmp/arceus-measure.lock and the netns lock).
"""
import argparse
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCEUS = os.path.join(ROOT, "build", "arceus")
CLUSTER = os.path.join(ROOT, "tests", "netns", "cluster")
AGENT = os.path.join(ROOT, "tests", "netns", "netns-agent")
SUBNET = "10.77.0"
RATES = {"unlimited": None, "1gbit": 1e9, "100mbit": 1e8}  # bits per second (tc: 1000-based)

# key: label, config, --set overrides, unit ("samples" or "tokens"), micro-batches
MODELS = {
    "even": dict(label="MLP [1024 x 13, 10] (12 equal hidden layers), batch 2048", config="configs/synthetic_mlp.yaml",
                 sets=["model_config.layer_sizes=[" + ",".join(["1024"] * 13 + ["10"]) + "]",
                       "dataset_config.synthetic={train_size: 40960, val_size: 512, features: 1024, classes: 10, noise: 2.0}",
                       "dataset_config.batch_size=2048", "dataset_config.val_batch_size=512",
                       "training.learning_rate=0.02"],
                 unit="samples", m=16),
    "wide": dict(label="wide MLP [784,4096,4096,4096,10], batch 256", config="configs/fashion_mnist_wide.yaml",
                 sets=["model_config.layer_sizes=[784,4096,4096,4096,10]", "dataset_config.max_val_samples=512",
                       "dataset_config.val_batch_size=512"],
                 unit="samples", m=8),
    "gpt": dict(label="GPT n_emb 128, 8 blocks, ctx 128, batch 64", config="configs/gpt_char.yaml",
                sets=["model_config.n_blocks=8", "output.sample_tokens=0", "dataset_config.max_val_samples=64",
                      "dataset_config.batch_size=64", "model_config.dropout=0"],
                unit="tokens", m=8),
    # the default job (scripts/demo): a small MLP, replicas' first case
    "default": dict(label="MLP [784,128,64,10] (the default job), batch 256", config="configs/fashion_mnist_mlp.yaml",
                    sets=["dataset_config.max_val_samples=2000"], unit="samples", m=4),
    # communication-heavy: one big boundary, little compute (the bits table)
    "shallow": dict(label="MLP [784,4096,10], batch 256", config="configs/fashion_mnist_wide.yaml",
                    sets=["model_config.layer_sizes=[784,4096,10]", "dataset_config.max_val_samples=2000",
                          "dataset_config.val_batch_size=500"],
                    unit="samples", m=4),
}
# 1f1b and the best one here: eager1f1b (its deeper warm-up lets transfers overlap with
# compute; zb1p and interleaved were measured below it on these links).
SCHEDULES = ["1f1b", "eager1f1b"]
# The hosts start with a clean environment (netns-agent, like ssh): every run, on one host or
# many, gets this machine's BLAS kernel choice, so that all rows compute with the same kernels.
MPI_EXTRA = os.environ.get("ARCEUS_BENCH_MCA", "").split()
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Cluster:
    """tests/netns/cluster up/down, with the hosts' veth counters."""

    def __init__(self, work):
        self.work = work
        self.hosts = 0
        self.env = dict(os.environ, ARCEUS_NETNS_PREFIX="arceus-h", ARCEUS_NETNS_SUBNET=SUBNET,
                        ARCEUS_NETNS_TMP=os.path.join(work, "tmp"))

    def up(self, hosts, rate, cores):
        # cores 1: host k gets CPU (k-1) % 2 alone; a fraction: hosts share CPUs in pairs
        # (1,2 on CPU 0; 3,4 on CPU 1), each limited to the fraction.
        ncpu = len(os.sched_getaffinity(0))
        if cores >= 1:
            cpus = [str(k % ncpu) for k in range(hosts)]
        else:
            per = max(1, int(1 / cores))
            cpus = [str((k // per) % ncpu) for k in range(hosts)]
        cmd = [CLUSTER, "up", "--hosts", str(hosts), "--cpus", ",".join(cpus)]
        if cores < 1:
            cmd += ["--quota", str(cores)]
        if rate != "unlimited":
            cmd += ["--rate", rate]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        if proc.returncode == 77:
            sys.exit(f"SKIPPED: {proc.stderr.strip()}")
        if proc.returncode != 0:
            raise RuntimeError(f"cluster up failed: {proc.stderr}")
        self.hosts = hosts
        with open(os.path.join(self.work, "hostfile"), "w") as f:
            for h in range(1, hosts + 1):
                f.write(f"{SUBNET}.{h} slots={2 if h == 1 else 1}\n")

    def down(self):
        subprocess.run([CLUSTER, "down"], env=self.env, capture_output=True)
        self.hosts = 0

    def counters(self):
        out = {}
        for h in range(1, self.hosts + 1):
            rx, tx = subprocess.run([CLUSTER, "counters", str(h)], env=self.env, capture_output=True,
                                    text=True, check=True).stdout.split()
            out[f"arceus-h{h}"] = (int(rx), int(tx))
        return out

    def run_on_host1(self, command, timeout):
        return subprocess.run([AGENT, f"{SUBNET}.1", command], env=self.env, capture_output=True, text=True,
                              timeout=timeout)


def train_args(model, steps, schedule, bits, out, extra=(), m_override=None):
    m = MODELS[model]
    args = [ARCEUS, "train", os.path.join(ROOT, m["config"]), "--quiet", "--threads", "auto"]
    sets = m["sets"] + [f"training.epochs=2", f"training.max_steps={steps}", f"training.schedule={schedule}",
                        f"training.micro_batches={m_override or m['m']}", "partition.method=balanced",
                        f"communication.quantization_bits={bits}", "output.metrics=false",
                        "output.checkpoint_every=0", f"output.dir={out}"] + list(extra)
    if model == "gpt":
        sets.append(f"dataset_config.windows_per_epoch={steps * 64}")
    for s in sets:
        args += ["--set", s]
    return args


def run(cluster, model, hosts, steps, schedule, bits, extra=(), timeout=900, m_override=None):
    """One training run (2 epochs of `steps`; epoch 2 is measured) on hosts 1..hosts."""
    out = tempfile.mkdtemp(prefix="run-", dir=cluster.work)
    args = train_args(model, steps, schedule, bits, out, extra, m_override)
    if hosts > 1:
        mpi = ["mpirun", "--allow-run-as-root", "--hostfile", os.path.join(cluster.work, "hostfile"),
               "-np", str(hosts + 1), "--mca", "plm_rsh_agent", AGENT, "--mca", "plm_rsh_no_tree_spawn", "1",
               "--mca", "btl", "tcp,vader,self", "--mca", "btl_tcp_if_include", f"{SUBNET}.0/24",
               "--mca", "oob_tcp_if_include", f"{SUBNET}.0/24"] + MPI_EXTRA
        for v in BLAS_ENV:
            if os.environ.get(v):
                mpi += ["-x", f"{v}={os.environ[v]}"]
        args = mpi + args
    else:
        args = ["env"] + [f"{v}={os.environ[v]}" for v in BLAS_ENV if os.environ.get(v)] + args
    before = cluster.counters()
    t0 = time.time()
    proc = cluster.run_on_host1(" ".join(shlex.quote(a) for a in args), timeout)
    wall = time.time() - t0
    after = cluster.counters()
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({' '.join(args)}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    s["_veth"] = {h: (after[h][0] - before[h][0], after[h][1] - before[h][1]) for h in after}
    s["_wall"] = wall
    subprocess.run(["rm", "-rf", out])
    return s


def rate_of(s, unit):
    e = s["epochs"][-1]
    return e["tokens_per_second" if unit == "tokens" else "samples_per_second"]


def busiest_link(s):
    """(bytes per training step on the busiest host link direction, its name), from step_links."""
    host = {r["rank"]: r["host"] for r in s["ranks"]}
    load = {}
    for l in s.get("step_links", []):
        a, b = host[l["from"]], host[l["to"]]
        if a == b:
            continue
        load[f"{a} up"] = load.get(f"{a} up", 0) + l["bytes_wire"]
        load[f"{b} down"] = load.get(f"{b} down", 0) + l["bytes_wire"]
    if not load:
        return 0.0, "-"
    name = max(load, key=load.get)
    return load[name], name


def stage_work(s):
    e = s["epochs"][-1]
    return [t["flops"] for t in sorted((t for t in e["timing"] if t["stage"] >= 1), key=lambda t: t["stage"])]


def per_unit(s, unit):
    """Samples (or tokens) per training step."""
    e = s["epochs"][-1]
    n = e["train_samples"] / max(1, e["steps"])
    return n * (128 if unit == "tokens" else 1)


def bounds(s, unit, one_host_rate, rate_name):
    work = stage_work(s)
    compute = one_host_rate * sum(work) / max(work) if work and max(work) > 0 else one_host_rate
    link = float("inf")
    step_bytes, name = busiest_link(s)
    if RATES[rate_name] and step_bytes > 0:
        link = (RATES[rate_name] / 8) / (step_bytes / per_unit(s, unit))
    return compute, link, name, step_bytes


def fmt_rate(x):
    return "-" if x == float("inf") else f"{x:,.0f}"


def scaling_suite(args, cluster, results):
    lines = ["| model | hosts x CPU | link | schedule | bits | rate | speed-up vs 1 host | compute bound | "
             "link bound | bound | efficiency | busiest stage busy % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fraction_hosts = [4] if args.quick else [int(h) for h in args.fraction_hosts.split(",")]
    shares = [(1.0, [2]), (0.45, fraction_hosts)]
    shares = [(c, h) for c, h in shares if f"{c:g}" in args.shares.split(",")]
    for model in args.models:
        m = MODELS[model]
        unit = m["unit"]
        steps = args.gpt_steps if model == "gpt" else args.steps
        for cores, host_counts in shares:
            share = f"{cores:g} core"
            cluster.up(1, "unlimited", cores)
            one = run(cluster, model, 1, steps, "1f1b", 32)
            cluster.down()
            one_rate = rate_of(one, unit)
            log(f"  {model} 1 host x {share}: {one_rate:,.0f} {unit}/s")
            lines.append(f"| {m['label']} | 1 x {share} | - | (one process) | - | {one_rate:,.0f} {unit}/s | 1.00x | "
                         f"- | - | - | - | - |")
            results.append(dict(suite="scaling", model=model, hosts=1, cores=cores, link="-", schedule="-", bits=32,
                                rate=one_rate, unit=unit, speedup=1.0))
            for hosts in host_counts:
                for rate_name in args.rates:
                    cluster.up(hosts, rate_name, cores)
                    try:
                        for schedule in SCHEDULES:
                            for bits in (32, 8):
                                s = run(cluster, model, hosts, steps, schedule, bits)
                                r = rate_of(s, unit)
                                compute, link, name, step_bytes = bounds(s, unit, one_rate, rate_name)
                                bound = min(compute, link)
                                limit = "link " + name if link < compute else "compute"
                                e = s["epochs"][-1]
                                busy = max(t["train_busy_fraction"] for t in e["timing"] if t["stage"] >= 1)
                                log(f"  {model} {hosts} x {share} {rate_name:9s} {schedule:5s} {bits:2d} bits: "
                                    f"{r:,.0f} {unit}/s ({r / one_rate:.2f}x), bound {bound:,.0f} ({limit}), "
                                    f"efficiency {r / bound:.2f}")
                                lines.append(f"| {m['label']} | {hosts} x {share} | {rate_name} | {schedule} | {bits} | "
                                             f"{r:,.0f} {unit}/s | {r / one_rate:.2f}x | {fmt_rate(compute)} | "
                                             f"{fmt_rate(link)} | {bound:,.0f} ({limit}) | {100 * r / bound:.0f}% | "
                                             f"{100 * busy:.0f} |")
                                results.append(dict(suite="scaling", model=model, hosts=hosts, cores=cores,
                                                    link=rate_name, schedule=schedule, bits=bits, rate=r, unit=unit,
                                                    speedup=r / one_rate, compute_bound=compute,
                                                    link_bound=None if link == float("inf") else link,
                                                    bound=bound, limit=limit, efficiency=r / bound,
                                                    busiest_link_bytes_per_step=step_bytes,
                                                    bubble_measured=e["bubble_measured"],
                                                    bubble_simulated=e["bubble_simulated"],
                                                    busiest_stage_busy=busy, veth=s["_veth"]))
                    finally:
                        cluster.down()
    return lines


LAYERS = {"default": 3, "wide": 4, "shallow": 2}  # partitionable layers where fewer than 4

# Replicas x stages on each cluster: (R, S, gradient bits, feed). A one-stage replica runs M=1
# (micro-batches only shrink its products when nothing overlaps them); a pipeline the model's M.
# "diloco": training.sync diloco with diloco.inner_steps = DILOCO_H (8-bit pseudo-gradients).
DILOCO_H = 20
REPLICA_CONFIGS = {
    2: [(1, 2, 32, "rank0"), (2, 1, 32, "rank0"), (2, 1, 32, "local"), (2, 1, 8, "local"), (2, 1, "diloco", "local")],
    4: [(1, 4, 32, "rank0"), (1, 3, 32, "rank0"), (4, 1, 32, "rank0"), (4, 1, 32, "local"), (4, 1, 8, "local"),
        (2, 2, 32, "local"), (2, 2, 8, "local"), (4, 1, "diloco", "local")],
}


def replicas_suite(args, cluster, results):
    lines = ["| model | hosts x CPU | link | R x S | gradient sums | feed | rate | speed-up vs 1 host | compute bound | "
             "link bound | bound | efficiency | sync s per step | val accuracy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    # 2 hosts at 1 core, 2 and 4 at 0.45 core; --shares and --fraction-hosts pick among them
    clusters = [(1.0, 2), (0.45, 2), (0.45, 4)]
    fraction_hosts = {int(h) for h in args.fraction_hosts.split(",")}
    clusters = [(c, h) for c, h in clusters
                if f"{c:g}" in args.shares.split(",") and (c == 1.0 or h in fraction_hosts)]
    for model in args.models:
        m = MODELS[model]
        unit = m["unit"]
        steps = args.gpt_steps if model == "gpt" else (args.default_steps if model == "default" else args.steps)
        one_rate = {}
        for cores in sorted({c for c, _ in clusters}):
            cluster.up(1, "unlimited", cores)
            one = run(cluster, model, 1, steps, "1f1b", 32)
            cluster.down()
            one_rate[cores] = rate_of(one, unit)
            log(f"  replicas {model} 1 host x {cores:g} core: {one_rate[cores]:,.0f} {unit}/s")
            lines.append(f"| {m['label']} | 1 x {cores:g} core | - | (one process) | - | - | {one_rate[cores]:,.0f} {unit}/s | "
                         f"1.00x | - | - | - | - | - | - |")
            results.append(dict(suite="replicas", model=model, hosts=1, cores=cores, rate=one_rate[cores], unit=unit,
                                speedup=1.0))
        for cores, hosts in clusters:
            for rate_name in args.rates:
                cluster.up(hosts, rate_name, cores)
                try:
                    seen = set()
                    for R, S, gbits, feed in REPLICA_CONFIGS[hosts]:
                        if R * S > hosts or S > LAYERS.get(model, 99) or (S == 3 and LAYERS.get(model, 99) >= 4):
                            continue  # more stages than the model has layers (3 only where 4 do not fit)
                        if model == "gpt":
                            feed = "-"  # text: rank 0 sends token ids, and the key does not apply
                            if (R, S, gbits) in seen:
                                continue
                        seen.add((R, S, gbits))
                        extra = [f"partition.replicas={R}", f"partition.stages={S}"]
                        if feed != "-":
                            extra.append(f"dataset_config.feed={feed}")
                        if gbits == "diloco":
                            extra += ["training.sync=diloco", f"diloco.inner_steps={DILOCO_H}", "diloco.bits=8"]
                        else:
                            extra.append(f"communication.gradient_bits={gbits}")
                        s = run(cluster, model, hosts, steps, "eager1f1b" if S > 1 else "1f1b", 8, extra=extra,
                                m_override=1 if S == 1 else None)
                        r = rate_of(s, unit)
                        compute, link, name, step_bytes = bounds(s, unit, one_rate[cores], rate_name)
                        bound = min(compute, link)
                        limit = "link " + name if link < compute else "compute"
                        e = s["epochs"][-1]
                        sync = max((t.get("sync_s", 0) for t in e["timing"] if t["stage"] >= 1), default=0) / max(1, e["steps"])
                        acc = s["final"]["val_accuracy"]
                        log(f"  replicas {model} {hosts} x {cores:g} {rate_name:9s} {R}x{S} g{gbits} {feed:5s}: "
                            f"{r:,.0f} {unit}/s ({r / one_rate[cores]:.2f}x), bound {bound:,.0f} ({limit}), "
                            f"efficiency {r / bound:.2f}")
                        lines.append(f"| {m['label']} | {hosts} x {cores:g} core | {rate_name} | {R} x {S} | {gbits} | {feed} | "
                                     f"{r:,.0f} {unit}/s | {r / one_rate[cores]:.2f}x | {fmt_rate(compute)} | "
                                     f"{fmt_rate(link)} | {bound:,.0f} ({limit}) | {100 * r / bound:.0f}% | "
                                     f"{1000 * sync:.1f} ms | {100 * acc:.2f}% |")
                        results.append(dict(suite="replicas", model=model, hosts=hosts, cores=cores, link=rate_name,
                                            replicas=R, stages=S, gradient_bits=gbits, feed=feed, rate=r, unit=unit,
                                            speedup=r / one_rate[cores], compute_bound=compute,
                                            link_bound=None if link == float("inf") else link, bound=bound,
                                            limit=limit, efficiency=r / bound, busiest_link_bytes_per_step=step_bytes,
                                            sync_s_per_step=sync, val_accuracy=acc, veth=s["_veth"]))
                finally:
                    cluster.down()
    return lines


BITS_CASES = [
    # model, hosts, cores, link
    ("wide", 2, 1.0, "100mbit"),
    ("shallow", 2, 1.0, "100mbit"),
    ("shallow", 2, 1.0, "1gbit"),
]


# The flush suite's clusters per model: (CPU share per host, host counts); --fraction-hosts
# overrides the host counts of the 0.45-core ones.
FLUSH_CASES = {"even": (0.45, [4]), "wide": (0.45, [4]), "gpt": (0.45, [4]), "default": (0.45, [2, 4]),
               "shallow": (1.0, [2])}


def flush_suite(args, cluster, results):
    """Each model on its FLUSH_CASES cluster, each link, 1f1b and eager1f1b at 32 bits, with the flush at
    every step (the default) and without (training.pipeline_flush false)."""
    lines = ["| model | hosts x CPU | link | schedule | flush | rate | compute bound | link bound | bound | efficiency "
             "| vs flush | train loss | val loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in args.models:
        cores, host_counts = FLUSH_CASES[model]
        if cores < 1 and args.fraction_hosts_given:
            host_counts = [int(h) for h in args.fraction_hosts.split(",")]
        share = f"{cores:g} core"
        m = MODELS[model]
        unit = m["unit"]
        steps = args.gpt_steps if model == "gpt" else args.steps
        extra0 = ["training.grad_clip=0"] if model == "gpt" else []  # clipping needs the flush
        if args.one_host_rate:
            one_rate = args.one_host_rate  # measured before, on this machine
        else:
            cluster.up(1, "unlimited", cores)
            one_rate = rate_of(run(cluster, model, 1, steps, "1f1b", 32, extra=extra0), unit)
            cluster.down()
        log(f"  {model} 1 host x {share}: {one_rate:,.0f} {unit}/s")
        for hosts in host_counts:
            for rate_name in args.rates:
                cluster.up(hosts, rate_name, cores)
                try:
                    for schedule in SCHEDULES:
                        flushed = None
                        for flush in (True, False):
                            extra = extra0 + [f"training.pipeline_flush={'true' if flush else 'false'}"]
                            s = run(cluster, model, hosts, steps, schedule, 32, extra=extra)
                            r = rate_of(s, unit)
                            compute, link, name, step_bytes = bounds(s, unit, one_rate, rate_name)
                            bound = min(compute, link)
                            limit = "link " + name if link < compute else "compute"
                            e = s["epochs"][-1]
                            flushed = flushed or r
                            log(f"  {model} {hosts} x {share} {rate_name:9s} {schedule:9s} flush {flush!s:5s}: "
                                f"{r:,.0f} {unit}/s, bound {bound:,.0f} ({limit}), efficiency {r / bound:.2f}, "
                                f"val loss {e['val_loss']:.4f}")
                            lines.append(f"| {m['label']} | {hosts} x {share} | {rate_name} | {schedule} | "
                                         f"{'yes' if flush else 'no'} | {r:,.0f} {unit}/s | {fmt_rate(compute)} | "
                                         f"{fmt_rate(link)} | {bound:,.0f} ({limit}) | {100 * r / bound:.0f}% | "
                                         f"{r / flushed:.2f}x | {e['train_loss']:.4f} | {e['val_loss']:.4f} |")
                            results.append(dict(suite="flush", model=model, hosts=hosts, cores=cores, link=rate_name,
                                                schedule=schedule, flush=flush, rate=r, unit=unit,
                                                compute_bound=compute,
                                                link_bound=None if link == float("inf") else link, bound=bound,
                                                limit=limit, efficiency=r / bound, train_loss=e["train_loss"],
                                                val_loss=e["val_loss"], val_accuracy=e["val_accuracy"],
                                                busiest_link_bytes_per_step=step_bytes, veth=s["_veth"],
                                                stage_busy=[t["train_busy_fraction"] for t in e["timing"] if t["stage"] >= 1],
                                                stage_cpu=[t["cpu_s"] / max(t["wall_s"], 1e-9)
                                                           for t in e["timing"] if t["stage"] >= 1]))
                finally:
                    cluster.down()
    return lines


def bits_suite(args, cluster, results):
    lines = ["| model | hosts x CPU | link | bits | rate | busiest link MiB/step | speed-up vs 32 bits | "
             "link bound | efficiency | val accuracy | val loss |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, hosts, cores, rate_name in BITS_CASES:
        m = MODELS[model]
        unit = m["unit"]
        cluster.up(hosts, rate_name, cores)
        try:
            base = None
            for bits, ef in ((32, False), (16, False), (8, False), (4, False), (4, True)):
                extra = ["training.epochs=1"] + (["communication.error_feedback=true"] if ef else [])
                s = run(cluster, model, hosts, args.bits_steps, args.bits_schedule, bits, extra=extra)
                r = rate_of(s, unit)
                step_bytes, name = busiest_link(s)
                link = (RATES[rate_name] / 8) / (step_bytes / per_unit(s, unit))
                steps = sum(e["steps"] for e in s["epochs"])
                veth = max(max(rx, tx) for rx, tx in s["_veth"].values()) / steps  # all traffic: validation and the final checkpoint too
                base = base or r
                f = s["final"]
                log(f"  bits {model} {hosts} x {cores:g} {rate_name} {bits:2d}: {r:,.0f} {unit}/s ({r / base:.2f}x), "
                    f"link bound {link:,.0f}, acc {100 * f['val_accuracy']:.2f}%")
                name = f"{bits} + error feedback" if ef else str(bits)
                lines.append(f"| {m['label']} | {hosts} x {cores:g} core | {rate_name} | {name} | {r:,.0f} {unit}/s | "
                             f"{step_bytes / 2**20:.2f} | {r / base:.2f}x | {link:,.0f} | "
                             f"{100 * r / link:.0f}% | {100 * f['val_accuracy']:.2f}% | {f['val_loss']:.4f} |")
                results.append(dict(suite="bits", model=model, hosts=hosts, cores=cores, link=rate_name, bits=bits,
                                    error_feedback=ef, schedule=args.bits_schedule,
                                    rate=r, unit=unit, speedup_vs_32=r / base, link_bound=link,
                                    efficiency=r / link, busiest_link_mib_per_step=step_bytes / 2**20,
                                    veth_mib_per_step_all_traffic=veth / 2**20, steps=steps,
                                    val_accuracy=f["val_accuracy"], val_loss=f["val_loss"]))
        finally:
            cluster.down()
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="scaling,bits", help="comma-separated: scaling, bits, replicas, flush")
    ap.add_argument("--models", default="even,wide,gpt", help="scaling models: even, wide, gpt")
    ap.add_argument("--rates", default="unlimited,1gbit,100mbit", help="links: unlimited, 1gbit, 100mbit")
    ap.add_argument("--steps", type=int, default=6, help="MLP training steps per measured epoch")
    ap.add_argument("--gpt-steps", type=int, default=6, help="GPT training steps per measured epoch")
    ap.add_argument("--default-steps", type=int, default=60, help="the default MLP's steps per measured epoch")
    ap.add_argument("--bits-steps", type=int, default=60, help="training steps of each bits-table run")
    ap.add_argument("--bits-schedule", default="eager1f1b", help="schedule of the bits-table runs")
    ap.add_argument("--quick", action="store_true", help="hosts 2 x 1 core and 4 x 0.45 core only")
    ap.add_argument("--shares", default="1,0.45", help="CPU shares per host to run: 1 (hosts 1, 2), 0.45 (hosts 1..4)")
    ap.add_argument("--fraction-hosts", default="2,3,4", help="host counts at 0.45 core (besides the one-host row)")
    ap.add_argument("--one-host-rate", type=float, default=0,
                    help="flush suite: the one-host rate measured before (skips that run)")
    ap.add_argument("--out", help="also write the tables (markdown) to this file")
    ap.add_argument("--json", help="write every row as JSON to this file")
    args = ap.parse_args()
    args.fraction_hosts_given = "--fraction-hosts" in sys.argv
    args.models = [m for m in args.models.split(",") if m]
    args.rates = [r for r in args.rates.split(",") if r]
    for m in args.models:
        if m not in MODELS:
            sys.exit(f"--models: unknown model '{m}' (expected one of {', '.join(MODELS)})")
    for r in args.rates:
        if r not in RATES:
            sys.exit(f"--rates: unknown link '{r}' (expected one of {', '.join(RATES)})")
    suites = [s for s in args.suite.split(",") if s]
    for s in suites:
        if s not in ("scaling", "bits", "replicas", "flush"):
            sys.exit(f"--suite: unknown suite '{s}' (expected scaling, bits, replicas, flush)")
    if os.geteuid() != 0:
        sys.exit("SKIPPED: needs root (network namespaces, cgroups)")
    if not os.access(ARCEUS, os.X_OK):
        sys.exit(f"{ARCEUS} not found: build first (scripts/build)")

    locks = []
    for path in ("/run/lock/arceus-netns.lock" if os.path.isdir("/run/lock") else "/tmp/arceus-netns.lock",
                 "/tmp/arceus-measure.lock"):
        f = open(path, "w")
        fcntl.flock(f, fcntl.LOCK_EX)
        locks.append(f)
    work = tempfile.mkdtemp(prefix="arceus-cluster-")
    cluster = Cluster(work)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    results = []
    blas = {v: os.environ[v] for v in BLAS_ENV if os.environ.get(v)}
    header = [f"Cluster benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores "
              f"({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}), "
              f"MLP {args.steps} / GPT {args.gpt_steps} measured steps (epoch 2 of 2), --threads auto, "
              f"BLAS environment {blas or 'arceus default'}", ""]
    tables = []
    try:
        cluster.down()
        if "scaling" in suites:
            tables += ["### Scaling", ""] + scaling_suite(args, cluster, results) + [""]
        if "replicas" in suites:
            tables += ["### Replicas x stages", ""] + replicas_suite(args, cluster, results) + [""]
        if "flush" in suites:
            tables += ["### Without the flush", ""] + flush_suite(args, cluster, results) + [""]
        if "bits" in suites:
            tables += [f"### Bits ({args.bits_steps} steps, {args.bits_schedule})", ""] + bits_suite(args, cluster, results) + [""]
    finally:
        cluster.down()
        subprocess.run(["rm", "-rf", work])
    text = "\n".join(header + tables)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": header[0], "rows": results}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the seed inputs of tests/fuzz/corpus/<target>/ (seed-* files; regression-* files are
the crashes the fuzzers found, kept by hand). Deterministic; run it again after a format change.

    tests/fuzz/seed_corpus.py [--checkpoint PATH]...

Seeds: the shipped configs (configs/*.yaml, tests/configs/*.yaml) for `config` (also with --set
overrides) and `rest_body` (as YAML bodies, docs/rest-api.md's JSON bodies, train and predict bodies);
IDX files for `idx` (tiny hand-made ones, and the headers and first items of Debian's
Fashion-MNIST, raw and gzip'd); wire messages for `wire` (a header and a payload encoded at each
bit width as ranks/codec.h lays it out, with the spec of what the receiver expects); and the
checkpoints given with --checkpoint for `checkpoint` (e.g. the one of
`build/arceus train tests/configs/e2e_synthetic.yaml --set training.epochs=1 --set output.dir=DIR`).
"""
import argparse
import glob
import gzip
import math
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
FASHION = "/usr/share/datasets/fashion-mnist"


def write(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def shipped_configs():
    paths = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")) + glob.glob(os.path.join(ROOT, "tests", "configs", "*.yaml")))
    return [(os.path.splitext(os.path.basename(p))[0], open(p, "rb").read()) for p in paths]


def config_and_rest():
    for name, text in shipped_configs():
        write("config", name, text)
        write("rest_body", "yaml-" + name, b"\x01" + text)
    write("config", "sets", b"training: {epochs: 2}\0training.schedule=interleaved\0partition.chunks_per_rank=2"
                            b"\0model_config.layer_sizes=[16, 8, 4]\0partition.layers=[[0], [1]]")
    write("config", "transformer-sets", b"model_config: {type: transformer}\ndataset_config: {source: t.txt}"
                                        b"\0model_config.n_blocks=1\0dataset_config.windows_per_epoch=64")
    jobs = {
        "json-fashion": '{"model_config":{"layer_sizes":[784,128,64,10]},"dataset_config":{"name":"FashionMNIST",'
                        '"batch_size":256,"val_batch_size":1000,"normalize":{"mean":[0.2860],"std":[0.3530]}}}',
        "json-gpt": '{"model_config":{"type":"transformer"},"dataset_config":{"source":"/usr/share/common-licenses/GPL-3"}}',
        "json-synthetic": '{"model_config":{"layer_sizes":[32,48,10]},"dataset_config":{"name":"synthetic","batch_size":64,'
                          '"synthetic":{"train_size":1024,"val_size":256,"features":32,"classes":10}},"training":{"momentum":0.9}}',
    }
    # output.dir against fuzz_rest_body's sandbox root (a relative dir is also joined to it):
    # inside, through the symlinks in it, and out by '..' after a directory not made yet.
    for name, out in (("inside", "in/run"), ("new", "new/job-1"), ("in-link", "in-link/run"),
                      ("up-back", "up/root/in/run"), ("symlink-out", "out/run"), ("deep", "deep/run"),
                      ("new-dotdot-out", "new/../out/run"), ("dotdot", "../outside/run"), ("loop", "loop/run")):
        jobs["json-output-" + name] = ('{"model_config":{"layer_sizes":[4,2]},"dataset_config":{"name":"synthetic",'
                                       '"synthetic":{"features":4,"classes":2}},"output":{"dir":"%s"}}' % out)
    for name, body in jobs.items():
        write("rest_body", name, b"\x00" + body.encode())
    write("rest_body", "train", b"\x02" + b'{"epochs": 10, "learning_rate": 0.1}')
    write("rest_body", "train-empty", b"\x02")
    rows = ", ".join("[" + ", ".join("0.5" for _ in range(28)) + "]" for _ in range(28))
    write("rest_body", "predict-pixels", b"\x03" + ('{"pixels": [' + rows + ']}').encode())
    write("rest_body", "predict-features", b"\x09" + b'{"pixels": [0.25, -1.5, 3]}')  # (9 / 6) % 3 = 1: 3 features
    write("rest_body", "register", b"\x04" + b'{"ip": "10.0.0.9", "port": 5001, "job_id": "1"}')
    write("rest_body", "generate", b"\x05" + b'{"prompt": "hel", "tokens": 30, "temperature": 0.7, "seed": 5}')


def idx(dims, data):
    return struct.pack(">BBBB", 0, 0, 8, len(dims)) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def idx_seeds():
    write("idx", "labels", idx([5], [0, 1, 2, 3, 9]))
    write("idx", "images", idx([3, 4, 4], range(48)))
    write("idx", "images-gz", gzip.compress(idx([2, 3, 3], range(18)), mtime=0))
    for kind, per_item, items in (("images", 28 * 28, 2), ("labels", 1, 16)):
        path = os.path.join(FASHION, "t10k-%s-idx%d-ubyte.gz" % (kind, 3 if kind == "images" else 1))
        if not os.path.exists(path):
            continue
        with gzip.open(path) as f:
            head = f.read(16 if kind == "images" else 8)
            body = f.read(per_item * items)
        # The same header with the item count cut to what is kept.
        ndims = head[3]
        dims = list(struct.unpack(">%dI" % ndims, head[4:4 + 4 * ndims]))
        dims[0] = items
        data = idx(dims, body)
        write("idx", "fashion-" + kind, data)
        write("idx", "fashion-%s-gz" % kind, gzip.compress(data, mtime=0))


# --- wire: ranks/wire.h's 40-byte header and ranks/codec.h's encodings --------------------------
MAGIC, VERSION = 0x41524345, 3
BITS_INDEX = {0: 0, 32: 1, 16: 2, 8: 3, 4: 4}  # fuzz_wire.cpp's spec byte 1


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def encode(m, bits):
    if bits == 32:
        return b"".join(struct.pack("<f", x) for row in m for x in row)
    if bits == 16:  # bfloat16, round to nearest even
        out = b""
        for row in m:
            for x in row:
                u = struct.unpack("<I", struct.pack("<f", x))[0]
                out += struct.pack("<H", ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
        return out
    qmax = (1 << (bits - 1)) - 1
    scales, values = b"", b""
    for row in m:
        s = f32(max(abs(x) for x in row) / qmax)
        scales += struct.pack("<f", s)
        q = [0 if s == 0 else max(-qmax, min(qmax, int(math.copysign(math.floor(abs(x / s) + 0.5), x)))) for x in row]
        if bits == 8:
            values += bytes(v & 0xFF for v in q)
        else:
            q += [0] * (len(q) % 2)
            values += bytes((q[i] & 0xF) | ((q[i + 1] & 0xF) << 4) for i in range(0, len(q), 2))
    return scales + values


def wire_seeds():
    m = [[0.5 * r - 0.25 * c + 0.125 for c in range(5)] for r in range(3)]  # [3, 5]
    for kind, bits in ((2, 8), (4, 32), (4, 16), (5, 8), (5, 4)):  # input, activations, gradients
        payload = encode(m, bits)
        spec = bytes([kind - 1, BITS_INDEX[bits], 3, 5, 7, 0, 1, 0])  # step 7, micro-batch 1, chunk 0
        header = struct.pack("<IHHIHBBqqQ", MAGIC, VERSION, kind, 7, 1, bits, 0, 3, 5, len(payload))
        write("wire", "kind%d-bits%d" % (kind, bits), spec + header + payload)
    labels = struct.pack("<3i", 1, 0, 9)  # Labels: raw int32, rows x 1
    spec = bytes([3 - 1, 0, 3, 1, 7, 0, 1, 0])
    write("wire", "labels", spec + struct.pack("<IHHIHBBqqQ", MAGIC, VERSION, 3, 7, 1, 0, 0, 3, 1, 12) + labels)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", action="append", default=[], help="a checkpoint.h5 to seed the checkpoint target with")
    args = ap.parse_args()
    config_and_rest()
    idx_seeds()
    wire_seeds()
    for i, path in enumerate(args.checkpoint):
        os.makedirs(os.path.join(CORPUS, "checkpoint"), exist_ok=True)
        shutil.copyfile(path, os.path.join(CORPUS, "checkpoint", "seed-checkpoint-%d.h5" % i))


if __name__ == "__main__":
    main()

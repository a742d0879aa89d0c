"""`mpirun -np 3 arceus serve` on a free loopback port, for the benches of the shim
(sse_clients.py, serve_load.py): holds /tmp/arceus-measure.lock, waits for /healthz, and ends
the server's whole process group on exit, also on failure."""
import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCEUS = os.path.join(ROOT, "build", "arceus")
MPIRUN = os.path.join(ROOT, "scripts", "mpirun")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(prefix):
    """Yields (port, work directory, server process)."""
    if not os.access(ARCEUS, os.X_OK):
        sys.exit(f"no {ARCEUS}: run scripts/build first")
    lock = open("/tmp/arceus-measure.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    work = tempfile.mkdtemp(prefix=prefix)
    port = free_port()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen([MPIRUN, "-np", "3", ARCEUS, "serve", "--port", str(port), "--quiet"], cwd=work,
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        t0 = time.time()
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
                break
            except OSError:
                if time.time() - t0 > 60 or server.poll() is not None:
                    sys.exit(f"the server did not come up: see {log.name}")
                time.sleep(0.2)
        yield port, work, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        lock.close()

"""What TLS costs the one task's Redis: its own CPU time per request and per new connection, and its memory
per open connection, with the shipped entrypoint (REDIS_TLS=on, a certificate the deploy's code signs) against
the same entrypoint serving plaintext.

Why CPU time and not throughput: the one task has 0.5 vCPU for web, streaming, Sidekiq, Postgres and Redis
together, and this machine is shared; the CPU seconds redis-server itself spends (utime + stime, /proc) for a
fixed load do not depend on what else runs. Loads: Mastodon's clients keep their connections open (pools of
redis-client, ioredis), so the steady load reuses connections; the connect load opens one per request (a
one-off task, a restarted container). Figures are medians of ROUNDS runs.

Needs redis-server, redis-benchmark (scripts/ensure-redis.sh) and root (the entrypoint drops to `redis`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mastofargate import tlscert
from mastofargate.stack import entrypoints

PASSWORD = "Zx9pQw7RtY2uIo4PaS6dFg8HjK1lMn3B"
ROUNDS = 5
STEADY = ["-c", "20", "-n", "50000", "-t", "ping,set,get,lpush,rpop,zadd"]  # 6 x 50,000 requests
STEADY_REQUESTS = 6 * 50000
CONNECTS = 2000
IDLE_CONNECTIONS = 60  # about what the one task holds: Puma threads, Sidekiq threads, streaming, the sidecar


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis(tls: bool, cert: str, key: str) -> Iterator[tuple[int, int]]:
    """(port, redis-server pid) of the entrypoint as the task runs it."""
    base = Path(tempfile.mkdtemp(prefix="mf-bench-redis-", dir="/tmp"))
    base.chmod(0o755)
    data, tmp = base / "data", base / "tmp"
    user = pwd.getpwnam("redis")
    for d in (data, tmp):
        d.mkdir()
        os.chown(d, user.pw_uid, user.pw_gid)
    port = _free_port()
    env = {
        "PATH": os.environ["PATH"],
        "REDIS_DIR": str(data),
        "TMPDIR": str(tmp),
        "REDIS_PORT": str(port),
        "REDIS_MAXMEMORY_MB": "256",
        "REDIS_PASSWORD": PASSWORD,
        "REDIS_TLS": "on" if tls else "off",
        "REDIS_TLS_CERT": cert,
        "REDIS_TLS_KEY": key,
    }
    proc = subprocess.Popen(
        ["bash", "-c", entrypoints.script(entrypoints.REDIS), "mastofargate-redis"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        args = ["redis-cli", "-p", str(port), *(["--tls", "--insecure"] if tls else [])]
        for _ in range(300):
            out = subprocess.run([*args, "ping"], capture_output=True, text=True, env={"REDISCLI_AUTH": PASSWORD})
            if out.stdout.strip() == "PONG":
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("Redis did not start")
        yield port, proc.pid  # the entrypoint execs redis-server: same pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def _benchmark(port: int, tls: bool, *extra: str) -> None:
    tls_args = ["--tls", "--insecure"] if tls else []
    subprocess.run(
        ["redis-benchmark", "-p", str(port), "-a", PASSWORD, *tls_args, "-q", *extra],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _idle_connections(port: int, tls: bool, count: int) -> list[socket.socket]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    socks = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port))
        s = context.wrap_socket(raw) if tls else raw
        s.sendall(f"AUTH {PASSWORD}\r\nPING\r\n".encode())
        got = b""
        while b"PONG" not in got:
            got += s.recv(100)
        socks.append(s)
    return socks


def measure(tls: bool, cert: str, key: str) -> dict[str, float]:
    with redis(tls, cert, key) as (port, pid):
        before = _cpu_seconds(pid)
        _benchmark(port, tls, *STEADY)
        steady = _cpu_seconds(pid) - before
        before = _cpu_seconds(pid)
        _benchmark(port, tls, "-c", "1", "-k", "0", "-n", str(CONNECTS), "-t", "ping")
        connects = _cpu_seconds(pid) - before
        rss = _rss_kib(pid)
        socks = _idle_connections(port, tls, IDLE_CONNECTIONS)
        time.sleep(0.5)
        per_conn = (_rss_kib(pid) - rss) / IDLE_CONNECTIONS
        for s in socks:
            s.close()
    return {
        "us_per_request": steady / STEADY_REQUESTS * 1e6,
        "ms_per_connection": connects / CONNECTS * 1e3,
        "kib_per_connection": per_conn,
    }


def main() -> int:
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            print(f"skipped: {tool} is missing (scripts/ensure-redis.sh)")
            return 0
    if os.geteuid() != 0:
        print("skipped: needs root (the entrypoint switches to the redis user)")
        return 0
    ca, ca_key = tlscert.make_ca("bench Redis CA")
    cert, key = tlscert.issue_server(ca, ca_key, "redis.bench.internal")
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for tls in (False, True):  # interleaved: drifting load on a shared machine hits both alike
            runs[tls].append(measure(tls, cert, key))
    print(f"Redis CPU and memory, plaintext vs TLS (median of {ROUNDS}; redis-server's own utime+stime):")
    for metric in ("us_per_request", "ms_per_connection", "kib_per_connection"):
        plain = statistics.median(r[metric] for r in runs[False])
        tls_ = statistics.median(r[metric] for r in runs[True])
        print(f"  {metric:20s} plaintext {plain:8.2f}   TLS {tls_:8.2f}   (x{tls_ / plain if plain else 0:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

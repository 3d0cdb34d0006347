"""Run the direct edge's Caddy container, exactly as the task definition states it, in a private network and
mount namespace (started by tests/test_direct_edge.py through `unshare --net --mount --fork`, as root).

What is real: Debian's Caddy binary, the container's EntryPoint, Command, Environment (the JSON config) and
health check command, the ports (80, 443: a fresh network namespace has them free), the storage path
/data/caddy (a bind mount standing in for the EFS access point) and name resolution through /etc/hosts (the
Cloud Map name `streaming.<name>.internal` resolves to the streaming stand-in's loopback address, as the
private namespace would resolve it to the streaming task). What stands in: the container's filesystem is a
chroot of this machine's /usr and /etc (Caddy's image is Alpine; the command uses only sh, printf, wget and
caddy), and Puma/streaming are the echoing stand-ins of tests/test_caddy_edge.py.

Input: a JSON spec file (container, storage dir, ca file, streaming address; for a draining container the
drain and grace seconds). Output: one JSON line of observations on stdout, which the test asserts on.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mastofargate.lambdas import cert_watch
from tests.test_caddy_edge import WS_GUID, StandIn

HOST = "social.example.org"


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def standin(name: str, address: str, port: int) -> ThreadingHTTPServer:
    handler = type(f"StandIn_{name}", (StandIn,), {"name": name})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    server.bodies = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def container_root(work: Path, storage: Path, hosts: Path) -> Path:
    """A root for the container: this machine's /usr and /etc read-only, its own /tmp, /data on `storage`."""
    root = work / "root"
    for d in ("usr", "etc", "tmp", "data", "dev", "proc"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path(f"/{link}").is_symlink():
            (root / link).symlink_to(os.readlink(f"/{link}"))
    sh("mount", "--rbind", "/usr", str(root / "usr"))
    sh("mount", "--rbind", "/etc", str(root / "etc"))
    sh("mount", "--bind", str(hosts), str(root / "etc" / "hosts"))
    sh("mount", "--rbind", "/dev", str(root / "dev"))
    sh("mount", "-t", "proc", "proc", str(root / "proc"))
    sh("mount", "--bind", str(storage), str(root / "data"))
    (root / "tmp").chmod(0o1777)
    return root


def request(ctx: ssl.SSLContext | None, port: int, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = socket.create_connection(("127.0.0.1", port), 10)
    sock = ctx.wrap_socket(raw, server_hostname=HOST) if ctx else raw
    conn = http.client.HTTPConnection(HOST, timeout=10)
    conn.sock = sock
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    out: dict[str, Any] = {"status": resp.status, "location": resp.getheader("Location")}
    try:
        out["echo"] = json.loads(body)
    except ValueError:
        out["body"] = body[:200].decode(errors="replace")
    return out


def websocket(ctx: ssl.SSLContext) -> bool:
    key = base64.b64encode(os.urandom(16)).decode()
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", 443), 10), server_hostname=HOST) as s:
        s.sendall(
            (
                f"GET /api/v1/streaming?stream=user HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                return False
            head += chunk
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        return head.startswith(b"HTTP/1.1 101") and accept.encode() in head


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    container = spec["container"]
    sh("ip", "link", "set", "lo", "up")
    work = Path(tempfile.mkdtemp(prefix="caddy-netns-"))
    hosts = work / "hosts"
    # The namespace's view of DNS: the site (for the certificate check, as a visitor resolves it) and the
    # streaming service's Cloud Map name, on loopback addresses of this private network.
    hosts.write_text(f"127.0.0.1 localhost {HOST}\n{spec['streaming_address']} {spec['streaming_name']}\n")
    sh("mount", "--bind", str(hosts), "/etc/hosts")
    root = container_root(work, Path(spec["storage"]), hosts)
    web = standin("web", "127.0.0.1", 3000)
    streaming = standin("streaming", spec["streaming_address"], 4000)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp"}
    env |= {e["Name"]: e["Value"] for e in container.get("Environment", [])}
    log = (work / "caddy.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        ["chroot", str(root), *container["EntryPoint"], *container["Command"]], env=env, stdout=log, stderr=log
    )
    health_cmd = container["HealthCheck"]["Command"]
    assert health_cmd[0] == "CMD-SHELL"
    out: dict[str, Any] = {"healthy": False}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            check = subprocess.run(["chroot", str(root), "/bin/sh", "-c", health_cmd[1]], env=env, capture_output=True)
            if check.returncode == 0:
                out["healthy"] = True
                out["healthy_after_s"] = round(time.monotonic() - started, 2)
                break
            time.sleep(0.2)
        out["exited"] = proc.poll()
        out["redirect"] = request(None, 80, "/@alice?x=1")
        ctx = ssl.create_default_context(cafile=spec["ca_file"])
        try:
            out["web"] = request(ctx, 443, "/api/v1/instance", {"X-Forwarded-For": "6.6.6.6"})
            out["streaming"] = request(ctx, 443, "/api/v1/streaming/health")
            out["websocket"] = websocket(ctx)
            out["https"] = True
        except (OSError, ssl.SSLError) as e:
            out["https"] = False
            out["https_error"] = f"{type(e).__name__}: {e}"
        os.environ["SSL_CERT_FILE"] = spec["ca_file"]  # the trust store the certificate watch verifies with
        out["days_left"] = cert_watch.days_left(HOST)
        os.environ["SSL_CERT_FILE"] = str(work / "no-such-ca.pem")  # a trust store without our local CA
        out["days_left_untrusted"] = cert_watch.days_left(HOST)
        status = Path(f"/proc/{proc.pid}/status")
        if status.exists():
            rss = [line for line in status.read_text().splitlines() if line.startswith("VmRSS")]
            out["rss_kib"] = int(rss[0].split()[1]) if rss else None
        out["config_file_mode"] = oct((root / "tmp" / "caddy.json").stat().st_mode & 0o777)
    finally:
        drain = spec.get("drain_seconds")
        stop_at = time.monotonic()
        proc.terminate()  # ECS's SIGTERM (tini in the task hands it to the container's command, as here)
        if drain and proc.poll() is None:
            # A draining front task: it keeps serving HTTPS for the drain, then stops within its grace.
            ctx = ssl.create_default_context(cafile=spec["ca_file"])
            answers = []
            while time.monotonic() - stop_at < drain - 0.5:
                try:
                    answers.append(request(ctx, 443, "/api/v1/instance")["status"])
                except (OSError, ssl.SSLError) as e:
                    answers.append(f"{type(e).__name__}: {e}")
                time.sleep(0.25)
            out["answers_during_drain"] = answers
        try:
            proc.wait(timeout=10 + (drain or 0) + spec.get("grace_seconds", 0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out["stopped_after_s"] = round(time.monotonic() - stop_at, 2)
        out["exit_code_after_sigterm"] = proc.returncode
        log.close()
        web.shutdown()
        streaming.shutdown()
        out["log"] = [
            json.loads(line) for line in (work / "caddy.log").read_text().splitlines() if line.startswith("{")
        ]
        out["storage_files"] = sorted(
            str(p.relative_to(spec["storage"])) for p in Path(spec["storage"]).rglob("*") if p.is_file()
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])

"""The direct edge: a real Caddy (Debian's 2.6) runs the generated configuration in front of stand-ins.

The stand-in upstreams are small Python HTTP servers on loopback (Puma and the streaming server cannot run
here): they answer with what they received (path, Host, X-Forwarded-For/-Proto, body size), and the
streaming stand-in accepts a WebSocket upgrade and then echoes bytes. Caddy's internal CA (a real option
of the generator, `ca=INTERNAL`) stands in for Let's Encrypt, which this machine cannot reach; everything
else is the configuration as generated. The client connects from 127.0.0.2 so that the forwarded address
is visibly the client's, not Caddy's (127.0.0.1).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mastofargate.errors import UsageError
from mastofargate.stack.caddy import (
    INTERNAL,
    LETSENCRYPT,
    MASTODON_MAX_UPLOAD,
    MAX_REQUEST_BODY,
    MIB,
    Upstreams,
    caddy_config,
    caddy_json,
)
from tests.conftest import make_config
from tests.services_support import REPO, ensure, free_port, wait_for

HOST = "social.example.org"
CLIENT_ADDRESS = "127.0.0.2"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class StandIn(BaseHTTPRequestHandler):
    """Echoes the request as JSON; upgrades WebSockets (then echoes raw bytes until the client closes)."""

    protocol_version = "HTTP/1.1"
    server_version = "standin"
    name = "?"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self) -> None:
        if self.headers.get("Upgrade", "").lower() == "websocket":
            accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest())
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept.decode())
            self.end_headers()
            self.wfile.flush()
            while chunk := self.connection.recv(65536):
                self.connection.sendall(chunk)
            self.close_connection = True
            return
        received = 0
        length = int(self.headers.get("Content-Length") or 0)
        try:
            while received < length:
                chunk = self.rfile.read(min(1 << 20, length - received))
                if not chunk:
                    break
                received += len(chunk)
        except OSError:
            pass
        self.server.bodies.append(received)  # type: ignore[attr-defined]
        body = json.dumps(
            {
                "upstream": self.name,
                "path": self.path,
                "host": self.headers.get("Host"),
                "xff": self.headers.get_all("X-Forwarded-For"),
                "proto": self.headers.get("X-Forwarded-Proto"),
                "received": received,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the edge may have hung up (an oversized upload)
            self.wfile.write(body)

    do_GET = do_POST = _answer


def _standin(name: str) -> tuple[ThreadingHTTPServer, int]:
    handler = type(f"StandIn_{name}", (StandIn,), {"name": name})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.bodies = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@dataclass
class Edge:
    http_port: int
    https_port: int
    web: ThreadingHTTPServer
    tls: ssl.SSLContext

    def connect(self, port: int | None = None, *, tls: bool = True, timeout: float = 30) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", port or self.https_port), timeout, (CLIENT_ADDRESS, 0))
        return self.tls.wrap_socket(raw, server_hostname=HOST) if tls else raw

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(HOST, timeout=60)
        conn.sock = self.connect()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), data


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    caddy = ensure("caddy", "ensure-caddy.sh")
    web, web_port = _standin("web")
    streaming, streaming_port = _standin("streaming")
    work = tmp_path_factory.mktemp("caddy")
    http_port, https_port = free_port(), free_port()
    text = caddy_json(
        make_config(),
        upstreams=Upstreams(web=f"127.0.0.1:{web_port}", streaming=f"127.0.0.1:{streaming_port}"),
        storage_dir=str(work / "storage"),
        ca=INTERNAL,
        http_port=http_port,
        https_port=https_port,
    )
    (work / "caddy.json").write_text(text)
    log = (work / "caddy.log").open("wb")
    env = {**os.environ, "HOME": str(work), "XDG_DATA_HOME": str(work / "xdg"), "XDG_CONFIG_HOME": str(work)}
    proc = subprocess.Popen(
        [caddy, "run", "--config", str(work / "caddy.json")], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    root = work / "storage" / "pki" / "authorities" / "local" / "root.crt"
    try:

        def serving() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"caddy exited {proc.returncode}:\n{(work / 'caddy.log').read_text()}", pytrace=False)
            if not root.exists():
                return False
            ctx = ssl.create_default_context(cafile=str(root))
            try:
                with (
                    socket.create_connection(("127.0.0.1", https_port), 2) as s,
                    ctx.wrap_socket(s, server_hostname=HOST),
                ):
                    return True
            except (OSError, ssl.SSLError):
                return False

        wait_for(serving, 60, "Caddy serving HTTPS with its certificate")
        yield Edge(http_port, https_port, web, ssl.create_default_context(cafile=str(root)))
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        web.shutdown()
        streaming.shutdown()


def test_both_streaming_paths_go_to_streaming_and_the_rest_to_puma(edge: Edge) -> None:
    for path, upstream in (
        ("/api/v1/streaming", "streaming"),
        ("/api/v1/streaming/health", "streaming"),
        ("/api/v1/streaming/user?stream=user", "streaming"),
        ("/api/v1/streamingx", "web"),
        ("/api/v1/timelines/home", "web"),
        ("/", "web"),
    ):
        status, _, body = edge.request("GET", path)
        assert status == 200, path
        seen = json.loads(body)
        assert (seen["upstream"], seen["path"]) == (upstream, path)


def test_client_address_and_scheme_are_forwarded_and_not_spoofable(edge: Edge) -> None:
    status, _, body = edge.request("GET", "/api/v1/instance", headers={"X-Forwarded-For": "6.6.6.6"})
    seen = json.loads(body)
    assert status == 200
    assert seen["xff"] == [CLIENT_ADDRESS], "the client's own address, and only it"
    assert seen["proto"] == "https"
    assert seen["host"] == HOST


def test_http_redirects_to_https(edge: Edge) -> None:
    conn = http.client.HTTPConnection(HOST, timeout=10)
    conn.sock = edge.connect(edge.http_port, tls=False)
    conn.request("GET", "/@alice?x=1")
    resp = conn.getresponse()
    resp.read()
    assert resp.status in (301, 308)
    # Caddy leaves its configured https_port out of the redirect (it is 443 in the task).
    assert resp.getheader("Location") == f"https://{HOST}/@alice?x=1"


def test_websocket_upgrade_reaches_streaming_and_stays_open(edge: Edge) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with edge.connect() as sock:
        sock.sendall(
            (
                f"GET /api/v1/streaming?stream=public HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        status_line, *header_lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
        assert status_line.split()[1] == "101", head
        expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert f"Sec-WebSocket-Accept: {expected}".lower() in (h.lower() for h in header_lines)
        # A masked text frame "hello" (RFC 6455 5.2); the stand-in echoes it through Caddy unchanged.
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | 5]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"hello"))
        for _ in range(3):  # several exchanges on the one connection
            sock.sendall(frame)
            echoed = b""
            while len(echoed) < len(frame):
                echoed += sock.recv(4096)
            assert echoed == frame


def test_the_largest_upload_passes_and_a_larger_one_is_refused(edge: Edge) -> None:
    assert MAX_REQUEST_BODY > MASTODON_MAX_UPLOAD  # room for the multipart framing around a 99 MB video
    edge.web.bodies.clear()  # type: ignore[attr-defined]
    status, _, body = edge.request("POST", "/api/v2/media", body=b"\0" * MAX_REQUEST_BODY)
    assert status == 200 and json.loads(body)["received"] == MAX_REQUEST_BODY

    edge.web.bodies.clear()  # type: ignore[attr-defined]
    # The edge answers as soon as it has the headers: send them, then a first MiB, then read.
    conn = http.client.HTTPConnection(HOST, timeout=60)
    conn.sock = edge.connect()
    conn.putrequest("POST", "/api/v2/media")
    conn.putheader("Content-Length", str(MAX_REQUEST_BODY + 1))
    conn.endheaders(b"\0" * MIB)
    status = conn.getresponse().status
    conn.close()
    assert status == 413, f"an oversized upload was answered {status}"
    assert edge.web.bodies == [], "Puma never sees an upload declared too large"  # type: ignore[attr-defined]

    # Without a Content-Length (chunked), the body is cut at the limit: refused, never passed on whole.
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_REQUEST_BODY // MIB + 1):
            yield b"\0" * MIB

    conn = http.client.HTTPConnection(HOST, timeout=60)
    conn.sock = edge.connect()
    try:
        conn.request("POST", "/api/v2/media", body=chunks(), encode_chunked=True)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):  # ssl.SSLError and ConnectionError are OSErrors
        status = 0  # the edge hung up on the oversized body: refused
    finally:
        conn.close()
    assert not 200 <= status < 300, f"an oversized chunked upload was answered {status}"
    assert all(n <= MAX_REQUEST_BODY for n in edge.web.bodies)  # type: ignore[attr-defined]


def test_certificates_come_from_lets_encrypt_and_live_on_efs_by_default() -> None:
    config = caddy_config(make_config())
    assert config["storage"] == {"module": "file_system", "root": "/data/caddy"}
    (policy,) = config["apps"]["tls"]["automation"]["policies"]
    assert policy["subjects"] == [HOST]
    assert policy["issuers"] == [{"module": "acme", "ca": LETSENCRYPT, "email": "admin@example.org"}]
    assert config["apps"]["http"]["http_port"] == 80 and config["apps"]["http"]["https_port"] == 443
    assert caddy_json(make_config()) == caddy_json(make_config()), "deterministic"
    server = config["apps"]["http"]["servers"]["mastodon"]
    assert not any(k.endswith("_timeout") for k in server), "no timeout may cut a long-lived streaming connection"
    streaming = server["routes"][0]["handle"][0]["routes"][0]
    assert streaming["match"] == [{"path": ["/api/v1/streaming", "/api/v1/streaming/*"]}]
    assert streaming["handle"][0]["flush_interval"] == -1, "server-sent events are never buffered"


def test_an_unusable_certificate_authority_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not usable"):
        caddy_config(make_config(), ca="http://insecure.example/directory")


def test_two_caddies_on_one_storage_share_one_certificate(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A front of several tasks: every task's Caddy runs the same configuration on the same storage (EFS in a
    task, one directory here), started together as a scale-out or a rolling deployment starts them. They
    coordinate through the storage (certmagic's lock files in `locks/`): exactly one obtains the certificate,
    the other loads it, and both serve the same one, so Let's Encrypt sees one order, not one per task.
    Stand-in: Caddy's internal CA for Let's Encrypt (the issuance lock and storage are the same code path)."""
    caddy = ensure("caddy", "ensure-caddy.sh")
    work = tmp_path_factory.mktemp("caddies")
    storage = work / "storage"
    procs: list[tuple[subprocess.Popen[bytes], int, Any]] = []
    try:
        for i in range(2):
            https_port = free_port()
            text = caddy_json(
                make_config(),
                storage_dir=str(storage),  # the same for both, as the front's EFS access point is
                ca=INTERNAL,
                http_port=free_port(),
                https_port=https_port,
                health_port=free_port(),
            )
            (work / f"caddy{i}.json").write_text(text)
            home = work / f"home{i}"  # each its own home: only `storage` is shared
            env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
            log = (work / f"caddy{i}.log").open("wb")
            proc = subprocess.Popen(
                [caddy, "run", "--config", str(work / f"caddy{i}.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            procs.append((proc, https_port, log))

        def served(port: int) -> bytes | None:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # compared, not trusted
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), 2) as s,
                    ctx.wrap_socket(s, server_hostname=HOST) as t,
                ):
                    return t.getpeercert(binary_form=True)
            except (OSError, ssl.SSLError):
                return None

        for proc, port, _ in procs:
            wait_for(lambda port=port, proc=proc: proc.poll() is None and served(port) is not None, 60, "HTTPS")
        first, second = (served(port) for _, port, _ in procs)
        assert first is not None and first == second, "both serve the one certificate"
    finally:
        for proc, _, log in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    logs = [
        [json.loads(line) for line in (work / f"caddy{i}.log").read_text().splitlines() if line.startswith("{")]
        for i in range(2)
    ]
    obtained = [i for i, log in enumerate(logs) for e in log if e.get("msg") == "certificate obtained successfully"]
    assert len(obtained) == 1, f"one order for the two tasks, not {len(obtained)}"
    certificates = sorted(p.name for p in (storage / "certificates").rglob("*.crt"))
    assert certificates == [f"{HOST}.crt"]
    assert (storage / "locks").is_dir(), "the issuance lock lives in the shared storage"
    assert not list((storage / "locks").iterdir()), "and is released once the certificate is stored"


def test_a_task_that_did_not_order_answers_the_acme_challenge(tmp_path: Path) -> None:
    """DNS publishes every front task, so Let's Encrypt's validation may reach a task other than the one that
    ordered the certificate. Real ACME end to end against a local ACME CA (tests/caddy_cluster.py): task A
    orders, the CA validates at task B (the only one on 80/443), B answers from the shared storage, and then
    loads A's certificate instead of ordering a second one."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("binding 80/443 and a private /etc/hosts need root (network and mount namespaces)")
    caddy = ensure("caddy", "ensure-caddy.sh")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"work": str(tmp_path), "caddy": caddy}))
    run = subprocess.run(
        ["unshare", "--net", "--mount", "--fork", sys.executable, "-m", "tests.caddy_cluster", str(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"the retried order completed {seen['stored_after_s']} s after A started")
    assert seen["ca_made"] and seen["a_locked_first"] and seen["b_waits"], seen
    assert seen["stored"] and seen["b_loaded"], seen
    assert seen["obtained"] == {"a": 1, "b": 0}, "one order for the two tasks"
    assert seen["challenges"] and set(seen["challenges"]) <= {"http-01", "tls-alpn-01"}, seen
    assert seen["b_answered"], f"the CA validated at task B, which answered A's {seen['challenges']} challenge"
    assert [c for c in seen["certificates"] if HOST in c] == [
        f"certificates/acme.test-9443-acme-local-directory/{HOST}/{HOST}.crt"
    ]

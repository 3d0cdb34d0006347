"""Verified TLS to a real Redis (Debian's redis-server 7, scripts/ensure-redis.sh) started by the shipped
entrypoint exactly as the Redis task's definition runs it (its environment and secrets' keys), with a
certificate the deploy's code signed with the server's CA.

Clients: Python's `redis` (ssl_ca_certs = the CA, check_hostname on), `openssl s_client
-verify_return_error`, `redis-cli` as the queue-metrics sidecar runs it, and Node's TLS (what ioredis uses)
started through the Mastodon containers' start wrapper. The Cloud Map name `redis.social.internal` is mapped
to 127.0.0.1 by each client (Python: its resolver, patched for that one name; openssl and Node: the server
name sent and checked, connecting to 127.0.0.1) - the only stand-in here: no DNS zone on this machine.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mastofargate import tlscert
from mastofargate.stack import build, cache, entrypoints, services
from mastofargate.stack.queue_metrics import SIDECAR_SCRIPT
from tests.conftest import make_config
from tests.services_support import ensure, free_port, wait_for

HOST = "redis.social.internal"
PASSWORD = "Zx9pQw7RtY2uIo4PaS6dFg8HjK1lMn3B"  # alphanumeric, as the deploy makes it (it sits in a URL)
SYSTEM_ROOTS = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass
class Pki:
    ca: str
    ca_key: str
    cert: str
    key: str
    dir: Path

    @property
    def ca_file(self) -> Path:
        path = self.dir / "ca.pem"
        path.write_text(self.ca)
        return path


@dataclass
class TlsRedis:
    port: int
    pki: Pki
    proc: subprocess.Popen[bytes]
    log: Path


def _task_environment() -> dict[str, str]:
    """The Redis container's plain environment as the template gives it."""
    for tpl in build(make_config(cache="task")).values():
        for res in tpl.to_dict()["Resources"].values():
            if res["Type"] != "AWS::ECS::TaskDefinition":
                continue
            for c in res["Properties"]["ContainerDefinitions"]:
                if c["Name"] == "redis":
                    return {e["Name"]: e["Value"] for e in c["Environment"]}
    raise AssertionError("no redis container")


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    base = Path(tempfile.mkdtemp(prefix="mf-redis-pki-"))
    ca, ca_key = tlscert.make_ca("social Redis CA")
    cert, key = tlscert.issue_server(ca, ca_key, HOST)
    yield Pki(ca, ca_key, cert, key, base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[TlsRedis]:
    """The entrypoint, started as root as ECS starts it, with the task's environment and the secrets' keys."""
    ensure("redis-server", "ensure-redis.sh")
    ensure("redis-cli", "ensure-redis.sh")
    base = Path(tempfile.mkdtemp(prefix="mf-redis-tls-", dir="/tmp"))
    base.chmod(0o755)
    data, tmp = base / "data", base / "tmp"  # tmp: the container's /tmp, where the key is written
    for d in (data, tmp):
        d.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam("redis")
            os.chown(d, user.pw_uid, user.pw_gid)
    port = free_port()
    env = {
        **_task_environment(),
        "PATH": os.environ["PATH"],
        "REDIS_DIR": str(data),
        "TMPDIR": str(tmp),
        "REDIS_PORT": str(port),
        "REDIS_MAXMEMORY_MB": "64",
        "REDIS_PASSWORD": PASSWORD,
        "REDIS_TLS_CERT": pki.cert,
        "REDIS_TLS_KEY": pki.key,
    }
    assert env["REDIS_TLS"] == "on"
    log = base / "redis.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["bash", "-c", entrypoints.script(entrypoints.REDIS), "mastofargate-redis"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = TlsRedis(port, pki, proc, log)

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"entrypoint exited {proc.returncode}:\n{log.read_text()}", pytrace=False)
        return _cli(running, "--tls", "--insecure", "ping").stdout.strip() == "PONG"

    wait_for(up, 30, "the TLS Redis answering")
    yield running
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def _cli(server: TlsRedis, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "REDISCLI_AUTH": PASSWORD, **(env or {})},
        check=False,
    )


@pytest.fixture
def name_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis.social.internal resolves to 127.0.0.1 in this process (what Cloud Map does in the VPC)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == HOST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _client(server: TlsRedis, **kwargs: Any) -> Any:
    import redis

    options: dict[str, Any] = {
        "host": HOST,
        "port": server.port,
        "password": PASSWORD,
        "ssl": True,
        "ssl_check_hostname": True,
        "ssl_cert_reqs": "required",
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    }
    options.update(kwargs)
    return redis.Redis(**options)


def test_a_client_with_the_ca_connects_by_the_certificates_name(server: TlsRedis, name_to_loopback: None) -> None:
    client = _client(server, ssl_ca_certs=str(server.pki.ca_file))
    assert client.ping() is True
    client.set("timeline:1", "kept")
    assert client.get("timeline:1") == b"kept"
    conn = client.connection_pool.get_connection()
    conn.connect()
    assert isinstance(conn._sock, ssl.SSLSocket) and conn._sock.version() in ("TLSv1.2", "TLSv1.3")
    assert conn._sock.getpeercert()["subjectAltName"] == (("DNS", HOST),)
    client.connection_pool.release(conn)
    client.close()


def test_the_url_form_mastodon_reads_works_too(server: TlsRedis, name_to_loopback: None) -> None:
    """REDIS_URL exactly as the deploy writes it (bootstrap.redis_url), TLS from the rediss:// scheme."""
    import redis

    from mastofargate.deploy.bootstrap import redis_url

    url = redis_url(PASSWORD, HOST).replace(":6379", f":{server.port}")
    client = redis.Redis.from_url(url, ssl_ca_certs=str(server.pki.ca_file), ssl_check_hostname=True)
    assert client.ping() is True
    client.close()


def test_clients_without_the_ca_or_with_another_name_are_refused(server: TlsRedis, name_to_loopback: None) -> None:
    import redis

    # the public roots only: what Mastodon would have without the wrapper
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        _client(server, ssl_ca_certs=str(SYSTEM_ROOTS)).ping()
    other_ca, _ = tlscert.make_ca("someone else's CA")
    other = server.pki.dir / "other-ca.pem"
    other.write_text(other_ca)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        _client(server, ssl_ca_certs=str(other)).ping()
    # the right CA, but the address instead of the certificate's name
    with pytest.raises(redis.ConnectionError, match=r"certificate verify failed|match"):
        _client(server, host="127.0.0.1", ssl_ca_certs=str(server.pki.ca_file)).ping()


def test_plaintext_is_refused(server: TlsRedis) -> None:
    import redis

    plain = redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD, socket_timeout=3)
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        plain.ping()
    assert _cli(server, "ping").stdout.strip() != "PONG"


def test_openssl_s_client_verifies_the_chain_and_the_name(server: TlsRedis) -> None:
    def s_client(ca: Path, name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", name,
                "-verify_hostname", name, "-verify_return_error", "-no-CApath", "-no-CAstore", "-CAfile", str(ca),
                "-brief",
            ],
            input="",
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )  # fmt: skip

    ok = s_client(server.pki.ca_file, HOST)
    assert ok.returncode == 0, ok.stderr
    assert "Verification: OK" in ok.stderr and "TLSv1.3" in ok.stderr
    assert s_client(SYSTEM_ROOTS, HOST).returncode != 0
    assert s_client(server.pki.ca_file, "redis.other.internal").returncode != 0


def test_the_queue_metrics_sidecar_verifies_with_the_ca_secret(server: TlsRedis) -> None:
    """The sidecar's script with REDIS_URL and REDIS_CA_CERT as the task definition passes them; a CA that
    did not sign the server gets no answer."""

    def first_line(ca_pem: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ["PATH"],
            "REDIS_URL": f"rediss://:{PASSWORD}@127.0.0.1:{server.port}",
            "REDIS_CA_CERT": ca_pem,
            "QUEUE_METRICS_LUA": "return 'metrics-line'",
            "QUEUE_METRICS": "[]",
            "METRICS_NAMESPACE": "x",
            "SERVER_NAME": "social",
        }
        script = SIDECAR_SCRIPT.replace("sleep 60 & wait $!", "exit 0")  # one round, then stop
        assert script != SIDECAR_SCRIPT
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)

    assert first_line(server.pki.ca).stdout.strip() == "metrics-line"
    refused = first_line(tlscert.make_ca("other")[0])
    assert "metrics-line" not in refused.stdout and "did not answer" in refused.stderr


# --- the Mastodon containers' start wrapper -----------------------------------------------------------


def _wrapper(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", entrypoints.script(cache.TRUST_SCRIPT), "mastofargate-ca", *command],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _certs(path: Path) -> list[str]:
    text = path.read_text()
    return [
        "-----BEGIN CERTIFICATE-----" + block.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        for block in text.split("-----BEGIN CERTIFICATE-----")[1:]
    ]


def _verify(ca_file: Path, cert: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    leaf = tmp / "leaf.pem"
    leaf.write_text(cert)
    return subprocess.run(
        # only the given file: without -no-CApath openssl also trusts the machine's /etc/ssl/certs
        ["openssl", "verify", "-no-CApath", "-no-CAstore", "-CAfile", str(ca_file), str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_wrapper_builds_a_bundle_trusting_the_ca_and_every_public_root(pki: Pki, tmp_path: Path) -> None:
    assert SYSTEM_ROOTS.exists(), "Debian's ca-certificates bundle, as in Mastodon's images"
    bundle, extra = tmp_path / "ca" / "bundle.pem", tmp_path / "ca" / "redis-ca.pem"
    done = _wrapper(
        {"REDIS_CA_CERT": pki.ca, "SSL_CERT_FILE": str(bundle), "NODE_EXTRA_CA_CERTS": str(extra)},
        "sh", "-c", 'echo "ran with ${REDIS_CA_CERT:-no CA variable}"; cat "$SSL_CERT_FILE" >/dev/null',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran with no CA variable"  # the command ran, the variable was unset
    public = _certs(SYSTEM_ROOTS)
    assert _certs(bundle) == [*public, pki.ca.strip() + "\n"] and _certs(extra) == [pki.ca.strip() + "\n"]
    ok = _verify(bundle, pki.cert, tmp_path)
    assert ok.returncode == 0, ok.stderr
    # public roots still verify through the bundle (federation, S3, SMTP); not through the CA alone
    for root in (public[0], public[len(public) // 2], public[-1]):
        assert _verify(bundle, root, tmp_path).returncode == 0
        assert _verify(extra, root, tmp_path).returncode != 0
    # Python's ssl (OpenSSL, as Ruby's) loads the bundle whole
    context = ssl.create_default_context(cafile=str(bundle))
    assert len(context.get_ca_certs()) == len(public) + 1


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SSL_CERT_FILE": "/tmp/x"}, "REDIS_CA_CERT is empty"),
        ({"REDIS_CA_CERT": "not a certificate", "SSL_CERT_FILE": "/tmp/x"}, "does not hold a PEM certificate"),
        ({"REDIS_CA_CERT": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"}, "neither SSL_CERT_FILE"),
    ],
)
def test_the_wrapper_refuses_to_start_a_process_that_could_not_reach_redis(
    env: dict[str, str], says: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    done = _wrapper(env, "touch", str(marker))
    assert done.returncode == 1 and says in done.stderr and not marker.exists()


def test_the_wrapper_refuses_an_image_without_public_roots(pki: Pki, tmp_path: Path) -> None:
    done = _wrapper(
        {
            "REDIS_CA_CERT": pki.ca,
            "SSL_CERT_FILE": str(tmp_path / "bundle.pem"),
            "MASTOFARGATE_PUBLIC_ROOTS": str(tmp_path / "missing.crt"),
        },
        "true",
    )
    assert done.returncode == 1 and "federation would stop" in done.stderr


def _node() -> str:
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed here (the streaming image's runtime)")
    return node


NODE_PROBE = """
const tls = require('tls');
const [port, name, password] = process.argv.slice(1);
const socket = tls.connect({ host: '127.0.0.1', port: Number(port), servername: name }, () => {
  socket.write(`AUTH ${password}\\r\\nPING\\r\\n`);
});
let got = '';
socket.on('data', (d) => { got += d; if (got.includes('PONG')) { console.log(got.trim()); socket.end(); } });
socket.on('error', (e) => { console.error(e.code || e.message); process.exit(3); });
"""


def test_node_started_through_the_wrapper_verifies_redis(server: TlsRedis, tmp_path: Path) -> None:
    """What the streaming server's ioredis does with rediss:// (tls.connect, Node's roots plus
    NODE_EXTRA_CA_CERTS, the name checked), as the streaming container starts."""
    node = _node()
    args = (node, "-e", NODE_PROBE, str(server.port))
    env = {"REDIS_CA_CERT": server.pki.ca, "NODE_EXTRA_CA_CERTS": str(tmp_path / "redis-ca.pem")}
    ok = _wrapper(env, *args, HOST, PASSWORD)
    assert ok.returncode == 0 and ok.stdout.split() == ["+OK", "+PONG"], ok.stderr
    unknown = subprocess.run([*args, HOST, PASSWORD], capture_output=True, text=True, timeout=30, check=False)
    assert unknown.returncode == 3 and "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in unknown.stderr
    wrong_name = _wrapper(env, *args, "redis.other.internal", PASSWORD)
    assert wrong_name.returncode == 3 and "ERR_TLS_CERT_ALTNAME_INVALID" in wrong_name.stderr


def test_the_template_entrypoint_and_environment_run_as_given(server: TlsRedis, tmp_path: Path) -> None:
    """The streaming container's EntryPoint and Environment exactly as in the template (its paths in /tmp),
    its command replaced by the probe."""
    node = _node()
    for tpl in build(make_config(cache="task")).values():
        for res in tpl.to_dict()["Resources"].values():
            if res["Type"] == "AWS::ECS::TaskDefinition":
                for c in res["Properties"]["ContainerDefinitions"]:
                    if c["Name"] == "streaming":
                        streaming = c
    assert streaming["EntryPoint"] == services.trust_entrypoint()
    env = {e["Name"]: e["Value"] for e in streaming["Environment"] if e["Name"] == "NODE_EXTRA_CA_CERTS"}
    try:
        done = subprocess.run(
            [*streaming["EntryPoint"], node, "-e", NODE_PROBE, str(server.port), HOST, PASSWORD],
            env={"PATH": os.environ["PATH"], "REDIS_CA_CERT": server.pki.ca, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0 and "+PONG" in done.stdout, done.stderr
        assert Path(cache.NODE_EXTRA).read_text().strip() == server.pki.ca.strip()
    finally:
        Path(cache.NODE_EXTRA).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(cache.CA_DIR).rmdir()


# What redis-client 0.30 (Mastodon 4.5's Gemfile.lock; REDIS_DRIVER=ruby) does for rediss:// with no
# ssl_params (Mastodon passes none: lib/mastodon/redis_configuration.rb gives only url and driver), as read in
# its lib/redis_client/ruby_connection.rb: SSLContext#set_params({}) (OpenSSL's DEFAULT_PARAMS: VERIFY_PEER,
# verify_hostname) with the default store, which OpenSSL fills from SSL_CERT_FILE; SSLSocket#hostname= the
# host; connect. Then one public root is checked against the same default store (federation).
RUBY_PROBE = """
require "socket"
require "openssl"
port, name, password, public_root = ARGV
begin
  context = OpenSSL::SSL::SSLContext.new
  context.set_params({})
  socket = OpenSSL::SSL::SSLSocket.new(Socket.tcp("127.0.0.1", Integer(port), connect_timeout: 5), context)
  socket.hostname = name
  socket.connect
rescue OpenSSL::SSL::SSLError => e
  warn e.message
  exit 3
end
socket.write("AUTH #{password}\\r\\nPING\\r\\n")
got = +""
got << socket.readpartial(100) until got.include?("PONG")
puts got.split.join(" ")
store = OpenSSL::X509::Store.new
store.set_default_paths
root = OpenSSL::X509::Certificate.new(File.read(public_root))
puts(store.verify(root) ? "public root trusted" : "public root NOT trusted")
"""


def test_ruby_started_through_the_wrapper_verifies_redis_and_keeps_the_public_roots(
    server: TlsRedis, tmp_path: Path
) -> None:
    ruby = ensure("ruby", "ensure-ruby.sh")
    root = tmp_path / "public-root.pem"
    root.write_text(_certs(SYSTEM_ROOTS)[0])
    args = (ruby, "-e", RUBY_PROBE, str(server.port))
    bundle = str(tmp_path / "bundle.pem")
    env = {"REDIS_CA_CERT": server.pki.ca, "SSL_CERT_FILE": bundle}
    ok = _wrapper(env, *args, HOST, PASSWORD, str(root))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ["+OK +PONG", "public root trusted"]
    # without the wrapper's bundle: the public roots only, and Redis' certificate is refused
    plain = subprocess.run([*args, HOST, PASSWORD, str(root)], capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == 3 and "certificate verify failed" in plain.stderr
    # with it, but another name than the certificate's: refused too (host-name check on)
    wrong = _wrapper(env, *args, "redis.other.internal", PASSWORD, str(root))
    assert wrong.returncode == 3 and "hostname" in wrong.stderr.lower(), wrong.stderr


def test_the_task_health_check_passes_against_the_tls_server(server: TlsRedis) -> None:
    """The Redis container's health check exactly as in the template (CMD-SHELL), its password from the
    environment (REDISCLI_AUTH), over TLS on loopback; a wrong password fails it."""
    for tpl in build(make_config(cache="task")).values():
        for res in tpl.to_dict()["Resources"].values():
            if res["Type"] == "AWS::ECS::TaskDefinition":
                for c in res["Properties"]["ContainerDefinitions"]:
                    if c["Name"] == "redis":
                        kind, command = c["HealthCheck"]["Command"]
    assert kind == "CMD-SHELL"

    def check(password: str) -> int:
        env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": password, "REDIS_PORT": str(server.port)}
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=30, check=False).returncode

    assert check(PASSWORD) == 0
    assert check("wrong") != 0

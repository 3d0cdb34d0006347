"""The one-task layout's Redis over verified TLS (issue 12), with real parts: Debian's redis-server started by
the shipped entrypoint with the one task's generated Redis environment and a certificate the deploy's code
issues for it (its Cloud Map name plus localhost and 127.0.0.1); Mastodon's clients started through the
containers' start wrapper with the template's EntryPoint and Environment:

- ioredis 5.11.1 (the streaming server's client, at the version Mastodon 4.5's yarn.lock pins; installed by
  scripts/ensure-ioredis.sh from the npm registry), given REDIS_URL exactly as the deploy writes it;
- Ruby's OpenSSL doing what redis-client 0.30 (REDIS_DRIVER=ruby) does for rediss:// (RUBY_PROBE in
  tests/test_redis_tls_live.py: the gem itself is on no registry this machine reaches);
- redis-cli as the queue-metrics sidecar runs it.

In-task processes connect to 127.0.0.1; one-off tasks by the task's Cloud Map name, `server.social.internal`,
which Node here resolves to 127.0.0.1 through a preloaded lookup for that one name (no DNS zone on this
machine: the only stand-in) and Ruby's probe sends and checks as the name while connecting to 127.0.0.1.
"From another host" is this machine's own non-loopback address: Redis must not answer plaintext there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastofargate import tlscert
from mastofargate.config import Config
from mastofargate.deploy.bootstrap import redis_url
from mastofargate.stack import build, cache, entrypoints
from mastofargate.stack.queue_metrics import SIDECAR_SCRIPT
from tests.conftest import make_config
from tests.services_support import REPO, ensure, free_port, wait_for
from tests.test_redis_tls_live import PASSWORD, RUBY_PROBE, SYSTEM_ROOTS, _certs

TASK_HOST = "server.social.internal"
NODE_MODULES = Path(os.environ.get("MASTOFARGATE_NODE_MODULES", "/opt/mastofargate-test/node")) / "node_modules"


def _config() -> Config:
    return make_config(cache="task", database="task", layout="one-task")


def _containers(title: str) -> dict[str, dict[str, Any]]:
    res = build(_config())["app"].to_dict()["Resources"][title]
    return {c["Name"]: c for c in res["Properties"]["ContainerDefinitions"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's plain environment; values CloudFormation fills in (imports: the media host) left out."""
    return {e["Name"]: e["Value"] for e in container.get("Environment", []) if isinstance(e["Value"], str)}


def _outside_address() -> str:
    """An address of this machine that is not loopback (what another task's connection arrives on)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
        s.connect(("192.0.2.123", 9))  # no packet is sent: only picks the outgoing interface
        address = str(s.getsockname()[0])
        if not address.startswith("127."):
            return address
    for address in socket.gethostbyname_ex(socket.gethostname())[2]:
        if not address.startswith("127."):
            return address
    pytest.skip("this machine has no non-loopback IPv4 address")


class Pki:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mf-redis-onetask-pki-"))
        self.ca, ca_key = tlscert.make_ca("social Redis CA")
        cfg = _config()
        # what deploy/redistls.py issues for this config
        self.cert, self.key = tlscert.issue_server(
            self.ca, ca_key, cache.task_host(cfg, "social"), extra_names=cache.certificate_names(cfg)
        )
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_text(self.ca)


class Server:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path, base: Path) -> None:
        self.port, self.proc, self.log, self.base = port, proc, log, base

    def stop(self, keep_data: bool = False) -> None:
        """SIGTERM, as ECS stops the container (Redis flushes its append-only file and exits)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=30)
        if not keep_data:
            shutil.rmtree(self.base, ignore_errors=True)


def _start(env_overrides: dict[str, str], tls_probe: bool, base: Path | None = None, port: int = 0) -> Server:
    """The entrypoint as ECS starts it (root), with the one task's Redis environment from the template; on
    the data directory of an earlier run when `base` is given (EFS, kept across tasks)."""
    ensure("redis-server", "ensure-redis.sh")
    ensure("redis-cli", "ensure-redis.sh")
    if os.geteuid() != 0:
        pytest.skip("the entrypoint is started as root (it drops to the redis user), as in the task")
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="mf-redis-onetask-", dir="/tmp"))
        base.chmod(0o755)
    data, tmp = base / "data", base / "tmp"
    user = pwd.getpwnam("redis")
    for d in (data, tmp):
        d.mkdir(exist_ok=True)
        os.chown(d, user.pw_uid, user.pw_gid)
    port = port or free_port()
    env = {
        **_env(_containers("ServerTaskDefinition")["redis"]),
        "PATH": os.environ["PATH"],
        "REDIS_DIR": str(data),
        "TMPDIR": str(tmp),
        "REDIS_PORT": str(port),
        "REDIS_PASSWORD": PASSWORD,
        **env_overrides,
    }
    log = base / "redis.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["bash", "-c", entrypoints.script(entrypoints.REDIS), "mastofargate-redis"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port, proc, log, base)
    tls = ["--tls", "--insecure"] if tls_probe else []

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"entrypoint exited {proc.returncode}:\n{log.read_text()}", pytrace=False)
        return _cli(port, *tls, "ping").stdout.strip() == "PONG"

    wait_for(up, 30, "Redis answering")
    return server


def _cli(port: int, *args: str, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-h", host, "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "REDISCLI_AUTH": PASSWORD},
        check=False,
    )


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    made = Pki()
    yield made
    shutil.rmtree(made.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(pki: Pki) -> Iterator[Server]:
    env = _env(_containers("ServerTaskDefinition")["redis"])
    assert env["REDIS_TLS"] == "on", "the one task's Redis serves TLS only"
    running = _start({"REDIS_TLS_CERT": pki.cert, "REDIS_TLS_KEY": pki.key}, tls_probe=True)
    yield running
    running.stop()


def _url(server: Server, host: str) -> str:
    """REDIS_URL as deploy/redistls.py writes it (bootstrap.redis_url), pointed at the test's port."""
    url = redis_url(PASSWORD, host)
    assert url.endswith(":6379")
    return url.removesuffix(":6379") + f":{server.port}"


# --- Node: ioredis, as the streaming server uses it ------------------------------------------------------

IOREDIS_PROBE = """
const { Redis } = require('ioredis');
const client = new Redis(process.env.REDIS_URL, { family: 0, maxRetriesPerRequest: 0, retryStrategy: () => null,
  lazyConnect: true, connectTimeout: 5000 });
let last = null;  // the socket's own error (a refused certificate); connect() then only says it closed
client.on('error', (e) => { last = e; });
client.connect()
  .then(() => client.set('timeline:1', 'kept'))
  .then(() => client.get('timeline:1'))
  .then((v) => { console.log(`got ${v} over ${client.stream.getProtocol ? client.stream.getProtocol() : 'plain'}`);
                 return client.quit(); })
  .catch((e) => { const why = last || e; console.error(why.code || why.message); process.exit(3); });
"""

# The one stand-in: the task's Cloud Map name resolves to 127.0.0.1 in this Node process only.
RESOLVE_TASK_NAME = """
const dns = require('dns');
const lookup = dns.lookup;
dns.lookup = function (host, options, callback) {
  const names = (process.env.MF_LOOPBACK_NAMES || '').split(',');
  return lookup.call(this, names.includes(host) ? '127.0.0.1' : host, options, callback);
};
"""


def _node_env() -> tuple[str, dict[str, str]]:
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed here (the streaming image's runtime)")
    if not (NODE_MODULES / "ioredis" / "package.json").exists():
        if os.geteuid() == 0:
            subprocess.run(["bash", str(REPO / "scripts" / "ensure-ioredis.sh")], check=False, timeout=600)
        if not (NODE_MODULES / "ioredis" / "package.json").exists():
            message = "ioredis is missing: run 'sudo bash scripts/ensure-ioredis.sh'"
            if os.environ.get("CI"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    version = json.loads((NODE_MODULES / "ioredis" / "package.json").read_text())["version"]
    assert version == "5.11.1", f"ioredis {version}: the tests pin Mastodon 4.5's 5.11.1"
    return node, {"NODE_PATH": str(NODE_MODULES)}


def _ioredis(
    server: Server, pki: Pki, url: str, *, wrapper: bool, names: str = TASK_HOST
) -> subprocess.CompletedProcess[str]:
    node, node_env = _node_env()
    streaming = _containers("ServerTaskDefinition")["streaming"]
    preload = server.base / "resolve.js"
    preload.write_text(RESOLVE_TASK_NAME)
    command = [node, "-r", str(preload), "-e", IOREDIS_PROBE]
    env = {"PATH": os.environ["PATH"], **node_env, "REDIS_URL": url, "MF_LOOPBACK_NAMES": names}
    if wrapper:  # the container's EntryPoint and Environment as in the template; the CA as its secret gives it
        command = [*streaming["EntryPoint"], *command]
        env |= {**_env(streaming), "REDIS_CA_CERT": pki.ca}
    try:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    finally:
        if wrapper:
            Path(cache.NODE_EXTRA).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(cache.CA_DIR).rmdir()


def test_ioredis_in_the_task_verifies_redis_on_loopback(server: Server, pki: Pki) -> None:
    ok = _ioredis(server, pki, _url(server, cache.LOOPBACK_HOST), wrapper=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() in ("got kept over TLSv1.3", "got kept over TLSv1.2"), ok.stdout
    # without the wrapper's CA file: Node's own roots only, and the certificate is refused
    refused = _ioredis(server, pki, _url(server, cache.LOOPBACK_HOST), wrapper=False)
    assert refused.returncode == 3 and "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in refused.stderr, refused.stderr


def test_ioredis_elsewhere_verifies_the_tasks_name_and_refuses_another(server: Server, pki: Pki) -> None:
    ok = _ioredis(server, pki, _url(server, TASK_HOST), wrapper=True)
    assert ok.returncode == 0 and "got kept" in ok.stdout, ok.stderr
    other = "redis.other.internal"
    wrong = _ioredis(server, pki, _url(server, other), wrapper=True, names=other)
    assert wrong.returncode == 3 and "ERR_TLS_CERT_ALTNAME_INVALID" in wrong.stderr, wrong.stderr


def test_ioredis_cannot_speak_plaintext_to_it(server: Server, pki: Pki) -> None:
    plain = _ioredis(server, pki, _url(server, cache.LOOPBACK_HOST).replace("rediss://", "redis://"), wrapper=True)
    assert plain.returncode == 3 and "got kept" not in plain.stdout


# --- Ruby: what redis-client does for rediss:// -----------------------------------------------------------


def _ruby(pki: Pki, port: int, name: str, *, connect_to: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    ruby = ensure("ruby", "ensure-ruby.sh")
    web = _containers("ServerTaskDefinition")["web"]
    root = pki.dir / "public-root.pem"
    root.write_text(_certs(SYSTEM_ROOTS)[0])
    probe = RUBY_PROBE.replace('Socket.tcp("127.0.0.1"', f'Socket.tcp("{connect_to}"')
    env = {"PATH": os.environ["PATH"], **_env(web), "REDIS_CA_CERT": pki.ca}
    try:
        return subprocess.run(
            [*web["EntryPoint"], ruby, "-e", probe, str(port), name, PASSWORD, str(root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        Path(cache.RUBY_BUNDLE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(cache.CA_DIR).rmdir()


def test_ruby_in_the_task_and_in_one_off_tasks_verifies_redis(server: Server, pki: Pki) -> None:
    """web/Sidekiq connect to 127.0.0.1 (checked against the IP SAN), one-off tasks by the task's name; a
    client reaching the task by its VPC address (no SAN) is refused: only names the certificate holds work."""
    for name in (cache.LOOPBACK_HOST, TASK_HOST):
        ok = _ruby(pki, server.port, name)
        assert ok.returncode == 0 and ok.stdout.splitlines() == ["+OK +PONG", "public root trusted"], (name, ok.stderr)
    outside = _outside_address()
    wrong = _ruby(pki, server.port, outside, connect_to=outside)
    assert wrong.returncode == 3 and "hostname" in wrong.stderr.lower(), wrong.stderr


# --- what reaches Redis from outside the task -------------------------------------------------------------


def test_plaintext_from_another_address_gets_nothing_and_tls_there_works(server: Server, pki: Pki) -> None:
    outside = _outside_address()
    assert _cli(server.port, "ping", host=outside).stdout.strip() != "PONG"
    with socket.create_connection((outside, server.port), timeout=5) as raw:
        raw.sendall(f"AUTH {PASSWORD}\r\nPING\r\n".encode())
        raw.settimeout(3)
        got = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := raw.recv(100):
                got += chunk
        assert b"PONG" not in got and b"+OK" not in got
    verified = _cli(server.port, "--tls", "--cacert", str(pki.ca_file), "--sni", TASK_HOST, "ping", host=outside)
    assert verified.stdout.strip() == "PONG", verified.stderr


def test_without_tls_the_entrypoint_listens_on_loopback_only() -> None:
    """REDIS_TLS=off (hand runs; no template sets it): plaintext, but nothing but loopback may connect."""
    running = _start({"REDIS_TLS": "off"}, tls_probe=False)
    try:
        assert _cli(running.port, "ping").stdout.strip() == "PONG"
        with pytest.raises(OSError):
            socket.create_connection((_outside_address(), running.port), timeout=5).close()
    finally:
        running.stop()


# --- the task's other Redis clients ---------------------------------------------------------------------


def test_the_sidecar_and_the_health_check_work_against_it(server: Server, pki: Pki) -> None:
    sidecar = _containers("ServerTaskDefinition")["queue-metrics"]
    env = {
        "PATH": os.environ["PATH"],
        **_env(sidecar),
        "REDIS_URL": _url(server, cache.LOOPBACK_HOST),
        "REDIS_CA_CERT": pki.ca,
        "QUEUE_METRICS_LUA": "return 'metrics-line'",
    }
    script = SIDECAR_SCRIPT.replace("sleep 60 & wait $!", "exit 0")
    assert script != SIDECAR_SCRIPT
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.stdout.strip() == "metrics-line", done.stderr
    kind, check = _containers("ServerTaskDefinition")["redis"]["HealthCheck"]["Command"]
    assert kind == "CMD-SHELL"
    health = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": PASSWORD, "REDIS_PORT": str(server.port)}
    assert subprocess.run(["sh", "-c", check], env=health, capture_output=True, timeout=30).returncode == 0


# --- a one-task server deployed before: plaintext Redis, then TLS on the same data -------------------------


def test_switching_a_deployed_servers_redis_to_tls_keeps_its_data(pki: Pki) -> None:
    """The deploy that brings TLS restarts the one task: the old Redis (plaintext, REDIS_TLS=off, as deployed
    before) stops as ECS stops it, the new one starts on the same EFS directory with the template's TLS
    settings. Sidekiq's queue, a home timeline and the last write before the stop are all there, over TLS."""
    old = _start({"REDIS_TLS": "off"}, tls_probe=False)
    try:
        commands = "LPUSH queue:default job-1 job-2\nZADD feed:home:1 1 status-1 2 status-2\nSET last-write kept\n"
        wrote = subprocess.run(
            ["redis-cli", "-p", str(old.port)],
            input=commands,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "REDISCLI_AUTH": PASSWORD},
            check=True,
        )
        assert wrote.stdout.split() == ["2", "2", "OK"]
    finally:
        old.stop(keep_data=True)
    new = _start({"REDIS_TLS_CERT": pki.cert, "REDIS_TLS_KEY": pki.key}, tls_probe=True, base=old.base, port=old.port)
    try:
        tls = ["--tls", "--cacert", str(pki.ca_file)]
        assert _cli(new.port, *tls, "LRANGE", "queue:default", "0", "-1").stdout.split() == ["job-2", "job-1"]
        assert _cli(new.port, *tls, "ZRANGE", "feed:home:1", "0", "-1").stdout.split() == ["status-1", "status-2"]
        assert _cli(new.port, *tls, "GET", "last-write").stdout.strip() == "kept"
        assert _cli(new.port, "ping").stdout.strip() != "PONG", "plaintext is gone"
    finally:
        new.stop()

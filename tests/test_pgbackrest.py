"""Continuous WAL archiving with pgBackRest into S3, and a point-in-time restore between two writes.

Real parts: Debian's PostgreSQL 15 and pgBackRest 2.45, configured only by the environment that
`mastofargate.stack.pgbackrest` produces for the Postgres task, with archive_command going through the
task script's `pgbackrest` wrapper. S3 is a moto server started here with TLS (pgBackRest speaks only
HTTPS to S3), addressed path-style with certificate checks off: the only options that differ from AWS.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from mastofargate.stack import pgbackrest
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401
from tests.pg_support import (
    BINDIR,
    PGTASK,
    SYSTEM_PYTHON,
    Cluster,
    free_port,
    private_dir,
    require_postgres,
    run,
)

BUCKET = "social-backups-123456789012-us-east-1"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (cryptography, as the project already uses it)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class TlsProxy:
    """TLS in front of the plain-HTTP moto server, as S3's endpoint terminates TLS. moto's own `--ssl` mode
    (werkzeug's) closes each connection after a response without a TLS close_notify, and pgBackRest 2.45 then
    waits for its 60 s I/O timeout on every PUT (AWS keeps connections open, so it never meets this)."""

    def __init__(self, upstream_port: int, cert: Path, key: Path) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.requests: list[str] = []  # "METHOD /bucket/key?query" of every request that came through
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            raw.close()
            return

        # one thread per connection touches the TLS object (OpenSSL objects are not thread-safe)
        sources = [client, upstream]
        with contextlib.suppress(OSError):
            while True:
                ready = [client] if client in sources and client.pending() else select.select(sources, [], [], 300)[0]
                if not ready:
                    break
                if client in ready:
                    data = client.recv(65536)
                    if data:
                        for m in re.finditer(rb"(?m)^(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/1\.[01]\r$", data):
                            self.requests.append(f"{m[1].decode()} {m[2].decode()}")
                        upstream.sendall(data)
                    else:
                        sources.remove(client)
                        upstream.shutdown(socket.SHUT_WR)
                if upstream in ready:
                    data = upstream.recv(65536)
                    if not data:
                        break
                    client.sendall(data)
        # moto closes every connection after its response; close TLS properly (close_notify), as pgBackRest
        # waits for it after a `Connection: close` response with an empty body
        with contextlib.suppress(OSError, ValueError):
            client.unwrap()
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_proxy(aws_endpoint: str, tmp_path: Path) -> Iterator[TlsProxy]:  # noqa: F811
    """The shared moto server behind a TLS proxy on 127.0.0.1."""
    require_postgres()
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    upstream = int(aws_endpoint.rsplit(":", 1)[1])
    proxy = TlsProxy(upstream, *self_signed(tmp_path))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def tls_s3(tls_proxy: TlsProxy) -> int:
    """The TLS proxy's port."""
    return tls_proxy.port


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
        "region_name": "us-east-1",
    }


def backrest_env(port: int, cluster: Cluster, work: Path) -> dict[str, str]:
    """The task's environment, plus where this test's cluster listens (the task uses the defaults)."""
    pg_path = cluster.data
    env = pgbackrest.repository_environment(
        BUCKET,
        "us-east-1",
        pg_path=str(pg_path),
        endpoint="127.0.0.1",
        port=port,
        uri_style="path",
        verify_tls=False,
        cipher=True,
        work_dir=str(work),
    )
    return {
        "PATH": "/usr/bin:/bin",
        "PGBACKREST_REPO1_S3_KEY": KEYS["AWS_ACCESS_KEY_ID"],
        "PGBACKREST_REPO1_S3_KEY_SECRET": KEYS["AWS_SECRET_ACCESS_KEY"],
        "PGBACKREST_REPO1_CIPHER_PASS": "a-test-cipher-passphrase-not-secret",
        "PGBACKREST_PG1_PORT": str(cluster.port),
        "PGBACKREST_PG1_SOCKET_PATH": str(cluster.root),
        **env,
    }


def backrest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """pgBackRest through the task script's wrapper, as the task runs it."""
    return run([SYSTEM_PYTHON, str(PGTASK), "pgbackrest", *args], env=env, timeout=300)


def test_wal_archiving_to_s3_and_point_in_time_restore(tls_s3: int) -> None:
    root = private_dir("pitr-")
    source = Cluster(root / "source", init=False)
    restored = Cluster(root / "restored", init=False)
    try:
        for c in (source, restored):
            c.root.mkdir()
            shutil.chown(c.root, "postgres", "postgres") if _root() else None
        run([str(BINDIR / "initdb"), "-D", str(source.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        source.configure(pgbackrest.postgres_settings(python=SYSTEM_PYTHON, pgtask=str(PGTASK)))
        env = backrest_env(tls_s3, source, root)
        assert pgbackrest.postgres_settings()["archive_timeout"] == "60"
        source.start(env={**env, **source.env()})

        backrest(env, "stanza-create")
        backrest(env, "check")  # archive_command really pushed a WAL segment to S3
        backrest(env, "backup", "--type=full")
        source.sql("CREATE TABLE toots (id int PRIMARY KEY, text text)")
        source.sql("INSERT INTO toots VALUES (1, 'before the target time')")
        time.sleep(1.5)
        target = source.sql(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
        )[0][0]
        time.sleep(1.5)
        source.sql("INSERT INTO toots VALUES (2, 'after the target time')")
        backrest(env, "check")  # switches WAL and waits until the segment with both writes is archived

        info = json.loads(backrest(env, "info", "--output=json").stdout)
        assert info[0]["status"]["message"] == "ok" and len(info[0]["backup"]) == 1
        assert info[0]["cipher"] == "aes-256-cbc"
        s3 = boto3.client("s3")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="pgbackrest/")["Contents"]]
        assert any(k.startswith("pgbackrest/archive/main/") for k in keys)
        assert any(k.startswith("pgbackrest/backup/main/") for k in keys)

        restore_env = {**env, "PGBACKREST_PG1_PATH": str(restored.data)}
        backrest(restore_env, "restore", "--type=time", f"--target={target}", "--target-action=promote")
        restored.configure({"archive_mode": "off"})  # a restored copy must not push into the source's archive
        restored.start(env={**restore_env, **restored.env()})
        deadline = time.monotonic() + 60
        while restored.sql("SELECT pg_is_in_recovery()")[0][0] == "t":
            assert time.monotonic() < deadline, restored.log()[-3000:]
            time.sleep(0.5)
        assert restored.sql("SELECT id FROM toots ORDER BY id") == [["1"]]
        assert source.sql("SELECT id FROM toots ORDER BY id") == [["1"], ["2"]]
    finally:
        restored.stop()
        source.stop()
        shutil.rmtree(root, ignore_errors=True)


def _root() -> bool:
    import os

    return os.geteuid() == 0


def test_the_environment_names_the_bucket_prefix_and_no_key() -> None:
    env = pgbackrest.repository_environment("b", "eu-west-1", pg_path="/var/lib/postgresql/data/pgdata")
    assert env["PGBACKREST_REPO1_S3_ENDPOINT"] == "s3.eu-west-1.amazonaws.com"
    assert env["PGBACKREST_REPO1_PATH"] == "/pgbackrest" and env["PGBACKREST_REPO1_S3_URI_STYLE"] == "host"
    assert "PGBACKREST_REPO1_STORAGE_VERIFY_TLS" not in env
    assert not any("KEY" in k or "PASS" in k for k in env)


def test_the_wrapper_hands_pgbackrest_the_task_roles_credentials(tls_s3: int) -> None:
    """ECS serves a task role's credentials over HTTP (AWS_CONTAINER_CREDENTIALS_*); pgBackRest 2.45 cannot
    read them itself. Here a local server plays the ECS endpoint (FULL_URI form, as ECS Anywhere uses);
    without a key pgBackRest refuses to start, so a listing that works proves the wrapper passed them."""
    import http.server

    served: list[str] = []

    class Credentials(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.headers.get("Authorization", ""))
            body = json.dumps(
                {
                    "AccessKeyId": "testing",
                    "SecretAccessKey": "testing",
                    "Token": "session",
                    "Expiration": "2099-01-01T00:00:00Z",
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Credentials)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = private_dir("creds-")
    try:
        env = pgbackrest.repository_environment(
            BUCKET,
            "us-east-1",
            pg_path="/nonexistent",
            endpoint="127.0.0.1",
            port=tls_s3,
            uri_style="path",
            verify_tls=False,
            work_dir=str(work),
        )
        env.update(
            PATH="/usr/bin:/bin",
            AWS_CONTAINER_CREDENTIALS_FULL_URI=f"http://127.0.0.1:{server.server_port}/creds",
            AWS_CONTAINER_AUTHORIZATION_TOKEN="task-token",
        )
        listed = backrest(env, "repo-ls")
        assert listed.returncode == 0 and served == ["task-token"]
        without = run(
            [SYSTEM_PYTHON, str(PGTASK), "pgbackrest", "repo-ls"],
            env={k: v for k, v in env.items() if not k.startswith("AWS_")},
            check=False,
        )
        assert without.returncode != 0 and "repo1-s3-key" in without.stdout + without.stderr
    finally:
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def test_the_postgres_entrypoint_archives_backs_up_and_restores_to_a_point_in_time(
    tls_proxy: TlsProxy,
    aws_endpoint: str,  # noqa: F811
) -> None:
    """The Postgres task as the stack defines it (database = "task"): the shipped entrypoint, run as root as
    ECS runs it, with the PGBACKREST_* environment and the archive settings of stack/pgbackrest.py. Its keeper
    creates the stanza and takes the first full backup by itself; WAL reaches S3 through archive_command;
    a restore to a time between two writes has the first and not the second. SIGTERM stops the keeper too.
    Every request pgBackRest sent stays inside the pgbackrest/ prefix, which is all the Postgres task's role
    may touch (stack/iam.py: objects under it, listings with an s3:prefix under it). The keeper reports
    WalArchiveFailing = 0 to CloudWatch (the emulator's), which the WalArchiveFailing alarm watches."""
    import importlib.util
    import pwd

    spec = importlib.util.spec_from_file_location("pgtask", PGTASK)
    assert spec and spec.loader
    task = importlib.util.module_from_spec(spec)
    sys.modules["pgtask"] = task  # its dataclasses look their module up there
    spec.loader.exec_module(task)
    from mastofargate.stack import entrypoints
    from tests.test_postgres_entrypoint import Postgres

    tls_s3 = tls_proxy.port
    volume = private_dir("pgtask-entry-")
    volume.chmod(0o755)
    script = volume / "entrypoint.sh"
    script.write_text(entrypoints.script(entrypoints.POSTGRES))
    restored = Cluster(volume / "restored", init=False)
    server = Postgres(script, volume, free_port(), None)
    pgdata = server.pgdata
    work = volume / "pgbackrest"
    env = pgbackrest.repository_environment(
        BUCKET,
        "us-east-1",
        pg_path=str(pgdata),
        endpoint="127.0.0.1",
        port=tls_s3,
        uri_style="path",
        verify_tls=False,
        work_dir=str(work),
    )
    env |= {
        "PGBACKREST_REPO1_S3_KEY": KEYS["AWS_ACCESS_KEY_ID"],
        "PGBACKREST_REPO1_S3_KEY_SECRET": KEYS["AWS_SECRET_ACCESS_KEY"],
        "PGBACKREST_PG1_PORT": str(server.port),
        "PGBACKREST_PG1_SOCKET_PATH": str(volume),
    }
    settings = pgbackrest.postgres_settings(python=SYSTEM_PYTHON, pgtask=str(PGTASK))
    extra = tuple(arg for k, v in settings.items() for arg in ("-c", f"{k}={v}"))
    try:
        server.start(
            extra_args=extra,
            PATH=f"{BINDIR}:/usr/bin:/bin",
            POSTGRES_PGTASK=str(PGTASK),
            POSTGRES_PYTHON=SYSTEM_PYTHON,
            POSTGRES_BACKUP_CHECK="2",
            POSTGRES_METRICS_NAMESPACE="Mastofargate/Backups",
            POSTGRES_METRICS_SERVER="social",
            AWS_ENDPOINT_URL=aws_endpoint,
            **KEYS,
            **env,
        )
        server.wait_ready()
        as_task = {**env, "PATH": "/usr/bin:/bin", "PGBACKREST_PG1_USER": "mastodon"}

        def info() -> list[dict]:
            out = run([SYSTEM_PYTHON, str(PGTASK), "pgbackrest", "info", "--output=json"], env=as_task, check=False)
            return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []

        deadline = time.monotonic() + 180
        # the keeper logs the backup once pgBackRest has returned, a moment after `info` lists it
        while "pgbackrest keeper: full backup complete" not in server.output():
            assert time.monotonic() < deadline, server.output()[-4000:]
            time.sleep(1)
        assert task.newest_full_backup(info()) is not None
        cloudwatch = boto3.client("cloudwatch")
        deadline = time.monotonic() + 60
        while not cloudwatch.list_metrics(Namespace="Mastofargate/Backups", MetricName="WalArchiveFailing")["Metrics"]:
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(1)
        stats = cloudwatch.get_metric_statistics(
            Namespace="Mastofargate/Backups",
            MetricName="WalArchiveFailing",
            Dimensions=[{"Name": "Server", "Value": "social"}],
            StartTime=time.time() - 600,
            EndTime=time.time() + 60,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
        assert stats and max(d["Maximum"] for d in stats) == 0, server.output()[-3000:]

        assert server.psql("CREATE TABLE toots (id int PRIMARY KEY)").returncode == 0
        assert server.psql("INSERT INTO toots VALUES (1)").returncode == 0
        time.sleep(1.5)
        target = server.psql(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
        ).stdout.strip()
        time.sleep(1.5)
        assert server.psql("INSERT INTO toots VALUES (2)").returncode == 0
        backrest(as_task, "check")  # a WAL switch, and waits until that segment is in S3
        assert _keepers_of(pgdata), "the keeper runs beside Postgres"
        server.stop()
        deadline = time.monotonic() + 15
        while _keepers_of(pgdata):  # this run's keeper (other runs may have their own at the same time)
            assert time.monotonic() < deadline, f"the keeper outlived Postgres: {_keepers_of(pgdata)}"
            time.sleep(0.2)

        restored.root.mkdir()
        shutil.chown(restored.root, "postgres", "postgres") if _root() else None
        restore_env = {**as_task, "PGBACKREST_PG1_PATH": str(restored.data)}
        backrest(restore_env, "restore", "--type=time", f"--target={target}", "--target-action=promote")
        restored.configure({"archive_mode": "off"})
        restored.start(env={**restore_env, **restored.env()})
        psql = [str(BINDIR / "psql"), "-X", "-At", "-h", str(restored.root), "-p", str(restored.port)]
        query = [*psql, "-U", "mastodon", "-d", "mastodon_production"]
        deadline = time.monotonic() + 60
        while run([*query, "-c", "SELECT pg_is_in_recovery()"]).stdout.strip() == "t":
            assert time.monotonic() < deadline, restored.log()[-3000:]
            time.sleep(0.5)
        assert run([*query, "-c", "SELECT id FROM toots ORDER BY id"]).stdout.split() == ["1"]
        _assert_inside_the_pgbackrest_prefix(tls_proxy.requests)
        assert pwd.getpwnam("postgres")
    finally:
        restored.stop()
        if server.proc and server.proc.poll() is None:
            server.kill()
        shutil.rmtree(volume, ignore_errors=True)


def _assert_inside_the_pgbackrest_prefix(requests: list[str]) -> None:
    """Path-style requests: /BUCKET/pgbackrest/... for objects, /BUCKET/?list-type=2&prefix=pgbackrest%2F...
    for listings (what IAM's s3:prefix condition sees)."""
    from urllib.parse import parse_qs, urlsplit

    assert requests, "no S3 request went through the proxy"
    for request in requests:
        method, target = request.split(" ", 1)
        url = urlsplit(target)
        bucket, _, key = url.path.lstrip("/").partition("/")
        assert bucket == BUCKET, request
        if key:
            assert key.startswith("pgbackrest/"), request
        else:
            assert method == "GET" and parse_qs(url.query).get("prefix", [""])[0].startswith("pgbackrest/"), request


def test_the_keeper_sees_a_failing_archive_and_its_recovery() -> None:
    """pg_stat_archiver as the keeper reads it: an archive_command that fails makes WalArchiveFailing 1; once
    it works again (Postgres retries the same segment), 0."""
    import importlib.util

    from tests.pg_support import cluster

    require_postgres()
    spec = importlib.util.spec_from_file_location("pgtask", PGTASK)
    assert spec and spec.loader
    task = importlib.util.module_from_spec(spec)
    sys.modules["pgtask"] = task
    spec.loader.exec_module(task)
    settings = {"wal_level": "replica", "archive_mode": "on", "archive_command": "/bin/false"}
    with cluster("archiver-", settings) as c:
        env = c.env()
        assert task.archive_failing(env) is False  # nothing attempted yet
        c.sql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        c.sql("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        while not task.archive_failing(env):
            assert time.monotonic() < deadline, c.log()[-2000:]
            time.sleep(0.5)
        c.sql("ALTER SYSTEM SET archive_command = '/bin/true'")
        c.sql("SELECT pg_reload_conf()")
        while task.archive_failing(env):
            assert time.monotonic() < deadline + 60, c.log()[-2000:]
            time.sleep(0.5)


def _keepers_of(pgdata: Path) -> list[int]:
    """Live keeper processes serving this data directory (found by their environment, as root can read it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and b"pgbackrest-keeper" in cmdline and f"PGDATA={pgdata}".encode() in environ:
            found.append(int(pid))
    return found

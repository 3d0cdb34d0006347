"""The Redis entrypoint (mastofargate/data/redis-entrypoint.sh) against a real redis-server 7 (Debian's).

What issue 12 item 4 and issue 10 item 5 ask: nothing acknowledged is lost when Redis is killed (-9), the
snapshot of the previous shape is carried into the append-only file, the server speaks TLS only, and the
password appears on no process's command line. Started as root, as ECS does; the script runs Redis as the
`redis` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mastofargate.stack import entrypoints
from mastofargate.tlscert import self_signed
from tests.services_support import ensure, free_port, wait_for

PASSWORD = "p\"w \\x $HOME 'q'"


@pytest.fixture(scope="module")
def redis_server() -> str:
    ensure("redis-cli", "ensure-redis.sh")
    return ensure("redis-server", "ensure-redis.sh")


@dataclass
class Redis:
    script: Path
    data: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> Redis:
        full = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": PASSWORD, "REDIS_DIR": str(self.data)}
        full.update({"REDIS_PORT": str(self.port), **env})
        log = (self.data.parent / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["bash", "-c", self.script.read_text(), "redis-entrypoint"],  # as the task definition runs it
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(self.up, 30, f"Redis on port {self.port} answering")
        return self

    def cli(self, *args: str, tls: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        flags = ["--tls", "--insecure"] if tls else []
        return subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *flags, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "REDISCLI_AUTH": PASSWORD},
            check=False,
        )

    def up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"entrypoint exited {self.proc.returncode}:\n{self.output()}", pytrace=False)
        return self.cli("ping").stdout.strip() == "PONG"

    def output(self) -> str:
        return (self.data.parent / "redis.log").read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def runs(redis_server: str) -> Iterator[list[Redis]]:
    made: list[Redis] = []
    yield made
    for run in made:
        if run.proc and run.proc.poll() is None:
            run.kill()


@pytest.fixture
def volume() -> Iterator[Path]:
    """base/data owned by `redis` (as the EFS access point makes it); base holds the script and the log."""
    base = Path(tempfile.mkdtemp(prefix="mf-redis-", dir="/tmp"))
    base.chmod(0o755)
    data = base / "data"
    data.mkdir()
    user = pwd.getpwnam("redis")
    os.chown(data, user.pw_uid, user.pw_gid)
    yield data
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def script(volume: Path) -> Path:
    path = volume.parent / "entrypoint.sh"
    path.write_text(entrypoints.script(entrypoints.REDIS))
    return path


def test_nothing_acknowledged_is_lost_when_redis_is_killed(runs: list[Redis], script: Path, volume: Path) -> None:
    run = Redis(script, volume, free_port())
    runs.append(run.start())
    # Each reply printed by redis-cli is an acknowledged write; kill -9 right after the last one.
    commands = "".join(f"SET job:{i} payload-{i}\nINCR acked\n" for i in range(3000))
    sent = run.cli(stdin=commands)
    assert sent.returncode == 0 and sent.stdout.split()[-1] == "3000", sent.stderr
    run.kill()

    again = Redis(script, volume, run.port)
    runs.append(again.start())
    assert again.cli("GET", "acked").stdout.strip() == "3000"
    assert again.cli("GET", "job:2999").stdout.strip() == "payload-2999"
    assert again.cli("DBSIZE").stdout.strip() == "3001"
    assert again.cli("CONFIG", "GET", "appendfsync").stdout.split() == ["appendfsync", "everysec"]
    assert again.cli("CONFIG", "GET", "save").stdout.split() == ["save"], "no RDB snapshots on top of the AOF"
    assert (volume / "appendonlydir").is_dir()


def test_tls_only_password_not_in_argv_and_runs_as_redis(runs: list[Redis], script: Path, volume: Path) -> None:
    cert, key = self_signed("redis.mastofargate.internal")
    run = Redis(script, volume, free_port())
    tmp = volume.parent / "tmp"  # the container's /tmp
    tmp.mkdir()
    os.chown(tmp, pwd.getpwnam("redis").pw_uid, -1)
    runs.append(run.start(REDIS_TLS_CERT=cert, REDIS_TLS_KEY=key, TMPDIR=str(tmp)))

    # the given certificate is used, written at start outside the data volume (no key on EFS), private
    key_file = Path(run.cli("CONFIG", "GET", "tls-key-file").stdout.split()[1])
    cert_file = Path(run.cli("CONFIG", "GET", "tls-cert-file").stdout.split()[1])
    assert cert_file.read_text().strip() == cert.strip() and key_file.read_text().strip() == key.strip()
    assert tmp in key_file.parents and not (volume / "tls").exists()
    assert key_file.stat().st_mode & 0o077 == 0 and key_file.parent.stat().st_mode & 0o077 == 0
    assert key_file.stat().st_uid == pwd.getpwnam("redis").pw_uid
    plain = run.cli("ping", tls=False)
    assert plain.stdout.strip() != "PONG", "plaintext must not be served"
    assert run.cli("ping").stdout.strip() == "PONG"
    wrong = subprocess.run(
        ["redis-cli", "-p", str(run.port), "--tls", "--insecure", "ping"],
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, "REDISCLI_AUTH": "wrong"},
        check=False,
    )
    assert "PONG" not in wrong.stdout
    redis_uid = pwd.getpwnam("redis").pw_uid
    servers = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
            uid = (proc / "status").read_text().split("\nUid:")[1].split()[0]
        except (OSError, IndexError):
            continue
        assert PASSWORD.encode() not in argv, f"password in argv of pid {proc.name}"
        if argv.startswith(b"redis-server") and f":{run.port}".encode() in argv:
            servers.append(int(uid))
    assert servers == [redis_uid], "redis-server runs once, as the redis user"


def test_an_rdb_snapshot_from_the_old_shape_is_carried_into_the_aof(
    runs: list[Redis], script: Path, volume: Path, redis_server: str
) -> None:
    # The previous shape: snapshots only (--save 3600 1 --appendonly no), ended by a clean stop.
    port = free_port()
    old = subprocess.Popen(
        [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(volume), "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        user="redis",
    )
    try:
        wait_for(
            lambda: (
                subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip()
                == "PONG"
            ),
            20,
            "the old-shape Redis",
        )
        subprocess.run(
            ["redis-cli", "-p", str(port)],
            input="SET timeline:1 kept\nSAVE\n",
            text=True,
            check=True,
            capture_output=True,
        )
    finally:
        old.send_signal(signal.SIGTERM)
        old.wait(timeout=20)
    assert (volume / "dump.rdb").exists() and not (volume / "appendonlydir").exists()

    run = Redis(script, volume, port)
    runs.append(run.start())
    assert run.cli("GET", "timeline:1").stdout.strip() == "kept"
    wait_for(lambda: "now holds the snapshot" in run.output(), 30, "the switch to the append-only file")
    run.cli("SET", "after", "switch")
    run.kill()

    again = Redis(script, volume, port)
    runs.append(again.start())
    assert again.cli("GET", "timeline:1").stdout.strip() == "kept"
    assert again.cli("GET", "after").stdout.strip() == "switch"
    assert "found only an RDB snapshot" not in again.output().split("Reading config")[-1]

"""The Postgres entrypoint (mastofargate/data/postgres-entrypoint.sh) against a real PostgreSQL 15 (Debian's).

Each test starts the shipped script on its own data directory and loopback port, as ECS would (root, which
the script leaves for the `postgres` user) or as an unprivileged user, and checks what DESIGN invariant 5
and issue 12 ask: one Postgres per data directory (the lock), a restart after kill -9 despite a stale
postmaster.pid naming a live process, a fast shutdown on SIGTERM even with idle clients connected, and TLS
(with no password on any process's command line).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mastofargate.stack import entrypoints
from tests.services_support import ensure, free_port, service_user, wait_for

PG_BIN = ("/usr/lib/postgresql/15/bin",)
PASSWORD = "pw-'quoted' $not-expanded"


@pytest.fixture(scope="module")
def pg_bin() -> str:
    return str(Path(ensure("postgres", "ensure-postgres.sh", PG_BIN)).parent)


@pytest.fixture
def script(volume: Path) -> Path:
    path = volume / "entrypoint.sh"  # where the unprivileged user can read it
    path.write_text(entrypoints.script(entrypoints.POSTGRES))
    path.chmod(0o755)
    return path


@dataclass
class Postgres:
    """One run of the entrypoint; `base` holds the data volume (data/pgdata, lock, tls) and the socket."""

    script: Path
    base: Path
    port: int
    user: pwd.struct_passwd | None  # None: run as root, as ECS does
    env: dict[str, str] = field(default_factory=dict)
    sockets: Path | None = None  # the socket directory: container-local in ECS (default: base)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def pgdata(self) -> Path:
        return self.base / "data" / "pgdata"

    def start(self, name: str = "run", extra_args: tuple[str, ...] = (), **env: str) -> Postgres:
        self.log = self.base / f"{name}.log"
        full = {
            "PATH": os.environ["PATH"],
            "PGDATA": str(self.pgdata),
            "POSTGRES_USER": "mastodon",
            "POSTGRES_DB": "mastodon_production",
            "POSTGRES_PASSWORD": PASSWORD,
            "POSTGRES_MEMORY_MB": "512",
            **self.env,
            **env,
        }
        args = [
            "bash",
            "-c",  # as the task definition runs it: the script's text, not a file in the image
            self.script.read_text(),
            "mastofargate-postgres",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.sockets or self.base}",
            *extra_args,
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user.pw_uid if self.user else None,
                group=self.user.pw_gid if self.user else None,
                extra_groups=[] if self.user else None,
            )
        return self

    def ready(self) -> bool:
        return (
            subprocess.run(
                ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False, timeout=10
            ).returncode
            == 0
        )

    def wait_ready(self, timeout: float = 60) -> float:
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"entrypoint exited {self.proc.returncode}:\n{self.output()}", pytrace=False)
            return self.ready()

        return wait_for(up, timeout, f"Postgres on port {self.port} accepting connections")

    def psql(self, sql: str, sslmode: str = "require") -> subprocess.CompletedProcess[str]:
        conn = f"host=127.0.0.1 port={self.port} user=mastodon dbname=mastodon_production sslmode={sslmode}"
        return subprocess.run(
            ["psql", conn, "-Atc", sql],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PGPASSWORD": PASSWORD},
            check=False,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM as ECS sends it; the seconds until the entrypoint exited."""
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return time.monotonic() - start

    def kill(self) -> None:
        """What a task crash does: SIGKILL to every process of the run at once."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        wait_for(lambda: not _postmasters(self.pgdata), 10, "the killed Postgres processes to vanish")


def _postmasters(pgdata: Path) -> list[int]:
    """Pids of live processes running `postgres -D pgdata` (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argv[:3] == [b"postgres", b"-D", str(pgdata).encode()]:
            found.append(int(proc.name))
    return found


@pytest.fixture
def volume() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is root-only), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="mf-pg-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def runs(pg_bin: str, script: Path, volume: Path) -> Iterator[list[Postgres]]:
    """Runs made by a test; any still alive at the end are killed, so no server outlives its test."""
    made: list[Postgres] = []
    yield made
    for run in made:
        if run.proc and run.proc.poll() is None:
            run.kill()


def _as_user(runs: list[Postgres], script: Path, volume: Path, port: int | None = None) -> Postgres:
    user = service_user()
    os.chown(volume, user.pw_uid, user.pw_gid)
    run = Postgres(script, volume, port or free_port(), user)
    runs.append(run)
    return run


def test_as_root_it_runs_postgres_as_postgres_with_tls_and_no_password_in_argv(
    runs: list[Postgres], script: Path, volume: Path
) -> None:
    postgres = pwd.getpwnam("postgres")  # Debian's package creates it, as the official image does
    os.chown(volume, postgres.pw_uid, postgres.pw_gid)
    run = Postgres(script, volume, free_port(), None)
    runs.append(run.start())
    run.wait_ready()

    tls = run.psql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert tls.stdout.strip() == "t", tls.stderr
    plain = run.psql("SELECT 1", sslmode="disable")
    assert plain.returncode != 0 and "no pg_hba.conf entry" in plain.stderr, "TCP without TLS must be refused"
    assert run.psql("SHOW shared_buffers").stdout.strip() == "128MB"  # a quarter of POSTGRES_MEMORY_MB=512
    assert run.psql("SELECT rolname FROM pg_roles WHERE rolname = 'mastodon'").stdout.strip() == "mastodon"

    (pid,) = _postmasters(run.pgdata)
    assert os.stat(f"/proc/{pid}").st_uid == postgres.pw_uid, "Postgres must not run as root"
    key = volume / "data" / "tls" / "server.key"
    assert key.stat().st_mode & 0o077 == 0, "the TLS key is private to its owner"
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                assert PASSWORD.encode() not in (proc / "cmdline").read_bytes(), f"password in argv of {proc.name}"
            except OSError:
                continue
    assert run.stop() < 30


def test_a_second_copy_is_refused_while_the_first_holds_the_lock(
    runs: list[Postgres], script: Path, volume: Path
) -> None:
    first = _as_user(runs, script, volume).start("first")
    first.wait_ready()
    pidfile = (first.pgdata / "postmaster.pid").read_text()

    second = Postgres(script, volume, free_port(), first.user)
    runs.append(second.start("second", POSTGRES_LOCK_WAIT="2"))
    assert second.proc is not None
    rc = second.proc.wait(timeout=30)

    assert rc != 0
    assert "another Postgres still holds" in second.output()
    assert (first.pgdata / "postmaster.pid").read_text() == pidfile, "the refused copy touched the data directory"
    assert first.psql("SELECT 1").stdout.strip() == "1", "the first copy must keep serving"
    assert len(_postmasters(first.pgdata)) == 1
    first.stop()


def test_a_stale_pid_file_after_kill_9_does_not_block_a_restart(
    runs: list[Postgres], script: Path, volume: Path
) -> None:
    run = _as_user(runs, script, volume).start("before")
    run.wait_ready()
    assert run.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed')").returncode == 0
    run.kill()
    pidfile = run.pgdata / "postmaster.pid"
    assert pidfile.exists(), "kill -9 leaves postmaster.pid behind"

    # In a new container the pid in the stale file often belongs to some live process of the same user;
    # Postgres alone would then refuse to start ("Is another postmaster running?").
    assert run.user is not None
    impostor = subprocess.Popen(["sleep", "120"], user=run.user.pw_uid, group=run.user.pw_gid, extra_groups=[])
    try:
        lines = pidfile.read_text().splitlines()
        pidfile.write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
        # A new task has a fresh container filesystem (the socket directory) but the same EFS volume.
        run.sockets = volume / "new-container"
        run.sockets.mkdir()
        os.chown(run.sockets, run.user.pw_uid, run.user.pw_gid)
        restarted = run.start("after")
        restarted.wait_ready()
        assert restarted.psql("SELECT v FROM kept").stdout.strip() == "committed"
        assert "removing stale postmaster.pid" in restarted.output()
        restarted.stop()
    finally:
        impostor.kill()
        impostor.wait()


def test_sigterm_is_a_fast_shutdown_even_with_idle_clients(runs: list[Postgres], script: Path, volume: Path) -> None:
    run = _as_user(runs, script, volume).start()
    run.wait_ready()
    # An idle session, as Mastodon's connection pool keeps: a smart shutdown would wait for it forever.
    idle = subprocess.Popen(
        ["psql", f"host=127.0.0.1 port={run.port} user=mastodon dbname=mastodon_production sslmode=require"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PGPASSWORD": PASSWORD},
    )
    try:
        wait_for(
            lambda: (
                run.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").stdout.strip()
                == "2"
            ),
            20,
            "the idle session to connect",
        )
        took = run.stop(timeout=60)
    finally:
        idle.kill()
        idle.wait()
    assert run.proc is not None and run.proc.returncode == 0, run.output()
    assert took < 15, f"fast shutdown took {took:.1f}s"
    assert not (run.pgdata / "postmaster.pid").exists(), "a clean shutdown removes postmaster.pid"
    assert "fast shutdown" in run.output()

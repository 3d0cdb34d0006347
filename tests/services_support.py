"""Real local services for tests (Postgres, Redis, Caddy): installed by the project's scripts/ensure-*.sh.

`ensure(program, script)` returns the program's path, running the ensure script (apt-get, as root) when it
is missing. A service that still cannot be had fails the test under CI=true and skips it elsewhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_USER = "mfpgtest"  # an unprivileged user for daemons that refuse to run as root


def ensure(program: str, script: str, search: tuple[str, ...] = ()) -> str:
    """Path of `program` (on PATH or in one of `search`), installing it with scripts/`script` if needed."""

    def find() -> str | None:
        for d in search:
            candidate = Path(d) / program
            if candidate.is_file():
                return str(candidate)
        return shutil.which(program)

    found = find()
    if found:
        return found
    why = "only root can install it"
    if os.geteuid() == 0:
        run = subprocess.run(["bash", str(REPO / "scripts" / script)], capture_output=True, text=True, timeout=900)
        why = f"scripts/{script} exited {run.returncode}: {run.stderr.strip()[-1500:]}"
        found = find()
        if found:
            return found
    message = f"{program} is missing and {why}. Run 'sudo bash scripts/{script}'."
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def service_user() -> pwd.struct_passwd:
    """An unprivileged system user (created once) for Postgres, which refuses to run as root."""
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        if os.geteuid() != 0:
            pytest.skip(f"user {TEST_USER} is missing and only root can create it")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER], check=True
        )
        return pwd.getpwnam(TEST_USER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` until true; return the seconds it took, or fail naming `what`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s", pytrace=False)

"""mastofargate as its users get it: the wheel built from this checkout, installed into a fresh virtualenv
(its dependencies from pip's ordinary index and cache), run from an empty git repository that is not this
checkout. Catches what only an installed package shows: Dockerfiles, overlay README and ci templates that
are not package data, or code that finds them relative to the checkout.

Real parts: pip, a virtualenv, git, the Docker engine and local registry with the stand-in bases of
tests/images_support.py. One virtualenv per test session (building it is most of the cost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import images_support as support

pytestmark = pytest.mark.xdist_group("wheel")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built as a release would be."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(support.REPO), "--no-deps", "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (built,) = out.glob("mastofargate-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `mastofargate` console script of a fresh virtualenv holding only the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return venv / "bin" / "mastofargate"


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """An empty git repository outside this checkout: what a new user starts from."""
    repo = tmp_path / "my-server"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    return repo


def run(exe: Path, *args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The installed CLI as CI runs it: no TTY, CI=1, and nothing of this checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"CI": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_wheel_carries_the_package_data(wheel: Path) -> None:
    """Every file under mastofargate/data is in the wheel (no virtualenv needed to see that)."""
    shipped = sorted(
        p.relative_to(support.REPO).as_posix()
        for p in (support.REPO / "mastofargate" / "data").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert "mastofargate/data/images/mastodon/Dockerfile" in shipped
    assert "mastofargate/data/images/streaming/Dockerfile" in shipped
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert [p for p in shipped if p not in names] == []


@pytest.fixture(scope="module")
def docker_client() -> Any:
    return support.ensure_docker()


@pytest.fixture
def stack_name(docker_client: Any) -> Iterator[str]:
    fresh = support.unique_name()
    yield fresh
    support.remove_images(docker_client, fresh)


def test_installed_wheel_works_from_an_empty_repository(
    installed: Path, user_repo: Path, docker_client: Any, stack_name: str
) -> None:
    exe = installed
    init = run(
        exe,
        "init",
        "--domain",
        "social.example.org",
        "--name",
        stack_name,
        "--hosted-zone-id",
        "Z0123456789EXAMPLE",
        "--arch",
        "x86_64",
        "--repository",
        "example/my-server",
        "--yes",
        cwd=user_repo,
    )
    assert init.returncode == 0, init.stderr
    assert (user_repo / "mastofargate.toml").is_file()
    readme = user_repo / "images" / "mastodon" / "overlay" / "README.md"
    assert "copied over `/opt/mastodon/`" in readme.read_text()

    synth = run(exe, "synth", cwd=user_repo)
    assert synth.returncode == 0, synth.stderr
    assert (user_repo / "cfn" / f"{stack_name}-app.yaml").is_file()
    # what init proposes for a personal server: one task holding every process (and Caddy, no load balancer)
    assert (user_repo / "task_definitions" / f"{stack_name}-server.json").is_file()
    assert "caddy" in (user_repo / "task_definitions" / f"{stack_name}-server.json").read_text()
    assert run(exe, "synth", "--check", cwd=user_repo).returncode == 0

    cost = run(exe, "cost", "--json", cwd=user_repo)
    assert cost.returncode == 0, cost.stderr
    assert '"total_usd_month"' in cost.stdout

    ci = run(exe, "ci", "init", cwd=user_repo)
    assert ci.returncode == 0, ci.stderr
    for name in ("review.yml", "images.yml", "deploy.yml"):
        assert (user_repo / ".github" / "workflows" / name).is_file(), name
    assert (user_repo / "Makefile").is_file()

    # An overlay file in the user's repository reaches the image built from the packaged Dockerfile.
    robots = readme.parent / "public" / "robots.txt"
    robots.parent.mkdir(parents=True)
    robots.write_text("User-agent: *\nDisallow: /from-the-overlay\n")
    bases = support.build_standins(docker_client)
    build = run(
        exe,
        "images",
        "build",
        "--registry",
        support.REGISTRY,
        "--platform",
        "linux/amd64",
        *bases.flags(),
        "--json",
        cwd=user_repo,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    web = json.loads(build.stdout)["mastodon"]
    assert web.startswith(f"{support.REGISTRY}/{stack_name}/mastodon:")
    assert support.image_file(docker_client, web, "/opt/mastodon/public/robots.txt") == robots.read_bytes()

"""Real parts for the image-pipeline tests (and bench/images.py): a Docker engine and local registry,
offline stand-ins for Mastodon's base images and a registry that demands a login (the moto server is
tests/moto_server.py's).

No public registry is reachable here, so the stand-in bases are built from scratch with Debian's static
busybox. They mimic what the pipeline relies on in the real images: USER mastodon (991), WORKDIR
/opt/mastodon, compiled assets under public/, `bundle` on PATH (the stand-in's `bundle exec rails
assets:precompile` writes a RECOMPILED marker, so the recompile path really runs), and in the streaming
image a `node` plus corepack at the paths the web Dockerfile copies them from.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
REGISTRY = "127.0.0.1:5000"
VERSION = "v4.5.4"
BUSYBOX = Path("/bin/busybox")
STANDIN_MASTODON = "mastofargate-standin/mastodon:test"
STANDIN_STREAMING = "mastofargate-standin/streaming:test"
STANDIN_POSTGRES = "mastofargate-standin/postgres:test"
# bcrypt (cost 5) of "right-password" for user "pusher", made once with crypt.crypt(..., METHOD_BLOWFISH).
HTPASSWD = "pusher:$2b$05$uamUZONhYWTRGnOKzqn4JuUwxWDTOHG1fBWMw4QCVGy4gznPr3HAq\n"

# ------------------------------------------------------------------------------------------ engine
_NO_ENGINE = (
    "The image tests need a Docker engine, a registry on {registry} and busybox-static, and {why}. "
    "Run 'sudo bash scripts/ensure-docker.sh' (Debian: installs docker.io and docker-registry, starts both), "
    "or set MASTOFARGATE_SKIP_DOCKER_TESTS=1 outside CI to skip them."
)


def _engine_ok() -> bool:
    import docker

    try:
        docker.from_env(timeout=10).ping()
        return True
    except Exception:
        return False


def _registry_ok(host: str = REGISTRY) -> bool:
    import requests

    try:
        return requests.get(f"http://{host}/v2/", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def ensure_docker() -> Any:
    """A Docker client with the local registry up, starting both via scripts/ensure-docker.sh if needed."""
    import docker

    if not (_engine_ok() and _registry_ok() and BUSYBOX.is_file()):
        if os.geteuid() != 0:
            why = "neither is running and only root can start them"
        else:
            run = subprocess.run(
                ["bash", str(REPO / "scripts" / "ensure-docker.sh")], capture_output=True, text=True, timeout=900
            )
            why = f"scripts/ensure-docker.sh exited {run.returncode}: {run.stderr.strip()[-1500:]}"
        if not (_engine_ok() and _registry_ok() and BUSYBOX.is_file()):
            message = _NO_ENGINE.format(registry=REGISTRY, why=why)
            if os.environ.get("MASTOFARGATE_SKIP_DOCKER_TESTS") == "1" and not os.environ.get("CI"):
                pytest.skip(message)
            pytest.fail(message, pytrace=False)
    return docker.from_env(timeout=600)


# ------------------------------------------------------------------------------------------ stand-in bases
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nmastodon:x:991:991::/opt/mastodon:/bin/sh\n"
_GROUP = "root:x:0:\nmastodon:x:991:\n"
# A 1x1 PNG.
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
_FAKE_BUNDLE = """#!/bin/sh
# Stand-in for Mastodon's bundle: understands only `bundle exec rails assets:precompile`.
set -eu
if [ "$*" != "exec rails assets:precompile" ]; then echo "stand-in bundle: unsupported: $*" >&2; exit 64; fi
[ "${SECRET_KEY_BASE_DUMMY:-}" = 1 ] || { echo "stand-in bundle: SECRET_KEY_BASE_DUMMY=1 is not set" >&2; exit 65; }
command -v node >/dev/null || { echo "stand-in bundle: node is not on PATH" >&2; exit 66; }
[ -f node_modules/.focused ] || { echo "stand-in bundle: JavaScript dependencies missing" >&2; exit 67; }
if [ -e app/javascript/FAIL_ASSET_BUILD ]; then
  i=1
  while [ $i -le 40 ]; do echo "stand-in vite: error line $i of 40"; i=$((i + 1)); done
  exit 3
fi
mkdir -p public/packs public/assets
echo "recompiled by the stand-in" > public/packs/RECOMPILED
"""
_FAKE_NODE = """#!/bin/sh
# Stand-in for node: `node .../corepack.js yarn workspaces focus --production @mastodon/mastodon`
# "installs" the JavaScript dependencies; anything else is echoed.
case "$*" in
  *corepack.js\\ yarn\\ workspaces\\ focus\\ --production\\ @mastodon/mastodon)
    mkdir -p node_modules && : > node_modules/.focused ;;
  *) echo "stand-in node: $*" ;;
esac
"""
MASTODON_ASSETS = {
    "packs/assets/application-3f9a1c2b.js": b"console.log('stand-in');\n",
    "packs/assets/application-3f9a1c2b.js.map": b'{"version":3,"sources":[],"mappings":""}\n',
    "packs/assets/common-7d2e4f10.css": b"body { color: #222; }\n",
    "packs/assets/inter-9b8c7a6d.woff2": b"wOF2-stand-in",
    "packs/manifest.json": b'{"application.js": "assets/application-3f9a1c2b.js"}\n',
    "assets/logo-1a2b3c4d.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>\n',
    "assets/icon-5e6f7a8b.png": _PNG,
    "emoji/1f600.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="1"/></svg>\n',
    # Addressed through CDN_HOST by Mastodon too (issue 9): default avatar/header, the embed script, sounds.
    "avatars/original/missing.png": _PNG,
    "headers/original/missing.png": _PNG,
    "embed.js": b"/* stand-in embed.js */\n",
    "sounds/boop.ogg": b"OggS-stand-in",
}
# In the stand-in's public/ but never exported: system/ holds user uploads under filesystem storage.
NOT_EXPORTED = {"system/media_attachments/files/000/000/001/original/private.png": _PNG}


def _tar(files: dict[str, tuple[bytes, int]], dirs: dict[str, int]) -> bytes:
    """A build context with fixed times, so the stand-ins' layers (and the tests' tags) are reproducible."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in sorted(dirs.items()):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _build(client: Any, tag: str, dockerfile: str, files: dict[str, tuple[bytes, int]], dirs: dict[str, int]) -> str:
    context = _tar({"Dockerfile": (dockerfile.encode(), 0o644), **files}, dirs)
    log = []
    for event in client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True, decode=True):
        log.append(str(event.get("stream") or event.get("status") or ""))
        if "error" in event:
            raise RuntimeError(f"building stand-in {tag} failed: {event['error']}\n{''.join(log)[-2000:]}")
    return tag


_BASE_DOCKERFILE = """FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
USER mastodon
WORKDIR /opt/mastodon
"""


# Stand-in for the Postgres image's apt-get: records what the backup Dockerfile installs, and "installs"
# pgbackrest as a script that says what it is (the real packages are tested in tests/test_pgbackrest.py).
_FAKE_APT = """#!/bin/sh
set -eu
echo "$*" >> /var/log/apt-standin.log
case "$*" in
  *install*pgbackrest*)
    printf '#!/bin/sh\\necho "pgBackRest stand-in"\\n' > /usr/bin/pgbackrest && chmod 755 /usr/bin/pgbackrest ;;
esac
"""
_PG_PASSWD = "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999::/var/lib/postgresql:/bin/sh\n"
_PG_GROUP = "root:x:0:\npostgres:x:999:\n"


@dataclass(frozen=True)
class Bases:
    mastodon: str
    streaming: str
    postgres: str

    def flags(self) -> list[str]:
        return [
            "--mastodon-base",
            self.mastodon,
            "--streaming-base",
            self.streaming,
            "--postgres-base",
            self.postgres,
        ]


def build_postgres_standin(client: Any, suffix: str = "test") -> str:
    """The Postgres base's stand-in: busybox as root with a `postgres` user (999) and a recording apt-get."""
    files = {
        "rootfs/bin/busybox": (BUSYBOX.read_bytes(), 0o755),
        "rootfs/etc/passwd": (_PG_PASSWD.encode(), 0o644),
        "rootfs/etc/group": (_PG_GROUP.encode(), 0o644),
        "rootfs/usr/bin/apt-get": (_FAKE_APT.encode(), 0o755),
    }
    dirs = {
        "rootfs": 0o755,
        "rootfs/bin": 0o755,
        "rootfs/etc": 0o755,
        "rootfs/tmp": 0o1777,
        "rootfs/usr": 0o755,
        "rootfs/usr/bin": 0o755,
        "rootfs/usr/local": 0o755,
        "rootfs/usr/local/bin": 0o755,
        "rootfs/var": 0o755,
        "rootfs/var/log": 0o755,
        "rootfs/var/lib": 0o755,
        "rootfs/var/lib/apt": 0o755,
        "rootfs/var/lib/apt/lists": 0o755,
    }
    dockerfile = (
        'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'ENV PATH="/usr/local/bin:/usr/bin:/bin"\n'
    )
    return _build(client, STANDIN_POSTGRES.replace(":test", f":{suffix}"), dockerfile, files, dirs)


def build_standins(client: Any, suffix: str = "test", padding: bytes = b"") -> Bases:
    """Build both stand-ins, tagged `...:SUFFIX`. `padding` (bench) adds that many bytes to the web base,
    which also makes its layers new to the registry, so a first push really uploads them."""
    busybox = BUSYBOX.read_bytes()
    common = {
        "rootfs/bin/busybox": (busybox, 0o755),
        "rootfs/etc/passwd": (_PASSWD.encode(), 0o644),
        "rootfs/etc/group": (_GROUP.encode(), 0o644),
    }
    dirs = {"rootfs": 0o755, "rootfs/bin": 0o755, "rootfs/etc": 0o755, "rootfs/tmp": 0o1777}
    web_files = dict(common)
    web_files["rootfs/opt/mastodon/bin/bundle"] = (_FAKE_BUNDLE.encode(), 0o755)
    web_files["rootfs/opt/mastodon/package.json"] = (b'{"name": "@mastodon/mastodon", "private": true}\n', 0o644)
    web_files["rootfs/opt/mastodon/app/javascript/entrypoints/application.ts"] = (b"export {};\n", 0o644)
    web_files["rootfs/opt/mastodon/public/robots.txt"] = (b"# stand-in robots.txt\n", 0o644)
    if padding:
        web_files["rootfs/opt/mastodon/vendor/padding.bin"] = (padding, 0o644)
    for rel, data in {**MASTODON_ASSETS, **NOT_EXPORTED}.items():
        web_files[f"rootfs/opt/mastodon/public/{rel}"] = (data, 0o644)
    web_dirs = dict(dirs)
    for name in web_files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            web_dirs.setdefault("/".join(parts[:i]), 0o755)
    web_dirs["rootfs/opt/mastodon/tmp"] = 0o1777
    mastodon = _build(
        client,
        STANDIN_MASTODON.replace(":test", f":{suffix}"),
        _BASE_DOCKERFILE + 'ENV PATH="/opt/mastodon/bin:/usr/local/bin:/usr/bin:/bin" RAILS_ENV=production\n'
        'ENTRYPOINT ["/bin/sh", "-c"]\n',
        web_files,
        web_dirs,
    )
    node_files = dict(common)
    node_files["rootfs/usr/local/bin/node"] = (_FAKE_NODE.encode(), 0o755)
    node_files["rootfs/usr/local/lib/node_modules/corepack/dist/corepack.js"] = (b"// stand-in\n", 0o644)
    node_files["rootfs/usr/local/lib/node_modules/npm/bin/npm-cli.js"] = (b"// stand-in\n", 0o644)
    node_files["rootfs/opt/mastodon/streaming/index.js"] = (b"// stand-in streaming server\n", 0o644)
    node_dirs = dict(dirs)
    for name in node_files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            node_dirs.setdefault("/".join(parts[:i]), 0o755)
    if padding:  # new streaming layers too
        node_files["rootfs/etc/standin-nonce"] = (padding[:64], 0o644)
    streaming = _build(
        client,
        STANDIN_STREAMING.replace(":test", f":{suffix}"),
        _BASE_DOCKERFILE + 'ENV PATH="/usr/local/bin:/usr/bin:/bin"\nCMD ["node", "./streaming/index.js"]\n',
        node_files,
        node_dirs,
    )
    return Bases(mastodon, streaming, build_postgres_standin(client, suffix))


# ------------------------------------------------------------------------------------------ helpers
def unique_name() -> str:
    """An aws.name no earlier run used, so a push to the shared local registry is really the first."""
    return "t" + uuid.uuid4().hex[:12]


def remove_images(client: Any, name: str) -> None:
    """Untag every local image a test built for stack `name` (layers shared with others stay)."""
    for image in client.api.images():
        for tag in image.get("RepoTags") or []:
            if f"/{name}/" in tag:
                client.api.remove_image(tag, force=True)


def write_config(directory: Path, name: str | None = None, arch: str = "x86_64") -> Path:
    from mastofargate.config import parse_config
    from mastofargate.configfile import render

    cfg = parse_config(
        {
            "server": {"domain": "social.example.org", "admin_email": "admin@example.org"},
            "aws": {"name": name or unique_name(), "region": "us-east-1", "hosted_zone_id": "Z0123456789EXAMPLE"},
            "deployment": {"arch": arch, "mastodon_version": VERSION},
        },
        source="test",
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mastofargate.toml"
    path.write_text(render(cfg), encoding="utf-8")
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m mastofargate ARGS` as CI would (no TTY, CI=1): through main(), so exit codes are real."""
    full_env = {**os.environ, "CI": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mastofargate", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


def image_file(client: Any, ref: str, path: str) -> bytes | None:
    """A file's bytes from an image (via a created, never started container); None when absent."""
    from docker.errors import NotFound

    container = client.api.create_container(ref, command=["true"])["Id"]
    try:
        try:
            stream, _ = client.api.get_archive(container, path)
        except NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            return member.read() if member else None
    finally:
        client.api.remove_container(container, force=True)


def manifest_digest(host: str, repository: str, tag: str) -> str | None:
    import requests

    from mastofargate.images.registry import MANIFEST_TYPES

    resp = requests.head(
        f"http://{host}/v2/{repository}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10
    )
    return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, ok: tuple[int, ...] = (200,)) -> None:
    import requests

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code in ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def start_auth_registry(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """A second Debian docker-registry that requires a login (htpasswd), on a free loopback port."""
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.fail("docker-registry is missing (scripts/ensure-docker.sh installs it)", pytrace=False)
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "htpasswd").write_text(HTPASSWD)
    (workdir / "registry.yml").write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: mastofargate-test\n"
        f"auth:\n  htpasswd:\n    realm: mastofargate-test\n    path: {workdir / 'htpasswd'}\n"
    )
    log = (workdir / "registry.log").open("wb")
    proc = subprocess.Popen([exe, "serve", str(workdir / "registry.yml")], stdout=log, stderr=log)
    host = f"127.0.0.1:{port}"
    try:
        _wait(f"http://{host}/v2/", proc, "the login-only registry", ok=(401,))
    except RuntimeError:
        _stop(proc)
        raise
    return host, proc


def docker_config(directory: Path, host: str | None = None, user: str = "", password: str = "") -> Path:
    """A DOCKER_CONFIG folder holding one login (or none), isolated from the machine's own."""
    directory.mkdir(parents=True, exist_ok=True)
    auths = {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}} if host else {}
    (directory / "config.json").write_text(json.dumps({"auths": auths}))
    return directory


stop_process = _stop

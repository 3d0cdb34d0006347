"""`mastofargate versions` and the "behind" line of `status`, against the real local registry
(Debian's docker-registry on 127.0.0.1:5000, started by scripts/ensure-docker.sh) holding pushed tags.

Tags are pushed through the registry's own HTTP API (a config blob and a manifest with no layers under
many tags), which is all a tag list needs; the repository is `mastodon/mastodon`, as on ghcr.io.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import requests
import tomli_w

from mastofargate.images.registry import Registry
from mastofargate.releases import newer_than, newest_patch
from tests import images_support as support
from tests.conftest import config_dict
from tests.moto_server import aws_endpoint, deploy_world, moto_server  # noqa: F401
from tests.test_day2 import DEPLOYMENT, cli, config, no_traceback

REPOSITORY = "mastodon/mastodon"
TAGS = (
    "v4.5.3",
    "v4.5.4",
    "v4.5.5",
    "v4.5.14",
    "v4.5.15",
    "v4.6.0-rc.1",
    "v4.6.0",
    "v4.6.5",
    "v5.0.0",
    "v4.5",
    "v4.6",
    "latest",
    "edge",
    "nightly.2026-11-29",
)


def push_tags(host: str, repository: str, tags: tuple[str, ...]) -> None:
    base = f"http://{host}/v2/{repository}"
    blob = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    start = requests.post(f"{base}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    location = location if location.startswith("http") else f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    put = requests.put(f"{location}{sep}digest={digest}", data=blob, timeout=10)
    assert put.status_code == 201, put.text
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(blob), "digest": digest},
        "layers": [],
    }
    for tag in tags:
        resp = requests.put(
            f"{base}/manifests/{tag}",
            data=json.dumps(manifest),
            headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text


@pytest.fixture(scope="module")
def registry() -> str:
    support.ensure_docker()
    push_tags(support.REGISTRY, REPOSITORY, TAGS)
    return support.REGISTRY


def write_config(tmp_path: Path, version: str) -> Path:
    path = tmp_path / "mastofargate.toml"
    path.write_text(tomli_w.dumps(config_dict(**{**DEPLOYMENT, "mastodon_version": version})))
    return path


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_newer_releases_are_marked_patch_minor_or_major_and_others_ignored() -> None:
    releases = newer_than("v4.5.4", list(TAGS))
    assert [(r.version, r.kind) for r in releases] == [
        ("v4.5.5", "patch"),
        ("v4.5.14", "patch"),  # numeric order, not text order
        ("v4.5.15", "patch"),
        ("v4.6.0", "minor"),
        ("v4.6.5", "minor"),
        ("v5.0.0", "major"),
    ]
    assert newest_patch(releases) == "v4.5.15"
    assert newer_than("v5.0.0", list(TAGS)) == []


def test_the_tag_list_is_read_page_by_page(registry: str) -> None:
    tags = Registry(registry).tags(REPOSITORY, page=3)
    assert set(TAGS) <= set(tags) and len(tags) == len(set(tags))


def test_versions_lists_newer_releases_from_the_registry(registry: str, tmp_path: Path) -> None:
    path = write_config(tmp_path, "v4.5.4")
    proc = cli("http://unused", "versions", "--config", str(path), "--registry", registry)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"pinned: v4.5.4; newer releases on {registry}:"
    assert any(line.split()[:2] == ["v4.5.15", "patch:"] for line in lines)
    assert any(line.split()[:2] == ["v4.6.0", "minor:"] for line in lines)
    assert not any("rc" in line or "latest" in line for line in lines)
    assert 'deployment.mastodon_version = "v4.5.15"' in lines[-1]

    as_json = cli(
        "http://unused", "versions", "--config", str(path), "--json", env={"MASTOFARGATE_UPSTREAM_REGISTRY": registry}
    )
    data = json.loads(as_json.stdout)
    assert data["newest_patch"] == "v4.5.15" and data["newest"] == "v5.0.0" and data["behind"] is True
    assert {"version": "v4.6.0", "kind": "minor"} in data["newer"]

    current = cli(
        "http://unused", "versions", "--config", str(write_config(tmp_path, "v5.0.0")), "--registry", registry
    )
    assert current.returncode == 0 and "v5.0.0 is the newest Mastodon release" in current.stdout


def test_versions_offline_says_so_clearly(tmp_path: Path) -> None:
    host = f"127.0.0.1:{closed_port()}"
    proc = cli("http://unused", "versions", "--config", str(write_config(tmp_path, "v4.5.4")), "--registry", host)
    no_traceback(proc)
    assert proc.returncode == 1
    assert f"Cannot read Mastodon's releases from {host}." in proc.stderr
    assert "connection refused" in proc.stderr and "--registry" in proc.stderr
    bad = cli("http://unused", "versions", "--config", str(write_config(tmp_path, "v4.5.4")), "--registry", "a b")
    assert bad.returncode == 2 and "is not a registry host" in bad.stderr


def test_status_says_when_the_running_version_is_behind(moto: str, registry: str, tmp_path: Path) -> None:
    deploy_world(config(), tag="v4.5.4-0123abcd")
    path = write_config(tmp_path, "v4.5.4")
    proc = cli(moto, "status", "--config", str(path), env={"MASTOFARGATE_UPSTREAM_REGISTRY": registry})
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "releases: BEHIND v4.5.4 (6 newer: newest patch v4.5.15, newest v5.0.0); see 'mastofargate versions'"
        in proc.stdout.splitlines()
    )
    data = json.loads(
        cli(moto, "status", "--config", str(path), "--json", env={"MASTOFARGATE_UPSTREAM_REGISTRY": registry}).stdout
    )
    assert data["upstream"]["newest_patch"] == "v4.5.15"
    offline = cli(
        moto, "status", "--config", str(path), env={"MASTOFARGATE_UPSTREAM_REGISTRY": f"127.0.0.1:{closed_port()}"}
    )
    assert offline.returncode == 0 and "releases: unknown" in offline.stdout


@pytest.fixture
def moto(aws_endpoint: str) -> str:  # noqa: F811
    return aws_endpoint

"""The image pipeline (`mastofargate images build | push | assets`).

Docker tests run against the real engine and the local registry on 127.0.0.1:5000 (started by
scripts/ensure-docker.sh when absent), with offline stand-in base images (tests/images_support.py), a
second real registry that demands a login, and a moto *server* for S3/STS/ECR. They share one xdist
group so they run one after another on a single worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from mastofargate.images.assets import CACHE_CONTROL, SHORT_CACHE_CONTROL, cache_control, content_type
from mastofargate.images.context import (
    ContextFile,
    ImageSource,
    ImageSpec,
    bundled_images_dir,
    read_overlay,
    read_source,
    touches_assets,
)
from mastofargate.images.registry import ECR_HOST, check_host, is_loopback
from tests import images_support as support
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401


# ============================================================================================ pure parts
def _spec(files: tuple[ContextFile, ...] = (), **changes: Any) -> ImageSpec:
    source = ImageSource("mastodon", Path("Dockerfile"), (ContextFile("Dockerfile", b"FROM x\n"), *files))
    args: dict[str, Any] = {
        "source": source,
        "version": "v4.5.4",
        "buildargs": {"MASTODON_BASE": "base:1", "RECOMPILE_ASSETS": "0"},
        "target": "web",
        "base_digests": {"MASTODON_BASE": "sha256:" + "a" * 64},
        "platform": "linux/arm64",
    }
    args.update(changes)
    return ImageSpec(**args)


def _names(tar: bytes) -> list[str]:
    with tarfile.open(fileobj=BytesIO(tar)) as archive:
        return archive.getnames()


def test_tag_is_version_plus_content_hash_and_every_input_changes_it():
    spec = _spec()
    assert spec.tag.startswith("v4.5.4-") and len(spec.tag) == len("v4.5.4-") + 12
    assert _spec().tag == spec.tag  # deterministic
    variants = [
        _spec((ContextFile("overlay/public/robots.txt", b"x"),)),
        _spec((ContextFile("overlay/public/robots.txt", b"y"),)),
        _spec((ContextFile("overlay/bin/x", b"x", executable=True),)),
        _spec(buildargs={"MASTODON_BASE": "base:2", "RECOMPILE_ASSETS": "0"}),
        _spec(target="web-recompiled"),
        _spec(base_digests={"MASTODON_BASE": "sha256:" + "b" * 64}),
        _spec(platform="linux/amd64"),
        _spec(version="v4.5.5"),
    ]
    tags = {v.tag for v in variants}
    assert spec.tag not in tags and len(tags) == len(variants)


def test_overlay_readme_and_dotfiles_are_not_part_of_the_image(tmp_path):
    overlay = tmp_path / "images" / "mastodon" / "overlay"
    (overlay / "public").mkdir(parents=True)
    (overlay / "public" / "robots.txt").write_text("User-agent: *\n")
    before = read_source("mastodon", tmp_path / "images")
    (overlay / "README.md").write_text("how to use this folder")
    (overlay / ".DS_Store").write_bytes(b"\0")
    (overlay / ".git").mkdir()
    (overlay / ".git" / "config").write_text("x")
    (overlay / "public" / ".gitkeep").write_text("")
    after = read_source("mastodon", tmp_path / "images")
    assert after.files == before.files
    assert after.overlay == ("public/robots.txt",)
    assert _names(after.context_tar()) == ["overlay", "overlay/public", "Dockerfile", "overlay/public/robots.txt"]
    # The shipped overlay folder holds only its README: an empty overlay.
    assert read_overlay(bundled_images_dir() / "mastodon" / "overlay") == []


def test_empty_overlay_still_sends_the_overlay_folder(tmp_path):
    source = read_source("mastodon", tmp_path / "nothing-here")
    assert source.dockerfile == support.REPO / "mastofargate" / "data" / "images" / "mastodon" / "Dockerfile"
    assert source.overlay == () and not source.recompile_assets
    assert _names(source.context_tar()) == ["overlay", "Dockerfile"]
    assert read_source("streaming", tmp_path).overlay == ()


@pytest.mark.parametrize("path", ["tmp/x", "log/production.log", "public/system/cache/a.png"])
def test_overlay_files_in_runtime_writable_folders_are_refused(tmp_path, path):
    from mastofargate.errors import UsageError

    target = tmp_path / "images" / "mastodon" / "overlay" / path
    target.parent.mkdir(parents=True)
    target.write_text("x")
    with pytest.raises(UsageError, match="a folder Mastodon writes at run time"):
        read_source("mastodon", tmp_path / "images")


@pytest.mark.parametrize(
    ("path", "recompile"),
    [
        ("app/javascript/styles/custom.scss", True),
        ("app/javascript/images/logo.svg", True),
        ("app/assets/stylesheets/x.css", True),
        ("config/vite.json", True),
        ("vite.config.mts", True),
        ("package.json", True),
        ("yarn.lock", True),
        ("config/themes.yml", True),
        ("public/robots.txt", False),
        ("public/emoji/custom.png", False),
        ("config/locales/en.yml", False),
        ("app/views/about/show.html.haml", False),
    ],
)
def test_which_overlay_paths_trigger_an_asset_recompile(path, recompile):
    assert touches_assets(path) is recompile


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("assets/packs/a-1.js", "text/javascript; charset=utf-8"),
        ("assets/packs/a-1.mjs", "text/javascript; charset=utf-8"),
        ("assets/packs/a-1.css", "text/css; charset=utf-8"),
        ("assets/packs/a-1.js.map", "application/json; charset=utf-8"),
        ("assets/packs/f-1.woff2", "font/woff2"),
        ("assets/packs/f-1.woff", "font/woff"),
        ("assets/emoji/1f600.svg", "image/svg+xml"),
        ("assets/packs/manifest.json", "application/json; charset=utf-8"),
        ("assets/packs/x.wasm", "application/wasm"),
        ("assets/manifest.webmanifest", "application/manifest+json"),
        ("assets/assets/icon.PNG", "image/png"),
        ("assets/sounds/boop.ogg", "audio/ogg"),
        ("assets/packs/no-extension", "application/octet-stream"),
    ],
)
def test_content_types(name, expected):
    assert content_type(name) == expected


def test_registry_hosts():
    assert ECR_HOST.match("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    assert not ECR_HOST.match("127.0.0.1:5000")
    assert check_host("https://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost:5000") and is_loopback("[::1]:5000")
    assert not is_loopback("registry.example.org")
    from mastofargate.errors import UsageError

    with pytest.raises(UsageError):
        check_host("not a host/x")


def test_docker_engine_unreachable_is_a_clear_error(tmp_path):
    """No engine at DOCKER_HOST (a socket path nothing listens on): message and exit 1, no traceback."""
    config = support.write_config(tmp_path)
    run = support.cli(
        "images",
        "build",
        "--config",
        str(config),
        "--registry",
        support.REGISTRY,
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
    )
    assert run.returncode == 1, run.stderr
    assert "Cannot reach a Docker engine" in run.stderr
    assert "no-engine.sock" in run.stderr and "ensure-docker.sh" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_bad_platform_is_a_usage_error(tmp_path):
    run = support.cli("images", "push", "--config", str(support.write_config(tmp_path)), "--platform", "linux/s390x")
    assert run.returncode == 2 and "--platform" in run.stderr and "Traceback" not in run.stderr


# ============================================================================================ AWS (moto server)
@pytest.fixture
def aws_env(aws_endpoint: str) -> str:  # noqa: F811
    """A wiped moto server (shared with the other AWS tests of this process) that boto3 talks to."""
    return aws_endpoint


def test_ecr_registry_name_and_login_come_from_aws(aws_env, tmp_path):
    """Default registry = the account's ECR (STS), credentials = get_authorization_token (moto server)."""
    from mastofargate.config import load_config
    from mastofargate.images.registry import connect, default_host

    config = load_config(support.write_config(tmp_path))
    host = default_host(config)
    assert ECR_HOST.match(host) and host.endswith(".dkr.ecr.us-east-1.amazonaws.com")
    registry = connect(host)
    assert registry.is_ecr and registry.username == "AWS" and registry.password
    assert registry.auth_config == {"username": "AWS", "password": registry.password, "serveraddress": host}


# ============================================================================================ Docker
@pytest.fixture(scope="module")
def docker_client() -> Any:
    return support.ensure_docker()


@pytest.fixture(scope="module")
def bases(docker_client) -> support.Bases:
    return support.build_standins(docker_client)


@pytest.fixture
def name(docker_client) -> Iterator[str]:
    """A fresh aws.name (so the first push is really first); its local images are removed afterwards."""
    fresh = support.unique_name()
    yield fresh
    support.remove_images(docker_client, fresh)


def _images(command: str, config: Path, bases: support.Bases, *extra: str, **kw: Any) -> Any:
    return support.cli(
        "images",
        command,
        "--config",
        str(config),
        "--registry",
        kw.pop("registry", support.REGISTRY),
        "--platform",
        "linux/amd64",
        *bases.flags(),
        *extra,
        **kw,
    )


def _refs(run: Any) -> dict[str, str]:
    assert run.returncode == 0, run.stderr + run.stdout
    refs = json.loads(run.stdout)  # --json: stdout holds the JSON and nothing else
    assert set(refs) == {"mastodon", "streaming", "backup"}
    return refs


def _split(ref: str) -> tuple[str, str, str]:
    host, rest = ref.split("/", 1)
    repository, tag = rest.rsplit(":", 1)
    return host, repository, tag


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_first_push_then_an_unchanged_push_builds_and_pushes_nothing(docker_client, bases, name, tmp_path):
    config = support.write_config(tmp_path, name)
    refs = _refs(first := _images("push", config, bases, "--json"))
    assert refs["mastodon"].startswith(f"{support.REGISTRY}/{name}/mastodon:{support.VERSION}-")
    assert refs["streaming"].startswith(f"{support.REGISTRY}/{name}/streaming:{support.VERSION}-")
    assert refs["backup"].startswith(f"{support.REGISTRY}/{name}/backup:pg17-")  # follows Postgres, not Mastodon
    assert "3 built, 3 pushed" in first.stderr
    digests = {image: support.manifest_digest(*_split(ref)) for image, ref in refs.items()}
    assert all(digests.values()), "both tags are in the registry"

    web = refs["mastodon"]
    info = docker_client.api.inspect_image(web)
    assert info["Config"]["User"] == "mastodon" and info["Config"]["WorkingDir"] == "/opt/mastodon"
    assert info["Config"]["Labels"]["io.mastofargate.assets-recompiled"] == "0"
    assert support.image_file(docker_client, web, "/opt/mastodon/public/robots.txt") == b"# stand-in robots.txt\n"
    assert support.image_file(docker_client, web, "/opt/mastodon/public/packs/RECOMPILED") is None

    # Forget the local images: a second run that built anything would bring them back.
    for ref in refs.values():
        docker_client.api.remove_image(ref)
    second = _images("push", config, bases, "--json")
    assert _refs(second) == refs
    assert second.stderr.count("up to date (nothing built, nothing pushed)") == 3
    assert "0 built, 0 pushed, 0 B of layers sent" in second.stderr
    for image, ref in refs.items():
        assert support.manifest_digest(*_split(ref)) == digests[image]
        with pytest.raises(Exception, match="No such image"):
            docker_client.api.inspect_image(ref)


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_overlay_changes_the_web_tag_and_recompiles_only_for_asset_sources(docker_client, bases, name, tmp_path):
    config = support.write_config(tmp_path, name)
    overlay = tmp_path / "images" / "mastodon" / "overlay"
    plain = _refs(_images("build", config, bases, "--json"))

    # A public/ file: new web tag, the file is in the image, the base's compiled assets are kept.
    (overlay / "public").mkdir(parents=True)
    (overlay / "public" / "robots.txt").write_text("User-agent: GPTBot\nDisallow: /\n")
    (overlay / "README.md").write_text("not part of the image")
    pushed = _images("push", config, bases, "--json")
    robots = _refs(pushed)
    assert robots["mastodon"] != plain["mastodon"]
    assert robots["streaming"] == plain["streaming"], "the streaming tag ignores the web overlay"
    assert robots["backup"] == plain["backup"], "the backup tag ignores the web overlay"
    assert "recompiling assets" not in pushed.stderr and "1 built, 3 pushed" in pushed.stderr
    web = robots["mastodon"]
    assert (
        support.image_file(docker_client, web, "/opt/mastodon/public/robots.txt")
        == b"User-agent: GPTBot\nDisallow: /\n"
    )
    assert support.image_file(docker_client, web, "/opt/mastodon/README.md") is None
    assert support.image_file(docker_client, web, "/opt/mastodon/public/packs/RECOMPILED") is None

    # A file under app/javascript: assets are recompiled in the build (the stand-in's precompile marker).
    (overlay / "app" / "javascript" / "styles").mkdir(parents=True)
    (overlay / "app" / "javascript" / "styles" / "custom.scss").write_text("body { background: teal; }\n")
    built = _images("build", config, bases, "--json")
    themed = _refs(built)
    assert themed["mastodon"] not in (plain["mastodon"], robots["mastodon"])
    assert "recompiling assets" in built.stderr
    web = themed["mastodon"]
    info = docker_client.api.inspect_image(web)
    assert info["Config"]["User"] == "mastodon", "the final image runs as Mastodon's user again"
    assert info["Config"]["Labels"]["io.mastofargate.assets-recompiled"] == "1"
    assert support.image_file(docker_client, web, "/opt/mastodon/public/packs/RECOMPILED") == (
        b"recompiled by the stand-in\n"
    )
    assert support.image_file(docker_client, web, "/opt/mastodon/app/javascript/styles/custom.scss") is not None
    assert support.image_file(docker_client, web, "/opt/node/bin/node") is None, "no Node.js in the final image"


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_a_failing_build_step_prints_the_step_and_the_tail_of_its_output(docker_client, bases, name, tmp_path):
    config = support.write_config(tmp_path, name)
    marker = tmp_path / "images" / "mastodon" / "overlay" / "app" / "javascript" / "FAIL_ASSET_BUILD"
    marker.parent.mkdir(parents=True)
    marker.write_text("the stand-in's asset compile fails when it sees this file\n")
    run = _images("push", config, bases)
    assert run.returncode == 1
    err = run.stderr
    assert "Building the mastodon image failed at Step" in err and ": RUN set -eu;" in err
    assert "the command exited with code 3; last 20 lines of its output" in err
    assert "stand-in vite: error line 40 of 40" in err and "stand-in vite: error line 21 of 40" in err
    assert "error line 20 of 40" not in err, "only the tail (20 lines) is shown"
    assert "Traceback" not in err + run.stdout
    assert "pushing" not in err


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_registry_login_required_missing_or_wrong_credentials_are_clear_errors(docker_client, bases, name, tmp_path):
    """A second real registry (Debian docker-registry with htpasswd auth) on a free loopback port."""
    host, proc = support.start_auth_registry(tmp_path / "registry")
    try:
        config = support.write_config(tmp_path, name)
        none = _images(
            "push",
            config,
            bases,
            registry=host,
            env={"DOCKER_CONFIG": str(support.docker_config(tmp_path / "no-login"))},
        )
        assert none.returncode == 1
        assert f"Registry {host} requires credentials and none are configured" in none.stderr
        assert f"docker login {host}" in none.stderr and "Traceback" not in none.stderr

        wrong_config = support.docker_config(tmp_path / "wrong", host, "pusher", "wrong-password")
        wrong = _images("push", config, bases, registry=host, env={"DOCKER_CONFIG": str(wrong_config)})
        assert wrong.returncode == 1
        assert f"Registry {host} rejected the credentials from Docker's stored login" in wrong.stderr
        assert "building" not in wrong.stderr, "the credentials are checked before anything is built"

        right_config = support.docker_config(tmp_path / "right", host, "pusher", "right-password")
        right = _images("push", config, bases, "--json", registry=host, env={"DOCKER_CONFIG": str(right_config)})
        assert _refs(right)["mastodon"].startswith(f"{host}/")
    finally:
        support.stop_process(proc)


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_asset_export_uploads_with_types_and_cache_control_and_skips_existing(
    docker_client, bases, name, aws_env, tmp_path
):
    from mastofargate import aws
    from mastofargate.config import load_config
    from mastofargate.images import export_assets

    config_path = support.write_config(tmp_path, name)
    config = load_config(config_path)
    web = _refs(_images("build", config_path, bases, "--json"))["mastodon"]
    s3 = aws.client("s3", "us-east-1")
    bucket = f"media-{config.aws.name}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="media_attachments/keep.png", Body=b"user media, not an asset")

    progress: list[tuple[int, int]] = []
    first = export_assets(config, web, bucket, on_progress=lambda done, total: progress.append((done, total)))
    # Everything under public/ but system/: the stand-in's robots.txt too.
    files = {**support.MASTODON_ASSETS, "robots.txt": b"# stand-in robots.txt\n"}
    assert (first.uploaded, first.skipped) == (len(files), 0)
    assert first.bytes == sum(len(data) for data in files.values())
    assert progress[-1] == (len(files), len(files))
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="assets/")["Contents"]}
    assert keys == {f"assets/{rel}" for rel in files}
    for rel in support.NOT_EXPORTED:
        assert f"assets/{rel}" not in keys, "public/system/ holds user uploads and is never exported"
    # What Mastodon builds from CDN_HOST with S3 on (app/helpers/home_helper.rb, the account serializer's
    # default avatar/header, app/serializers/oembed_serializer.rb): present under the routed prefix.
    for rel in ("avatars/original/missing.png", "headers/original/missing.png", "embed.js"):
        assert f"assets/{rel}" in keys, rel
    expected_types = {
        ".js": "text/javascript; charset=utf-8",
        ".map": "application/json; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".woff2": "font/woff2",
        ".json": "application/json; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".ogg": "audio/ogg",
        ".txt": "text/plain; charset=utf-8",
    }
    fingerprinted = {
        "packs/assets/application-3f9a1c2b.js",
        "packs/assets/application-3f9a1c2b.js.map",
        "packs/assets/common-7d2e4f10.css",
        "packs/assets/inter-9b8c7a6d.woff2",
        "assets/logo-1a2b3c4d.svg",
        "assets/icon-5e6f7a8b.png",
    }
    for rel, data in files.items():
        head = s3.head_object(Bucket=bucket, Key=f"assets/{rel}")
        assert head["ContentType"] == expected_types[Path(rel).suffix], rel
        want = CACHE_CONTROL if rel in fingerprinted else SHORT_CACHE_CONTROL
        assert head["CacheControl"] == want, rel  # embed.js and missing.png keep their names across releases
        assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert CACHE_CONTROL == "public, max-age=31536000, immutable"

    second = export_assets(config, web, bucket)
    assert (second.uploaded, second.skipped, second.bytes) == (0, len(files), 0)

    # An object at an asset key with other bytes is replaced; the CLI reports JSON on stdout.
    s3.put_object(Bucket=bucket, Key="assets/emoji/1f600.svg", Body=b"stale")
    run = support.cli(
        "images",
        "assets",
        "--config",
        str(config_path),
        "--bucket",
        bucket,
        "--image",
        web,
        "--json",
        env={k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        "bucket": bucket,
        "uploaded": 1,
        "skipped": len(files) - 1,
        "bytes": len(files["emoji/1f600.svg"]),
    }
    assert s3.get_object(Bucket=bucket, Key="assets/emoji/1f600.svg")["Body"].read() == files["emoji/1f600.svg"]
    assert s3.get_object(Bucket=bucket, Key="media_attachments/keep.png")["Body"].read() == b"user media, not an asset"


def test_asset_export_without_a_data_stack_says_so(aws_env, tmp_path):
    """Default bucket = the data stack's MediaBucketName output; moto has no such stack."""
    config = support.write_config(tmp_path)
    run = support.cli(
        "images",
        "assets",
        "--config",
        str(config),
        "--image",
        "unused:1",
        env={k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    )
    assert run.returncode == 1
    assert "data stack" in run.stderr and "does not exist yet" in run.stderr and "--bucket" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_the_deploys_asset_hand_off_exports_the_new_image_to_the_media_bucket(
    docker_client, bases, name, aws_env, tmp_path
):
    """deploy's step (deploy.handoff.export_assets) with a real engine, a real local registry and the moto
    server's S3. The data stack's outputs are given to the Target directly (the repository URI is the local
    registry's, which the emulator's ECR cannot be), everything else is the deploy's own path."""
    from mastofargate import aws
    from mastofargate.config import load_config
    from mastofargate.deploy import handoff
    from mastofargate.deploy.options import Tags
    from tests.conftest import plain_run

    config_path = support.write_config(tmp_path, name)
    refs = _refs(_images("push", config_path, bases, "--json"))
    host, repository, tag = _split(refs["mastodon"])
    docker_client.images.remove(refs["mastodon"], force=True)  # the hand-off must pull it from the registry
    run = plain_run(load_config(config_path))
    bucket = f"media-{name}"
    aws.client("s3", "us-east-1").create_bucket(Bucket=bucket)
    run.target._outputs[run.target.data_stack] = {
        "MastodonRepositoryUri": f"{host}/{repository}",
        "StreamingRepositoryUri": f"{host}/{repository}",
        "MediaBucketName": bucket,
    }
    handoff.export_assets(run, Tags(tag, tag), skip=False)
    keys = {o["Key"] for o in aws.client("s3", "us-east-1").list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"assets/{rel}" for rel in support.MASTODON_ASSETS} <= keys


@pytest.mark.parametrize(
    ("key", "immutable"),
    [
        ("assets/packs/assets/application-3f9a1c2b.js", True),
        ("assets/packs/assets/application-DkX_0q-Z.js", True),
        ("assets/assets/icon-5e6f7a8b.png", True),
        ("assets/packs/manifest.json", False),
        ("assets/embed.js", False),
        ("assets/avatars/original/missing.png", False),
        ("assets/emoji/1f600.svg", False),
        ("assets/sounds/boop.ogg", False),
    ],
)
def test_only_fingerprinted_files_are_cached_as_immutable(key: str, immutable: bool) -> None:
    assert cache_control(key) == (CACHE_CONTROL if immutable else SHORT_CACHE_CONTROL)


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_the_backup_image_carries_pgtask_pgbackrest_and_a_postgres_owned_scratch_volume(
    docker_client, bases, name, tmp_path
):
    """The third image: the Postgres base plus what the backup tasks run. The stand-in base's apt-get records
    what the Dockerfile installs (the real packages run in tests/test_pgbackrest.py); the script is the
    package's own, at the path the task commands use; /scratch is a VOLUME owned by postgres (Fargate gives a
    bind mount the image's ownership of a VOLUME path, and the backup task's root file system is read-only)."""
    from mastofargate.resources import data_path
    from mastofargate.stack.pgbackrest import PGTASK_PATH

    config = support.write_config(tmp_path, name)
    refs = _refs(_images("build", config, bases, "--json"))
    backup = refs["backup"]
    assert support.image_file(docker_client, backup, PGTASK_PATH) == (data_path("backup") / "pgtask.py").read_bytes()
    apt = support.image_file(docker_client, backup, "/var/log/apt-standin.log")
    assert apt is not None and b"install -y --no-install-recommends pgbackrest python3-boto3" in apt
    info = docker_client.api.inspect_image(backup)
    assert "/scratch" in (info["Config"]["Volumes"] or {})
    out = docker_client.containers.run(
        backup, ["sh", "-c", f"stat -c '%u %a' /scratch && test -x {PGTASK_PATH} && pgbackrest"], remove=True
    )
    assert out.decode().split("\n")[:2] == ["999 700", "pgBackRest stand-in"]


@pytest.mark.docker
@pytest.mark.xdist_group("docker")
def test_images_assets_looks_up_the_web_base_alone(docker_client, bases, tmp_path):
    """`images assets` needs the web image's reference only: the backup image's base (here one that cannot
    be reached) is not looked up, so the verb works where only Mastodon's registry is reachable."""
    from mastofargate.config import load_config
    from mastofargate.images import Request
    from mastofargate.images.pipeline import image_refs

    config = load_config(support.write_config(tmp_path))
    request = Request(
        config=config,
        images_dir=tmp_path / "images",
        registry=support.REGISTRY,
        mastodon_base=bases.mastodon,
        postgres_base="unreachable.invalid/postgres:17-bookworm",
        platform="linux/amd64",
    )
    refs = image_refs(request, only=("mastodon",))
    assert list(refs) == ["mastodon"] and refs["mastodon"].startswith(f"{support.REGISTRY}/{config.aws.name}/mastodon:")

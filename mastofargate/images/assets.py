"""Asset export: copy the web image's public files into the media bucket.

With S3 on, Mastodon addresses through `CDN_HOST` not only the compiled packs and assets but every file of
`public/` it links: emoji, sounds, the default avatar and header (`/avatars/original/missing.png`,
`/headers/original/missing.png`, app/helpers/home_helper.rb and the account serializer), `embed.js`
(app/serializers/oembed_serializer.rb), error images. So everything under `public/` except `system/` (local
user uploads) goes to `s3://BUCKET/assets/...`, which CloudFront serves for every path that is not media.
Fingerprinted files (packs/ and assets/ names carrying a content hash) are cached a year as immutable;
the rest (embed.js, missing.png, manifest.json, ...) keep their names across releases and are cached an
hour. Because every image's files are added
(never deleted) before a rollout, old and new tasks both find their fingerprinted files during a rolling
deploy. The files come from a created-but-never-started container (works for any platform's image), and
objects whose content is already in the bucket are skipped, so a re-run uploads nothing.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import tarfile
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mastofargate import aws
from mastofargate.config import Config
from mastofargate.errors import MastofargateError
from mastofargate.images import engine
from mastofargate.stack.media import ASSET_PREFIX, EXCLUDED_PUBLIC

PUBLIC_DIR = "/opt/mastodon/public"
CACHE_CONTROL = "public, max-age=31536000, immutable"  # content-hashed names: a new build means a new name
SHORT_CACHE_CONTROL = "public, max-age=3600"  # stable names (embed.js, missing.png) change with a release
# A content hash in a file name: Vite's `name-HASH.ext` (8+ chars of base64url) and Sprockets' 64-hex digest.
_FINGERPRINT = re.compile(r"-[A-Za-z0-9_-]{8,}\.[a-z0-9]+(\.(gz|br|map))?$")
# Explicit types for what browsers are strict about (module scripts, fonts, SVG, WASM); the system's
# mime.types varies between machines, so these do not depend on it.
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".gz": "application/gzip",
    ".br": "application/x-brotli",
}
UPLOAD_THREADS = 16


@dataclass(frozen=True)
class AssetExportResult:
    uploaded: int
    skipped: int
    bytes: int  # bytes uploaded


def cache_control(key: str) -> str:
    """Immutable for a year only when the name changes with the content (packs/ and assets/ fingerprints)."""
    rel = PurePosixPath(key).relative_to(ASSET_PREFIX) if key.startswith(f"{ASSET_PREFIX}/") else PurePosixPath(key)
    if rel.parts[:1] in (("packs",), ("assets",)) and _FINGERPRINT.search(rel.name):
        return CACHE_CONTROL
    return SHORT_CACHE_CONTROL


def content_type(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def default_bucket(config: Config) -> str:
    """The data stack's media bucket; a clear error when the stack is not there yet."""
    from mastofargate.target import Target

    target = Target(config)
    bucket = target.stack_outputs(target.data_stack).get("MediaBucketName")
    if not bucket:
        raise MastofargateError(
            f"There is no media bucket to upload assets to: the data stack {target.data_stack} does not exist yet "
            f"in {target.region}.",
            why="assets go to the media bucket the data stack creates (output MediaBucketName)",
            fix="deploy first ('mastofargate deploy' creates the data stack), or pass --bucket NAME",
        )
    return bucket


def export_assets(
    config: Config,
    image_ref: str,
    bucket: str,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> AssetExportResult:
    """Upload the image's public/ (all but system/) to s3://bucket/assets/...

    `on_progress(done, total)` is called as files are checked or uploaded. The image is pulled when the
    engine does not have it (credentials as for `images push`)."""
    client = engine.connect()
    _ensure_local(client, image_ref)
    s3 = aws.client("s3", config.aws.region)
    with tempfile.TemporaryDirectory(prefix="mastofargate-assets-") as tmp:
        files = _copy_out(client, image_ref, Path(tmp))
        existing = _existing(s3, bucket)
        total, done = len(files), 0
        uploaded = skipped = sent = 0

        def one(item: tuple[str, Path]) -> int:
            key, path = item
            data = path.read_bytes()
            have = existing.get(key)
            if have is not None and _same(have, data):
                return -1
            with aws.aws_errors(f"uploading s3://{bucket}/{key}"):
                s3.put_object(
                    Bucket=bucket, Key=key, Body=data, ContentType=content_type(key), CacheControl=cache_control(key)
                )
            return len(data)

        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            for n in pool.map(one, files):
                done += 1
                if n < 0:
                    skipped += 1
                else:
                    uploaded, sent = uploaded + 1, sent + n
                if on_progress is not None:
                    on_progress(done, total)
    return AssetExportResult(uploaded=uploaded, skipped=skipped, bytes=sent)


def _ensure_local(client: Any, image_ref: str) -> None:
    if engine.local_image(client, image_ref) is not None:
        return
    from mastofargate.images.progress import make_display
    from mastofargate.images.registry import connect

    host = image_ref.split("/", 1)[0]
    auth = connect(host).auth_config if ("." in host or ":" in host or host == "localhost") else None
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(image_ref)
    with make_display(to_stderr=True) as display, engine.engine_errors(f"pulling {image_ref}"):
        for event in client.api.pull(repo, tag=tag or "latest", stream=True, decode=True, auth_config=auth):
            if "error" in event:
                raise MastofargateError(
                    f"Cannot get the image {image_ref} to export its assets.",
                    why=str(event.get("error")),
                    fix="push it first ('mastofargate images push'), or check the registry credentials",
                )
            engine.layer_event(display, "assets", "pull", event)


def _copy_out(client: Any, image_ref: str, dest: Path) -> list[tuple[str, Path]]:
    """(S3 key, local file) for every regular file under public/ except EXCLUDED_PUBLIC."""
    from docker.errors import NotFound

    with engine.engine_errors(f"reading assets from {image_ref}"):
        container = client.api.create_container(image_ref, command=["true"], network_disabled=True)["Id"]
        try:
            try:
                stream, _stat = client.api.get_archive(container, PUBLIC_DIR)
            except NotFound:
                raise MastofargateError(
                    f"The image {image_ref} has no {PUBLIC_DIR}.",
                    why="the assets CloudFront serves come from the web image's public/ folder",
                    fix="build the image with 'mastofargate images build' (or 'make images')",
                ) from None
            archive = dest / "public.tar"
            with archive.open("wb") as out:
                for chunk in stream:
                    out.write(chunk)
            files = _unpack(archive, dest / "files")
            archive.unlink()
        finally:
            client.api.remove_container(container, force=True)
    return sorted(files)


def exported(rel: PurePosixPath) -> bool:
    """A path relative to public/ that is uploaded: not under system/ (user uploads)."""
    return bool(rel.parts) and rel.parts[0] not in EXCLUDED_PUBLIC


def _unpack(archive: Path, root: Path) -> list[tuple[str, Path]]:
    out = []
    with tarfile.open(archive) as tar:
        for member in tar:
            full = PurePosixPath(member.name)
            if not member.isfile() or full.is_absolute() or ".." in full.parts or len(full.parts) < 2:
                continue  # directories, links and anything pointing outside the tree
            rel = PurePosixPath(*full.parts[1:])  # the archive's top folder is public/
            if not exported(rel):
                continue
            path = root.joinpath(*rel.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            if src is None:
                continue
            with path.open("wb") as f:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            out.append((f"{ASSET_PREFIX}/{rel.as_posix()}", path))
    return out


def _existing(s3: Any, bucket: str) -> dict[str, tuple[str, int]]:
    """key -> (ETag, size) under the assets prefix: one listing instead of a request per file."""
    found: dict[str, tuple[str, int]] = {}
    with aws.aws_errors(f"listing s3://{bucket}/{ASSET_PREFIX}/"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{ASSET_PREFIX}/"):
            for obj in page.get("Contents", []):
                found[obj["Key"]] = (str(obj.get("ETag", "")).strip('"'), int(obj.get("Size", 0)))
    return found


def _same(have: tuple[str, int], data: bytes) -> bool:
    """The object holds these bytes: its ETag is their MD5 (single-part, SSE-S3), or sizes match when
    the ETag is not an MD5 (multipart uploads)."""
    etag, size = have
    if "-" in etag:
        return size == len(data)
    return etag == hashlib.md5(data, usedforsecurity=False).hexdigest() and size == len(data)


__all__ = [
    "CACHE_CONTROL",
    "SHORT_CACHE_CONTROL",
    "AssetExportResult",
    "cache_control",
    "content_type",
    "default_bucket",
    "export_assets",
]

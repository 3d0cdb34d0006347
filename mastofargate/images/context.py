"""What goes into an image, and the content-addressed tag that names it.

Pure apart from reading files: the build context (a Dockerfile plus, for the web image, the overlay) is
collected once, hashed together with the build arguments, the build target, the base image's digest and
the platform, and then sent to the engine as exactly those bytes. So the tag names what was built, and
an unchanged tag means there is nothing to build.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from mastofargate.errors import UsageError

IMAGES = ("mastodon", "streaming", "backup")
# The backup image's context: its Dockerfile and the task script, copied to PGTASK_PATH (stack/pgbackrest.py).
PGTASK_FILE = "pgtask.py"
OVERLAY_DIR = "overlay"
# Left out of the overlay: the folder's own instructions, and dotfiles (.DS_Store, .gitkeep, editor files).
OVERLAY_README = "README.md"
# Paths the compiled assets (public/packs, public/assets) are built from: an overlay file matching one of
# them makes the build recompile assets. Patterns match overlay paths relative to /opt/mastodon.
ASSET_SOURCES = (
    "app/javascript/*",
    "app/assets/*",
    "lib/assets/*",
    "vendor/assets/*",
    "config/vite*",
    "vite.config.*",
    "package.json",
    "yarn.lock",
    "tsconfig.json",
    "babel.config.*",
    "postcss.config.*",
    "config/themes.yml",
    "config/webpack/*",
    "config/webpacker.yml",
)
# Folders Mastodon writes at run time (owned by the mastodon user in the upstream image). COPY resets the
# owner and mode of every folder it copies into, so overlay files there would make them root-owned and
# break Puma's pid file, Sidekiq's readiness file or local uploads.
RUNTIME_WRITABLE = ("tmp/", "log/", "public/system/")
# Bump to change every tag at once (e.g. when the hashing itself changes).
HASH_VERSION = "mastofargate-image-1"
TAG_HASH_CHARS = 12
# Tar entries get a fixed time so the context, like the tag, depends on content only.
_EPOCH = 0


@dataclass(frozen=True)
class ContextFile:
    path: str  # posix path inside the build context, e.g. "overlay/public/robots.txt"
    data: bytes
    executable: bool = False


@dataclass(frozen=True)
class ImageSource:
    """One image's build inputs, read from disk."""

    image: str  # "mastodon" | "streaming" | "backup"
    dockerfile: Path
    files: tuple[ContextFile, ...]  # Dockerfile first, then overlay files sorted by path
    overlay: tuple[str, ...] = ()  # overlay paths relative to /opt/mastodon

    @property
    def recompile_assets(self) -> bool:
        return any(touches_assets(p) for p in self.overlay)

    def context_tar(self) -> bytes:
        """The build context as an uncompressed tar: exactly the hashed files, nothing else."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirs: set[str] = set()
            if self.image == "mastodon":
                dirs.add(OVERLAY_DIR)  # COPY overlay/ needs the folder even when it is empty
            for f in self.files:
                parts = f.path.split("/")[:-1]
                dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
            for d in sorted(dirs):
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _EPOCH
                tar.addfile(info)
            for f in self.files:
                info = tarfile.TarInfo(f.path)
                info.size, info.mode, info.mtime = len(f.data), 0o755 if f.executable else 0o644, _EPOCH
                tar.addfile(info, io.BytesIO(f.data))
        return buf.getvalue()


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines one image; `tag` is derived from all of it."""

    source: ImageSource
    version: str  # Mastodon version, the tag's readable prefix
    buildargs: dict[str, str]
    target: str | None
    base_digests: dict[str, str]  # build arg naming a base image -> its digest (or image ID)
    platform: str
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        h = hashlib.sha256()

        def feed(*parts: str | bytes) -> None:
            for part in parts:
                data = part.encode() if isinstance(part, str) else part
                h.update(len(data).to_bytes(8, "big"))
                h.update(data)

        feed(HASH_VERSION, self.source.image)
        for f in self.source.files:
            feed("file", f.path, "x" if f.executable else "-", f.data)
        for key in sorted(self.buildargs):
            feed("arg", key, self.buildargs[key])
        feed("target", self.target or "")
        for key in sorted(self.base_digests):
            feed("base", key, self.base_digests[key])
        feed("platform", self.platform)
        object.__setattr__(self, "digest", h.hexdigest())

    @property
    def image(self) -> str:
        return self.source.image

    @property
    def tag(self) -> str:
        return f"{self.version}-{self.digest[:TAG_HASH_CHARS]}"


def touches_assets(path: str) -> bool:
    """Does this overlay path (relative to /opt/mastodon) change what assets are compiled from?"""
    return any(fnmatchcase(path, pattern) for pattern in ASSET_SOURCES)


def _excluded(rel: str) -> bool:
    return rel == OVERLAY_README or any(part.startswith(".") for part in rel.split("/"))


def read_overlay(overlay: Path) -> list[ContextFile]:
    """Overlay files sorted by path (README.md and dotfiles left out); [] when the folder is absent."""
    if not overlay.is_dir():
        return []
    files: list[ContextFile] = []
    for root, dirnames, filenames in os.walk(overlay):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            full = Path(root, name)
            rel = full.relative_to(overlay).as_posix()
            if _excluded(rel):
                continue
            try:
                st = full.stat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                data = full.read_bytes()
            except OSError as e:
                raise UsageError(f"cannot read overlay file {full}: {e.strerror}") from None
            files.append(ContextFile(f"{OVERLAY_DIR}/{rel}", data, bool(st.st_mode & 0o111)))
    return sorted(files, key=lambda f: f.path)


def bundled_images_dir() -> Path:
    """The Dockerfiles shipped with mastofargate: package data (mastofargate/data/images), so an installed
    wheel builds images with no checkout of this project. pip, pipx and uv install packages as plain files,
    so the resource is a real folder the build context can be read from."""
    from mastofargate.resources import data_path

    return data_path("images")


def images_dir_for(config_path: Path) -> Path:
    """The user's images/ folder: next to mastofargate.toml (it may hold only an overlay)."""
    return config_path.resolve().parent / "images"


def read_source(image: str, images_dir: Path) -> ImageSource:
    """An image's Dockerfile (the user's if present, else mastofargate's) and, for the web image, overlay."""
    candidates = [images_dir / image / "Dockerfile", bundled_images_dir() / image / "Dockerfile"]
    dockerfile = next((p for p in candidates if p.is_file()), None)
    if dockerfile is None:
        raise UsageError(
            f"no Dockerfile for the {image} image",
            why="looked in " + " and ".join(str(p) for p in candidates),
            fix="reinstall mastofargate (its wheel ships the Dockerfiles), or put a Dockerfile at the first of "
            "those paths",
        )
    files = [ContextFile("Dockerfile", dockerfile.read_bytes())]
    overlay: list[str] = []
    if image == "backup":
        # always mastofargate's own script: the tasks' commands (deploy/backup_jobs.py) are written for it
        from mastofargate.resources import data_path

        files.append(ContextFile(PGTASK_FILE, (data_path("backup") / PGTASK_FILE).read_bytes(), executable=True))
    if image == "mastodon":
        extra = read_overlay(images_dir / image / OVERLAY_DIR)
        files += extra
        overlay = [f.path.removeprefix(OVERLAY_DIR + "/") for f in extra]
        blocked = [p for p in overlay if p.startswith(RUNTIME_WRITABLE)]
        if blocked:
            raise UsageError(
                f"overlay file {images_dir / image / OVERLAY_DIR / blocked[0]} is in a folder Mastodon writes at "
                "run time",
                why=f"copying into {', '.join(RUNTIME_WRITABLE)} would make those folders root-owned in the image",
                fix="move the file elsewhere, or remove it from the overlay",
            )
    return ImageSource(image=image, dockerfile=dockerfile, files=tuple(files), overlay=tuple(overlay))

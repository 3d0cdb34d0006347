"""Files shipped inside the package (mastofargate/data/): the Dockerfiles, the overlay folder's README and
the templates of the files `ci init` writes. Found through importlib.resources, never relative to a
checkout, so an installed wheel (pipx, uv tool, pip) works from any folder.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from mastofargate.errors import MastofargateError


def data_path(*parts: str) -> Path:
    """A file or folder under mastofargate/data as a filesystem path.

    pip, pipx and uv install packages as plain files, so the resource is a real path (the image build
    reads whole folders from it). A zipped install would not be, and is reported rather than half-working.
    """
    resource = files("mastofargate").joinpath("data", *parts)
    path = Path(str(resource))
    if not path.exists():
        raise MastofargateError(
            f"mastofargate's packaged file data/{'/'.join(parts)} is missing",
            why=f"looked for it at {path}; the installation is incomplete or zipped",
            fix="reinstall mastofargate (pipx install --force mastofargate, or uv tool install --reinstall)",
        )
    return path


def read_text(*parts: str) -> str:
    """The text of a packaged file (a template of a generated file)."""
    return data_path(*parts).read_text(encoding="utf-8")

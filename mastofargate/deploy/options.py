"""What each deploy-side verb takes: one small options type per verb, and the image tags being deployed.

The command layer builds these from its flags; nothing below it reads flags, the environment or a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Tags:
    """The two images a release runs, and the backup image (Postgres + pgBackRest + pgtask.py) the backup tasks
    and the Postgres task run. The backup image does not follow Mastodon's version: a release is the two
    Mastodon tags (they alone decide whether migrations run, so `backup` takes no part in comparisons); the
    backup tag is carried along, "" until it is settled (preflight.settle_backup_tag)."""

    mastodon: str
    streaming: str
    backup: str = field(default="", compare=False)

    def describe(self) -> str:
        """The release (the two Mastodon images); the backup image is reported on its own where it matters."""
        return f"mastodon {self.mastodon}, streaming {self.streaming}"


@dataclass(frozen=True)
class ImageChoice:
    """Which images to deploy: explicit tags, an `images push --json` file, or --build (none of them: what
    runs now)."""

    mastodon_tag: str | None = None
    streaming_tag: str | None = None
    images_json: Path | None = None
    build: bool = False


@dataclass(frozen=True)
class PlanOptions:
    """`mastofargate plan`."""

    config_path: Path = Path("mastofargate.toml")
    images: ImageChoice = ImageChoice()


@dataclass(frozen=True)
class DeployOptions:
    """`mastofargate deploy` (and `rollback`, which deploys earlier tags with migrations skipped)."""

    config_path: Path = Path("mastofargate.toml")
    images: ImageChoice = ImageChoice()
    yes: bool = False
    dry_run: bool = False
    allow_data_replacement: bool = False
    admin: bool = True
    admin_username: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    no_wait: bool = False
    data_only: bool = False
    skip_assets: bool = False
    skip_migrations: bool = False  # rollback: migrations are not reverted; older code runs on the newer schema


@dataclass(frozen=True)
class RollbackOptions:
    """`mastofargate rollback`."""

    config_path: Path = Path("mastofargate.toml")
    yes: bool = False
    dry_run: bool = False
    timeout: float = DEFAULT_TIMEOUT
    no_wait: bool = False

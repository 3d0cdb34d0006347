"""Checks of command-line flags that need no AWS: run them first, before any AWS call or change.

`deploy` and `plan` used to check an image tag or `--admin-username` only after AWS calls (and, for the
username, after a created stack), so a typo cost a stack update and left a half-done first install. Every
check here is pure and raises `UsageError` (exit 2) naming the flag, the value and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

from mastofargate.errors import UsageError

# Docker's tag grammar (distribution/reference): a word character, then up to 127 of [A-Za-z0-9_.-].
# ECR and `docker push` refuse anything else, so a tag outside it can only fail later, on AWS.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# Mastodon's rule for local accounts (app/models/account.rb): /\A[a-z0-9_]+\z/i, at most 30 characters.
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,30}")


def image_tag(flag: str, value: str) -> str:
    """An image tag as Docker and ECR accept it ('v4.5.4-3f2a9c1d'), not a full reference or a digest."""
    if not _TAG.fullmatch(value):
        hint = ""
        if ":" in value or "/" in value or "@" in value:
            hint = " (give only the tag, the part after the last ':')"
        raise UsageError(
            f"{flag} {value!r} is not an image tag{hint}; allowed: 1-128 of letters, digits, '_', '.', '-', "
            "not starting with '.' or '-'",
            fix="use the tag printed by 'mastofargate images push'",
        )
    return value


def admin_username(value: str) -> str:
    """The Owner's username as Mastodon accepts it for a local account."""
    if not _USERNAME.fullmatch(value):
        raise UsageError(
            f"--admin-username {value!r} is not a Mastodon username; allowed: 1-30 letters, digits or '_'",
            fix="pass another --admin-username, or leave it out to use the admin email's local part",
        )
    return value


def images_json_tags(path: Path) -> tuple[str, str]:
    """The (mastodon, streaming) tags an `--images-json` file names, each checked as a tag. Reads the file
    with the deploy layer's own parser, so both agree on the format."""
    from mastofargate.deploy.preflight import tags_from_images_json

    tags = tags_from_images_json(path)
    return image_tag(f"--images-json {path}: mastodon", tags.mastodon), image_tag(
        f"--images-json {path}: streaming", tags.streaming
    )


def deploy_flags(
    *,
    mastodon_tag: str | None = None,
    streaming_tag: str | None = None,
    images_json: Path | None = None,
    admin_username_value: str | None = None,
    build: bool = False,
) -> None:
    """Every flag of `deploy` and `plan` that can be wrong without asking AWS; call it before the first AWS
    call. Raises UsageError (exit 2) for the first bad one; returns None when all are fine."""
    if mastodon_tag is not None:
        image_tag("--mastodon-tag", mastodon_tag)
    if streaming_tag is not None:
        image_tag("--streaming-tag", streaming_tag)
    if build and (mastodon_tag or streaming_tag):
        raise UsageError("--build makes its own tags; leave out --mastodon-tag/--streaming-tag")
    if images_json is not None:
        images_json_tags(images_json)
    if admin_username_value is not None:
        admin_username(admin_username_value)

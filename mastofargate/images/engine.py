"""The Docker engine: connect, look up and pull base images, build, push — with progress and errors
a user can act on.

Uses the Docker SDK's low-level API with decoded event streams, so every build step and every layer's
bytes reach the display as they happen. Works with the classic builder (this project's test engine has no
BuildKit): the build context is sent as a ready-made tar.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mastofargate.errors import MastofargateError
from mastofargate.images.context import ImageSpec
from mastofargate.images.progress import LiveDisplay, PlainDisplay

Display = PlainDisplay | LiveDisplay
# A build can sit silent for minutes (the asset compile); the SDK's timeout is per socket read.
ENGINE_TIMEOUT = 3600
TAIL_LINES = 20
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_EXIT = re.compile(r"^The command .* returned a non-zero code: (\d+)$", re.DOTALL)
_NOISE = re.compile(r"^( ---> |Removing intermediate container |Successfully (built|tagged) )")
START_ENGINE = (
    "start a Docker engine ('sudo systemctl start docker', or 'sudo dockerd &' where there is no systemd; "
    "in the mastofargate checkout 'sudo bash scripts/ensure-docker.sh' installs and starts one), "
    "or point DOCKER_HOST at a running engine"
)


def connect() -> Any:
    """A Docker client that has answered a ping; MastofargateError (no traceback) when there is none."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=ENGINE_TIMEOUT)
        client.ping()
    except DockerException as e:
        raise MastofargateError(
            "Cannot reach a Docker engine: building images needs one.",
            why=_engine_reason(e),
            fix=START_ENGINE,
        ) from None
    return client


def _engine_reason(e: BaseException) -> str:
    import os

    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    text = str(e)
    if "FileNotFoundError" in text or "No such file" in text:
        return f"nothing listens at {host}"
    if "Permission denied" in text or "PermissionError" in text:
        return f"no permission to use {host} (run as root or join the 'docker' group)"
    if "Connection refused" in text or "ConnectionRefused" in text:
        return f"{host} refused the connection"
    return f"{host}: {text[:300]}"


@contextmanager
def engine_errors(doing: str) -> Iterator[None]:
    """Engine failures mid-operation (API errors, a dropped connection) as MastofargateError."""
    import requests
    from docker.errors import APIError, DockerException

    try:
        yield
    except APIError as e:
        raise MastofargateError(f"The Docker engine refused {doing}.", why=str(e.explanation or e)[:500]) from None
    except (DockerException, requests.RequestException) as e:
        raise MastofargateError(f"Lost the Docker engine while {doing}.", why=str(e)[:500], fix=START_ENGINE) from None


# ---------------------------------------------------------------------------------------------- images
def local_image(client: Any, ref: str) -> dict[str, Any] | None:
    from docker.errors import ImageNotFound

    with engine_errors(f"inspecting {ref}"):
        try:
            return dict(client.api.inspect_image(ref))
        except ImageNotFound:
            return None


def _platform_of(info: dict[str, Any]) -> str:
    variant = info.get("Variant")
    return f"{info.get('Os', 'linux')}/{info.get('Architecture', '')}" + (f"/{variant}" if variant else "")


def same_platform(have: str, want: str) -> bool:
    norm = {"linux/arm64/v8": "linux/arm64"}
    return norm.get(have, have) == norm.get(want, want)


@dataclass(frozen=True)
class Base:
    """A resolved base image: what to put in FROM, and the digest that goes into the tag."""

    ref: str  # as given
    build_ref: str  # what the build uses: repo@digest when the registry's digest is known, else ref
    digest: str  # manifest (list) digest from a registry, or the local image ID
    local: bool  # present locally for the wanted platform


def resolve_base(client: Any, ref: str, platform: str, auth: dict[str, str] | None = None) -> Base:
    """The base's digest without pulling it: the local copy's, else the registry's (one small request)."""
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(ref)
    pinned = tag if tag and tag.startswith("sha256:") else None
    info = local_image(client, ref)
    if info is not None and same_platform(_platform_of(info), platform):
        digest = pinned or next(
            (d.split("@", 1)[1] for d in info.get("RepoDigests") or [] if d.split("@", 1)[0] == repo), None
        )
        if digest:
            return Base(ref, f"{repo}@{digest}", digest, True)
        return Base(ref, ref, str(info["Id"]), True)
    from docker.errors import APIError

    with engine_errors(f"looking up the base image {ref}"):
        try:
            dist = client.api.inspect_distribution(ref, auth_config=auth)
        except APIError as e:
            here = f"the local copy is {_platform_of(info)}, not {platform}; " if info is not None else ""
            raise MastofargateError(
                f"Base image {ref} is neither here for {platform} nor reachable in its registry.",
                why=here + str(e.explanation or e)[:300],
                fix="check the name (--mastodon-base / --streaming-base, or deployment.mastodon_version), "
                "the network, and 'docker login' for private registries",
            ) from None
    platforms = {f"{p.get('os')}/{p.get('architecture')}" for p in dist.get("Platforms") or []}
    if platforms and not any(same_platform(p, platform) for p in platforms):
        raise MastofargateError(
            f"Base image {ref} has no {platform} variant.",
            why=f"it is published for {', '.join(sorted(platforms))}",
            fix="pick another --platform (or deployment.arch in mastofargate.toml)",
        )
    digest = str(dist["Descriptor"]["digest"])
    return Base(ref, f"{repo}@{digest}", digest, False)


def pull(client: Any, ref: str, platform: str, display: Display, label: str, auth: dict[str, str] | None) -> None:
    display.note(f"{label}: pulling {ref} ({platform})")
    repo, tag = _split(ref)
    with engine_errors(f"pulling {ref}"):
        events = client.api.pull(repo, tag=tag, stream=True, decode=True, platform=platform, auth_config=auth)
        for event in events:
            if "error" in event:
                raise MastofargateError(
                    f"Pulling {ref} failed.",
                    why=_event_error(event),
                    fix="check the name, the network, and 'docker login' for private registries",
                )
            layer_event(display, label, "pull", event)
    display.done(label)


def _split(ref: str) -> tuple[str, str | None]:
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(ref)
    return repo, tag or "latest"


def layer_event(display: Display, image: str, action: str, event: dict[str, Any]) -> int:
    """Forward one pull/push progress event; returns the layer's byte count so far (0 for others)."""
    layer, status = event.get("id"), str(event.get("status", ""))
    if not layer or not status or len(str(layer)) != 12:
        return 0
    detail = event.get("progressDetail") or {}
    current, total = int(detail.get("current") or 0), int(detail.get("total") or 0)
    display.layer(image, action, str(layer), status, current, total)
    return current


def _event_error(event: dict[str, Any]) -> str:
    detail = event.get("errorDetail") or {}
    return str(detail.get("message") or event.get("error") or "unknown error").strip()


# ---------------------------------------------------------------------------------------------- build
def build(client: Any, spec: ImageSpec, ref: str, display: Display) -> str:
    """Build `spec` and tag it `ref`; returns the image ID. A failing step raises with the output's tail."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    step = ""
    image_id = ""
    display.note(f"{spec.image}: building {ref}" + (" (recompiling assets)" if spec.source.recompile_assets else ""))
    with engine_errors(f"building the {spec.image} image"):
        events = client.api.build(
            fileobj=_as_file(spec.source.context_tar()),
            custom_context=True,
            tag=ref,
            buildargs=spec.buildargs,
            target=spec.target,
            platform=spec.platform,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for line, event in _lines(events):
            if event is not None:
                if "error" in event:
                    raise _build_failure(spec, step, _event_error(event), tail)
                if "aux" in event and isinstance(event["aux"], dict) and "ID" in event["aux"]:
                    image_id = str(event["aux"]["ID"])
                else:
                    layer_event(display, spec.image, "pull", event)
                continue
            m = _STEP.match(line)
            if m:
                step = line
                tail.clear()
                display.step(spec.image, int(m[1]), int(m[2]), m[3])
            elif line.strip() and not _NOISE.match(line):
                tail.append(line)
    display.done(spec.image)
    if not image_id:
        info = local_image(client, ref)
        image_id = str(info["Id"]) if info else ""
    return image_id


def _as_file(data: bytes) -> Any:
    import io

    return io.BytesIO(data)


def _lines(events: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Split the build stream into whole output lines; other events pass through unchanged."""
    pending = ""
    for event in events:
        if "stream" not in event:
            yield "", event
            continue
        pending += str(event["stream"])
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line.rstrip("\r"), None
    if pending:
        yield pending, None


def _build_failure(spec: ImageSpec, step: str, message: str, tail: deque[str]) -> MastofargateError:
    m = _EXIT.match(message)
    if m:  # the engine repeats the whole command; the step line already names it
        message = f"the command exited with code {m[1]}"
    step = " ".join(step.split())
    step = step if len(step) <= 160 else step[:157] + "..."
    output = "\n".join(f"  | {line}" for line in tail) if tail else "  (the step printed nothing)"
    return MastofargateError(
        f"Building the {spec.image} image failed at {step or 'the start'}",
        why=f"{message}; last {len(tail)} lines of its output:\n{output}",
        fix=f"fix the cause above (overlay files in images/{spec.image}/overlay or the Dockerfile), then run again",
    )


# ---------------------------------------------------------------------------------------------- push
def push(client: Any, ref: str, display: Display, image: str, auth: dict[str, str] | None) -> int:
    """Push `ref`; returns the layer bytes sent (0 when the registry had every layer)."""
    repo, tag = _split(ref)
    sent: dict[str, int] = {}
    pushed: set[str] = set()
    with engine_errors(f"pushing {ref}"):
        for event in client.api.push(repo, tag=tag, stream=True, decode=True, auth_config=auth):
            if "error" in event:
                raise _push_failure(ref, _event_error(event))
            current = layer_event(display, image, "push", event)
            layer = str(event.get("id", ""))
            if event.get("status") == "Pushing" and layer:
                sent[layer] = max(sent.get(layer, 0), current)
            elif event.get("status") == "Pushed" and layer:
                pushed.add(layer)
    display.done(image)
    return sum(n for layer, n in sent.items() if layer in pushed)


def _push_failure(ref: str, message: str) -> MastofargateError:
    host = ref.split("/", 1)[0]
    low = message.lower()
    if any(word in low for word in ("unauthorized", "denied", "authentication required", "no basic auth")):
        return MastofargateError(
            f"Registry {host} refused the push of {ref}.",
            why=message,
            fix=f"for ECR check the AWS credentials' push permissions; otherwise run 'docker login {host}'",
        )
    if "name unknown" in low or "does not exist" in low:
        return MastofargateError(
            f"Registry {host} has no repository for {ref}.",
            why=message,
            fix="deploy the data stack first (it creates the ECR repositories), or pass --registry",
        )
    return MastofargateError(f"Pushing {ref} failed.", why=message, fix="check the registry and the network")

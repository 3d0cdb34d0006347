"""The local AWS emulator (the top-level `sandbox` package) for deploy tests, and helpers to drive the CLI.

`start_sandbox()` runs `python -m sandbox --port 0` (a moto server with stand-ins so the
real templates deploy) and returns its URL; `Recorder` records every AWS API call the CLI makes in this
process (botocore's `_make_api_call`), so tests can assert what was and was not called, and in which order.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mastofargate import aws
from mastofargate.deploy import context
from mastofargate.deploy.polling import Poller, SystemClock

POLL_SECONDS = 0.1

REPO = Path(__file__).resolve().parents[1]

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "CI": "1",
}
AWS_ENV_CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_ROLE_ARN")
MUTATING_PREFIXES = (
    "Create",
    "Put",
    "Update",
    "Delete",
    "Execute",
    "Run",
    "Register",
    "Modify",
    "Start",
    "Stop",
    "Restore",
    "Tag",
)
MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": ""},
    "layers": [],
}


@dataclass
class Sandbox:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


def start_sandbox(log_dir: Path, *options: str) -> Sandbox:
    """`python -m sandbox` on a free port, fast durations (later `options` override them), until it listens."""
    log = log_dir / "sandbox.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            "0",
            "--task-seconds",
            "0.3",
            "--rollout-seconds",
            "0.3",
            *options,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,  # the emulator is the top-level `sandbox` package, beside (not inside) mastofargate
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text()
        if "listening on " in text:
            url = text.split("listening on ", 1)[1].split()[0]
            return Sandbox(url, proc, log)
        if proc.poll() is not None:
            raise RuntimeError(f"the sandbox exited:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the sandbox did not start within 60 s")


@contextlib.contextmanager
def running_sandbox(log_dir: Path, *options: str) -> Iterator[Sandbox]:
    """The emulator, running, with boto3 and the CLI pointed at it; stopped afterwards, whatever happens."""
    sandbox = start_sandbox(log_dir, *options)
    try:
        with aws_env(sandbox.url):
            yield sandbox
    finally:
        sandbox.stop()


@contextlib.contextmanager
def aws_env(url: str) -> Iterator[None]:
    """Point boto3 (and the tool) at the emulator for the duration; restore the environment after."""
    saved = {k: os.environ.get(k) for k in (*AWS_ENV, *AWS_ENV_CLEARED, "AWS_ENDPOINT_URL")}
    for name in AWS_ENV_CLEARED:
        os.environ.pop(name, None)
    os.environ.update({**AWS_ENV, "AWS_ENDPOINT_URL": url})
    aws.reset_clients()
    original_poller = context.system_poller
    # The emulator's tasks and rollouts take fractions of a second: the CLI's waits get a short interval
    # (passed in, as the product takes its clock and interval from its caller; no environment knob).
    context.system_poller = lambda interval=POLL_SECONDS: Poller(SystemClock(), POLL_SECONDS)  # type: ignore[assignment]
    try:
        yield
    finally:
        context.system_poller = original_poller  # type: ignore[assignment]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        aws.reset_clients()


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]


@dataclass
class Recorder:
    """Every AWS API call made in this process while recording."""

    calls: list[Call] = field(default_factory=list)

    def ops(self, service: str | None = None) -> list[str]:
        return [c.operation for c in self.calls if service is None or c.service == service]

    def mutating(self) -> list[str]:
        return [f"{c.service}:{c.operation}" for c in self.calls if c.operation.startswith(MUTATING_PREFIXES)]

    def find(self, operation: str) -> list[Call]:
        return [c for c in self.calls if c.operation == operation]


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    from botocore.client import BaseClient

    recorder = Recorder()
    original = BaseClient._make_api_call

    def make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        recorder.calls.append(Call(self.meta.service_model.service_name, operation_name, dict(api_params)))
        return original(self, operation_name, api_params)

    BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
    try:
        yield recorder
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


@dataclass
class CliResult:
    exit_code: int
    output: str


def run_cli(*args: str) -> CliResult:
    """The CLI in this process, with main()'s error handling (message + exit code, no traceback)."""
    from typer.testing import CliRunner

    from mastofargate.cli import app
    from mastofargate.errors import MastofargateError

    result = CliRunner().invoke(app, list(args))
    output = result.output
    error = result.exception
    if isinstance(error, MastofargateError):
        return CliResult(error.exit_code, f"{output}\nerror: {error}")
    if error is not None and not isinstance(error, SystemExit):
        raise error
    return CliResult(result.exit_code, output)


def create_zone(domain: str = "example.org") -> str:
    import boto3

    zone = boto3.client("route53").create_hosted_zone(Name=domain, CallerReference=f"tests-{time.time()}")
    return str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1]


def write_config(path: Path, zone: str, **overrides: Any) -> Path:
    """A personal-profile config for social.example.org in `zone` (TOML written by hand: no init run)."""
    server = {"domain": "social.example.org", "admin_email": "admin@example.org", **overrides.pop("server", {})}
    deployment = {"profile": "personal", "database": "rds", "cache": "task", **overrides.pop("deployment", {})}
    lines = ["[server]", *(f"{k} = {json.dumps(v)}" for k, v in server.items())]
    lines += ["[aws]", 'name = "social"', 'region = "us-east-1"', f'hosted_zone_id = "{zone}"']
    lines += ["[deployment]", *(f"{k} = {json.dumps(v)}" for k, v in deployment.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def push_fake_images(tag: str, name: str = "social") -> None:
    """Stand-in for `mastofargate images push`: an image manifest per repository in the emulator's ECR.
    Idempotent like the real push: a tag that exists is left as it is."""
    import hashlib

    import boto3

    ecr = boto3.client("ecr")
    for repo in (f"{name}/mastodon", f"{name}/streaming", f"{name}/backup"):
        manifest = json.loads(json.dumps(MANIFEST))
        manifest["config"]["digest"] = "sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()
        with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
            ecr.put_image(repositoryName=repo, imageTag=tag, imageManifest=json.dumps(manifest))


def service_images(cluster: str = "social") -> dict[str, str]:
    """service -> image tag of the task definition the service runs now."""
    import boto3

    ecs = boto3.client("ecs")
    names = ecs.list_services(cluster=cluster)["serviceArns"]
    out = {}
    for svc in ecs.describe_services(cluster=cluster, services=names)["services"]:
        td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        out[svc["serviceName"]] = td["containerDefinitions"][0]["image"].rsplit(":", 1)[-1]
    return out


def secret_versions(name: str = "social") -> dict[str, str]:
    """The current version of the server's secret and of any legacy secrets it still has, by name."""
    import boto3

    sm = boto3.client("secretsmanager")
    out = {}
    for kind in ("server", "app", "database", "redis"):
        try:
            info = sm.describe_secret(SecretId=f"mastofargate/{name}/{kind}")
        except sm.exceptions.ResourceNotFoundException:
            continue
        out[kind] = next(v for v, stages in info["VersionIdsToStages"].items() if "AWSCURRENT" in stages)
    return out


# The emulator's tasks exit with N when their image tag says `-sandbox-exit-N`: a database setup task that fails.
FAILING_SETUP_IMAGE = "public.ecr.aws/docker/library/postgres:17-sandbox-exit-3"


def register_setup_image(image: str, name: str = "social") -> str:
    """A new revision of the data stack's database setup task definition on `image` (the deploy runs the
    latest revision); returns the image it had."""
    import boto3

    ecs = boto3.client("ecs")
    td = ecs.describe_task_definition(taskDefinition=f"{name}-dbsetup")["taskDefinition"]
    before = str(td["containerDefinitions"][0]["image"])
    keep = ("family", "containerDefinitions", "cpu", "memory", "networkMode", "requiresCompatibilities")
    spec = {k: td[k] for k in keep if k in td} | {"executionRoleArn": td["executionRoleArn"]}
    spec["containerDefinitions"][0]["image"] = image
    ecs.register_task_definition(**spec)
    return before

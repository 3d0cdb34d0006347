"""The registry images are pushed to: its host, its credentials, and "is this tag there already?".

ECR hosts get a token from boto3 (`get_authorization_token`), so CI needs only AWS credentials; any
other host (a local registry, a mirror) uses what `docker login` stored, or nothing. The existence check
talks the registry HTTP API v2 directly (one manifest request per image, no engine round trip), which is
what keeps an unchanged `make images` to about a second.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from mastofargate import aws
from mastofargate.config import Config
from mastofargate.errors import MastofargateError, UsageError

ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$")
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_TIMEOUT = (5, 30)  # connect, read (seconds)


def default_host(config: Config) -> str:
    """The account's ECR registry in the config's region (one STS call)."""
    region = config.aws.region
    return f"{aws.account_id(region)}.dkr.ecr.{region}.amazonaws.com"


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.index("]")]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> str:
    host = host.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not host or not _HOST.match(host):
        raise UsageError(
            f"--registry {host!r} is not a registry host",
            fix="give HOST or HOST:PORT, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com or 127.0.0.1:5000",
        )
    return host


@dataclass
class Registry:
    """A registry host with the credentials to use for it (None: anonymous / the engine's own)."""

    host: str
    username: str | None = None
    password: str | None = None
    source: str = "no credentials"  # where the credentials came from, for error messages
    _scheme: str | None = field(default=None, repr=False)
    _bearer: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_ecr(self) -> bool:
        return bool(ECR_HOST.match(self.host))

    @property
    def auth_config(self) -> dict[str, str] | None:
        """Credentials in the Docker SDK's form (None lets the engine use its own config)."""
        if self.username is None:
            return None
        return {"username": self.username, "password": self.password or "", "serveraddress": self.host}

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    # ------------------------------------------------------------------ the existence check
    def manifest_exists(self, repository: str, tag: str) -> bool:
        """True when `repository:tag` is in the registry; False when not (also when the repo is new)."""
        url = f"{self._base()}/v2/{repository}/manifests/{tag}"
        resp = self._get(url, repository)
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            code = _error_code(resp)
            if code == "NAME_UNKNOWN" and self.is_ecr:
                raise MastofargateError(
                    f"The ECR repository {repository} does not exist in {self.host}.",
                    why="mastofargate's data stack creates the image repositories",
                    fix="deploy the data stack first ('mastofargate deploy'), or pass --registry",
                )
            return False
        if resp.status_code in (401, 403):
            raise self._auth_error(resp)
        raise MastofargateError(
            f"Registry {self.host} answered {resp.status_code} when asked for {repository}:{tag}.",
            why=resp.text[:300].strip(),
            fix="check the registry's health and try again",
        )

    def tags(self, repository: str, page: int = 1000) -> list[str]:
        """Every tag of `repository` from the registry API's tag list (`/v2/NAME/tags/list`), following its
        `Link` pagination; anonymous registries (ghcr.io for public images) hand out a pull token on request."""
        url: str | None = f"{self._base()}/v2/{repository}/tags/list?n={page}"
        found: list[str] = []
        while url:
            resp = self._get(url, repository)
            if resp.status_code == 404:
                raise MastofargateError(
                    f"Registry {self.host} has no repository {repository}.",
                    why=_error_message(resp) or "the tag list answered 404",
                    fix="check the registry and repository names",
                )
            if resp.status_code in (401, 403):
                raise self._auth_error(resp)
            if resp.status_code != 200:
                raise MastofargateError(
                    f"Registry {self.host} answered {resp.status_code} for the tags of {repository}.",
                    why=resp.text[:300].strip(),
                    fix="try again later",
                )
            try:
                found += [str(t) for t in resp.json().get("tags") or []]
            except ValueError:
                raise MastofargateError(
                    f"Registry {self.host} sent something that is not a tag list for {repository}.",
                    why=resp.text[:200].strip(),
                    fix="check that the address is a container registry (a proxy may be answering)",
                ) from None
            nxt = re.search(r"<([^>]+)>;\s*rel=\"?next\"?", resp.headers.get("Link", ""))
            url = None
            if nxt:
                url = nxt.group(1) if nxt.group(1).startswith("http") else f"{self._base()}{nxt.group(1)}"
        return found

    def _base(self) -> str:
        """https (or, for a loopback registry, http as Docker allows) — whichever answers /v2/."""
        if self._scheme is None:
            import requests

            schemes = ("http", "https") if is_loopback(self.host) else ("https",)
            last: Exception | None = None
            for scheme in schemes:
                try:
                    resp = requests.get(f"{scheme}://{self.host}/v2/", timeout=_TIMEOUT)
                except requests.RequestException as e:
                    last = e
                    continue
                if resp.status_code == 400 and scheme == "http":
                    continue  # "client sent an HTTP request to an HTTPS server"
                self._scheme = scheme
                break
            else:
                raise MastofargateError(
                    f"Cannot reach the image registry {self.host}.",
                    why=_short(last),
                    fix="check --registry and the network (for ECR: the region and that it is reachable)",
                )
        return f"{self._scheme}://{self.host}"

    def _get(self, url: str, repository: str) -> Any:
        import requests

        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        try:
            if repository in self._bearer:
                headers["Authorization"] = f"Bearer {self._bearer[repository]}"
            elif self.username is not None:
                headers["Authorization"] = "Basic " + _basic(self.username, self.password or "")
            resp = requests.get(url, headers=headers, timeout=_TIMEOUT)
            challenge = resp.headers.get("WWW-Authenticate", "")
            if resp.status_code == 401 and challenge.lower().startswith("bearer") and repository not in self._bearer:
                self._bearer[repository] = self._token(challenge, repository)
                headers["Authorization"] = f"Bearer {self._bearer[repository]}"
                resp = requests.get(url, headers=headers, timeout=_TIMEOUT)
        except requests.RequestException as e:
            raise MastofargateError(
                f"Cannot reach the image registry {self.host}.", why=_short(e), fix="check the network and try again"
            ) from None
        return resp

    def _token(self, challenge: str, repository: str) -> str:
        """The registry token flow (Docker Hub, GHCR, Harbor...): trade credentials for a bearer token."""
        import requests

        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        params.setdefault("scope", f"repository:{repository}:pull")
        auth = (self.username, self.password or "") if self.username is not None else None
        try:
            resp = requests.get(realm, params=params, auth=auth, timeout=_TIMEOUT)
        except requests.RequestException as e:
            raise MastofargateError(f"Cannot reach {realm} for a token for {self.host}.", why=_short(e)) from None
        if resp.status_code != 200:
            raise self._auth_error(resp)
        body = resp.json()
        return str(body.get("token") or body.get("access_token") or "")

    def _auth_error(self, resp: Any) -> MastofargateError:
        detail = (_error_message(resp) or resp.reason or "").strip()
        if self.is_ecr:
            return MastofargateError(
                f"ECR registry {self.host} refused the token from get_authorization_token ({resp.status_code}).",
                why=detail or "the token was not accepted",
                fix="check that the AWS credentials allow ecr:GetAuthorizationToken, ecr:BatchGetImage and the push "
                "actions on this account's repositories, and that --registry is this account's registry",
            )
        if self.username is None:
            return MastofargateError(
                f"Registry {self.host} requires credentials and none are configured ({resp.status_code}).",
                why=detail or "authentication required",
                fix=f"run 'docker login {self.host}' (mastofargate uses the credentials Docker stores), "
                "or point --registry at a registry you can push to",
            )
        return MastofargateError(
            f"Registry {self.host} rejected the credentials from {self.source} ({resp.status_code}).",
            why=detail or "authentication failed",
            fix=f"run 'docker login {self.host}' again with a user that may push to it",
        )


def connect(host: str) -> Registry:
    """The registry with its credentials: an ECR token from boto3, or Docker's stored login."""
    m = ECR_HOST.match(host)
    if m:
        with aws.aws_errors(f"getting a login token for {host}"):
            data = aws.client("ecr", m["region"]).get_authorization_token(registryIds=[m["account"]])
        token = data["authorizationData"][0]["authorizationToken"]
        username, _, password = base64.b64decode(token).decode().partition(":")
        return Registry(host, username, password, source="ECR get_authorization_token")
    return _docker_login(host)


def _docker_login(host: str) -> Registry:
    from docker import auth
    from docker.errors import DockerException

    try:
        cfg = auth.load_config()
        entry = cfg.resolve_authconfig(host) or {}
    except DockerException:
        entry = {}
    username, password = entry.get("username") or entry.get("Username"), entry.get("password") or entry.get("Secret")
    if username is None:
        return Registry(host)
    return Registry(host, str(username), str(password or ""), source="Docker's stored login")


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def _error_code(resp: Any) -> str:
    try:
        errors = resp.json().get("errors") or [{}]
        return str(errors[0].get("code", ""))
    except ValueError:
        return ""


def _error_message(resp: Any) -> str:
    try:
        errors = resp.json().get("errors") or [{}]
        return str(errors[0].get("message", ""))
    except ValueError:
        return resp.text[:200]


def _short(error: BaseException | None) -> str:
    """requests' nested errors, boiled down to what a user can act on."""
    text = str(error) if error else "no answer"
    for needle, meaning in (
        ("Connection refused", "connection refused (nothing listens on that port)"),
        ("Name or service not known", "the host name does not resolve"),
        ("Failed to resolve", "the host name does not resolve"),
        ("timed out", "the connection timed out"),
        ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
    ):
        if needle in text:
            return meaning
    return text if len(text) < 300 else text[:300] + "..."

"""The server's keys kept off AWS: export them encrypted with a passphrase, import them elsewhere.

DESIGN invariant 7: a backup is worthless without the keys that make it readable — the three
ACTIVE_RECORD_ENCRYPTION_* keys (encrypted columns), SECRET_KEY_BASE (sessions, signed ids) and the VAPID
pair (push subscriptions). They live in the server's one Secrets Manager secret (deploy/bootstrap.py:
logical kinds `app`, `database`, `redis` as flat keys; on a server not migrated yet, three legacy secrets).
This module copies every key into one file (by kind, unprefixed: files written before the one secret
import unchanged) and back, except the Redis `url`, which names the old cache's host and is
derived again by the deploy in the new place, and the Redis task's CA and certificate (made again there).

File format (version 1), text so it survives copy/paste and mail:

    mastofargate-keys 1
    {"cipher": "AES-256-GCM", "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "..."}, ...}
    <base64 of nonce || ciphertext || tag>

Line 2 (the header) carries everything needed to derive the key again, plus where the keys came from;
it is not secret, but it is authenticated: the header's exact bytes are the AEAD's associated data, so a
changed KDF parameter, source or cipher name fails decryption like a changed ciphertext does.

Import obeys invariant 2: a key that exists in the target with a DIFFERENT value is never replaced; the
whole import is refused before anything is written. Equal keys are left alone, missing ones added,
missing secrets created (a new account or region).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets as _random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mastofargate.errors import EXIT_USAGE, MastofargateError, UsageError
from mastofargate.stack.secrets import KINDS, flat_key, join

if TYPE_CHECKING:
    from mastofargate.target import Target

MAGIC = "mastofargate-keys"
FORMAT_VERSION = 1
CIPHER = "AES-256-GCM"
# Keys made again in the new place, never copied: the Redis URL holds the old cache host; the Redis task's
# certificate is re-issued for the new name; its CA's key never leaves the redis secret (deploy/redistls.py)
# and a new place simply gets a new CA (it protects traffic, no stored data).
DERIVED_KEYS = {"redis": frozenset({"url", "loopback_url", "tls_cert", "tls_key", "ca_cert", "ca_key"})}
# scrypt cost: n=2**17, r=8 (128 MiB, ~0.3 s here): OWASP's recommended minimum is 2**17 for r=8, p=1.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
# What an import accepts from a file's header: enough to stop a file from asking for gigabytes of memory.
SCRYPT_N_RANGE = (2**14, 2**20)
SALT_BYTES = 16
NONCE_BYTES = 12
MIN_PASSPHRASE = 12


@dataclass(frozen=True)
class KeysFile:
    """What a keys file holds once decrypted."""

    header: dict[str, Any]
    secrets: dict[str, dict[str, str]]  # kind -> key -> value


@dataclass
class ImportPlan:
    """What `import_keys` would do, per kind: create it, add keys to it, or nothing. Never values."""

    layout: str = "one"  # bootstrap.Store.layout of the target
    names: dict[str, str] = field(default_factory=dict)  # kind -> the secret its keys go to
    create: dict[str, list[str]] = field(default_factory=dict)  # kind -> keys
    add: dict[str, list[str]] = field(default_factory=dict)  # kind -> keys
    same: dict[str, list[str]] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)  # kind -> keys that differ

    @property
    def changes(self) -> bool:
        return bool(self.create or self.add)

    def lines(self, target: Target) -> list[str]:
        out = []
        for kind in KINDS:
            name = self.names.get(kind, target.secret_name)

            def keys(listed: list[str], kind: str = kind) -> str:
                return ", ".join(key if self.layout == "legacy" else flat_key(kind, key) for key in listed)

            if kind in self.create:
                out.append(f"{name}: create with {keys(self.create[kind])}")
            elif kind in self.add:
                out.append(f"{name}: add {keys(self.add[kind])}")
            elif kind in self.same:
                out.append(f"{name}: already holds the same {kind} keys")
        return out


# --- the file -------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(passphrase: str, kdf: dict[str, Any]) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    salt = base64.b64decode(kdf["salt"])
    return Scrypt(salt=salt, length=32, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"])).derive(passphrase.encode())


def encrypt(values: dict[str, dict[str, str]], passphrase: str, source: dict[str, str]) -> bytes:
    """The whole file's bytes for `values` (kind -> key -> value)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kdf = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(_random.token_bytes(SALT_BYTES))}
    header = {
        "cipher": CIPHER,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kdf": kdf,
        "source": source,
    }
    header_line = json.dumps(header, sort_keys=True).encode()
    nonce = _random.token_bytes(NONCE_BYTES)
    plaintext = json.dumps({"secrets": values}, sort_keys=True).encode()
    sealed = AESGCM(_derive(passphrase, kdf)).encrypt(nonce, plaintext, header_line)
    return b"\n".join([f"{MAGIC} {FORMAT_VERSION}".encode(), header_line, base64.b64encode(nonce + sealed), b""])


def _not_a_keys_file(path: Path, why: str) -> UsageError:
    return UsageError(
        f"{path} is not a readable mastofargate keys file.",
        why=why,
        fix="use the file 'mastofargate secrets export' wrote, unchanged",
    )


def decrypt(data: bytes, passphrase: str, path: Path) -> KeysFile:
    """Check the format and the header's parameters, then decrypt; a wrong passphrase and a changed file
    both fail authentication and are reported as such (AES-GCM cannot tell them apart)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    lines = data.split(b"\n")
    if len(lines) < 3 or not lines[0].startswith(MAGIC.encode() + b" "):
        raise _not_a_keys_file(path, f"it does not start with '{MAGIC} {FORMAT_VERSION}'")
    version = lines[0][len(MAGIC) + 1 :].strip()
    if version != str(FORMAT_VERSION).encode():
        raise _not_a_keys_file(
            path, f"format version {version.decode(errors='replace')!r}; this mastofargate reads {FORMAT_VERSION}"
        )
    header_line = lines[1]
    try:
        header = json.loads(header_line)
        kdf = header["kdf"]
        n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        base64.b64decode(kdf["salt"], validate=True)
        blob = base64.b64decode(lines[2], validate=True)
    except (ValueError, KeyError, TypeError) as e:
        raise _not_a_keys_file(path, f"its header or body is damaged ({type(e).__name__})") from None
    if header.get("cipher") != CIPHER or kdf.get("name") != "scrypt":
        raise _not_a_keys_file(path, f"cipher {header.get('cipher')!r} / KDF {kdf.get('name')!r}; expected {CIPHER}")
    low, high = SCRYPT_N_RANGE
    if not (low <= n <= high and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise _not_a_keys_file(path, f"scrypt parameters n={n}, r={r}, p={p} are outside what it accepts")
    if len(blob) < NONCE_BYTES + 16:
        raise _not_a_keys_file(path, "the encrypted part is too short")
    try:
        plaintext = AESGCM(_derive(passphrase, kdf)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], header_line)
    except InvalidTag:
        raise UsageError(
            f"Cannot decrypt {path}: wrong passphrase, or the file was changed.",
            why="the authenticated cipher rejects both, and cannot say which",
            fix="type the passphrase used for the export; if it is right, use an unchanged copy of the file",
        ) from None
    body = json.loads(plaintext)
    values = body.get("secrets")
    if not isinstance(values, dict) or not all(
        kind in KINDS and isinstance(kv, dict) and all(isinstance(v, str) for v in kv.values())
        for kind, kv in values.items()
    ):
        raise _not_a_keys_file(path, "its decrypted content is not a set of mastofargate secrets")
    return KeysFile(header, values)


def check_destination(path: Path, *, force: bool) -> None:
    """Refuse a directory, and an existing file unless `force` (checked before any passphrase or AWS call)."""
    if path.is_dir():
        raise UsageError(f"{path} is a directory.", fix="give a file name, e.g. --to keys.mastofargate")
    if path.exists() and not force:
        raise UsageError(
            f"{path} already exists.",
            why="an earlier export may be the only copy of keys that differ from today's",
            fix="choose another file name, or pass --force to replace it",
        )


def write_file(path: Path, data: bytes, *, force: bool) -> None:
    """Write with mode 0600 from the first byte; refuse to replace an existing file unless `force`."""
    check_destination(path, force=force)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise UsageError(f"Cannot write {path}: {e.strerror}.", fix="choose a writable directory") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist.", fix="give the file 'mastofargate secrets export' wrote") from None
    except OSError as e:
        raise UsageError(f"Cannot read {path}: {e.strerror}.") from None


def check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageError(
            f"The passphrase has {len(passphrase)} characters; at least {MIN_PASSPHRASE} are required.",
            why="the file may be copied anywhere; only the passphrase protects the server's keys",
            fix="use a longer passphrase (several words) and keep it apart from the file",
        )


# --- Secrets Manager ------------------------------------------------------------------------------------


def read_keys(target: Target) -> dict[str, dict[str, str]]:
    """Every exportable key of the server's secret (kind -> key -> value), from the one secret or, on a server
    not migrated yet, the three legacy ones; refuses when the app keys are missing, because an export
    without the encryption keys would be worthless."""
    from mastofargate import aws
    from mastofargate.deploy import bootstrap

    try:
        values = bootstrap.read_all(target)
    except aws.NotFound:
        values = {}
    out = {
        kind: {k: str(v) for k, v in kv.items() if k not in DERIVED_KEYS.get(kind, ())}
        for kind, kv in values.items()
        if kv
    }
    if not out.get("app"):
        raise MastofargateError(
            f"Secret {target.secret_name} does not exist in {target.region}.",
            why="the server's keys are created by the first 'mastofargate deploy'",
            fix="check aws.name and aws.region in the config (and AWS_PROFILE for the account)",
            exit_code=EXIT_USAGE,
        )
    return out


def plan_import(target: Target, values: dict[str, dict[str, str]]) -> ImportPlan:
    """Compare the file's keys with the target's secret (reads only). The keys go where the server reads
    them: the one secret, or the legacy secret of their kind on a server the deploy has not migrated yet."""
    from mastofargate.deploy import bootstrap

    store = bootstrap.locate(target)
    plan = ImportPlan(layout=store.layout)
    present_all = bootstrap.read_all(target, store) if store.layout != "none" else {}
    for kind in KINDS:
        wanted = values.get(kind)
        if not wanted:
            continue
        plan.names[kind] = target.legacy_secret_names[kind] if store.layout == "legacy" else target.secret_name
        if store.layout == "none" or (store.layout == "legacy" and kind not in store.legacy):
            plan.create[kind] = sorted(wanted)
            continue
        present = present_all[kind]
        conflicts = sorted(k for k, v in wanted.items() if k in present and str(present[k]) != v)
        missing = sorted(k for k in wanted if k not in present)
        if conflicts:
            plan.conflicts[kind] = conflicts
        if missing:
            plan.add[kind] = missing
        if not conflicts and not missing:
            plan.same[kind] = sorted(wanted)
    return plan


def import_keys(target: Target, values: dict[str, dict[str, str]], *, dry_run: bool = False) -> ImportPlan:
    """Write the file's keys into the target's secret; refuses before any write when an existing key
    differs (DESIGN invariant 2: an existing key is never replaced, not even by an import)."""
    from mastofargate.deploy import bootstrap

    plan = plan_import(target, values)
    if plan.conflicts:
        listed = "; ".join(
            f"{plan.names[k]}: {', '.join(flat_key(k, key) if plan.layout != 'legacy' else key for key in v)}"
            for k, v in sorted(plan.conflicts.items())
        )
        raise UsageError(
            "Refusing to import: the target already holds different values for " + listed + ".",
            why="these keys are never replaced (a database encrypted with the current keys would become "
            "unreadable); nothing was changed",
            fix="import into a new account or region (or a new aws.name), or export the current keys first "
            "and delete the secrets by hand if you are sure they protect nothing",
        )
    if dry_run:
        return plan
    if plan.layout == "none" and plan.create:
        made = {kind: {k: values[kind][k] for k in keys} for kind, keys in plan.create.items()}
        bootstrap.create_secret(target, target.secret_name, join(made))
    elif plan.layout == "legacy":
        for kind, keys in plan.create.items():
            bootstrap.create_secret(
                target,
                target.legacy_secret_names[kind],
                {k: values[kind][k] for k in keys},
                bootstrap.LEGACY_DESCRIPTIONS[kind],
            )
    for kind, keys in plan.add.items():
        present = bootstrap.read_kind(target, kind)
        bootstrap.update_kind(target, kind, {**present, **{k: values[kind][k] for k in keys}}, present)
    return plan


def export_keys(target: Target, path: Path, passphrase: str, *, force: bool = False) -> dict[str, list[str]]:
    """Read the server's keys and write them encrypted to `path`; returns kind -> key names written."""
    check_passphrase(passphrase)
    check_destination(path, force=force)
    values = read_keys(target)
    source = {"name": target.name, "region": target.region, "domain": target.config.server.domain}
    write_file(path, encrypt(values, passphrase, source), force=force)
    return {kind: sorted(kv) for kind, kv in values.items()}


def load(path: Path, passphrase: str) -> KeysFile:
    return decrypt(read_file(path), passphrase, path)


def check_domain(loaded: KeysFile, target: Target) -> None:
    """The keys belong to one LOCAL_DOMAIN (invariant 1): refuse to put them under another domain's name."""
    source = loaded.header.get("source") or {}
    domain = source.get("domain")
    if domain and domain != target.config.server.domain:
        raise UsageError(
            f"The keys file is for {domain}; this config's server.domain is {target.config.server.domain}.",
            why="a server's keys and database belong to one domain, which can never change",
            fix=f"set server.domain = {domain!r} in the config you restore with",
        )

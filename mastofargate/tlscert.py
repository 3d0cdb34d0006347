"""TLS certificates for a data store that cannot make its own (the official Redis image has no openssl).

Redis as a separate task (`cache = "task"`, not the one-task layout) serves TLS only, and Mastodon's Redis
clients VERIFY the server: redis-client's Ruby connection uses OpenSSL's default store with VERIFY_PEER and
host-name checking (no setting in Mastodon relaxes it), and ioredis uses Node's `tls.connect`, which checks
the chain and the name too. So the deploy keeps a private certificate authority, made once:

- `make_ca`: an ECDSA P-256 CA valid `CA_VALID_DAYS`, limited to signing server certificates (pathlen 0).
  Its key lives only in the server's redis secret (deploy/redistls.py writes it once, guarded by
  `bootstrap.write_secret`); no task ever receives it.
- `issue_server`: the Redis task's certificate for its Cloud Map name (`redis.<name>.internal`, the SAN that
  clients check) and, where Mastodon's processes share Redis' task, for loopback too (`extra_names`:
  `localhost` and 127.0.0.1 as an IP address SAN), signed by that CA, re-issued by the deploy when
  `server_problem` finds a reason.

Every Mastodon process trusts the CA in addition to the public roots (federation needs those): see
stack/cache.py and mastofargate/data/trust-redis-ca.sh.

`self_signed` stays for hand runs and tests of the entrypoint that need some certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

VALID_DAYS = 3650
CA_VALID_DAYS = 30 * 365  # the CA is never replaced (every client trusts it): outlive the server
SERVER_VALID_DAYS = 5 * 365
RENEW_WITHIN_DAYS = 365  # a deploy re-issues the server certificate when less than this is left
BACKDATE = datetime.timedelta(minutes=5)  # clocks of the deploying machine and AWS differ a little


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now or datetime.datetime.now(datetime.UTC)


def _pem_pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    days: int,
    now: datetime.datetime | None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """One certificate for `key`, signed by `signer`: SHA-256, a random serial, valid from just before `now`
    (clocks differ a little) for `days`, with `extensions` as (extension, critical) pairs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    start = _now(now)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - BACKDATE)
        .not_valid_after(start + datetime.timedelta(days=days))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; a server only signs its handshakes (ECDSA: digital_signature)."""
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def self_signed(common_name: str, *, now: datetime.datetime | None = None) -> tuple[str, str]:
    """(certificate PEM, private key PEM): ECDSA P-256, valid ten years from `now` (default: the current time)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.SubjectAlternativeName([x509.DNSName(common_name)]), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
    ]
    return _pem_pair(_certificate(name, name, key, key, VALID_DAYS, now, extensions), key)


def make_ca(common_name: str, *, now: datetime.datetime | None = None) -> tuple[str, str]:
    """(CA certificate PEM, CA private key PEM): a root that may sign end-entity certificates only."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mastofargate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (_key_usage(signs_certificates=True), True),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
    ]
    return _pem_pair(_certificate(name, name, key, key, CA_VALID_DAYS, now, extensions), key)


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _subject_alt_names(dns_name: str, extra_names: Sequence[str]) -> list[x509.GeneralName]:
    """`dns_name` first, then each extra name: an IP address SAN for an address (clients connecting to
    127.0.0.1 check an IP SAN, never a DNS one), a DNS SAN otherwise."""
    from cryptography import x509

    names: list[x509.GeneralName] = [x509.DNSName(dns_name)]
    for name in extra_names:
        ip = _ip(name)
        names.append(x509.IPAddress(ip) if ip is not None else x509.DNSName(name))
    return names


def issue_server(
    ca_cert_pem: str,
    ca_key_pem: str,
    dns_name: str,
    *,
    extra_names: Sequence[str] = (),
    now: datetime.datetime | None = None,
) -> tuple[str, str]:
    """(certificate PEM, private key PEM) for a TLS server named `dns_name` (its common name and first SAN)
    and `extra_names` (host names or IP addresses), signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.SubjectAlternativeName(_subject_alt_names(dns_name, extra_names)), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (_key_usage(signs_certificates=False), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
    cert = _certificate(subject, ca_cert.subject, key, ca_key, SERVER_VALID_DAYS, now, extensions)
    return _pem_pair(cert, key)


def ca_problem(ca_cert_pem: str, ca_key_pem: str) -> str | None:
    """Why a stored CA cannot be used (unreadable, key and certificate not a pair, not a CA), or None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
        key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    except ValueError:
        return "the CA certificate or key is not readable PEM"
    if cert.public_key() != key.public_key():
        return "the CA key does not belong to the CA certificate"
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "the CA certificate is not a CA"
    except x509.ExtensionNotFound:
        return "the CA certificate is not a CA"
    return None


def server_problem(
    cert_pem: str | None,
    key_pem: str | None,
    ca_cert_pem: str,
    dns_name: str,
    *,
    extra_names: Sequence[str] = (),
    now: datetime.datetime | None = None,
) -> str | None:
    """Why the stored server certificate must be (re-)issued, or None when it is good: missing or unreadable,
    key not matching, not signed by the CA, not for exactly `dns_name` and `extra_names` (a layout change
    adds or drops the loopback names), or less than RENEW_WITHIN_DAYS left."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    if not cert_pem or not key_pem:
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        ca = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    except ValueError:
        return "not readable PEM"
    if cert.public_key() != key.public_key():
        return "its key does not match"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the server's CA"
    wanted = ", ".join((dns_name, *extra_names))
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return f"not issued for {wanted}"
    if list(names) != _subject_alt_names(dns_name, extra_names):
        return f"not issued for {wanted}"
    left = cert.not_valid_after_utc - _now(now)
    if left < datetime.timedelta(days=RENEW_WITHIN_DAYS):
        return f"expires on {cert.not_valid_after_utc:%Y-%m-%d}"
    return None

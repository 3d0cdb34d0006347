"""A self-signed TLS certificate for a data store that cannot make its own (the official Redis image has no
openssl). The deploy makes it once, keeps it in Secrets Manager with the store's password, and the task
receives it through `secrets` (REDIS_TLS_CERT / REDIS_TLS_KEY); the entrypoint keeps a copy on EFS.

Clients encrypt but do not verify it (like Postgres' sslmode=require): the security group decides who may
connect, the password who may use it, TLS that nobody on the VPC path reads or alters the traffic.
"""

from __future__ import annotations

import datetime

VALID_DAYS = 3650


def self_signed(common_name: str, *, now: datetime.datetime | None = None) -> tuple[str, str]:
    """(certificate PEM, private key PEM): ECDSA P-256, valid ten years from `now` (default: the current time)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    start = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(minutes=5))
        .not_valid_after(start + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()

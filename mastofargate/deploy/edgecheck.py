"""What `status` and the deploy report say about the direct edge: does DNS hold exactly the serving tasks
(every healthy task of the front service; a multi-value record when it runs several), and when does the
certificate they serve expire.

The serving tasks and their addresses are read exactly as the DNS-follower Lambda reads them (same function), the
records from Route 53, and the certificate from the task itself over TLS (port 443 is open to the world, so
this works from the user's machine, and it works before DNS points there): SNI names the host, the chain is
not verified here (the expiry and names are what matter; a browser verifies), and `cryptography` reads it.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mastofargate import aws

if TYPE_CHECKING:
    from mastofargate.config import Config
    from mastofargate.target import Target

CERT_WARN_DAYS = 14  # the certificate-watch alarm's threshold (stack/edge_dns.py CERT_ALARM_DAYS)
TLS_TIMEOUT_S = 5.0


def first_install_note(config: Config) -> str:
    host = config.server.host
    return (
        f"Direct edge: the DNS follower points {host} at the web task within a minute or two of it running "
        f"(record TTL 60 s); Caddy then obtains the Let's Encrypt certificate (kept on EFS), so https://{host} "
        "may answer with a certificate error for the first minutes. 'mastofargate status' shows both."
    )


def served_certificate(address: str, host: str, port: int = 443, timeout: float = TLS_TIMEOUT_S) -> dict[str, Any]:
    """The certificate `address` serves for `host`: expiry, days left, issuer, whether it names the host;
    {"error"} when none could be read (no certificate yet, or unreachable)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read, not trust: expiry and names are reported, not enforced
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as e:
        return {"error": f"no certificate from {address}:{port} ({type(e).__name__}: {e})"}
    if not der:
        return {"error": f"no certificate from {address}:{port}"}
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    except x509.ExtensionNotFound:
        names = []
    issuer = cert.issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) or cert.issuer.get_attributes_for_oid(
        NameOID.COMMON_NAME
    )
    expires = cert.not_valid_after_utc
    left = (expires - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400
    return {
        "expires": expires.isoformat(),
        "days_left": round(left, 1),
        "issuer": str(issuer[0].value) if issuer else "",
        "names_host": host in names or any(n.startswith("*.") and host.endswith(n[1:]) for n in names),
    }


def facts(target: Target) -> dict[str, Any]:
    """The edge's state and the problems in it (empty when DNS holds exactly the serving tasks and each serves
    a good certificate). With several front tasks (community) the record is the SET of healthy tasks: one
    missing gets no traffic, one too many is a task ECS stopped (or an address it gave back to AWS)."""
    from mastofargate import names
    from mastofargate.lambdas.dns_follower import current_records, running_task_addresses

    cfg = target.config
    host = cfg.server.host
    web = cfg.task_of("web")  # as stack/direct_edge.front_service
    service = web.name if web is not None else "web"
    with aws.aws_errors("reading the web tasks' addresses"):
        task = running_task_addresses(target.ecs, target.client("ec2"), names.cluster(target.name), service)
    with aws.aws_errors("reading the DNS record"):
        records = current_records(target.client("route53"), str(cfg.aws.hosted_zone_id), host)
    dns = {kind: sorted(r["Value"] for r in rrs["ResourceRecords"]) for kind, rrs in records.items()}
    out: dict[str, Any] = {"host": host, "task": task, "dns": dns, "certificate": None, "problems": []}
    problems: list[str] = out["problems"]
    if "reason" in task:
        problems.append(f"edge: {task['reason']} in service {service}; DNS left as it is")
        return out
    stale = [k for k in ("A", "AAAA") if (task[k] or dns.get(k)) and dns.get(k, []) != task[k]]
    out["dns_points_at_task"] = not stale
    if stale:
        problems.append(
            f"DNS: {host} {'/'.join(stale)} is {'; '.join(_listed(dns.get(k)) for k in stale)} but the serving "
            f"task(s) are at {'; '.join(_listed(task[k]) for k in stale)} (the DNS follower corrects it within "
            "minutes; if it stays, see the DnsFollowerErrors alarm and the dns-follower log group)"
        )
    # Every serving task's Caddy answers for the name: each must serve a good certificate (they share it on EFS).
    addresses = task["A"] or task["AAAA"]
    with ThreadPoolExecutor(max_workers=max(1, len(addresses))) as pool:  # one TLS timeout, not one per task
        served = pool.map(lambda address: served_certificate(address, host), addresses)
        certs = dict(zip(addresses, served, strict=True))
    out["certificates"] = certs
    worst = sorted(certs.items(), key=lambda ac: ("error" not in ac[1], ac[1].get("days_left", 0)))
    out["certificate"] = worst[0][1] if worst else None
    for address, cert in sorted(certs.items()):
        at = f" (task at {address})" if len(certs) > 1 else ""
        if "error" in cert:
            problems.append(f"certificate: {cert['error']} (Caddy obtains it once DNS points at the task){at}")
        elif not cert["names_host"]:
            problems.append(f"certificate: the one served does not name {host}{at}")
        elif cert["days_left"] < CERT_WARN_DAYS:
            problems.append(
                f"certificate: expires in {cert['days_left']:g} days ({cert['expires']}); renewals are failing: "
                f"read the log group {names.log_group(target.name, 'caddy')}{at}"
            )
    return out


def _listed(values: list[str] | None) -> str:
    return " ".join(values) if values else "missing"


def delete_records(target: Target) -> list[str]:
    """Remove the A/AAAA records the DNS follower kept (plain records of the host; an alias or other types are
    not its own): once the task is gone, its public address returns to AWS's pool, and a record left pointing
    at it would hand the name to whoever gets the address next. Returns what was deleted."""
    from mastofargate.lambdas.dns_follower import current_records

    zone = str(target.config.aws.hosted_zone_id)
    r53 = target.client("route53")
    with aws.aws_errors("reading the DNS record"):
        records = current_records(r53, zone, target.config.server.host)
    if not records:
        return []
    with aws.aws_errors("deleting the DNS record"):
        r53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={
                "Comment": "mastofargate destroy: the task it pointed at is gone",
                "Changes": [{"Action": "DELETE", "ResourceRecordSet": rrs} for _, rrs in sorted(records.items())],
            },
        )
    return [f"{kind} {' '.join(r['Value'] for r in rrs['ResourceRecords'])}" for kind, rrs in sorted(records.items())]

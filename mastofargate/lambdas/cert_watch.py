"""Publish how many days the site's TLS certificate has left, as the world sees it (the direct edge).

Caddy renews a Let's Encrypt certificate when a third of its life is left (~30 days) and retries failures
for weeks; an alarm on this metric below 14 days therefore fires only when renewal has failed for over two
weeks, with two weeks left to act. The check connects to the domain like any visitor (DNS, port 443, SNI)
and verifies the chain against the runtime's trust store: a certificate that does not verify (expired,
wrong name, untrusted: a missing certificate among them) counts as 0 days left. A site that cannot be
reached publishes nothing (that is not a certificate problem) and the run fails, which its own alarm sees.
Environment: RECORD_NAME (the host), SERVER (the metric dimension), NAMESPACE.
"""

import json
import os
import socket
import ssl
import time
from typing import Any

import boto3

PORT = 443


def days_left(host: str, port: int = PORT, timeout: float = 10.0, now: float | None = None) -> float:
    """Days until the served certificate expires; 0.0 when it does not verify for `host`."""
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert() or {}
    except ssl.SSLError:  # SSLCertVerificationError included; also a handshake with no certificate at all
        return 0.0
    expires = ssl.cert_time_to_seconds(str(cert["notAfter"]))
    return max(0.0, (expires - (now if now is not None else time.time())) / 86400)


def handler(event: Any, context: Any) -> dict:
    env = os.environ
    left = round(days_left(env["RECORD_NAME"]), 2)
    boto3.client("cloudwatch").put_metric_data(
        Namespace=env["NAMESPACE"],
        MetricData=[
            {
                "MetricName": "CertificateDaysLeft",
                "Dimensions": [{"Name": "Server", "Value": env["SERVER"]}],
                "Value": left,
                "Unit": "None",
            }
        ],
    )
    result = {"host": env["RECORD_NAME"], "days_left": left}
    print(json.dumps(result))
    return result

"""Two Caddies of the front on one storage, obtaining the site's certificate over ACME from a local CA; run in
a private network and mount namespace (started by tests/test_caddy_edge.py through `unshare --net --mount
--fork`, as root).

What it shows: with the direct edge, DNS publishes every front task, so the CA's validation may reach a task
other than the one that ordered the certificate. Here it always does: task A orders (it takes the issuance
lock first, while the CA is briefly down, and retries inside it a minute later: the test's one slow part)
but only task B listens on 80 and 443, where the CA validates (HTTP-01 on 80, TLS-ALPN-01 on
443, the ports Let's Encrypt uses). B answers from the shared storage, where A's solver put the challenge,
and afterwards loads the certificate A stored instead of ordering its own.

What is real: Debian's Caddy, the generated configuration (stack/caddy.py: storage, automation policy, HTTP
app) for both tasks, ACME end to end. What stands in: the CA is a third Caddy running its `acme_server`
(Smallstep's ACME server, Caddy's local CA) at https://acme.test:9443 in place of Let's Encrypt, which this
machine cannot reach; A listens on 8080/8443 because both share this one network namespace; /etc/hosts
stands in for the public DNS record (the site's name resolves to loopback, where B listens).

Input: a JSON spec file (work dir, caddy path). Output: one JSON line of observations on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mastofargate.stack.caddy import caddy_json
from tests.conftest import make_config

HOST = "social.example.org"
CA_HOST = "acme.test"
DIRECTORY = f"https://{CA_HOST}:9443/acme/local/directory"


def log_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def wait(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    work, caddy = Path(spec["work"]), spec["caddy"]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = work / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {HOST} {CA_HOST}\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    ca_storage, shared = work / "ca-storage", work / "efs"
    ca_config = {
        "admin": {"disabled": True},
        "storage": {"module": "file_system", "root": str(ca_storage)},
        "apps": {
            "http": {
                "servers": {
                    "acme": {
                        "listen": [":9443"],
                        "automatic_https": {"disable_redirects": True},  # port 80 is task B's
                        "routes": [
                            {"match": [{"host": [CA_HOST]}], "handle": [{"handler": "acme_server", "ca": "local"}]}
                        ],
                    }
                }
            },
            "tls": {"automation": {"policies": [{"subjects": [CA_HOST], "issuers": [{"module": "internal"}]}]}},
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    (work / "ca.json").write_text(json.dumps(ca_config))
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, config: Path, **env: str) -> None:
        home = work / f"home-{name}"  # each its own home: only the storage is shared
        log = (work / f"{name}.log").open("wb")
        procs[name] = subprocess.Popen(
            [caddy, "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ["PATH"], "HOME": str(home), **env},
        )

    out: dict[str, Any] = {}
    try:
        start("ca", work / "ca.json")  # once, for its root certificate (kept in its storage)
        root = ca_storage / "pki" / "authorities" / "local" / "root.crt"
        ca_log = work / "ca.log"
        out["ca_made"] = wait(lambda: root.exists() and "serving initial configuration" in ca_log.read_text(), 30)
        stop(procs.pop("ca"))
        for name, (http_port, https_port, health_port) in {"a": (8080, 8443, 2021), "b": (80, 443, 2022)}.items():
            text = caddy_json(
                make_config(),
                storage_dir=str(shared),
                ca=DIRECTORY,
                http_port=http_port,
                https_port=https_port,
                health_port=health_port,
            )
            (work / f"{name}.json").write_text(text)
        # The ACME client trusts the local CA's root as it trusts Let's Encrypt's: through the system store.
        # A starts while the CA is down: it takes the issuance lock, its first attempt fails, and it keeps the
        # lock through its retry a minute later (certmagic retries inside the lock). So A, not B, orders, and
        # B is surely listening on 80/443 (waiting for the lock) when the CA validates.
        a_started = time.monotonic()
        start("a", work / "a.json", SSL_CERT_FILE=str(root))
        out["a_locked_first"] = wait(lambda: "will retry" in (work / "a.log").read_text(), 30)
        start("b", work / "b.json", SSL_CERT_FILE=str(root))
        out["b_waits"] = wait(lambda: "acquiring lock" in (work / "b.log").read_text(), 30)
        start("ca2", work / "ca.json")
        stored = shared / "certificates" / f"{CA_HOST}-9443-acme-local-directory" / HOST / f"{HOST}.crt"
        out["stored"] = wait(stored.exists, 150)
        out["stored_after_s"] = round(time.monotonic() - a_started, 1)
        out["b_loaded"] = wait(lambda: "certificate already exists in storage" in (work / "b.log").read_text(), 30)
    finally:
        for proc in procs.values():
            stop(proc)
    logs = {name: log_entries(work / f"{name}.log") for name in ("a", "b")}
    obtained = "certificate obtained successfully"
    out["obtained"] = {name: sum(e.get("msg") == obtained for e in log) for name, log in logs.items()}
    out["challenges"] = [e.get("challenge_type") for e in logs["a"] if e.get("msg") == "trying to solve challenge"]
    out["b_answered"] = [
        e.get("msg") for e in logs["b"] if str(e.get("msg", "")).startswith("served key authentication")
    ]
    out["errors"] = {
        name: [f"{e.get('logger')}: {e.get('msg')} {e.get('error', '')}" for e in log if e.get("level") == "error"]
        for name, log in logs.items()
    }
    out["certificates"] = sorted(str(p.relative_to(shared)) for p in shared.rglob("*.crt"))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])

"""`status` with the direct edge: does DNS point at the running web task, and the certificate it serves.

AWS side against the moto server (the deployed world of tests/moto_server.py, a running web task of group
`service:web` with an Elastic IP on its ENI, as tests/test_dns_follower.py arranges it: moto gives a Fargate
ENI no public address of its own). The certificate side against a real TLS server on loopback serving a
certificate made for the host (a task's public address cannot be reached from here). With several front
tasks (community), task health and stopping states come from tests/test_dns_follower.AwsTaskView (moto 5.2
reports neither).
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from mastofargate.deploy.edgecheck import first_install_note, served_certificate
from mastofargate.target import Target
from tests.conftest import config_dict, make_config
from tests.moto_server import AWS_ENV, AWS_ENV_CLEARED, deploy_world, keep_tasks_running, serving, subprocess_env
from tests.test_dns_follower import AwsTaskView

HOST = "social.example.org"


@pytest.fixture(scope="module")
def fixed_moto() -> Iterator[str]:
    """A moto server with the sandbox's fixes applied (sandbox/moto_fixes.py): among them, Route 53 zone ids
    that start with "Z" as AWS's do, which the config requires of aws.hosted_zone_id."""
    code = "from sandbox import moto_fixes; moto_fixes.apply(); from moto.server import main; main(sys.argv[1:])"
    with serving(["-c", f"import sys; {code}"], cwd=Path(__file__).resolve().parents[1]) as url:
        yield url


@pytest.fixture
def aws_endpoint(fixed_moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from mastofargate import aws

    urllib.request.urlopen(urllib.request.Request(f"{fixed_moto}/moto-api/reset", data=b"", method="POST")).read()
    for name in AWS_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": fixed_moto}.items():
        monkeypatch.setenv(name, value)
    aws.reset_clients()
    yield fixed_moto
    aws.reset_clients()


def tls_server(tmp_path: Path, days: int, name: str = HOST) -> int:
    """A loopback TLS server presenting a certificate for `name` that expires in `days`; returns its port."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA"), x509.NameAttribute(NameOID.COMMON_NAME, name)]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return port


def test_the_served_certificate_is_read_without_trusting_it(tmp_path: Path) -> None:
    port = tls_server(tmp_path, days=40)
    cert = served_certificate("127.0.0.1", HOST, port=port)
    assert 39 < cert["days_left"] <= 40 and cert["names_host"] is True and cert["issuer"] == "Test CA"
    other = served_certificate("127.0.0.1", "other.example.org", port=port)
    assert other["names_host"] is False
    closed = socket.create_server(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()
    assert "error" in served_certificate("127.0.0.1", HOST, port=free, timeout=2)


def test_the_first_install_note_says_what_happens_next() -> None:
    note = first_install_note(make_config(edge="direct"))
    assert HOST in note and "Let's Encrypt" in note and "status" in note


def _direct_world(tmp_path: Path, *, record: str | None) -> tuple[Path, str, str]:
    """A deployed direct-edge server in moto with its web task running at an Elastic IP; returns the config
    file, the task's address and the zone id."""
    import boto3

    r53 = boto3.client("route53")
    zone = r53.create_hosted_zone(Name="example.org.", CallerReference="edge-status")["HostedZone"]["Id"].split("/")[-1]
    deployment = {"profile": "personal", "database": "rds", "cache": "elasticache", "edge": "direct"}
    data = config_dict(**deployment)
    data["aws"]["hosted_zone_id"] = zone
    path = tmp_path / "mastofargate.toml"
    path.write_text(tomli_w.dumps(data))
    cfg = make_config(extra={"aws": {"hosted_zone_id": zone}}, **deployment)
    world = deploy_world(cfg, tag="v4.5.4-0123abcd")
    ecs, ec2 = world.target.client("ecs"), world.target.client("ec2")
    family = ecs.describe_services(cluster="social", services=["web"])["services"][0]["taskDefinition"]
    task = ecs.run_task(
        cluster="social",
        taskDefinition=family,
        group="service:web",
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": world.subnets,
                "securityGroups": [world.security_group],
                "assignPublicIp": "ENABLED",
            }
        },
    )["tasks"][0]
    eni = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "networkInterfaceId")
    alloc = ec2.allocate_address(Domain="vpc")
    ec2.associate_address(AllocationId=alloc["AllocationId"], NetworkInterfaceId=eni)
    if record:
        r53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": HOST,
                            "Type": "A",
                            "TTL": 60,
                            "ResourceRecords": [{"Value": alloc["PublicIp"] if record == "task" else record}],
                        },
                    }
                ]
            },
        )
    return path, alloc["PublicIp"], zone


def _status(url: str, path: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "mastofargate", "status", "--json", "--config", str(path)],
        env=subprocess_env(url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("record", ["task", "192.0.2.10"])
def test_status_says_whether_dns_points_at_the_running_task(
    aws_endpoint: str,
    tmp_path: Path,
    record: str | None,
) -> None:
    keep_tasks_running(aws_endpoint)
    path, address, _ = _direct_world(tmp_path, record=record)
    code, data = _status(aws_endpoint, path)
    edge = data["edge"]
    assert edge["task"]["A"] == [address]
    assert edge["dns_points_at_task"] is (record == "task")
    dns_problems = [p for p in data["problems"] if p.startswith("DNS:")]
    if record == "task":
        assert dns_problems == []
    else:
        (problem,) = dns_problems
        assert f"serving task(s) are at {address}" in problem and (record or "missing") in problem
    # The task's address is not reachable from here: no certificate could be read, and status says so.
    assert "error" in edge["certificate"]
    assert any(p.startswith("certificate:") for p in data["problems"]) and code == 1


class _SeenTarget(Target):
    """The deployed server, its ECS answers seen through tests/test_dns_follower.AwsTaskView (the task
    health and stopping states moto 5.2 does not report)."""

    view: Any = None

    @property
    def ecs(self) -> Any:  # type: ignore[override]
        return self.view


def test_status_compares_dns_with_the_set_of_healthy_front_tasks(aws_endpoint: str) -> None:
    """community with the direct edge: the front service runs several tasks, and DNS must hold exactly the
    healthy ones. One missing (it gets no traffic) or one too many (a task ECS is stopping) is a problem."""
    import boto3

    from mastofargate.deploy import edgecheck

    keep_tasks_running(aws_endpoint)
    r53 = boto3.client("route53")
    zone = r53.create_hosted_zone(Name="example.org.", CallerReference="edge-multi")["HostedZone"]["Id"].split("/")[-1]
    cfg = make_config(extra={"aws": {"hosted_zone_id": zone}}, profile="community", edge="direct")
    front = cfg.task_of("web")
    assert front is not None and front.max > 1, "community's front autoscales"
    world = deploy_world(cfg, tag="v4.5.4-0123abcd")
    ecs, ec2 = world.target.client("ecs"), world.target.client("ec2")
    family = "social-web"  # deploy_world registers a family per process; the group names the front service
    view = AwsTaskView(ecs)
    tasks: list[tuple[str, str]] = []
    for _ in range(3):
        task = ecs.run_task(
            cluster="social",
            taskDefinition=family,
            group=f"service:{front.name}",
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": world.subnets,
                    "securityGroups": [world.security_group],
                    "assignPublicIp": "ENABLED",
                }
            },
        )["tasks"][0]
        eni = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "networkInterfaceId")
        alloc = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=alloc["AllocationId"], NetworkInterfaceId=eni)
        view.health[task["taskArn"]] = "HEALTHY"
        tasks.append((task["taskArn"], alloc["PublicIp"]))
    (a_arn, a), (b_arn, b), (c_arn, c) = tasks
    view.stopping[c_arn] = "DEACTIVATING"  # scale-in: ECS is stopping c

    def record(*values: str) -> None:
        r53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={
                "Changes": [
                    {
                        "Action": "UPSERT",
                        "ResourceRecordSet": {
                            "Name": HOST,
                            "Type": "A",
                            "TTL": 60,
                            "ResourceRecords": [{"Value": v} for v in values],
                        },
                    }
                ]
            },
        )

    target = _SeenTarget(cfg)
    target.view = view

    def dns_problems() -> list[str]:
        return [p for p in edgecheck.facts(target)["problems"] if p.startswith("DNS:")]

    record(b, a)  # exactly the healthy set (in any order)
    facts = edgecheck.facts(target)
    assert facts["task"]["tasks"] == sorted([a_arn, b_arn]) and facts["task"]["A"] == sorted([a, b])
    assert facts["dns_points_at_task"] is True and dns_problems() == []
    # Each serving task's certificate is read (their addresses are not reachable from here: errors, each named).
    assert set(facts["certificates"]) == {a, b}
    cert_problems = sorted(p for p in facts["problems"] if p.startswith("certificate:"))
    assert len(cert_problems) == 2
    assert f"(task at {min(a, b)})" in cert_problems[0] and f"(task at {max(a, b)})" in cert_problems[1]

    record(a)  # b gets no traffic
    (problem,) = dns_problems()
    assert f"is {a} but the serving task(s) are at {' '.join(sorted([a, b]))}" in problem

    record(a, b, c)  # c is being stopped: clients sent there lose it within the drain
    (problem,) = dns_problems()
    assert f"is {' '.join(sorted([a, b, c]))} but" in problem


def test_the_status_lines_name_every_serving_task() -> None:
    from mastofargate.commands.status import _edge_lines

    task = {"tasks": ["arn:a", "arn:b"], "A": ["198.51.100.1", "198.51.100.2"], "AAAA": []}
    cert = {"expires": "2027-01-01T00:00:00+00:00", "days_left": 40.0, "issuer": "Let's Encrypt", "names_host": True}
    edge = {"host": HOST, "task": task, "dns": {"A": ["198.51.100.1"]}, "dns_points_at_task": False}
    lines = _edge_lines({"edge": {**edge, "certificate": cert}})
    assert lines[0] == (f"dns: {HOST} -> A 198.51.100.1: NOT the serving tasks (A 198.51.100.1 198.51.100.2)"), lines
    single = {**task, "tasks": ["arn:a"], "A": ["198.51.100.1"]}
    lines = _edge_lines({"edge": {**edge, "task": single, "dns_points_at_task": True, "certificate": cert}})
    assert lines[0] == f"dns: {HOST} -> A 198.51.100.1: points at the running task"
    assert lines[1].startswith("certificate: expires 2027-01-01")

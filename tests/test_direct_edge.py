"""The direct edge (`edge = "direct"`): the Caddy container as the task definition states it, run for real, and
the template's promises (only 80/443 open to the world, no load balancer, DNS follower wiring).

The container runs in a private network and mount namespace (tests/caddy_netns.py: real Debian Caddy, the
exact EntryPoint/Command/Environment/health check, ports 80/443, /data/caddy bound to a directory standing
in for EFS). Let's Encrypt cannot be reached here: where HTTPS must work, the storage is seeded with a
certificate from a local CA laid out exactly where Caddy keeps the Let's Encrypt certificate it obtained
(the state of a task started after the first one got its certificate); the first-install case starts with
empty storage, as the very first task does.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mastofargate.lambdas import source
from mastofargate.stack import build
from mastofargate.stack.caddy import GRACE_SECONDS
from mastofargate.stack.context import Build
from mastofargate.stack.direct_edge import DRAIN_LAUNCH, DRAIN_SECONDS, LAUNCH, caddy_container
from mastofargate.stack.edge_dns import DNS_TTL
from mastofargate.stack.services import SPOT_WARNING_SECONDS
from tests.conftest import make_config
from tests.services_support import REPO, ensure

HOST = "social.example.org"
ISSUER_KEY = "acme-v02.api.letsencrypt.org-directory"  # Caddy's storage key for Let's Encrypt's directory


@cache
def direct_stacks() -> dict[str, dict[str, Any]]:
    return {k: t.to_dict() for k, t in build(make_config(edge="direct")).items()}


def web_task() -> dict[str, Any]:
    app = direct_stacks()["app"]["Resources"]
    return app["WebTaskDefinition"]["Properties"]


def template_caddy() -> dict[str, Any]:
    (caddy,) = [c for c in web_task()["ContainerDefinitions"] if c["Name"] == "caddy"]
    return caddy


def same_task_caddy() -> dict[str, Any]:
    """The variant for a task holding streaming too, a singleton (layout = "one-task" calls it so)."""
    b = Build(make_config(edge="direct"))
    return dict(caddy_container(b, same_task_streaming=True, singleton=True).to_dict())


# ------------------------------------------------------------------------------------ real Caddy


def seed_certificate(storage: Path, ca_dir: Path, days: int) -> Path:
    """A certificate for HOST from a local CA, where Caddy stores a Let's Encrypt one; returns the CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # keyCertSign, cRLSign
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=60))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    site = storage / "caddy" / "certificates" / ISSUER_KEY / HOST
    site.mkdir(parents=True)
    pem = serialization.Encoding.PEM
    (site / f"{HOST}.crt").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (site / f"{HOST}.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (site / f"{HOST}.json").write_text(
        json.dumps({"sans": [HOST], "issuer_data": {"url": "https://example.invalid/cert", "ca": ""}})
    )
    ca_file = ca_dir / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    return ca_file


def shortened_drain(container: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The container with its drain shortened from DRAIN_SECONDS to `seconds` (a test cannot wait 75 s); the
    command is otherwise exactly the task definition's."""
    (command,) = container["Command"]
    assert f"sleep {DRAIN_SECONDS};" in command
    return {**container, "Command": [command.replace(f"sleep {DRAIN_SECONDS};", f"sleep {seconds};")]}


def run_container(
    tmp_path: Path, container: dict[str, Any], *, seed_days: int | None, drain_seconds: int | None = None
) -> dict[str, Any]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("running the container needs root (network and mount namespaces)")
    ensure("caddy", "ensure-caddy.sh")
    storage = tmp_path / "efs"
    storage.mkdir()
    ca_file = tmp_path / "ca.pem"
    if seed_days is not None:
        ca_file = seed_certificate(storage, tmp_path, seed_days)
    else:
        seed_certificate(tmp_path / "unused", tmp_path, 1)  # a CA file that trusts nothing served
    upstream = json.loads(next(e["Value"] for e in container["Environment"] if e["Name"] == "CADDY_CONFIG"))["apps"][
        "http"
    ]["servers"]["mastodon"]["routes"][0]["handle"][0]["routes"][0]["handle"][0]["upstreams"][0]["dial"]
    streaming_name = upstream.rsplit(":", 1)[0]
    spec = {
        "container": container,
        "storage": str(storage),
        "ca_file": str(ca_file),
        "streaming_name": streaming_name if streaming_name != "127.0.0.1" else "streaming.unused",
        "streaming_address": "127.0.0.5" if streaming_name != "127.0.0.1" else "127.0.0.1",
        "drain_seconds": drain_seconds,
        "grace_seconds": GRACE_SECONDS,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run(
        [
            "unshare",
            "--net",
            "--mount",
            "--fork",
            sys.executable,
            "-m",
            "tests.caddy_netns",
            str(tmp_path / "spec.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120 + (drain_seconds or 0),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(json.loads(run.stdout.strip().splitlines()[-1]))


def assert_serving(seen: dict[str, Any]) -> None:
    assert seen["healthy"], seen
    assert seen["exited"] is None, "Caddy exited"
    assert seen["redirect"]["status"] in (301, 308)
    assert seen["redirect"]["location"] == f"https://{HOST}/@alice?x=1"
    assert seen["https"], seen.get("https_error")
    web = seen["web"]["echo"]
    assert (web["upstream"], web["path"], web["host"], web["proto"]) == ("web", "/api/v1/instance", HOST, "https")
    assert web["xff"] == ["127.0.0.1"], "the client's own address, not the header it sent"
    assert seen["streaming"]["echo"]["upstream"] == "streaming"
    assert seen["websocket"] is True
    assert seen["config_file_mode"] == "0o600", "the config file is written owner-only"


def test_the_task_definitions_caddy_serves_with_streaming_on_cloud_map(tmp_path: Path) -> None:
    """The exact container of the web task (split layout): streaming reached by its Cloud Map name; the
    certificate a previous task obtained is found on EFS and served (no new issuance). The web service rolls
    out with a new task beside the old (not a singleton), so on SIGTERM Caddy drains: it keeps serving the
    clients that still have the old address cached, then stops within its grace period."""
    container = template_caddy()
    seen = run_container(tmp_path, shortened_drain(container, 3), seed_days=10, drain_seconds=3)
    assert_serving(seen)
    assert 9 < seen["days_left"] <= 10, "the certificate watch reads the served certificate's expiry"
    assert seen["days_left_untrusted"] == 0.0, "a certificate that does not verify counts as none"
    answers = seen["answers_during_drain"]
    assert len(answers) >= 5 and set(answers) == {200}, answers
    assert 3 <= seen["stopped_after_s"] < 3 + GRACE_SECONDS, seen["stopped_after_s"]
    assert seen["exit_code_after_sigterm"] == 0, "Caddy's own exit status, once it has drained"
    print(f"caddy RSS after serving: {seen.get('rss_kib')} KiB; healthy after {seen['healthy_after_s']} s")


def test_the_same_task_variant_reaches_streaming_on_loopback(tmp_path: Path) -> None:
    """The one-task server's Caddy (a singleton: no other task to send clients to) stops at once: Caddy
    itself receives the SIGTERM (exec) and shuts down gracefully."""
    container = same_task_caddy()
    config = json.loads(container["Environment"][0]["Value"])
    route = config["apps"]["http"]["servers"]["mastodon"]["routes"][0]["handle"][0]["routes"][0]
    assert route["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:4000"}]
    seen = run_container(tmp_path, container, seed_days=60)
    assert_serving(seen)
    assert seen["exit_code_after_sigterm"] in (0, -15) and seen["stopped_after_s"] < 5, seen["stopped_after_s"]


def test_a_first_install_starts_healthy_without_a_certificate(tmp_path: Path) -> None:
    """The first task: DNS does not point at it yet and storage is empty. Caddy must still be healthy (or
    ECS would kill the task that is about to get the certificate), redirect HTTP, try to obtain the
    certificate for the host, and keep its ACME state in /data/caddy (EFS), not on the task's disk."""
    seen = run_container(tmp_path, shortened_drain(template_caddy(), 1), seed_days=None, drain_seconds=1)
    assert seen["healthy"] and seen["exited"] is None, seen
    assert seen["redirect"]["location"] == f"https://{HOST}/@alice?x=1"
    assert seen["https"] is False, "no certificate yet"
    assert seen["days_left"] == 0.0, "the certificate watch sees no valid certificate"
    obtaining = [e for e in seen["log"] if str(e.get("logger", "")).startswith("tls.obtain")]
    assert any(HOST in json.dumps(e) for e in obtaining), "Caddy tries to obtain the host's certificate"
    assert all(f.startswith("caddy/") for f in seen["storage_files"]), seen["storage_files"]
    storage = {e.get("description") for e in seen["log"] if e.get("msg") == "cleaning storage unit"}
    assert storage == {"FileStorage:/data/caddy"}, "Caddy keeps its ACME state on the EFS mount"
    locked = [e for e in obtaining if e.get("msg") == "lock acquired"]
    assert locked and all(e.get("identifier") == HOST for e in locked), "the issuance lock lives in storage too"


# ------------------------------------------------------------------------------------ the template


def test_only_80_and_443_are_open_to_the_world() -> None:
    data = direct_stacks()["data"]["Resources"]
    open_ports = set()
    for title, res in data.items():
        if res["Type"] != "AWS::EC2::SecurityGroup":
            continue
        for rule in res["Properties"].get("SecurityGroupIngress", []):
            if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0":
                assert title == "EdgeSecurityGroup", f"{title} is open to the world"
                open_ports.add((rule["FromPort"], rule["ToPort"]))
    assert open_ports == {(80, 80), (443, 443)}
    assert "AlbSecurityGroup" not in data
    tasks = data["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["SourceSecurityGroupId"]) for r in tasks] == [(4000, {"Ref": "EdgeSecurityGroup"})]


def test_no_load_balancer_no_site_certificate_and_web_behind_caddy_only() -> None:
    app = direct_stacks()["app"]["Resources"]
    kinds = {r["Type"] for r in app.values()}
    assert not any(k.startswith("AWS::ElasticLoadBalancingV2::") for k in kinds)
    assert "AWS::CertificateManager::Certificate" not in kinds  # (the media CDN's lives in the data stack)
    web = app["WebService"]["Properties"]
    assert "LoadBalancers" not in web
    groups = web["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    assert {"Fn::ImportValue": "social-data:EdgeSecurityGroupId"} in groups
    assert web["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"
    caddy = template_caddy()
    assert caddy["Image"].startswith("public.ecr.aws/docker/library/caddy:2.") and caddy["Essential"] is True
    assert caddy["DependsOn"] == [{"ContainerName": "web", "Condition": "START"}]  # so ECS stops Caddy first
    assert {m["ContainerPort"] for m in caddy["PortMappings"]} == {80, 443}
    (mount,) = caddy["MountPoints"]
    (volume,) = [v for v in web_task()["Volumes"] if v["Name"] == mount["SourceVolume"]]
    efs = volume["EFSVolumeConfiguration"]
    assert mount["ContainerPath"] == "/data/caddy" and efs["TransitEncryption"] == "ENABLED"
    assert efs["AuthorizationConfig"] == {
        "AccessPointId": {"Fn::ImportValue": "social-data:CaddyAccessPointId"},
        "IAM": "ENABLED",
    }
    streaming = app["StreamingService"]["Properties"]
    assert streaming["ServiceRegistries"] == [{"RegistryArn": {"Fn::GetAtt": ["StreamingDiscovery", "Arn"]}}]
    assert app["StreamingDiscovery"]["Properties"]["Name"] == "streaming"
    # Sidekiq and the one-off jobs never carry Caddy or its volume.
    for title, res in app.items():
        if res["Type"] == "AWS::ECS::TaskDefinition" and title != "WebTaskDefinition":
            assert "caddy" not in {c["Name"] for c in res["Properties"]["ContainerDefinitions"]}, title
            assert "caddy" not in {v["Name"] for v in res["Properties"].get("Volumes", [])}, title


def test_the_dns_follower_is_wired_to_the_front_service() -> None:
    app = direct_stacks()["app"]["Resources"]
    fn = app["DnsFollower"]["Properties"]
    assert fn["Code"]["ZipFile"] == source("dns_follower")
    assert fn["Environment"]["Variables"] == {
        "CLUSTER": "social",
        "SERVICE": "web",
        "HOSTED_ZONE_ID": "Z0123456789EXAMPLE",
        "RECORD_NAME": HOST,
        "TTL": "60",
    }
    assert fn["ReservedConcurrentExecutions"] == 1 and "DeadLetterConfig" in fn
    events = app["DnsFollowerTaskEvents"]["Properties"]["EventPattern"]
    assert events["detail-type"] == ["ECS Task State Change"]
    assert events["detail"] == {"clusterArn": [{"Fn::GetAtt": ["Cluster", "Arn"]}], "group": ["service:web"]}
    assert app["DnsFollowerSchedule"]["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    for rule in ("DnsFollowerTaskEvents", "DnsFollowerSchedule"):
        assert app[rule]["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["DnsFollower", "Arn"]}
        assert app[f"{rule}Permission"]["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule, "Arn"]}
    expiry = app["CertificateExpiryAlarm"]["Properties"]
    assert (expiry["Namespace"], expiry["MetricName"], expiry["Threshold"]) == (
        "Mastofargate/Edge",
        "CertificateDaysLeft",
        14,
    )
    assert expiry["ComparisonOperator"] == "LessThanThreshold" and expiry["Statistic"] == "Minimum"
    assert app["CertificateWatch"]["Properties"]["Code"]["ZipFile"] == source("cert_watch")
    assert app["DnsFollowerErrorsAlarm"]["Properties"]["MetricName"] == "Errors"


def test_the_alb_edge_is_unchanged_by_default() -> None:
    app = build(make_config())["app"].to_dict()["Resources"]
    assert "LoadBalancer" in app and "DnsFollower" not in app
    assert all(c["Name"] != "caddy" for c in app["WebTaskDefinition"]["Properties"]["ContainerDefinitions"])


# ------------------------------------------------------------------------------------ a first install


@pytest.mark.xdist_group("deploy-sandbox")
def test_a_first_install_with_the_direct_edge_deploys_in_the_emulator(tmp_path: Path) -> None:
    """`deploy` of a new server with the direct edge, against the emulator: no load balancer is created,
    the DNS follower and its rules are, the rollout completes without any ALB target health, and the report
    says what happens next (DNS, then the certificate)."""
    import boto3

    from tests.deploy_sandbox import create_zone, push_fake_images, run_cli, running_sandbox, write_config

    with running_sandbox(tmp_path):
        config = write_config(tmp_path / "mastofargate.toml", create_zone(), deployment={"edge": "direct"})
        data = run_cli("deploy", "--config", str(config), "--data-only", "--yes")
        assert data.exit_code == 0, data.output
        assert "direct edge: the DNS follower keeps social.example.org's A/AAAA record" in data.output
        push_fake_images("v4.5.4-a1")
        tags = ["--mastodon-tag", "v4.5.4-a1", "--streaming-tag", "v4.5.4-a1"]
        app = run_cli("deploy", "--config", str(config), *tags, "--skip-assets", "--yes")
        assert app.exit_code == 0, app.output
        assert "Direct edge: the DNS follower points social.example.org at the web task" in app.output
        kinds = {
            r["ResourceType"]
            for r in boto3.client("cloudformation").list_stack_resources(StackName="social-app")[
                "StackResourceSummaries"
            ]
        }
        assert "AWS::ElasticLoadBalancingV2::LoadBalancer" not in kinds
        assert {"AWS::Lambda::Function", "AWS::Events::Rule"} <= kinds
        fn = boto3.client("lambda").get_function(FunctionName="social-dns-follower")["Configuration"]
        assert fn["Environment"]["Variables"]["SERVICE"] == "web"
        # Switching the deployed server to the ALB is refused before anything changes.
        text = config.read_text().replace('edge = "direct"', 'edge = "alb"')
        config.write_text(text)
        switch = run_cli("deploy", "--config", str(config), *tags, "--skip-assets", "--yes")
        assert switch.exit_code == 2, switch.output
        assert "REFUSED: deployment.edge would change from 'direct' to 'alb'. Nothing was changed." in switch.output
        stacks = boto3.client("cloudformation").describe_stacks()["Stacks"]
        assert {s["StackName"]: s["StackStatus"] for s in stacks} == {
            "social-data": "CREATE_COMPLETE",
            "social-app": "UPDATE_COMPLETE",
        }
        # destroy removes the record the follower kept (the emulator runs no Lambda: it is made here), so the
        # name never points at an address AWS hands to someone else.
        config.write_text(text.replace('edge = "alb"', 'edge = "direct"'))
        r53 = boto3.client("route53")
        zone = config.read_text().split('hosted_zone_id = "')[1].split('"')[0]
        record = {"Name": HOST, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "203.0.113.7"}]}
        r53.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]}
        )
        gone = run_cli("destroy", "--config", str(config), "--yes")
        assert gone.exit_code == 0, gone.output
        assert f"DNS record {HOST} A 203.0.113.7 deleted" in gone.output
        left = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
        assert not [r for r in left if r["Name"] == HOST + "." and r["Type"] in ("A", "AAAA")]


# ------------------------------------------------------------------------------------ config


def test_the_direct_edge_needs_the_zone_and_no_acm_certificate() -> None:
    from mastofargate.config import parse_config
    from mastofargate.errors import UsageError
    from tests.conftest import config_dict

    data = config_dict(edge="direct")
    del data["aws"]["hosted_zone_id"]
    data["aws"]["certificate_arn"] = (
        "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
    )
    data["media"] = {"domain": "cloudfront"}
    with pytest.raises(UsageError) as e:
        parse_config(data)
    assert "deployment.edge 'direct' needs aws.hosted_zone_id" in e.value.what
    data["aws"]["hosted_zone_id"] = "Z0123456789EXAMPLE"
    with pytest.raises(UsageError) as e:
        parse_config(data)
    assert "aws.certificate_arn" in e.value.what and "Let's Encrypt" in e.value.what
    bad = config_dict(edge="nlb")
    with pytest.raises(UsageError) as e:
        parse_config(bad)
    assert "deployment.edge" in e.value.what and "'alb'" in e.value.what and "'direct'" in e.value.what
    assert make_config().deployment.edge == "alb", "the ALB stays the default"


# ------------------------------------------------------------------------------------ certificate watch


def test_the_certificate_watch_publishes_days_left(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The handler's metric, as the alarm reads it (namespace, name, dimension), into a moto CloudWatch. The
    TLS part (`days_left`) is replaced here: it runs for real against Caddy in the namespace tests above."""
    import boto3
    from moto import mock_aws

    from mastofargate.lambdas import cert_watch
    from mastofargate.stack.edge_dns import CERT_METRIC, METRIC_NAMESPACE

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    env = direct_stacks()["app"]["Resources"]["CertificateWatch"]["Properties"]["Environment"]["Variables"]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(cert_watch, "days_left", lambda host: 12.345 if host == HOST else -1)
    with mock_aws():
        result = cert_watch.handler({"detail-type": "Scheduled Event"}, None)
        assert result == {"host": HOST, "days_left": 12.35}
        stats = boto3.client("cloudwatch").get_metric_statistics(
            Namespace=METRIC_NAMESPACE,
            MetricName=CERT_METRIC,
            Dimensions=[{"Name": "Server", "Value": "social"}],
            StartTime=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
            EndTime=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
            Period=3600,
            Statistics=["Minimum"],
        )["Datapoints"]
    assert [d["Minimum"] for d in stats] == [12.35]


def test_the_ci_cloudformation_role_may_manage_only_this_servers_functions() -> None:
    from cfnlint.api import ManualArgs, lint

    from mastofargate.render import template_text
    from mastofargate.stack import build_all

    def edge_statements(edge: str) -> tuple[list[dict[str, Any]], Any]:
        ci = build_all(make_config(extra={"ci": {"repository": "example/srv"}}, edge=edge))["ci"]
        role = ci.to_dict()["Resources"]["CloudFormationRole"]["Properties"]
        statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
        return [s for s in statements if "lambda:*" in s.get("Action", [])], ci

    found, ci = edge_statements("direct")
    assert found == [
        {
            "Sid": "ServerFunctions",
            "Effect": "Allow",
            "Action": ["lambda:*"],
            "Resource": [
                {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:social-*"}
            ],
        }
    ]
    assert [
        m for m in lint(template_text(ci, "yaml"), config=ManualArgs(regions=["us-east-1"])) if m.rule.id[0] in "EW"
    ] == []
    ci_alb = build_all(
        make_config(extra={"ci": {"repository": "example/srv"}}, edge="alb", spot=False, profile="large")
    )
    role = ci_alb["ci"].to_dict()["Resources"]["CloudFormationRole"]["Properties"]
    assert not [
        s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if "lambda:*" in s.get("Action", [])
    ], "no Lambda rights for a server without Lambdas (no direct edge, no Spot service)"
    assert edge_statements("alb")[0] == found, "the Spot fallback's Lambda: the same NAME-* rights"


@pytest.mark.parametrize(
    ("overrides", "has_namespace"),
    [
        # streaming packed with web (community's front task): Caddy reaches it on 127.0.0.1, no zone to pay for
        ({"profile": "community", "edge": "direct"}, False),
        # streaming in a task of its own: Caddy finds it by name
        ({"edge": "direct"}, True),
        # one task with Postgres and Redis in it: one-off tasks find them by name
        ({"edge": "direct", "layout": "one-task", "database": "task", "cache": "task"}, True),
        ({"profile": "community", "edge": "direct", "database": "task"}, True),
    ],
)
def test_private_zone_only_when_a_task_is_found_by_name(overrides: dict[str, str], has_namespace: bool) -> None:
    app = build(make_config(**overrides))["app"].to_dict()["Resources"]
    registries = [k for k, r in app.items() if r["Type"] == "AWS::ServiceDiscovery::Service"]
    assert ("Namespace" in app) is has_namespace
    assert bool(registries) is has_namespace
    # no dangling reference to a zone that is not there
    assert has_namespace or '{"Ref": "Namespace"}' not in json.dumps(app)


def _caddy_of(resources: dict[str, Any], task_definition: str) -> dict[str, Any]:
    (caddy,) = [c for c in resources[task_definition]["Properties"]["ContainerDefinitions"] if c["Name"] == "caddy"]
    return caddy


def test_a_front_of_several_tasks_drains_inside_the_spot_warning() -> None:
    """community + direct: the front task (Puma, streaming, Caddy) autoscales and rolls out new-beside-old,
    and DNS publishes every healthy task. A task ECS stops keeps serving for the record's TTL (clients that
    cached its address), web and streaming stop only after Caddy, and the whole chain still fits the two
    minutes Fargate Spot gives; the DNS follower reconciles every minute (a task that turns healthy sends no
    event)."""
    app = {k: t.to_dict() for k, t in build(make_config(profile="community", edge="direct")).items()}["app"]
    res = app["Resources"]
    service = res["FrontService"]["Properties"]
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert service["DeploymentConfiguration"]["MaximumPercent"] == 200
    assert res["FrontScalableTarget"]["Properties"]["MaxCapacity"] == {"Fn::If": ["ServicesOn", 3, 0]}
    caddy = _caddy_of(res, "FrontTaskDefinition")
    assert caddy["Command"] == [DRAIN_LAUNCH]
    assert DRAIN_SECONDS >= DNS_TTL + 15, "resolvers keep the old record for its TTL, plus the follower's delay"
    assert caddy["StopTimeout"] == DRAIN_SECONDS + GRACE_SECONDS <= 120
    assert caddy["DependsOn"] == [
        {"ContainerName": "web", "Condition": "START"},
        {"ContainerName": "streaming", "Condition": "START"},
    ], "ECS stops Caddy first: Puma and streaming serve until it has drained"
    others = [c for c in res["FrontTaskDefinition"]["Properties"]["ContainerDefinitions"] if c["Name"] != "caddy"]
    assert caddy["StopTimeout"] + max(c["StopTimeout"] for c in others) <= SPOT_WARNING_SECONDS
    schedule = res["DnsFollowerSchedule"]["Properties"]
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert res["DnsFollowerTaskEvents"]["Properties"]["EventPattern"]["detail"]["group"] == ["service:front"]


def test_the_one_task_server_stops_at_once_and_reconciles_every_five_minutes() -> None:
    """The singleton has no other task to send clients to (its rollout is an announced outage): no drain."""
    cfg = make_config(profile="personal", database="task", cache="task", layout="one-task", edge="direct")
    res = {k: t.to_dict() for k, t in build(cfg).items()}["app"]["Resources"]
    (title,) = [k for k, r in res.items() if r["Type"] == "AWS::ECS::TaskDefinition" and "caddy" in json.dumps(r)]
    caddy = _caddy_of(res, title)
    assert caddy["Command"] == [LAUNCH] and caddy["StopTimeout"] == 30
    assert res["DnsFollowerSchedule"]["Properties"]["ScheduleExpression"] == "rate(5 minutes)"


def test_cost_says_an_autoscaled_front_task_costs_its_ipv4_and_gets_clients() -> None:
    """The autoscaling assumption reads true for the direct edge: an extra front task costs what it does behind
    the ALB (its Fargate price and its public IPv4), and the DNS follower sends it clients."""
    from mastofargate.cost import estimate

    def line(edge: str) -> str:
        (found,) = [a for a in estimate(make_config(profile="community", edge=edge)).assumptions if "autoscales" in a]
        return found

    direct, alb = line("direct"), line("alb")
    assert "(incl. its IPv4)" in direct and direct.endswith("the direct edge's DNS sends it clients.")
    assert direct.split(" while it runs")[0] == alb.split(" while it runs")[0] and alb.endswith("while it runs.")

"""The Sidekiq backlog metric: the sidecar's own shell script and Lua, run against a real redis-server
(Debian's, started here on loopback; scripts/ensure-redis.sh installs it) holding Sidekiq-shaped data, and
its output parsed the way CloudWatch parses embedded metric format (the EMF specification: the `_aws`
member, metric directives, dimension sets, target members); then the template wiring (sidecar, alarm,
dashboard) and what `status` shows from the log line (moto server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from mastofargate.stack import build
from mastofargate.stack.queue_metrics import (
    BACKLOG_ALARM_SECONDS,
    NAMESPACE,
    QUEUE_METRICS_LUA,
    SIDECAR_SCRIPT,
    metrics_json,
)
from tests.conftest import COMBINATIONS, combo_config, combo_id, config_dict
from tests.moto_server import aws_endpoint, moto_server  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-for-the-test"


# --- EMF, as CloudWatch reads it ----------------------------------------------------------------------


def parse_emf(line: str) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], list[float]]:
    """Metrics CloudWatch would extract from one log event, or AssertionError where it would reject it.

    Rules from the EMF specification: a JSON object with `_aws` holding `Timestamp` (ms since epoch, a
    number) and `CloudWatchMetrics` (an array of directives); each directive has `Namespace` (1-255 chars),
    `Dimensions` (an array of dimension sets, each an array of at most 30 root member names whose values are
    strings) and `Metrics` (at most 100 objects with `Name`, optional `Unit` from CloudWatch's list); every
    metric name is a root member holding a number or an array of at most 100 numbers."""
    units = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
             "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
             "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
             "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
             "Count/Second", "None"}  # fmt: skip
    doc = json.loads(line)
    assert isinstance(doc, dict)
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int | float) and meta["Timestamp"] > 1_500_000_000_000
    out: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[float]] = {}
    assert isinstance(meta["CloudWatchMetrics"], list) and meta["CloudWatchMetrics"]
    for directive in meta["CloudWatchMetrics"]:
        ns = directive["Namespace"]
        assert isinstance(ns, str) and 1 <= len(ns) <= 255
        assert isinstance(directive["Metrics"], list) and len(directive["Metrics"]) <= 100
        dim_sets = directive["Dimensions"]
        assert isinstance(dim_sets, list)
        for metric in directive["Metrics"]:
            name = metric["Name"]
            assert metric.get("Unit", "None") in units, metric
            value = doc[name]
            values = value if isinstance(value, list) else [value]
            assert len(values) <= 100 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            for dims in dim_sets:
                assert isinstance(dims, list) and len(dims) <= 30
                assert all(isinstance(doc[d], str) for d in dims), dims
                out[(ns, name, tuple((d, doc[d]) for d in dims))] = [float(v) for v in values]
    return out


def test_the_emf_parser_rejects_what_cloudwatch_rejects() -> None:
    good = {
        "_aws": {"Timestamp": 1764480000000, "CloudWatchMetrics": [
            {"Namespace": "N", "Dimensions": [["Server"]], "Metrics": [{"Name": "M", "Unit": "Count"}]}]},
        "Server": "social",
        "M": 3,
    }  # fmt: skip
    assert parse_emf(json.dumps(good)) == {("N", "M", (("Server", "social"),)): [3.0]}
    for broken in (
        {**good, "M": "3"},  # a metric value must be a number
        {**good, "Server": 1},  # a dimension value must be a string
        {k: v for k, v in good.items() if k != "M"},  # the metric's member is missing
        {**good, "_aws": {**good["_aws"], "Timestamp": "now"}},
    ):
        with pytest.raises((AssertionError, KeyError)):
            parse_emf(json.dumps(broken))


# --- a real Redis with Sidekiq's structures ------------------------------------------------------------


def _ensure_redis() -> str:
    if not shutil.which("redis-server"):
        subprocess.run(["bash", str(REPO / "scripts" / "ensure-redis.sh")], capture_output=True, check=False)
    server = shutil.which("redis-server")
    if not server:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: run scripts/ensure-redis.sh", pytrace=False)
        pytest.skip("redis-server is missing: run scripts/ensure-redis.sh")
    return server


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[int]:
    server = _ensure_redis()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--requirepass", PASSWORD, "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if cli(port, "PING").strip() == "PONG":
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cli(port: int, *args: str) -> str:
    return subprocess.run(
        ["redis-cli", "-p", str(port), "--no-auth-warning", *args],
        env={**os.environ, "REDISCLI_AUTH": PASSWORD},
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def enqueue(port: int, queue: str, enqueued_at: float) -> None:
    """A job as Sidekiq 8 stores it: LPUSH onto queue:NAME, timestamps in integer milliseconds."""
    job = {"class": "ActivityPub::DeliveryWorker", "args": [], "jid": uuid.uuid4().hex[:24], "queue": queue,
           "retry": 16, "created_at": int(enqueued_at * 1000), "enqueued_at": int(enqueued_at * 1000)}  # fmt: skip
    cli(port, "SADD", "queues", queue)
    cli(port, "LPUSH", f"queue:{queue}", json.dumps(job))


def sidecar_line(port: int) -> str:
    """The first line the sidecar's real script prints (then it is stopped)."""
    env = {
        "PATH": os.environ["PATH"],
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(port),
        "REDIS_PASSWORD": PASSWORD,
        "QUEUE_METRICS_LUA": QUEUE_METRICS_LUA,
        "QUEUE_METRICS": metrics_json(),
        "METRICS_NAMESPACE": NAMESPACE,
        "SERVER_NAME": "social",
    }
    return first_line(env)


def first_line(env: dict[str, str], timeout: float = 20) -> str:
    """The first line the sidecar's real script prints within `timeout` seconds (then it is stopped): a
    script that cannot reach Redis prints nothing on stdout and sleeps, which fails here instead of hanging."""
    import selectors

    proc = subprocess.Popen(
        ["sh", "-c", SIDECAR_SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline() if sel.select(timeout) else ""
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the script and its `sleep`, which holds the pipes open
        proc.wait(timeout=10)
    assert line, f"no line within {timeout} s: " + (proc.stderr.read() if proc.stderr else "")
    return line


def test_the_sidecar_publishes_the_backlog_as_cloudwatch_reads_it(redis: int) -> None:
    now = time.time()
    enqueue(redis, "default", now - 120)  # the oldest job of all
    enqueue(redis, "default", now - 30)
    enqueue(redis, "mailers", now - 5)
    cli(redis, "SADD", "queues", "push")  # a known, empty queue
    cli(redis, "ZADD", "retry", str(now + 60), '{"jid":"r1"}')
    cli(redis, "ZADD", "dead", str(now), '{"jid":"d1"}', str(now), '{"jid":"d2"}')

    line = sidecar_line(redis)
    metrics = parse_emf(line)
    dims = (("Server", "social"),)
    assert set(metrics) == {(NAMESPACE, m, dims) for m in ("OldestJobSeconds", "EnqueuedJobs", "RetryJobs", "DeadJobs")}
    assert 118 <= metrics[(NAMESPACE, "OldestJobSeconds", dims)][0] <= 125
    assert metrics[(NAMESPACE, "EnqueuedJobs", dims)] == [3.0]
    assert metrics[(NAMESPACE, "RetryJobs", dims)] == [1.0]
    assert metrics[(NAMESPACE, "DeadJobs", dims)] == [2.0]
    doc = json.loads(line)
    assert abs(doc["_aws"]["Timestamp"] / 1000 - time.time()) < 30
    queues = doc["Queues"]
    assert queues["default"]["size"] == 2 and 118 <= queues["default"]["latency"] <= 125
    assert queues["mailers"]["size"] == 1 and queues["push"] == {"size": 0, "latency": 0}
    assert PASSWORD not in line


def test_an_idle_server_reports_zero_and_sidekiq_7_seconds_are_understood(redis: int) -> None:
    assert json.loads(sidecar_line(redis))["OldestJobSeconds"] == 0
    job = {"class": "X", "args": [], "jid": "j", "queue": "ingress", "enqueued_at": time.time() - 60}  # seconds
    cli(redis, "SADD", "queues", "ingress")
    cli(redis, "LPUSH", "queue:ingress", json.dumps(job))
    assert 58 <= json.loads(sidecar_line(redis))["OldestJobSeconds"] <= 65


# --- the template -------------------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBINATIONS, ids=[combo_id(c) for c in COMBINATIONS])
def test_one_publisher_an_alarm_and_a_dashboard(combo: tuple) -> None:
    cfg = combo_config(combo)
    app = build(cfg)["app"].to_dict()["Resources"]
    sidecars = []
    for title, res in app.items():
        if res["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for c in res["Properties"]["ContainerDefinitions"]:
            if c["Name"] == "queue-metrics":
                sidecars.append((title, c))
    (scheduler,) = [s for s in cfg.resolved_services if "scheduler" in s.queue_names]
    task = cfg.task_of(scheduler.name)
    assert task is not None
    assert [t for t, _ in sidecars] == [f"{''.join(p.capitalize() for p in task.name.split('-'))}TaskDefinition"]
    _, c = sidecars[0]
    assert c["Essential"] is False and "Memory" not in c
    env = {e["Name"]: e["Value"] for e in c["Environment"]}
    secrets = {s["Name"] for s in c["Secrets"]}
    # ElastiCache: its public certificate; a Redis task: verified against the server's CA (REDIS_CA_CERT),
    # over loopback when the sidecar is in Redis' own task (the one task: the secret's redis_loopback_url)
    keys = {s["Name"]: str(s["ValueFrom"]["Fn::Join"][1][-1]).strip(":") for s in c["Secrets"]}
    if cfg.deployment.cache == "elasticache":
        assert secrets == {"REDIS_URL"}
    else:
        assert secrets == {"REDIS_URL", "REDIS_CA_CERT"} and "REDIS_HOST" not in env
        assert keys["REDIS_URL"] == ("redis_loopback_url" if cfg.one_task else "redis_url")
    assert "REDISCLI_AUTH" in c["Command"][0] and "-a " not in c["Command"][0]  # no password on a command line
    assert env["METRICS_NAMESPACE"] == NAMESPACE and env["SERVER_NAME"] == "social"

    alarm = app["SidekiqBacklogAlarm"]["Properties"]
    assert alarm["Namespace"] == NAMESPACE and alarm["MetricName"] == "OldestJobSeconds"
    assert alarm["Dimensions"] == [{"Name": "Server", "Value": "social"}]
    assert alarm["Threshold"] == BACKLOG_ALARM_SECONDS and alarm["Statistic"] == "Maximum"

    body_sub = app["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = body_sub if isinstance(body_sub, str) else body_sub[0]
    body = json.loads(text.replace("${", "{"))  # valid JSON once CloudFormation substitutes
    titles = {w["properties"]["title"] for w in body["widgets"]}
    edge = "Server errors (5xx)" if cfg.deployment.edge == "alb" else "TLS certificate: days left"
    assert {"Task CPU %", "Task memory %", edge} <= titles
    assert any("Sidekiq" in t for t in titles)
    assert ("Database connections" in titles) == (cfg.deployment.database == "rds")
    assert ("Database free storage" in titles) == (cfg.deployment.database == "rds")


# --- status --------------------------------------------------------------------------------------------


def test_status_shows_queue_sizes_and_the_dashboard(aws_endpoint: str, redis: int, tmp_path: Path) -> None:  # noqa: F811
    from tests.moto_server import put_log_lines
    from tests.test_day2 import DEPLOYMENT, config, deploy_world, no_traceback
    from tests.test_day2 import cli as mastofargate

    enqueue(redis, "default", time.time() - 42)
    enqueue(redis, "push", time.time() - 1)
    world = deploy_world(config(), tag="v4.5.4-0123abcd")
    put_log_lines(
        world.target, "/mastofargate/social/sidekiq", "queue-metrics/queue-metrics/abc123", [sidecar_line(redis)]
    )
    path = tmp_path / "mastofargate.toml"
    path.write_text(tomli_w.dumps(config_dict(**DEPLOYMENT)))
    proc = mastofargate(aws_endpoint, "status", "--config", str(path))
    no_traceback(proc)
    lines = proc.stdout.splitlines()
    (queue_line,) = [line for line in lines if line.startswith("sidekiq: ")]
    assert "default=1(" in queue_line and "push=1" in queue_line and "retry=0 dead=0" in queue_line
    assert (
        "dashboard: https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards/dashboard/social"
        in lines
    )
    data = json.loads(mastofargate(aws_endpoint, "status", "--config", str(path), "--json").stdout)
    assert data["queues"]["queues"]["default"]["size"] == 1 and data["queues"]["enqueued"] == 2


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking only TLS (as ElastiCache does), with a CA made here."""
    server = _ensure_redis()
    ca_key, ca, key, csr, crt = (tmp_path / n for n in ("ca.key", "ca.crt", "r.key", "r.csr", "r.crt"))
    run = lambda *a: subprocess.run(["openssl", *a], capture_output=True, check=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
        "-subj", "/CN=test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(crt),
        "-days", "1", "-extfile", str(ext))  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(crt),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            ping = subprocess.run(
                ["redis-cli", "-p", str(port), "--tls", "--cacert", str(ca), "--no-auth-warning", "PING"],
                env={**os.environ, "REDISCLI_AUTH": PASSWORD},
                capture_output=True,
                text=True,
                check=False,
            )
            if ping.stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_sidecar_reaches_elasticache_style_tls_with_the_url_secret(tls_redis: tuple[int, Path]) -> None:
    """REDIS_URL as the ElastiCache secret holds it (rediss://:PASSWORD@HOST:PORT), the server verified."""
    port, ca = tls_redis
    env = {
        "PATH": os.environ["PATH"],
        "REDIS_URL": f"rediss://:{PASSWORD}@127.0.0.1:{port}",
        "REDIS_CA_FILE": str(ca),
        "QUEUE_METRICS_LUA": QUEUE_METRICS_LUA,
        "QUEUE_METRICS": metrics_json(),
        "METRICS_NAMESPACE": NAMESPACE,
        "SERVER_NAME": "social",
    }
    line = first_line(env)
    assert parse_emf(line)[(NAMESPACE, "EnqueuedJobs", (("Server", "social"),))] == [0.0]
    # the certificate really is checked: a CA that did not sign it gets no answer
    other_ca = tls_redis[1].parent / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(other_ca) + ".key", "-out",
         str(other_ca), "-days", "1", "-subj", "/CN=other"],
        capture_output=True,
        check=True,
    )  # fmt: skip
    with pytest.raises(AssertionError, match="no line within"):
        first_line({**env, "REDIS_CA_FILE": str(other_ca)}, timeout=3)

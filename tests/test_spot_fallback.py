"""The Spot fallback: its Lambda handler end to end against the emulator, and the template around it.

The handler (mastofargate/lambdas/spot_fallback.py) runs unchanged against the AWS-like emulator (`sandbox`,
moto with ECS made to behave as ECS does: a capacity provider strategy change needs forceNewDeployment, and
forceNewDeployment starts a new PRIMARY deployment carrying the strategy). Events are the documented shape of
an "ECS Service Action" SERVICE_TASK_PLACEMENT_FAILURE (capacityProviderArns .../FARGATE_SPOT, reason
RESOURCE:FARGATE): placement failure -> strategy switched (with a new deployment) -> recorded in tags; then
the hourly retry returns a service to Spot only when that cannot cost an outage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mastofargate.lambdas import source, spot_fallback
from mastofargate.stack import build
from tests.conftest import COMBINATIONS, combo_id, make_config
from tests.deploy_sandbox import running_sandbox

CLUSTER = "social"
REGION = "us-east-1"
ACCOUNT = "123456789012"
SPOT = [{"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}]
MIXED = [
    {"capacityProvider": "FARGATE", "base": 1, "weight": 0},
    {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 1},
]


def placement_failure(service: str, *, cluster: str = CLUSTER, provider: str = "FARGATE_SPOT") -> dict[str, Any]:
    """An "ECS Service Action" placement failure as EventBridge delivers it (the ECS developer guide's example)."""
    return {
        "version": "0",
        "id": "ddca6449-b258-46c0-8653-e0e3a6d0468b",
        "detail-type": "ECS Service Action",
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": "2026-11-30T07:55:38Z",
        "region": REGION,
        "resources": [f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{service}"],
        "detail": {
            "eventType": "ERROR",
            "eventName": "SERVICE_TASK_PLACEMENT_FAILURE",
            "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}",
            "capacityProviderArns": [f"arn:aws:ecs:{REGION}:{ACCOUNT}:capacity-provider/{provider}"],
            "reason": "RESOURCE:FARGATE",
            "createdAt": "2026-11-30T07:55:38.087Z",
        },
    }


SCHEDULE = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_sandbox(tmp_path_factory.mktemp("sandbox")) as sandbox:
        yield sandbox.url


@pytest.fixture
def ecs(emulator: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A cluster with Fargate and Fargate Spot, a web service (100/200, Spot with one on-demand base task),
    a streaming service (Spot) and a singleton (0/100, Spot) - fresh for each test."""
    client = boto3.client("ecs", region_name=REGION)
    for arn in client.list_clusters()["clusterArns"]:
        for svc in client.list_services(cluster=arn)["serviceArns"]:
            client.delete_service(cluster=arn, service=svc, force=True)
    client.create_cluster(clusterName=CLUSTER, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    client.create_cluster(clusterName="other", capacityProviders=["FARGATE", "FARGATE_SPOT"])
    td = client.register_task_definition(
        family=f"{CLUSTER}-web",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "web", "image": "mastodon:1", "essential": True, "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    layouts = {
        "web": (MIXED, {"minimumHealthyPercent": 100, "maximumPercent": 200}, 2),
        "streaming": (SPOT, {"minimumHealthyPercent": 100, "maximumPercent": 200}, 1),
        "server": (SPOT, {"minimumHealthyPercent": 0, "maximumPercent": 100}, 1),
    }
    for cluster in (CLUSTER, "other"):
        for name, (strategy, deployment, count) in layouts.items():
            client.create_service(
                cluster=cluster,
                serviceName=name,
                taskDefinition=td,
                desiredCount=count,
                capacityProviderStrategy=strategy,
                deploymentConfiguration=deployment,
            )
    monkeypatch.setenv("CLUSTER", CLUSTER)
    monkeypatch.setenv("RETRY_HOURS", "6")
    return client


def describe(ecs: Any, name: str, cluster: str = CLUSTER) -> dict[str, Any]:
    service: dict[str, Any] = ecs.describe_services(cluster=cluster, services=[name], include=["TAGS"])["services"][0]
    service["tagmap"] = {t["key"]: t["value"] for t in service.get("tags") or []}
    return service


def providers(strategy: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return sorted((s["capacityProvider"], int(s.get("base", 0)), int(s.get("weight", 0))) for s in strategy)


def test_the_emulator_refuses_a_strategy_change_without_a_new_deployment(ecs: Any) -> None:
    """As ECS does: a strategy change needs forceNewDeployment (the Lambda must not rely on anything else)."""
    with pytest.raises(ClientError) as err:
        ecs.update_service(cluster=CLUSTER, service="web", capacityProviderStrategy=[{"capacityProvider": "FARGATE"}])
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "force a new deployment" in err.value.response["Error"]["Message"]


def test_a_placement_failure_moves_the_service_to_on_demand_and_records_it(
    ecs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    before = describe(ecs, "web")
    result = spot_fallback.handler(placement_failure("web"), None)
    assert result["action"] == "fallback" and result["service"] == "web" and result["reason"] == "RESOURCE:FARGATE"
    after = describe(ecs, "web")
    assert providers(after["capacityProviderStrategy"]) == [("FARGATE", 0, 1)]
    primary = [d for d in after["deployments"] if d["status"] == "PRIMARY"]
    assert len(primary) == 1 and primary[0]["id"] not in {d["id"] for d in before["deployments"]}
    assert providers(primary[0]["capacityProviderStrategy"]) == [("FARGATE", 0, 1)]  # the new tasks: on-demand
    since = datetime.strptime(after["tagmap"][spot_fallback.SINCE_TAG], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - since).total_seconds()) < 120
    assert spot_fallback.decode(after["tagmap"][spot_fallback.STRATEGY_TAG]) == MIXED  # the way back
    # The record in the function's log: one JSON line.
    logged = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert logged["trigger"] == "ECS Service Action" and logged["action"] == "fallback"
    # Other services and the other cluster's web are untouched.
    assert providers(describe(ecs, "streaming")["capacityProviderStrategy"]) == providers(SPOT)
    assert providers(describe(ecs, "web", "other")["capacityProviderStrategy"]) == providers(MIXED)


def test_duplicates_and_events_not_ours_change_nothing(ecs: Any) -> None:
    spot_fallback.handler(placement_failure("streaming"), None)
    deployments = describe(ecs, "streaming")["deployments"]
    again = spot_fallback.handler(placement_failure("streaming"), None)  # EventBridge delivers at least once
    assert again == {"action": "none", "reason": "already on on-demand Fargate", "service": "streaming"}
    assert describe(ecs, "streaming")["deployments"] == deployments  # no second deployment
    assert spot_fallback.handler(placement_failure("web", cluster="other"), None)["action"] == "none"
    assert spot_fallback.handler(placement_failure("web", provider="FARGATE"), None)["action"] == "none"
    steady = {**placement_failure("web"), "detail": {"eventName": "SERVICE_STEADY_STATE"}}
    assert spot_fallback.handler(steady, None)["action"] == "none"
    for name in ("web", "server"):
        assert providers(describe(ecs, name)["capacityProviderStrategy"]) != [("FARGATE", 0, 1)]
    assert providers(describe(ecs, "web", "other")["capacityProviderStrategy"]) == providers(MIXED)


def test_the_hourly_retry_returns_services_to_spot_only_where_no_outage_can_follow(ecs: Any) -> None:
    for name in ("web", "streaming", "server"):
        assert spot_fallback.handler(placement_failure(name), None)["action"] == "fallback"
    early = spot_fallback.handler(SCHEDULE, None)  # minutes later: too soon
    assert early["retried"] == [] and sorted(early["waiting"]) == ["streaming", "web"]
    assert early["left_for_the_next_deploy"] == ["server"]
    old = (datetime.now(UTC) - timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name in ("web", "server"):  # as if the fallback had happened seven hours ago
        ecs.tag_resource(
            resourceArn=describe(ecs, name)["serviceArn"], tags=[{"key": spot_fallback.SINCE_TAG, "value": old}]
        )
    result = spot_fallback.handler(SCHEDULE, None)
    assert result["retried"] == ["web"] and result["waiting"] == ["streaming"]
    assert result["left_for_the_next_deploy"] == ["server"]  # a singleton: ECS would stop its only task first
    web = describe(ecs, "web")
    assert providers(web["capacityProviderStrategy"]) == providers(MIXED)
    assert spot_fallback.SINCE_TAG not in web["tagmap"] and spot_fallback.STRATEGY_TAG not in web["tagmap"]
    primary = next(d for d in web["deployments"] if d["status"] == "PRIMARY")
    assert providers(primary["capacityProviderStrategy"]) == providers(MIXED)
    server = describe(ecs, "server")
    assert (
        providers(server["capacityProviderStrategy"]) == [("FARGATE", 0, 1)]
        and spot_fallback.SINCE_TAG in server["tagmap"]
    )
    # Spot still without capacity: the retried service falls back again at the next failure.
    assert spot_fallback.handler(placement_failure("web"), None)["action"] == "fallback"


def test_the_strategy_tag_holds_only_characters_ecs_allows_in_tag_values() -> None:
    """ECS tag values: letters, digits, spaces and + - = . _ : / @, at most 256 characters (no JSON)."""
    text = spot_fallback.encode(MIXED)
    assert text == "FARGATE:1:0 FARGATE_SPOT:0:1" and spot_fallback.decode(text) == MIXED
    assert all(c.isalnum() or c in " +-=._:/@" for c in text) and len(text) <= 256


def test_the_lambda_source_stands_alone() -> None:
    text = source("spot_fallback")
    assert "from mastofargate" not in text and "import mastofargate" not in text


# ------------------------------------------------------------------------------------------- the template

combos = pytest.mark.parametrize("combo", COMBINATIONS, ids=[combo_id(c) for c in COMBINATIONS])


def _app(**kw: Any) -> dict[str, Any]:
    return dict(build(make_config(**kw))["app"].to_dict()["Resources"])


def test_the_fallback_exists_exactly_when_a_service_runs_on_spot() -> None:
    assert "SpotFallbackFunction" in _app(profile="personal", spot=True)
    assert not any(k.startswith("Spot") for k in _app(profile="personal", spot=False))
    assert not any(k.startswith("Spot") for k in _app(profile="large"))  # large: on-demand by default


def test_rule_role_dead_letters_and_alarm() -> None:
    app = _app(profile="community", spot=True)
    pattern = app["SpotPlacementFailureRule"]["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.ecs"] and pattern["detail-type"] == ["ECS Service Action"]
    detail = pattern["detail"]
    assert detail["eventName"] == ["SERVICE_TASK_PLACEMENT_FAILURE"]
    assert detail["clusterArn"] == [{"Fn::GetAtt": ["Cluster", "Arn"]}]  # this cluster only
    assert detail["capacityProviderArns"] == [{"suffix": "capacity-provider/FARGATE_SPOT"}]  # by strategy
    assert "resources" not in pattern and "serviceName" not in json.dumps(pattern)  # never by service name
    retry = app["SpotRetryRule"]["Properties"]
    assert retry["ScheduleExpression"] == "rate(1 hour)"
    fn = app["SpotFallbackFunction"]["Properties"]
    assert fn["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": ["SpotFallbackDeadLetterQueue", "Arn"]}}
    assert fn["ReservedConcurrentExecutions"] == 1 and fn["Environment"]["Variables"]["CLUSTER"] == "social"
    assert fn["Code"]["ZipFile"] == source("spot_fallback")
    for rule in ("SpotPlacementFailureRule", "SpotRetryRule"):
        perm = app[f"{rule}Permission"]["Properties"]
        assert perm["Principal"] == "events.amazonaws.com" and perm["SourceArn"] == {"Fn::GetAtt": [rule, "Arn"]}
    alarm = app["SpotFallbackDeadLetterAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS" and alarm["Threshold"] == 0
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["SpotFallbackDeadLetterQueue", "QueueName"]}}
    ]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_role_may_touch_only_this_clusters_services() -> None:
    app = _app(profile="personal", spot=True)
    statements = app["SpotFallbackRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    got = {s["Sid"]: (sorted(s["Action"]), s["Resource"], s.get("Condition")) for s in statements}
    arn = "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:service/social/*"
    assert got == {
        "SwitchOurServices": (
            ["ecs:DescribeServices", "ecs:TagResource", "ecs:UntagResource", "ecs:UpdateService"],
            [{"Fn::Sub": arn}],
            None,
        ),
        "ListOurServices": (
            ["ecs:ListServices"],
            ["*"],
            {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}},
        ),
        "WriteOwnLog": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [{"Fn::GetAtt": ["SpotFallbackLogGroup", "Arn"]}],
            None,
        ),
        "DeadLetters": (["sqs:SendMessage"], [{"Fn::GetAtt": ["SpotFallbackDeadLetterQueue", "Arn"]}], None),
    }
    trust = app["SpotFallbackRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}]


@combos
def test_every_spot_shape_gets_the_fallback(combo: tuple) -> None:
    profile, database, cache, arch, spot, edge, layout = combo
    app = _app(profile=profile, database=database, cache=cache, arch=arch, spot=spot, edge=edge, layout=layout)
    uses_spot = any(
        "FARGATE_SPOT" in json.dumps(r.get("Properties", {}).get("CapacityProviderStrategy", [])) for r in app.values()
    )
    assert ("SpotFallbackFunction" in app) == uses_spot


def test_the_emulator_module_documents_the_difference() -> None:
    text = (Path(__file__).resolve().parents[1] / "sandbox" / "ecs.py").read_text()
    assert "you must force a new deployment" in text and "UpdateService" in text


# ------------------------------------------------------------------------------------------- the deploy's side


def test_the_deploy_names_fallbacks_and_returns_the_services_it_rolls_to_the_templates_spot(
    ecs: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """deploy/spot.py against the emulator: `plan` names what runs on the fallback; an upgrade that rolls a
    service returns it to the template's strategy (new deployment, tags cleared) before CloudFormation's update;
    a service the deploy does not roll stays on on-demand (and `status` lists it through the same `fallbacks`)."""
    from mastofargate.deploy import spot
    from tests.conftest import plain_run

    cfg = make_config(profile="personal", spot=True)
    assert {s.name for s in cfg.all_services} >= {"web", "streaming"}
    run = plain_run(cfg)
    for name in ("web", "streaming", "server"):
        spot_fallback.handler(placement_failure(name), None)
    capsys.readouterr()
    found = {f.service: f for f in spot.announce(run)}
    assert set(found) == {"web", "streaming"}  # "server" is not a service of this config
    out = capsys.readouterr().out
    assert "Spot fallback: web runs on on-demand Fargate since" in out and "retries Spot after 6 hours" in out
    template = build(cfg)["app"].to_dict()
    returned = spot.return_to_spot(run, template, ["web"])
    assert returned == ["web"]
    web = describe(ecs, "web")
    wanted = spot.template_strategy(template, "web")
    assert wanted and providers(web["capacityProviderStrategy"]) == providers(wanted)
    assert spot.SINCE_TAG not in web["tagmap"] and spot.STRATEGY_TAG not in web["tagmap"]
    primary = next(d for d in web["deployments"] if d["status"] == "PRIMARY")
    assert providers(primary["capacityProviderStrategy"]) == providers(wanted)
    assert "streaming stays on on-demand Fargate: this deploy does not roll it" in capsys.readouterr().out
    assert providers(describe(ecs, "streaming")["capacityProviderStrategy"]) == [("FARGATE", 0, 1)]
    rows = spot.fallbacks(run.target)
    assert [f.service for f in rows] == ["streaming"] and not rows[0].singleton


def test_the_deploy_restates_the_lambdas_tag_names() -> None:
    from mastofargate.deploy import spot

    assert (spot.SINCE_TAG, spot.STRATEGY_TAG) == (spot_fallback.SINCE_TAG, spot_fallback.STRATEGY_TAG)


def test_a_stale_record_is_cleared_without_a_restart(ecs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A rollback can put a service back on the template's Spot strategy while it still carries the
    fallback's tags: neither the hourly run nor the deploy restarts it, both clear the record."""
    from mastofargate.deploy import spot
    from tests.conftest import plain_run

    spot_fallback.handler(placement_failure("streaming"), None)
    spot_fallback.handler(placement_failure("web"), None)
    for name, strategy in (("streaming", SPOT), ("web", MIXED)):  # what a CloudFormation rollback re-sends
        ecs.update_service(cluster=CLUSTER, service=name, capacityProviderStrategy=strategy, forceNewDeployment=True)
    before = {d["id"] for d in describe(ecs, "streaming")["deployments"]}
    run = plain_run(make_config(profile="personal", spot=True))
    assert sorted(f.service for f in spot.fallbacks(run.target) if f.stale) == ["streaming", "web"]
    assert spot.announce(run) == [] and spot.on_fallback(run.target) == []
    capsys.readouterr()
    assert spot.return_to_spot(run, build(make_config(profile="personal", spot=True))["app"].to_dict(), ["web"]) == []
    out = capsys.readouterr().out
    assert "web: already back on Fargate Spot; the fallback's record is cleared" in out
    assert "streaming: already back on Fargate Spot" in out  # stale records go whether rolled or not
    assert spot_fallback.SINCE_TAG not in describe(ecs, "web")["tagmap"]
    ecs.tag_resource(  # a stale record again, for the hourly run this time
        resourceArn=describe(ecs, "streaming")["serviceArn"],
        tags=[
            {"key": spot_fallback.SINCE_TAG, "value": "2026-11-30T00:00:00Z"},
            {"key": spot_fallback.STRATEGY_TAG, "value": "FARGATE_SPOT:0:1"},
        ],
    )
    spot_fallback.handler(SCHEDULE, None)
    streaming = describe(ecs, "streaming")
    assert spot_fallback.SINCE_TAG not in streaming["tagmap"]
    assert {d["id"] for d in streaming["deployments"]} <= before  # no new deployment: no restart

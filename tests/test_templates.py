"""Our own checks where cfn-lint and checkov are blind, over every profile x database x cache x arch x spot.

Each test reads the generated CloudFormation (as plain dicts), so it checks what would be deployed.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from mastofargate.config import SECRET_NAME_PATTERN
from mastofargate.sizing import SCHEDULER_QUEUE
from mastofargate.stack import build
from mastofargate.stack.edge import STREAMING_PATHS
from tests.conftest import COMBINATIONS, combo_config, combo_id, make_config

DATA_BEARING = {
    "AWS::RDS::DBInstance": "Snapshot",
    "AWS::EFS::FileSystem": "Retain",
    "AWS::EFS::AccessPoint": "Retain",
    "AWS::ElastiCache::ReplicationGroup": "Snapshot",
    "AWS::Backup::BackupVault": "Retain",
    "AWS::KMS::Key": "Retain",
}


@cache
def stacks(combo: tuple[str, str, str, str, bool]) -> dict[str, dict[str, Any]]:
    cfg = combo_config(combo)
    return {name: t.to_dict() for name, t in build(cfg).items()}


def resources(combo: tuple, kind: str, stack: str | None = None) -> dict[str, dict[str, Any]]:
    out = {}
    for name, tpl in stacks(combo).items():
        if stack in (None, name):
            out |= {k: v for k, v in tpl["Resources"].items() if v["Type"] == kind}
    return out


def containers(combo: tuple) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        (title, td["Properties"], c)
        for title, td in resources(combo, "AWS::ECS::TaskDefinition").items()
        for c in td["Properties"]["ContainerDefinitions"]
    ]


def task_definition_of(combo: tuple, service: dict[str, Any]) -> dict[str, Any]:
    """The task definition a service runs once its services are on (a one-task server with data stores runs
    them alone while a first install migrates: `Fn::If [ServicesOn, whole task, data stores]`)."""
    ref = service["Properties"]["TaskDefinition"]
    ref = ref["Fn::If"][1] if "Fn::If" in ref else ref
    return stacks(combo)["app"]["Resources"][ref["Ref"]]["Properties"]


def desired_when_on(service: dict[str, Any]) -> Any:
    count = service["Properties"]["DesiredCount"]
    return count["Fn::If"][1] if isinstance(count, dict) else count


combos = pytest.mark.parametrize("combo", COMBINATIONS, ids=[combo_id(c) for c in COMBINATIONS])


@combos
def test_no_secret_in_plain_environment(combo: tuple) -> None:
    for title, _, c in containers(combo):
        for env in c.get("Environment", []):
            assert not SECRET_NAME_PATTERN.search(env["Name"]), f"{title}: {env['Name']} is plain environment"
        names = {s["Name"] for s in c.get("Secrets", [])}
        if c["Name"] in ("web", "sidekiq", "mastodon"):
            assert {"SECRET_KEY_BASE", "DB_PASS", "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"} <= names
    text = json.dumps(stacks(combo))
    assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text


@combos
def test_every_container_fits_its_task(combo: tuple) -> None:
    """Hard limits add up to at most the task's memory, and so do the reservations (a sidecar may have only a
    reservation: ECS then lets it use what the task has spare)."""
    limits: dict[str, int] = {}
    reserved: dict[str, int] = {}
    for title, props, c in containers(combo):
        assert c["MemoryReservation"] <= c.get("Memory", c["MemoryReservation"]), title
        limits[title] = limits.get(title, 0) + c.get("Memory", 0)
        reserved[title] = reserved.get(title, 0) + c["MemoryReservation"]
        assert limits[title] <= int(props["Memory"]), f"{title}: containers need more memory than the task has"
        assert reserved[title] <= int(props["Memory"]), f"{title}: containers reserve more than the task has"


@combos
def test_capacity_strategy_and_launch_type_never_together(combo: tuple) -> None:
    for title, svc in resources(combo, "AWS::ECS::Service").items():
        props = svc["Properties"]
        assert "CapacityProviderStrategy" in props and "LaunchType" not in props, title
    for title, sched in resources(combo, "AWS::Scheduler::Schedule").items():
        ecs = sched["Properties"]["Target"]["EcsParameters"]
        assert not ("CapacityProviderStrategy" in ecs and "LaunchType" in ecs), title


@combos
def test_scheduler_queue_runs_in_exactly_one_non_overlapping_task(combo: tuple) -> None:
    services = resources(combo, "AWS::ECS::Service")
    with_scheduler = []
    for title, svc in services.items():
        for c in task_definition_of(combo, svc)["ContainerDefinitions"]:
            command = c.get("Command", [])
            queues = [command[i + 1].split(",")[0] for i, arg in enumerate(command) if arg == "-q"]
            if SCHEDULER_QUEUE not in queues:
                continue
            with_scheduler.append(title)
            deploy = svc["Properties"]["DeploymentConfiguration"]
            assert deploy["MinimumHealthyPercent"] == 0 and deploy["MaximumPercent"] == 100
            assert desired_when_on(svc) == 1
            key = title.removesuffix("Service")
            assert f"{key}ScalableTarget" not in stacks(combo)["app"]["Resources"]
    assert len(with_scheduler) == 1, with_scheduler


@combos
def test_postgres_task_owns_its_directory_alone(combo: tuple) -> None:
    """Exactly one service holds Postgres, never two tasks at once (0 % / 100 %, one task, never scaled); a
    Postgres task of its own is never on Spot, the one task may be (DESIGN); its data on encrypted EFS."""
    holders = {
        title: svc
        for title, svc in resources(combo, "AWS::ECS::Service").items()
        if any(c["Name"] == "postgres" for c in task_definition_of(combo, svc)["ContainerDefinitions"])
    }
    if combo[1] != "task":
        assert not holders
        return
    ((title, svc),) = holders.items()
    props = svc["Properties"]
    assert props["DesiredCount"] == 1
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert props["DeploymentConfiguration"]["MaximumPercent"] == 100
    providers = [s["CapacityProvider"] for s in props["CapacityProviderStrategy"]]
    if combo[6] == "split":
        assert title == "PostgresService" and providers == ["FARGATE"]
    else:
        assert providers == ["FARGATE_SPOT" if combo[4] else "FARGATE"]
    assert f"{title.removesuffix('Service')}ScalableTarget" not in stacks(combo)["app"]["Resources"]
    td = task_definition_of(combo, svc)
    (pg,) = [c for c in td["ContainerDefinitions"] if c["Name"] == "postgres"]
    (mount,) = pg["MountPoints"]
    (volume,) = [v["EFSVolumeConfiguration"] for v in td["Volumes"] if v["Name"] == mount["SourceVolume"]]
    assert volume["TransitEncryption"] == "ENABLED"
    assert volume["AuthorizationConfig"]["AccessPointId"] == {"Fn::ImportValue": "social-data:PostgresAccessPointId"}


@combos
def test_streaming_rule_covers_both_paths(combo: tuple) -> None:
    if combo[5] == "direct":  # Caddy's first route, in the configuration the web task's Caddy receives
        (td,) = [p for _, p, c in containers(combo) if c["Name"] == "caddy"]
        (caddy,) = [c for c in td["ContainerDefinitions"] if c["Name"] == "caddy"]
        config = json.loads(caddy["Environment"][0]["Value"])
        site = config["apps"]["http"]["servers"]["mastodon"]["routes"][0]["handle"][0]["routes"][0]
        assert sorted(site["match"][0]["path"]) == sorted(STREAMING_PATHS)
        shared = any(c["Name"] == "streaming" for c in td["ContainerDefinitions"])  # the front task, the one task
        want = "127.0.0.1:4000" if shared else "streaming.social.internal:4000"
        assert site["handle"][0]["upstreams"] == [{"dial": want}]
        assert not resources(combo, "AWS::ElasticLoadBalancingV2::LoadBalancer")
        return
    (rule,) = resources(combo, "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    values = rule["Properties"]["Conditions"][0]["PathPatternConfig"]["Values"]
    assert sorted(values) == sorted(STREAMING_PATHS) == ["/api/v1/streaming", "/api/v1/streaming/*"]
    assert rule["Properties"]["Actions"][0]["TargetGroupArn"] == {"Ref": "StreamingTargetGroup"}


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in role["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


@combos
def test_s3_access_names_only_the_media_bucket(combo: tuple) -> None:
    """Mastodon reaches only the media bucket; the backup tasks (and the Postgres task, whose pgBackRest
    archives WAL) only the backup bucket; nothing else touches S3."""
    media = {"Fn::ImportValue": "social-data:MediaBucketArn"}
    backups = {"Fn::ImportValue": "social-data:BackupBucketArn"}
    # role -> the buckets it may name, each with the object prefix it may reach
    pgbackrest = (backups, "/pgbackrest/*")  # pgBackRest's repository, never the dumps
    allowed = {"MastodonTaskRole": [(media, "/*")], "BackupTaskRole": [(backups, "/*")]}
    if combo[5] == "direct":
        allowed["FrontTaskRole"] = [(media, "/*")]  # Mastodon's web role, plus Caddy's certificate directory
    if "task" in combo[1:3] and combo[6] == "one-task":  # Mastodon and its data stores share one role
        allowed["ServerTaskRole"] = [(media, "/*")] + ([pgbackrest] if combo[1] == "task" else [])
        allowed.pop("FrontTaskRole", None)
    elif combo[1] == "task":
        allowed["PostgresTaskRole"] = [pgbackrest]
    with_s3 = set()
    for title, role in resources(combo, "AWS::IAM::Role", "app").items():
        for st in _statements(role):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if any(a.startswith("s3:") for a in actions):
                assert title in allowed, f"{title} has S3 access"
                assert "s3:PutObjectAcl" not in actions and "s3:*" not in actions, "the buckets have no ACLs"
                with_s3.add(title)
                for res in st["Resource"]:
                    assert any(
                        res == bucket or res == {"Fn::Join": ["", [bucket, prefix]]}
                        for bucket, prefix in allowed[title]
                    ), res
        assert not role["Properties"].get("ManagedPolicyArns"), title
    assert with_s3 == set(allowed)


@combos
def test_every_data_resource_survives_delete_and_replace(combo: tuple) -> None:
    data = stacks(combo)["data"]["Resources"]
    for title, res in data.items():
        policy = DATA_BEARING.get(res["Type"])
        if res["Type"] == "AWS::S3::Bucket" and title in ("MediaBucket", "BackupBucket"):
            policy = "Retain"
        if policy:
            assert res.get("DeletionPolicy") == policy, title
            assert res.get("UpdateReplacePolicy") == policy, title
    assert "MediaBucket" in data and "BackupBucket" in data
    db = data.get("Database")
    if db:
        props = db["Properties"]
        assert props["DeletionProtection"] is True and props["StorageEncrypted"] is True
        assert props["BackupRetentionPeriod"] >= 1 and props["MaxAllocatedStorage"] > int(props["AllocatedStorage"])
        assert props["MasterUserPassword"] == (
            "{{resolve:secretsmanager:mastofargate/social/server:SecretString:database_password}}"
        )
    for kind in DATA_BEARING:
        assert not resources(combo, kind, "app"), f"{kind} must live in the data stack"


@combos
def test_backup_plan_covers_what_is_safe_to_copy_file_by_file(combo: tuple) -> None:
    """AWS Backup takes RDS, and the EFS only while no live Postgres data directory is on it (a file-by-file
    copy of one may not start); the Postgres task has pgBackRest and the nightly dump instead."""
    _, database, cache, *_ = combo
    selections = list(resources(combo, "AWS::Backup::BackupSelection").values())
    assert resources(combo, "AWS::Backup::BackupVault")
    if database == "task":
        assert not selections and not resources(combo, "AWS::Backup::BackupPlan")
        app = stacks(combo)["app"]["Resources"]
        # every definition running Postgres (the one task has two: the whole task, and its data stores alone)
        postgres = [
            c
            for td in app.values()
            if td["Type"] == "AWS::ECS::TaskDefinition"
            for c in td["Properties"]["ContainerDefinitions"]
            if c["Name"] == "postgres"
        ]
        assert len(postgres) == (2 if combo[6] == "one-task" else 1)
        for pg in postgres:
            env = {e["Name"]: e["Value"] for e in pg["Environment"]}
            assert env["PGBACKREST_STANZA"] == "main" and env["PGBACKREST_REPO1_PATH"] == "/pgbackrest"
            assert "archive_mode=on" in pg["Command"] and "archive_timeout=60" in pg["Command"]
        return
    (selection,) = selections
    covered = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])
    assert "db:${Database}" in covered
    assert ("FileSystem" in covered) == (cache == "task")


@combos
def test_local_domain_and_media_settings_reach_every_mastodon_process(combo: tuple) -> None:
    for title, _, c in containers(combo):
        if c["Name"] not in ("web", "sidekiq", "streaming", "mastodon"):
            continue
        env = {e["Name"]: e["Value"] for e in c["Environment"]}
        if c["Name"] != "streaming":  # the Node streaming server does not read LOCAL_DOMAIN
            assert env["LOCAL_DOMAIN"] == "social.example.org", title
            # EMPTY, not "private" (S3 refuses ACLs on a BucketOwnerEnforced bucket) nor absent (public-read)
            assert "S3_PERMISSION" in env and env["S3_PERMISSION"] == "" and env["S3_ENABLED"] == "true", title
            assert env["S3_ALIAS_HOST"] == {"Fn::ImportValue": "social-data:MediaHost"}
        secrets = {s["Name"] for s in c["Secrets"]}
        if combo[2] == "elasticache":
            # ioredis (streaming) enables TLS from the rediss:// URL; only Rails needs the Ruby driver
            assert env.get("REDIS_DRIVER") == (None if c["Name"] == "streaming" else "ruby") and "REDIS_URL" in secrets
        else:  # Redis in a task, its own or the one task: verified TLS (tests/test_redis_tls.py has the details)
            assert "REDIS_HOST" not in env and "REDIS_PASSWORD" not in secrets, title
            assert {"REDIS_URL", "REDIS_CA_CERT"} <= secrets, title
    for tpl in stacks(combo).values():
        assert tpl["Metadata"]["mastofargate"]["local_domain"] == "social.example.org"


@combos
def test_rollout_defaults_are_fast_and_safe(combo: tuple) -> None:
    for title, svc in resources(combo, "AWS::ECS::Service").items():
        breaker = svc["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
        assert breaker == {"Enable": True, "Rollback": True}, title
        if "LoadBalancers" in svc["Properties"]:
            assert svc["Properties"]["HealthCheckGracePeriodSeconds"] >= 60 or title == "StreamingService"
    for title, tg in resources(combo, "AWS::ElasticLoadBalancingV2::TargetGroup").items():
        p = tg["Properties"]
        assert p["HealthCheckIntervalSeconds"] * p["HealthyThresholdCount"] <= 20, title
        delay = int(p["TargetGroupAttributes"][0]["Value"])
        assert delay <= 120, title


@combos
def test_spot_never_carries_postgres_and_follows_the_setting(combo: tuple) -> None:
    spot = combo[4]
    for title, svc in resources(combo, "AWS::ECS::Service").items():
        providers = {s["CapacityProvider"] for s in svc["Properties"]["CapacityProviderStrategy"]}
        if title == "PostgresService" or not spot:
            assert providers == {"FARGATE"}, title
        else:
            assert "FARGATE_SPOT" in providers, title


@combos
def test_architecture_reaches_every_task_definition(combo: tuple) -> None:
    want = "ARM64" if combo[3] == "arm64" else "X86_64"
    for title, td in resources(combo, "AWS::ECS::TaskDefinition", "app").items():
        assert td["Properties"]["RuntimePlatform"]["CpuArchitecture"] == want, title
    # The data stack's database setup task runs the official multi-arch Postgres image on one architecture, so
    # the data stack stays the same whatever the arch (test_lint counts on it).
    (setup,) = resources(combo, "AWS::ECS::TaskDefinition", "data").values()
    assert setup["Properties"]["RuntimePlatform"]["CpuArchitecture"] == "X86_64"


@combos
def test_mastodon_logs_in_as_the_database_owner_and_only_the_setup_task_as_the_master(combo: tuple) -> None:
    """Web, streaming, Sidekiq (and its sidecar) and every one-off Mastodon job: DB_USER mastodon_owner with the
    owner's password; the master password reaches only the Postgres task itself, the data stack's setup task and
    the backup task (pg_dump and the restore's checks and switch need the master: it owns what restores create)."""
    seen = set()
    for title, _, c in containers(combo):
        env = {e["Name"]: e["Value"] for e in c.get("Environment", [])}
        secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in c.get("Secrets", [])}
        database_keys = {
            name: json.loads(value)["Fn::Join"][1][1].replace("database_", "", 1)
            for name, value in secrets.items()
            if ":database_" in value
        }
        if c["Name"] in ("web", "sidekiq", "streaming", "mastodon"):
            seen.add(c["Name"])
            assert env["DB_USER"] == "mastodon_owner", title
            assert database_keys == {"DB_PASS": ":owner_password::"}, title
        elif c["Name"] == "postgres":
            assert env["POSTGRES_USER"] == "mastodon" and database_keys == {"POSTGRES_PASSWORD": ":password::"}
        elif c["Name"] == "dbsetup":
            assert title == "DatabaseSetupTaskDefinition"
            assert env["PGUSER"] == "mastodon" and database_keys == {"PGPASSWORD": ":password::"}
            assert env["PGSSLMODE"] == "require"
        elif c["Name"] == "backup":
            assert title == "BackupTaskDefinition"
            assert env["PGUSER"] == "mastodon" and database_keys == {"PGPASSWORD": ":password::"}
            assert env["PGSSLMODE"] == "require"
        else:
            assert database_keys == {}, f"{title}: {c['Name']} gets a database password"
    assert seen == {"web", "sidekiq", "streaming", "mastodon"}


@combos
def test_every_resource_says_what_it_is(combo: tuple) -> None:
    for name, tpl in stacks(combo).items():
        for title, res in tpl["Resources"].items():
            assert res.get("Metadata", {}).get("Description"), f"{name}:{title} has no description"


def test_image_tags_are_parameters_so_a_release_changes_nothing_else() -> None:
    def text(version: str) -> str:
        cfg = make_config(mastodon_version=version)
        return json.dumps({k: t.to_dict() for k, t in build(cfg).items()}, sort_keys=True)

    assert text("v4.5.4") == text("v4.5.5")
    assert "MastodonImageTag" in text("v4.5.4")


def test_mastodon_43_still_gets_its_otp_secret() -> None:
    cfg = make_config(mastodon_version="v4.3.9")
    app = build(cfg)["app"].to_dict()
    web = app["Resources"]["WebTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert "OTP_SECRET" in {s["Name"] for s in web["Secrets"]}


def test_sizing_reaches_the_containers() -> None:
    cfg = make_config(profile="community")
    app = build(cfg)["app"].to_dict()["Resources"]
    web = app["FrontTaskDefinition"]["Properties"]  # community packs Puma and streaming in the front task
    env = {e["Name"]: e["Value"] for e in web["ContainerDefinitions"][0]["Environment"]}
    row = cfg.profile.service("web")
    (front,) = cfg.profile.packings["split"]
    assert (web["Cpu"], web["Memory"]) == (str(front.cpu), str(front.memory))
    assert web["ContainerDefinitions"][0]["Memory"] == front.limits["web"][0]
    assert env["WEB_CONCURRENCY"] == str(row.web_concurrency) and env["DB_POOL"] == str(row.db_pool)
    sidekiq = app["SidekiqTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert sidekiq["Command"][:5] == [
        "bundle",
        "exec",
        "sidekiq",
        "-c",
        str(cfg.profile.service("sidekiq").sidekiq_concurrency),
    ]
    assert app["FrontScalableTarget"]["Properties"]["MaxCapacity"]["Fn::If"][1] == front.counts[2]


def test_no_template_contains_a_literal_secret_value() -> None:
    for combo in COMBINATIONS[:8]:
        text = json.dumps(stacks(combo))
        for match in re.finditer(r'"(MasterUserPassword|AuthToken)": "([^"]*)"', text):
            assert match.group(2).startswith("{{resolve:secretsmanager:"), match.group(0)


@combos
def test_no_stack_owns_a_secret(combo: tuple) -> None:
    """Invariant 2: secrets are created once by the deploy's bootstrap, outside CloudFormation, so no stack
    update, replacement or delete can regenerate or remove them; templates only reference them."""
    for name, tpl in stacks(combo).items():
        kinds = {r["Type"] for r in tpl["Resources"].values()}
        assert not {k for k in kinds if k.startswith("AWS::SecretsManager::")}, name
    params = stacks(combo)["app"]["Parameters"]
    assert "SecretArn" in params and not {"AppSecretArn", "DatabaseSecretArn", "RedisSecretArn"} & set(params)
    assert all(p.get("NoEcho") is not True for p in params.values())  # ARNs are not secret; values never pass


def test_one_off_jobs_log_to_their_own_group_and_prefix() -> None:
    """`mastofargate logs migrate` reads /mastofargate/NAME/migrate, stream migrate/mastodon/TASK."""
    app = build(make_config())["app"].to_dict()["Resources"]
    for job in ("migrate-pre", "migrate", "tootctl"):
        family = f"social-{job}"
        (td,) = [
            r for r in app.values() if r["Type"] == "AWS::ECS::TaskDefinition" and r["Properties"]["Family"] == family
        ]
        c = td["Properties"]["ContainerDefinitions"][0]
        options = c["LogConfiguration"]["Options"]
        group = app[options["awslogs-group"]["Ref"]]["Properties"]["LogGroupName"]
        assert (c["Name"], group, options["awslogs-stream-prefix"]) == ("mastodon", f"/mastofargate/social/{job}", job)


@combos
def test_efs_admits_only_the_tasks_that_use_it(combo: tuple) -> None:
    data = stacks(combo)["data"]["Resources"]
    uses = {"Postgres": combo[1] == "task", "Redis": combo[2] == "task", "edge": combo[5] == "direct"}
    sg = data.get("FileSystemSecurityGroup")
    assert (sg is not None) == any(uses.values()) == ("FileSystem" in data)
    if sg:
        sources = {r["Description"] for r in sg["Properties"]["SecurityGroupIngress"]}
        assert sources == {f"NFS from the {role} task" for role, on in uses.items() if on}
    access_points = {t for t, r in data.items() if r["Type"] == "AWS::EFS::AccessPoint"}
    assert access_points == {f"{'Caddy' if r == 'edge' else r}AccessPoint" for r, on in uses.items() if on}


@combos
def test_backup_bucket_is_private_versioned_encrypted_expiring_and_tls_only(combo: tuple) -> None:
    data = stacks(combo)["data"]["Resources"]
    props = data["BackupBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    sse = rule["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms" and sse["KMSMasterKeyID"] == {"Fn::GetAtt": ["EncryptionKey", "Arn"]}
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r.get("Prefix") == "dumps/" and r.get("ExpirationInDays") for r in rules)
    assert any(r.get("NoncurrentVersionExpiration") and "Prefix" not in r for r in rules)
    # pgBackRest expires its own repository: no age-based expiry may reach WAL a kept backup needs
    assert all(r.get("Prefix") == "dumps/" for r in rules if r.get("ExpirationInDays"))
    policies = [r for r in data.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    (policy,) = [r for r in policies if r["Properties"]["Bucket"] == {"Ref": "BackupBucket"}]
    (tls,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

"""How long an upgrade takes on AWS, modelled: the critical path of `mastofargate deploy` from the settings in
the generated templates and stated assumptions, against the same path with AWS's defaults and Copilot's.

No AWS account is reachable here, so the seconds AWS itself spends (starting a Fargate task, pulling an
image, computing a change set) are ASSUMPTIONS, listed below with where each comes from; everything the
templates decide (health checks, draining, grace periods, deployment percentages, stop timeouts) is READ
from the generated app template of the given profile. A phase's time is the longest of what runs in it at
once; the upgrade's time is the sum of its phases. Two orders are modelled:

  before  preflight, plan, asset export, pre-migrations, rollout, post-migrations (one after the other)
  now     the asset export runs beside the pre-migrations (neither needs the other; the rollout waits for
          both), which takes the export off the critical path
  backup  `now` plus deploy's pre-upgrade backup, which the pre-migrations must wait for (they change the
          schema it saves); it runs beside the asset export, so it adds its own time less nothing: the
          export (45 s) is shorter than backup + pre-migrations. Two kinds: an RDS snapshot, and a dump of
          the Postgres task in a one-off backup task

    .venv/bin/python bench/upgrade.py [--profile personal|community|large]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# --- assumptions (seconds) ------------------------------------------------------------------------------
ASSUME = {
    # aws.md: "Image pull for a ~400 MB image on Fargate: about a minute (Fargate caches no layers)".
    "image_pull": 60,
    # Fargate's own provisioning (ENI attach, placement) before the pull: commonly 10-30 s; the middle.
    "task_provisioning": 20,
    # Rails boot of Mastodon 4.5 to a 200 on /health (preload_app!, YJIT): the chart's startup probe allows
    # 15 s + 30 x 5 s; a small task boots in roughly 20-30 s. Node streaming: a few seconds.
    "rails_boot": 25,
    "sidekiq_boot": 20,
    "streaming_boot": 3,
    # A change set of these templates: CloudFormation computes it in 5-15 s.
    "change_set": 10,
    # CloudFormation's own overhead around a stack update (task definition revisions, cleanup): ~15 s.
    "stack_overhead": 15,
    # db:migrate with no or small migrations, once booted.
    "migration_run": 10,
    # Asset export: pull the new image locally (~400 MB on a CI runner) and upload the changed assets.
    "asset_export": 45,
    # Preflight reads (STS, Route 53, stacks, task definitions, ECR).
    "preflight": 3,
    # An ECS service's rollout is COMPLETED once the old task has stopped; SIGTERM to exit for Puma/Node.
    "stop": 5,
    # Sidekiq stops within its own shutdown timeout (25 s by default, `-t`), well inside ECS's stopTimeout.
    "sidekiq_shutdown": 25,
    # Pre-upgrade backup, RDS: a manual snapshot is incremental after the first (RDS User Guide, "Creating a
    # DB snapshot": only the blocks changed since the last snapshot are saved); the CreateDBSnapshot ->
    # `available` time of a small (20 GB gp3) instance with a day of changes is commonly 2-5 minutes, and
    # nothing here can measure it: the middle of that range.
    "rds_snapshot": 180,
    # Pre-upgrade backup, Postgres task: a one-off backup task (provisioning as above; the Postgres-based
    # backup image is ~150 MB, about 25 s at the pull rate above) and pg_dump -Fc of a personal server's
    # database (~1 GB after a year: bench/backup.py measures the dump of a generated 1 GB database on this
    # machine's PostgreSQL; see DUMP_SECONDS_PER_GB), streamed to S3 as it is written.
    "backup_image_pull": 25,
    "database_gb": 1,
}
# Seconds of `pgtask.py dump` per GB of database, MEASURED: bench/backup.py with BENCH_BACKUP_GB=0.25 on this
# machine's PostgreSQL 15 (2 cores shared with other jobs, load ~10): a 0.31 GB database (81 MB dump), median
# of 3 runs 15.2 s (13.2-16.7) -> 49 s/GB. A 1 vCPU backup task is about as fast; S3 upload is streamed.
DUMP_SECONDS_PER_GB = 49
# Anchors, for web behind the ALB: (health interval, healthy threshold, deregistration delay, grace).
AWS_DEFAULTS = (30, 5, 300, 0)
COPILOT_DEFAULTS = (10, 5, 60, 60)  # Copilot's manifest reference: interval 10 s, healthy 5, draining 60 s


@dataclass(frozen=True)
class ServiceTiming:
    name: str
    role: str
    interval: int
    healthy: int
    deregistration: int
    minimum_healthy: int
    stop_timeout: int

    def rollout(self, boot: int, anchor: tuple[int, int, int, int] | None = None) -> int:
        """Seconds from the service update to its deployment COMPLETED."""
        interval, healthy, drain = (self.interval, self.healthy, self.deregistration)
        if anchor is not None and self.role in ("web", "streaming"):
            interval, healthy, drain, _ = anchor
        start = ASSUME["task_provisioning"] + ASSUME["image_pull"] + boot
        if self.role in ("web", "streaming"):
            # new task healthy in the target group, then the old one drains and stops
            return start + interval * healthy + drain + ASSUME["stop"]
        if self.minimum_healthy == 0:
            # a singleton (the scheduler Sidekiq): the old one stops first, then the new one starts
            return min(self.stop_timeout, ASSUME["sidekiq_shutdown"]) + start
        return start + ASSUME["stop"]


def service_timings(profile: str) -> list[ServiceTiming]:
    from mastofargate.config import parse_config
    from mastofargate.stack import build

    config = parse_config(
        {
            "server": {"domain": "social.example.org", "admin_email": "admin@example.org"},
            "aws": {"name": "social", "hosted_zone_id": "Z0123456789EXAMPLE"},
            "deployment": {"profile": profile},
        }
    )
    resources: dict[str, Any] = build(config)["app"].to_dict()["Resources"]
    groups = {
        lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup"
    }
    timings = []
    for res in resources.values():
        if res["Type"] != "AWS::ECS::Service":
            continue
        props = res["Properties"]
        name = str(props["ServiceName"])
        task = next(t for t in config.tasks if t.name == name)  # a packed task boots at its first container's pace
        ref = props["TaskDefinition"]
        td = resources[(ref["Fn::If"][1] if "Fn::If" in ref else ref)["Ref"]]["Properties"]
        stop = int(td["ContainerDefinitions"][0].get("StopTimeout", 30))
        interval = healthy = drain = 0
        for lb in props.get("LoadBalancers", []):
            tg = groups[lb["TargetGroupArn"]["Ref"]]
            interval, healthy = int(tg["HealthCheckIntervalSeconds"]), int(tg["HealthyThresholdCount"])
            drain = next(
                int(a["Value"])
                for a in tg["TargetGroupAttributes"]
                if a["Key"] == "deregistration_delay.timeout_seconds"
            )
        minimum = int(props.get("DeploymentConfiguration", {}).get("MinimumHealthyPercent", 100))
        timings.append(ServiceTiming(name, task.containers[0].role, interval, healthy, drain, minimum, stop))
    return timings


def boot_of(role: str) -> int:
    return {"web": ASSUME["rails_boot"], "streaming": ASSUME["streaming_boot"]}.get(role, ASSUME["sidekiq_boot"])


def backup_seconds(kind: str) -> int:
    """The pre-upgrade backup, start to `available` / manifest written."""
    if kind == "rds":
        return ASSUME["rds_snapshot"]
    dump = round(DUMP_SECONDS_PER_GB * ASSUME["database_gb"])
    return ASSUME["task_provisioning"] + ASSUME["backup_image_pull"] + dump


def phases(
    timings: list[ServiceTiming],
    anchor: tuple[int, int, int, int] | None,
    parallel_export: bool,
    backup: str | None = None,
) -> list[tuple[str, int]]:
    one_off = ASSUME["task_provisioning"] + ASSUME["image_pull"] + ASSUME["rails_boot"] + ASSUME["migration_run"]
    rollout = ASSUME["stack_overhead"] + max(t.rollout(boot_of(t.role), anchor) for t in timings)
    out = [("preflight", ASSUME["preflight"]), ("plan (data + app change sets)", 2 * ASSUME["change_set"])]
    if backup:
        seconds = backup_seconds(backup)
        what = "RDS snapshot" if backup == "rds" else "dump task"
        out.append(
            (
                f"asset export | pre-upgrade backup ({what}, {seconds} s), then pre-migrations",
                max(ASSUME["asset_export"], seconds + one_off),
            )
        )
    elif parallel_export:
        out.append(("asset export | pre-migrations (side by side)", max(ASSUME["asset_export"], one_off)))
    else:
        out += [("asset export", ASSUME["asset_export"]), ("pre-migrations (one-off task)", one_off)]
    out += [("rollout (stack update, services in parallel)", rollout), ("post-migrations (one-off task)", one_off)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="personal", choices=("personal", "community", "large"))
    args = parser.parse_args()
    timings = service_timings(args.profile)
    print(f"upgrade critical path on AWS, modelled ({args.profile} profile; assumptions in the module docstring)")
    print("services (from the generated template):")
    for t in timings:
        lb = f"health {t.interval} s x {t.healthy}, draining {t.deregistration} s" if t.interval else "no load balancer"
        print(
            f"  {t.name:<20} {lb}; min healthy {t.minimum_healthy} %; stop timeout {t.stop_timeout} s; "
            f"rollout {t.rollout(boot_of(t.role))} s"
        )
    rows = {
        "mastofargate, before (all in sequence)": phases(timings, None, parallel_export=False),
        "mastofargate, export beside pre-migrations (no backup)": phases(timings, None, parallel_export=True),
        "mastofargate, now: pre-upgrade RDS snapshot": phases(timings, None, parallel_export=True, backup="rds"),
        "mastofargate, now: pre-upgrade dump (Postgres task)": phases(
            timings, None, parallel_export=True, backup="task"
        ),
        "same order, AWS default health checks and draining": phases(timings, AWS_DEFAULTS, parallel_export=True),
        "same order, Copilot's defaults": phases(timings, COPILOT_DEFAULTS, parallel_export=True),
    }
    for title, steps in rows.items():
        total = sum(s for _, s in steps)
        print(f"{title}: {total} s ({total / 60:.1f} min)")
        for step, seconds in steps:
            print(f"    {seconds:>4} s  {step}")


if __name__ == "__main__":
    main()

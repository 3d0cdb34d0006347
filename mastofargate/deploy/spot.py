"""The deploy's side of the Spot fallback (stack/spot.py, lambdas/spot_fallback.py).

When Fargate Spot has no capacity, the fallback Lambda moves a service to on-demand FARGATE behind
CloudFormation's back and tags it. CloudFormation compares templates, not the live service: its template
still says Spot, so a change set shows nothing, and whether its next update of the service re-sends the
strategy depends on what else changes. So nothing is left to chance:

  - `plan` and `deploy` say which services run on the fallback, since when, and what happens next;
  - an upgrade that rolls those services returns them to the template's strategy first (UpdateService with
    a new deployment, as ECS requires for a strategy change) and removes the tags, just before CloudFormation
    updates the services; CloudFormation's own update then starts on Spot and its view matches the service.
    If Spot still has no capacity, the new Spot task cannot be placed and the fallback moves the service to
    on-demand again, within the rollout (a singleton, offline during a deploy anyway, stays offline that
    much longer; a service with minimum healthy 100 % keeps its old task serving);
  - a deploy that does not roll them leaves them on on-demand (no surprise restart) and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mastofargate import aws
from mastofargate.aws import AwsError, NotFound

if TYPE_CHECKING:
    from mastofargate.deploy.context import Run
    from mastofargate.target import Target

# The Lambda's tag names and retry delay, restated (the Lambda stands alone; tests check they agree).
SINCE_TAG = "mastofargate:spot-fallback"
STRATEGY_TAG = "mastofargate:spot-strategy"


@dataclass(frozen=True)
class Fallback:
    service: str
    since: str  # UTC, ISO 8601
    strategy: str  # the recorded Spot strategy, 'PROVIDER:BASE:WEIGHT ...'
    singleton: bool  # maximumPercent <= 100 or minimumHealthyPercent < 100: only a deploy returns it to Spot
    stale: bool = False  # tagged, but the service uses Spot again (a rollback re-sent the template's strategy)

    def describe(self) -> str:
        back = (
            "it returns to Spot with the next deploy that rolls it (a retry on its own would stop its only task first)"
            if self.singleton
            else "the fallback retries Spot after 6 hours without downtime, or the next deploy that rolls it returns it"
        )
        return f"{self.service} runs on on-demand Fargate since {self.since} (Fargate Spot had no capacity); {back}"


def fallbacks(target: Target) -> list[Fallback]:
    """Services of this server that the Spot fallback moved to on-demand (by their tags)."""
    names = [t.name for t in target.config.tasks]  # the ECS services (a packed task is one)
    out: list[Fallback] = []
    for i in range(0, len(names), 10):
        try:
            with aws.aws_errors(f"reading ECS services of cluster {target.cluster}"):
                resp = target.ecs.describe_services(
                    cluster=target.cluster, services=names[i : i + 10], include=["TAGS"]
                )
        except NotFound:  # no cluster yet
            return []
        for svc in resp.get("services", []):
            tags = {t.get("key", ""): t.get("value", "") for t in svc.get("tags", [])}
            if svc.get("status") != "ACTIVE" or SINCE_TAG not in tags:
                continue
            dc = svc.get("deploymentConfiguration") or {}
            singleton = int(dc.get("maximumPercent", 200)) <= 100 or int(dc.get("minimumHealthyPercent", 100)) < 100
            on_spot = any(s.get("capacityProvider") == "FARGATE_SPOT" for s in svc.get("capacityProviderStrategy", []))
            out.append(Fallback(svc["serviceName"], tags[SINCE_TAG], tags.get(STRATEGY_TAG, ""), singleton, on_spot))
    return out


def on_fallback(target: Target) -> list[Fallback]:
    """The services that run on on-demand Fargate because of the fallback now (stale records left out)."""
    return [f for f in fallbacks(target) if not f.stale]


def template_strategy(template: dict[str, Any], service: str) -> list[dict[str, Any]] | None:
    """The capacity provider strategy the app template gives `service`, in the ECS API's shape."""
    for res in (template.get("Resources") or {}).values():
        props = res.get("Properties") or {}
        if res.get("Type") == "AWS::ECS::Service" and props.get("ServiceName") == service:
            return [
                {
                    "capacityProvider": item["CapacityProvider"],
                    "base": int(item.get("Base", 0)),
                    "weight": int(item.get("Weight", 0)),
                }
                for item in props.get("CapacityProviderStrategy") or []
            ]
    return None


def announce(run: Run) -> list[Fallback]:
    """The plan's lines about services on the fallback (read-only: `plan` and `deploy --dry-run` too). A role
    that may not read the services' tags (an older CI plan role) gets a warning, not a failed plan."""
    try:
        found = on_fallback(run.target)
    except AwsError as e:
        run.out.warn(f"could not read whether a service runs on the Spot fallback: {e.what}")
        return []
    for fb in found:
        run.out.line(f"  Spot fallback: {fb.describe()}")
    return found


def return_to_spot(run: Run, template: dict[str, Any], rolling: list[str]) -> list[str]:
    """Before CloudFormation updates the services in `rolling`: those on the fallback get the template's
    strategy back (a new deployment, which CloudFormation's update supersedes) and lose the tags. Returns
    the services returned."""
    target = run.target
    returned = []
    for fb in fallbacks(target):
        if fb.service not in rolling and not fb.stale:
            run.out.line(f"  {fb.service} stays on on-demand Fargate: this deploy does not roll it")
            continue
        wanted = template_strategy(template, fb.service)
        uses_spot = any(s["capacityProvider"] == "FARGATE_SPOT" for s in wanted or [])
        arn = ""
        with aws.aws_errors(f"returning {fb.service} to Fargate Spot"):
            if wanted and uses_spot and not fb.stale:
                resp = target.ecs.update_service(
                    cluster=target.cluster,
                    service=fb.service,
                    capacityProviderStrategy=wanted,  # type: ignore[arg-type]
                    forceNewDeployment=True,
                )
                arn = resp["service"]["serviceArn"]
            else:
                found = target.ecs.describe_services(cluster=target.cluster, services=[fb.service])["services"]
                arn = found[0]["serviceArn"] if found else ""
            if arn:
                target.ecs.untag_resource(resourceArn=arn, tagKeys=[SINCE_TAG, STRATEGY_TAG])
        if fb.stale:
            run.out.line(f"  {fb.service}: already back on Fargate Spot; the fallback's record is cleared")
        elif uses_spot:
            run.out.line(f"  {fb.service}: back on the template's Fargate Spot strategy (on-demand since {fb.since})")
            returned.append(fb.service)
        else:
            run.out.line(f"  {fb.service}: the template no longer uses Spot; the fallback's record is cleared")
    return returned

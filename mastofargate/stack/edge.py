"""How requests reach the server: an ALB with HTTPS (ACM), HTTP->HTTPS redirect, and a rule sending the
streaming API to the streaming service. With `edge = "direct"` there is none of this: Caddy in the web task
(stack/direct_edge.py, stack/caddy.py) and DNS that follows the task (stack/edge_dns.py) replace it.

Rollout speed comes from here (aws.md): health checks every 10 s, healthy after 2 (20 s instead of
150 s with AWS defaults), and short deregistration delays (web 30 s, streaming 60 s instead of 300 s).
"""

from __future__ import annotations

from troposphere import GetAtt, Output, Ref, certificatemanager, route53
from troposphere import elasticloadbalancingv2 as elb

from mastofargate.stack.context import Build
from mastofargate.stack.network import STREAMING_PORT, WEB_PORT, subnet_ids

HEALTH_INTERVAL_S = 10
HEALTHY_THRESHOLD = 2
UNHEALTHY_THRESHOLD = 3
DEREGISTRATION_DELAY_S = {"web": 30, "streaming": 60}
HEALTH_PATHS = {"web": "/health", "streaming": "/api/v1/streaming/health"}
STREAMING_PATHS = ("/api/v1/streaming", "/api/v1/streaming/*")
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
PORTS = {"web": WEB_PORT, "streaming": STREAMING_PORT}


def rollout_critical_path(service: str) -> int:
    """Seconds from a healthy new task to the old one gone: health checks to healthy + draining."""
    return HEALTH_INTERVAL_S * HEALTHY_THRESHOLD + DEREGISTRATION_DELAY_S[service]


def add(b: Build) -> None:
    if b.config.deployment.edge == "direct":  # no load balancer: Caddy in the web task, DNS follows the task
        from mastofargate.stack import edge_dns

        edge_dns.add(b)
        return
    t = b.app
    cfg = b.config
    alb = b.add(
        t,
        elb.LoadBalancer(
            "LoadBalancer",
            Name=f"{b.name}-alb",
            Scheme="internet-facing",
            Type="application",
            Subnets=subnet_ids(b),
            SecurityGroups=[b.imported("AlbSecurityGroupId")],
            LoadBalancerAttributes=[
                elb.LoadBalancerAttributes(Key=k, Value=v)
                for k, v in (
                    ("routing.http.drop_invalid_header_fields.enabled", "true"),
                    ("idle_timeout.timeout_seconds", "120"),  # streaming's event-stream heartbeats arrive more often
                )
            ],
        ),
        "Load balancer: HTTPS for web and streaming",
        skip=[
            ("CKV_AWS_91", "access logs need a log bucket and cost money"),
            ("CKV_AWS_150", "deletion protection would block 'mastofargate destroy'; the ALB holds no data"),
            ("CKV2_AWS_28", "a WAF web ACL costs at least $5/month; optional for small servers"),
            ("CKV2_AWS_76", "no WAF (cost)"),
        ],
    )
    for svc in ("web", "streaming"):
        b.add(
            t,
            elb.TargetGroup(
                f"{svc.capitalize()}TargetGroup",
                Port=PORTS[svc],
                Protocol="HTTP",
                TargetType="ip",
                VpcId=b.imported("VpcId"),
                HealthCheckPath=HEALTH_PATHS[svc],
                HealthCheckProtocol="HTTP",
                HealthCheckIntervalSeconds=HEALTH_INTERVAL_S,
                HealthCheckTimeoutSeconds=5,
                HealthyThresholdCount=HEALTHY_THRESHOLD,
                UnhealthyThresholdCount=UNHEALTHY_THRESHOLD,
                Matcher=elb.Matcher(HttpCode="200"),
                TargetGroupAttributes=[
                    elb.TargetGroupAttribute(
                        Key="deregistration_delay.timeout_seconds", Value=str(DEREGISTRATION_DELAY_S[svc])
                    )
                ],
            ),
            f"{svc} tasks behind the load balancer (health: {HEALTH_PATHS[svc]})",
        )

    if cfg.aws.certificate_arn:
        cert: object = cfg.aws.certificate_arn
    else:
        cert = Ref(
            b.add(
                t,
                certificatemanager.Certificate(
                    "Certificate",
                    DomainName=cfg.server.host,
                    ValidationMethod="DNS",
                    DomainValidationOptions=[
                        certificatemanager.DomainValidationOption(
                            DomainName=cfg.server.host, HostedZoneId=cfg.aws.hosted_zone_id
                        )
                    ],
                ),
                f"TLS certificate for {cfg.server.host}, validated in Route 53",
            )
        )
    b.add(
        t,
        elb.Listener(
            "HttpListener",
            LoadBalancerArn=Ref(alb),
            Port=80,
            Protocol="HTTP",
            DefaultActions=[
                elb.Action(
                    Type="redirect",
                    RedirectConfig=elb.RedirectConfig(Protocol="HTTPS", Port="443", StatusCode="HTTP_301"),
                )
            ],
        ),
        "HTTP listener: redirects everything to HTTPS",
    )
    https = b.add(
        t,
        elb.Listener(
            "HttpsListener",
            LoadBalancerArn=Ref(alb),
            Port=443,
            Protocol="HTTPS",
            SslPolicy=TLS_POLICY,
            Certificates=[elb.Certificate(CertificateArn=cert)],
            DefaultActions=[elb.Action(Type="forward", TargetGroupArn=Ref("WebTargetGroup"))],
        ),
        "HTTPS listener: web by default",
    )
    b.add(
        t,
        elb.ListenerRule(
            "StreamingRule",
            ListenerArn=Ref(https),
            Priority=10,
            Conditions=[
                elb.Condition(
                    Field="path-pattern", PathPatternConfig=elb.PathPatternConfig(Values=list(STREAMING_PATHS))
                )
            ],
            Actions=[elb.ListenerRuleAction(Type="forward", TargetGroupArn=Ref("StreamingTargetGroup"))],
        ),
        "Sends /api/v1/streaming and /api/v1/streaming/* to streaming",
    )
    if cfg.aws.hosted_zone_id:
        b.add(
            t,
            route53.RecordSetType(
                "DnsRecord",
                HostedZoneId=cfg.aws.hosted_zone_id,
                Name=cfg.server.host,
                Type="A",
                AliasTarget=route53.AliasTarget(
                    DNSName=GetAtt(alb, "DNSName"),
                    HostedZoneId=GetAtt(alb, "CanonicalHostedZoneID"),
                    EvaluateTargetHealth=False,
                ),
            ),
            f"DNS: {cfg.server.host} points at the load balancer",
        )
    t.add_output(Output("Url", Description="The server's address", Value=f"https://{cfg.server.host}"))
    t.add_output(
        Output(
            "LoadBalancerDns", Description="Point your DNS here when Route 53 is not used", Value=GetAtt(alb, "DNSName")
        )
    )

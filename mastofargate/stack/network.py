"""VPC with public subnets in two AZs and no NAT gateway (~$33/month saved): tasks get public IPv4.

Security groups carry the whole access model: the ALB is open on 80/443, tasks accept only the ALB,
Postgres, Redis and EFS accept only tasks. With the direct edge there is no ALB to admit: the task that holds
web and Caddy is open on 80/443 only (EdgeSecurityGroup), and a separate streaming task admits only it.
"""

from __future__ import annotations

from troposphere import GetAZs, Join, Ref, Select, Split, Tags, ec2

from mastofargate.stack.context import Build

VPC_CIDR = "10.80.0.0/16"
SUBNET_CIDRS = ("10.80.0.0/20", "10.80.16.0/20")
WEB_PORT = 3000
STREAMING_PORT = 4000
POSTGRES_PORT = 5432
REDIS_PORT = 6379
NFS_PORT = 2049

_NO_FLOW_LOGS = ("CKV2_AWS_11", "VPC flow logs cost money per GB; the security groups admit only the ALB")


def add(b: Build) -> None:
    t = b.data
    vpc = b.add(
        t,
        ec2.VPC("Vpc", CidrBlock=VPC_CIDR, EnableDnsHostnames=True, EnableDnsSupport=True, Tags=Tags(Name=b.name)),
        "VPC for the server (public subnets only, no NAT gateway)",
        skip=[_NO_FLOW_LOGS, ("CKV2_AWS_12", "the default security group is unused; nothing is placed in it")],
    )
    igw = b.add(t, ec2.InternetGateway("InternetGateway", Tags=Tags(Name=b.name)), "Internet gateway")
    b.add(
        t,
        ec2.VPCGatewayAttachment("InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(igw)),
        "Attaches the internet gateway to the VPC",
    )
    routes = b.add(
        t,
        ec2.RouteTable("PublicRouteTable", VpcId=Ref(vpc), Tags=Tags(Name=b.name)),
        "Route table of the public subnets",
    )
    b.add(
        t,
        ec2.Route(
            "PublicDefaultRoute",
            RouteTableId=Ref(routes),
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId=Ref(igw),
            DependsOn="InternetGatewayAttachment",
        ),
        "Default route to the internet",
    )
    subnets = []
    for i, cidr in enumerate(SUBNET_CIDRS):
        sn = b.add(
            t,
            ec2.Subnet(
                f"PublicSubnet{i + 1}",
                VpcId=Ref(vpc),
                CidrBlock=cidr,
                AvailabilityZone=Select(i, GetAZs("")),
                MapPublicIpOnLaunch=False,
                Tags=Tags(Name=f"{b.name}-public-{i + 1}"),
            ),
            f"Public subnet in the {'first' if i == 0 else 'second'} availability zone",
        )
        b.add(
            t,
            ec2.SubnetRouteTableAssociation(f"PublicSubnet{i + 1}Routes", SubnetId=Ref(sn), RouteTableId=Ref(routes)),
            "Routes the subnet to the internet",
        )
        subnets.append(sn)

    direct = b.config.deployment.edge == "direct"
    # Whichever edge there is takes 80/443 from the world, and nothing else is open to it.
    edge = (
        _world_web_sg(
            b,
            "EdgeSecurityGroup",
            "Edge (Caddy in the web task): HTTPS, and HTTP for ACME challenges and the redirect, from anywhere",
            http="HTTP from anywhere: ACME HTTP-01 challenges, else redirected to HTTPS",
            why_http="port 80 answers Let's Encrypt's HTTP-01 challenges and redirects to HTTPS",
        )
        if direct
        else None
    )
    alb = (
        None
        if direct
        else _world_web_sg(
            b,
            "AlbSecurityGroup",
            "Load balancer: HTTPS, and HTTP redirected to HTTPS, from anywhere",
            http="HTTP from anywhere, redirected to HTTPS",
            why_http="port 80 only redirects to HTTPS; browsers and servers still try it first",
        )
    )
    # The group's description stays the same with either edge (a new description replaces the group, and an
    # exported group in use cannot be replaced): the rules say who may connect.
    tasks = _sg(
        b,
        "TaskSecurityGroup",
        "Mastodon tasks: reachable only from the load balancer",
        [
            ec2.SecurityGroupRule(
                IpProtocol="tcp",
                FromPort=WEB_PORT,
                ToPort=WEB_PORT,
                SourceSecurityGroupId=Ref(alb),
                Description="Puma from the load balancer",
            ),
            ec2.SecurityGroupRule(
                IpProtocol="tcp",
                FromPort=STREAMING_PORT,
                ToPort=STREAMING_PORT,
                SourceSecurityGroupId=Ref(alb),
                Description="Streaming from the load balancer",
            ),
        ]
        if alb is not None
        else [
            # Caddy reaches Puma on loopback; a streaming task of its own is reached over the VPC.
            ec2.SecurityGroupRule(
                IpProtocol="tcp",
                FromPort=STREAMING_PORT,
                ToPort=STREAMING_PORT,
                SourceSecurityGroupId=Ref(edge),
                Description="Streaming from the edge (Caddy)",
            ),
        ],
    )
    db = _sg(
        b,
        "DatabaseSecurityGroup",
        "Postgres: reachable only from Mastodon tasks",
        [
            ec2.SecurityGroupRule(
                IpProtocol="tcp",
                FromPort=POSTGRES_PORT,
                ToPort=POSTGRES_PORT,
                SourceSecurityGroupId=Ref(tasks),
                Description="Postgres from Mastodon tasks",
            )
        ],
    )
    cache = _sg(
        b,
        "CacheSecurityGroup",
        "Redis: reachable only from Mastodon tasks",
        [
            ec2.SecurityGroupRule(
                IpProtocol="tcp",
                FromPort=REDIS_PORT,
                ToPort=REDIS_PORT,
                SourceSecurityGroupId=Ref(tasks),
                Description="Redis from Mastodon tasks",
            )
        ],
    )
    # EFS exists only for task-based Postgres/Redis, and admits only the task that uses it.
    nfs_clients = [
        (role, sg)
        for role, sg, on in (
            ("Postgres", db, b.config.deployment.database == "task"),
            ("Redis", cache, b.config.deployment.cache == "task"),
            ("edge", edge, edge is not None),
        )
        if on and sg is not None
    ]
    if nfs_clients:
        _sg(
            b,
            "FileSystemSecurityGroup",
            f"EFS: reachable only from the {' and '.join(role for role, _ in nfs_clients)} task",
            [
                ec2.SecurityGroupRule(
                    IpProtocol="tcp",
                    FromPort=NFS_PORT,
                    ToPort=NFS_PORT,
                    SourceSecurityGroupId=Ref(sg),
                    Description=f"NFS from the {role} task",
                )
                for role, sg in nfs_clients
            ],
        )

    b.export("VpcId", Ref(vpc), "VPC id")
    b.export("SubnetIds", _join(subnets), "Public subnet ids (comma-separated)")
    if alb is not None:
        b.export("AlbSecurityGroupId", Ref(alb), "Security group AlbSecurityGroup")
    for key, sg in (
        ("TaskSecurityGroupId", tasks),
        ("DatabaseSecurityGroupId", db),
        ("CacheSecurityGroupId", cache),
    ):
        b.export(key, Ref(sg), f"Security group {sg.title}")
    if edge is not None:
        b.export("EdgeSecurityGroupId", Ref(edge), "Security group EdgeSecurityGroup")


def _join(resources: list[ec2.Subnet]) -> Join:
    return Join(",", [Ref(r) for r in resources])


def _world_web_sg(b: Build, title: str, description: str, *, http: str, why_http: str) -> ec2.SecurityGroup:
    """A group open to the world on 443, and on 80 described by `http` (checkov's CKV_AWS_260 waived: `why_http`)."""
    return _sg(
        b,
        title,
        description,
        [
            ec2.SecurityGroupRule(
                IpProtocol="tcp", FromPort=443, ToPort=443, CidrIp="0.0.0.0/0", Description="HTTPS from anywhere"
            ),
            ec2.SecurityGroupRule(IpProtocol="tcp", FromPort=80, ToPort=80, CidrIp="0.0.0.0/0", Description=http),
        ],
        skip=[("CKV_AWS_260", why_http)],
    )


def _sg(
    b: Build,
    title: str,
    description: str,
    ingress: list[ec2.SecurityGroupRule],
    skip: list[tuple[str, str]] | None = None,
) -> ec2.SecurityGroup:
    return b.add(
        b.data,
        ec2.SecurityGroup(
            title,
            GroupDescription=description,
            VpcId=Ref("Vpc"),
            SecurityGroupIngress=ingress,
            SecurityGroupEgress=[
                ec2.SecurityGroupRule(
                    IpProtocol="-1", CidrIp="0.0.0.0/0", Description="Outbound: image pulls, AWS APIs, federation"
                )
            ],
            Tags=Tags(Name=f"{b.name}-{title.removesuffix('SecurityGroup').lower()}"),
        ),
        description,
        skip=skip or [],
    )


def subnet_ids(b: Build) -> Split:
    """The app stack's list of subnet ids."""
    return Split(",", b.imported("SubnetIds"))

"""Mail through Amazon SES, so every server can confirm sign-ups and reset passwords.

Without `[smtp]`, ActionMailer would deliver to localhost:25 where nothing listens (config/email.yml), and
sign-up confirmations, password resets and moderation notices would die in the `mailers` queue. So by
default the data stack verifies the server's domain with SES: a domain identity with Easy DKIM (three
CNAME records in the hosted zone) and a custom MAIL FROM subdomain (`bounce.DOMAIN`, with the MX and SPF
records SES documents), so mail passes SPF and DKIM alignment for DMARC. Mastodon sends as
`notifications@DOMAIN` through SES's SMTP endpoint.

SMTP needs a user name and password, which SES derives from an IAM access key. The IAM user lives here,
allowed only ses:SendRawEmail from this identity; its access key is NOT a template resource (a key in a
template would sit in the stack's outputs or events): `mastofargate.deploy.mail.ensure_smtp_credentials`
creates it and stores the derived SMTP_LOGIN/SMTP_PASSWORD in the app secret. `[smtp]` with a server
replaces all of this with the user's own provider.
"""

from __future__ import annotations

from awacs.aws import Action, Allow, PolicyDocument, Statement
from troposphere import GetAtt, Output, Ref, Sub, iam, route53, ses

from mastofargate.stack.context import Build

MAIL_FROM_LABEL = "bounce"  # MAIL FROM subdomain: bounce.DOMAIN
FROM_LOCAL_PART = "notifications"
SMTP_PORT = 587  # STARTTLS; SMTP_ENABLE_STARTTLS=always so credentials never cross in clear
DKIM_TOKENS = 3  # Easy DKIM publishes three CNAME records


def uses_ses(b: Build) -> bool:
    return not b.config.smtp.server


def smtp_host(region: str) -> str:
    return f"email-smtp.{region}.amazonaws.com"


def from_address(domain: str) -> str:
    return f"{FROM_LOCAL_PART}@{domain}"


def mail_from_domain(domain: str) -> str:
    return f"{MAIL_FROM_LABEL}.{domain}"


def add(b: Build) -> None:
    if not uses_ses(b):
        return
    t, cfg = b.data, b.config
    domain = cfg.server.domain
    identity = b.add(
        t,
        ses.EmailIdentity(
            "MailIdentity",
            EmailIdentity=domain,
            DkimSigningAttributes=ses.DkimSigningAttributes(NextSigningKeyLength="RSA_2048_BIT"),
            MailFromAttributes=ses.MailFromAttributes(
                MailFromDomain=mail_from_domain(domain), BehaviorOnMxFailure="USE_DEFAULT_VALUE"
            ),
        ),
        f"SES domain identity for {domain}: Easy DKIM and MAIL FROM {mail_from_domain(domain)}",
    )
    identity_arn = Sub(f"arn:${{AWS::Partition}}:ses:${{AWS::Region}}:${{AWS::AccountId}}:identity/{domain}")
    user = b.add(
        t,
        iam.User(
            "SmtpUser",
            Path=f"/mastofargate/{b.name}/",
            Policies=[
                iam.Policy(
                    PolicyName="send-as-the-server",
                    PolicyDocument=PolicyDocument(
                        Version="2012-10-17",
                        Statement=[
                            Statement(
                                Sid="SendThroughSmtp",
                                Effect=Allow,
                                Action=[Action("ses", "SendRawEmail")],
                                Resource=[identity_arn],
                            )
                        ],
                    ),
                )
            ],
        ),
        "IAM user whose access key (made by the deploy, kept in Secrets Manager) signs SES SMTP logins",
        skip=[
            ("CKV_AWS_273", "SES SMTP authenticates with a key derived from an IAM user's access key; no SSO"),
            ("CKV_AWS_40", "one inline policy, ses:SendRawEmail on this identity only; a group adds nothing"),
        ],
    )
    records: list[tuple[str, str, object, list[object]]] = [
        (
            f"MailDkimRecord{i}",
            "CNAME",
            GetAtt(identity, f"DkimDNSTokenName{i}"),
            [GetAtt(identity, f"DkimDNSTokenValue{i}")],
        )
        for i in range(1, DKIM_TOKENS + 1)
    ]
    records += [
        ("MailFromMxRecord", "MX", mail_from_domain(domain), [Sub("10 feedback-smtp.${AWS::Region}.amazonses.com")]),
        ("MailFromSpfRecord", "TXT", mail_from_domain(domain), ['"v=spf1 include:amazonses.com ~all"']),
    ]
    if cfg.aws.hosted_zone_id:
        for title, kind, name, values in records:
            b.add(
                t,
                route53.RecordSetType(
                    title, HostedZoneId=cfg.aws.hosted_zone_id, Name=name, Type=kind, TTL="1800", ResourceRecords=values
                ),
                f"Mail DNS: {kind} record SES needs for {domain}",
            )
    else:
        for title, kind, name, values in records:
            t.add_output(
                Output(
                    title,
                    Description=f"Create this {kind} record in {domain}'s DNS (SES verification and delivery)",
                    Value=Sub("${Name} " + kind + " ${Value}", Name=name, Value=values[0]),
                )
            )
    b.export("SmtpUserName", Ref(user), "IAM user whose access key signs SES SMTP logins (no key in the stack)")
    t.add_output(Output("MailFromAddress", Description="Mastodon's From address", Value=from_address(domain)))

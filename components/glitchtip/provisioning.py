"""GlitchTipProject: the organization, team, project, alerts and monitors the app reports to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import pulumi

from .resources import (
    AlertRecipient,
    AlertRule,
    AlertRuleArgs,
    ApiAccess,
    ApiToken,
    ApiTokenArgs,
    Organization,
    OrganizationArgs,
    Project,
    ProjectArgs,
    Team,
    TeamArgs,
    UptimeMonitor,
    UptimeMonitorArgs,
)


def _suffix(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class AlertSpec:
    """One alert rule: more than `quantity` events within `timespan_minutes` (1 in 1 = every new issue)."""

    name: str
    quantity: int = 1
    timespan_minutes: int = 1
    uptime: bool = False
    """Also fire on uptime monitor failures."""
    recipients: Sequence[AlertRecipient] = (AlertRecipient("email"),)


@dataclass(frozen=True)
class MonitorSpec:
    """One uptime monitor (GET by default) checked by GlitchTip's worker."""

    name: str
    url: str
    monitor_type: str = "GET"
    expected_status: Optional[int] = 200
    expected_body: str = ""
    interval: int = 60
    timeout: Optional[int] = 10


@dataclass(frozen=True)
class GlitchTipProjectArgs:
    """Inputs of GlitchTipProject."""

    access: ApiAccess
    """How to reach the API (SSH tunnel to the server's loopback, or a direct URL)."""
    admin_email: pulumi.Input[str]
    """The superuser whose session creates the API token."""
    admin_password: pulumi.Input[str]
    """Secret: the superuser's password."""
    org_name: str
    team_slug: str
    project_name: str
    platform: str = "node"
    public_url: Optional[pulumi.Input[str]] = None
    """GlitchTip's public URL, when it has one: gives `public_dsn`."""
    alerts: Sequence[AlertSpec] = ()
    monitors: Sequence[MonitorSpec] = ()
    heartbeat: bool = True
    """Create a Heartbeat monitor (for the backup job) and export its ping URL."""
    heartbeat_interval: int = 25 * 3600
    """Longest silence before the heartbeat is down: a daily job plus an hour of grace."""
    token_label: str = "pulumi"
    protect_project: bool = False
    """Protect the project (replacing or deleting it loses its events)."""

    def __post_init__(self) -> None:
        if not self.org_name.strip() or not self.project_name.strip():
            raise ValueError("GlitchTipProject needs a non-empty org_name and project_name.")
        if not re.fullmatch(r"[-a-zA-Z0-9_]{1,50}", self.team_slug):
            raise ValueError(f"team_slug {self.team_slug!r} must be 1-50 letters, digits, '-' or '_'.")
        for kind, names in (("alert", [a.name for a in self.alerts]), ("monitor", [m.name for m in self.monitors])):
            clashes = {_suffix(n) for n in names if [_suffix(m) for m in names].count(_suffix(n)) > 1}
            if clashes:
                raise ValueError(f"two {kind}s share the name {sorted(clashes)[0]!r}; names must differ.")
        if self.heartbeat and any(_suffix(m.name) == "heartbeat" for m in self.monitors):
            raise ValueError("a monitor named 'heartbeat' clashes with the heartbeat monitor.")


class GlitchTipProject(pulumi.ComponentResource):
    """API token, organization, team, project (DSN), alert rules and monitors in GlitchTip."""

    dsn: pulumi.Output[str]
    """Secret: the DSN on the server's loopback (http://<key>@127.0.0.1:<port>/<id>)."""
    public_dsn: pulumi.Output[Optional[str]]
    project_id: pulumi.Output[str]
    api_token: pulumi.Output[str]
    """Secret: the API token the resources use (the cutover gate checks a test event with it)."""
    heartbeat_url: pulumi.Output[Optional[str]]
    """Secret: the ping URL of the heartbeat monitor (unauthenticated), None without one."""

    def __init__(self, name: str, args: GlitchTipProjectArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("glitchtip:index:GlitchTipProject", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The organization, team and project hold the data: `pulumi destroy` leaves them in
        # GlitchTip (whose volumes are kept), and a later `up` adopts them by slug.
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        access = args.access

        token = ApiToken(
            f"{name}-token",
            ApiTokenArgs(access=access, admin_email=args.admin_email, admin_password=args.admin_password, label=args.token_label),
            child,
        )
        secret_token = pulumi.Output.secret(token.token)
        org = Organization(f"{name}-org", OrganizationArgs(access=access, token=secret_token, name=args.org_name), keep)
        team = Team(f"{name}-team", TeamArgs(access=access, token=secret_token, organization=org.slug, slug=args.team_slug), keep)
        project = Project(
            f"{name}-project",
            ProjectArgs(
                access=access,
                token=secret_token,
                organization=org.slug,
                team=team.slug,
                name=args.project_name,
                platform=args.platform,
                public_url=args.public_url,
            ),
            pulumi.ResourceOptions(parent=self, protect=args.protect_project, retain_on_delete=True),
        )
        for alert in args.alerts:
            AlertRule(
                f"{name}-alert-{_suffix(alert.name)}",
                AlertRuleArgs(
                    access=access,
                    token=secret_token,
                    organization=org.slug,
                    project=project.slug,
                    name=alert.name,
                    quantity=alert.quantity,
                    timespan_minutes=alert.timespan_minutes,
                    uptime=alert.uptime,
                    recipients=alert.recipients,
                ),
                child,
            )
        for monitor in args.monitors:
            self._monitor(f"{name}-monitor-{_suffix(monitor.name)}", access, secret_token, org, project, monitor)
        heartbeat_url: pulumi.Output[Optional[str]] = pulumi.Output.from_input(None)
        if args.heartbeat:
            beat = self._monitor(
                f"{name}-heartbeat",
                access,
                secret_token,
                org,
                project,
                MonitorSpec(name=f"{args.project_name} backup heartbeat", url="", monitor_type="Heartbeat",
                            expected_status=None, interval=args.heartbeat_interval, timeout=None),
            )
            heartbeat_url = beat.heartbeat_url

        self.api_token = secret_token
        self.dsn = pulumi.Output.secret(project.dsn)
        self.public_dsn = project.public_dsn
        self.project_id = project.project_id
        self.heartbeat_url = pulumi.Output.secret(heartbeat_url)
        self.register_outputs(
            {"dsn": self.dsn, "public_dsn": self.public_dsn, "project_id": self.project_id, "heartbeat_url": self.heartbeat_url}
        )

    def _monitor(
        self,
        resource_name: str,
        access: ApiAccess,
        token: pulumi.Output[str],
        org: Organization,
        project: Project,
        spec: MonitorSpec,
    ) -> UptimeMonitor:
        return UptimeMonitor(
            resource_name,
            UptimeMonitorArgs(
                access=access,
                token=token,
                organization=org.slug,
                project_id=project.project_id,
                name=spec.name,
                monitor_type=spec.monitor_type,
                url=spec.url,
                expected_status=spec.expected_status,
                expected_body=spec.expected_body,
                interval=spec.interval,
                timeout=spec.timeout,
            ),
            pulumi.ResourceOptions(parent=self),
        )

"""GlitchTip objects as Pulumi dynamic resources: ApiToken, Organization, Team, Project,
AlertRule, UptimeMonitor.

Every provider implements create / read / diff / update / delete through
`client.GlitchTipClient`, reaching the API either at a direct base URL or through an
SSH tunnel to the server's loopback port (`tunnel.open_tunnel`).

Rules that hold for all of them:
- Providers are stateless: dynamic providers are pickled into the Pulumi state, so
  credentials (API token, admin password, SSH private key) arrive only as secret
  INPUTS and are echoed into outputs (needed by `destroy`, which runs with the stored
  outputs only) that are marked secret with `additional_secret_outputs`.
- create adopts an existing object with the same slug / name instead of failing.
- read reports drift (server values replace the stored ones; a vanished object reads
  as deleted); diff compares inputs and replaces only what the API cannot update.
- Numbers arrive from the engine as floats (pulumi-traps.md #17): normalised first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional
from urllib.parse import urlsplit

import pulumi
from pulumi.runtime import rpc
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from .client import ALL_SCOPES, GlitchTipClient, GlitchTipNotFound
from .tunnel import SshTarget, open_tunnel

Props = dict[str, Any]
CONNECTION_SECRETS = ("connection", "token")


# ---------------------------------------------------------------------------- access
@dataclass(frozen=True)
class ApiAccess:
    """How the providers reach GlitchTip's API: a direct base URL, or an SSH tunnel.

    With `base_url` set (tests, or a public TLS URL) the tunnel fields are ignored.
    Otherwise the API is reached through SSH to `ssh_host`, forwarding to
    127.0.0.1:`remote_port` on the server; the host key is pinned.
    """

    remote_port: pulumi.Input[int] = 8000
    """GlitchTip's port on the server's loopback (also the port in the server-local DSN)."""
    base_url: Optional[pulumi.Input[str]] = None
    """Direct API URL; when set no tunnel is opened."""
    ssh_host: Optional[pulumi.Input[str]] = None
    ssh_port: pulumi.Input[int] = 22
    ssh_user: pulumi.Input[str] = "root"
    ssh_host_key: Optional[pulumi.Input[str]] = None
    """The server's host key, one authorized_keys-format line."""
    ssh_private_key: Optional[pulumi.Input[str]] = field(default=None, repr=False)
    """Private key text (secret)."""

    def __post_init__(self) -> None:
        if self.base_url is None and (self.ssh_host is None or self.ssh_host_key is None or self.ssh_private_key is None):
            raise ValueError("ApiAccess needs base_url, or ssh_host with ssh_host_key and ssh_private_key.")

    def as_input(self) -> dict[str, Any]:
        """The `connection` property (marked secret on every resource: it holds the SSH key)."""
        return {
            "baseUrl": self.base_url,
            "remotePort": self.remote_port,
            "sshHost": self.ssh_host,
            "sshPort": self.ssh_port,
            "sshUser": self.ssh_user,
            "sshHostKey": self.ssh_host_key,
            "sshPrivateKey": self.ssh_private_key,
        }


@contextmanager
def reach(connection: Mapping[str, Any]) -> Iterator[str]:
    """Yield a base URL for the API described by a `connection` property."""
    if connection.get("baseUrl"):
        yield str(connection["baseUrl"]).rstrip("/")
        return
    target = SshTarget(
        host=str(connection["sshHost"]),
        port=int(connection.get("sshPort") or 22),
        user=str(connection.get("sshUser") or "root"),
        host_key=str(connection["sshHostKey"]),
        private_key=str(connection["sshPrivateKey"]),
    )
    with open_tunnel(target, int(connection.get("remotePort") or 8000)) as base_url:
        yield base_url


def server_local_url(connection: Mapping[str, Any]) -> str:
    """GlitchTip's URL as seen from the server itself: http://127.0.0.1:<remotePort>
    (or the direct base URL). The app on the same host uses it in its DSN."""
    if connection.get("baseUrl"):
        return str(connection["baseUrl"]).rstrip("/")
    return f"http://127.0.0.1:{int(connection.get('remotePort') or 8000)}"


@contextmanager
def api(props: Mapping[str, Any]) -> Iterator[GlitchTipClient]:
    """A token-authenticated client for the resource's connection."""
    with reach(props["connection"]) as base_url:
        yield GlitchTipClient(base_url, props.get("token"))


def slugify(text: str) -> str:
    """Django's slugify as GlitchTip applies it to organization and project names."""
    text = re.sub(r"[^\w\s-]", "", text.lower())
    return re.sub(r"[-\s]+", "-", text).strip("-_")


def normalize(value: Any) -> Any:
    """Integral floats to int, recursively (the engine sends every number as a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


# ---------------------------------------------------------------------------- provider base
class GlitchTipProvider(ResourceProvider):
    """Shared diff logic. Subclasses list their `fields` (compared inputs) and which of
    them force a replacement (`replace_on`); credentials changes are plain updates."""

    fields: ClassVar[tuple[str, ...]] = ()
    replace_on: ClassVar[tuple[str, ...]] = ()
    credentials: ClassVar[tuple[str, ...]] = CONNECTION_SECRETS

    def changed_fields(self, olds: Props, news: Props) -> list[str]:
        """Inputs whose new value differs from the stored one (unknown values count as changed)."""
        return [name for name in (*self.fields, *self.credentials) if _differs(olds.get(name), news.get(name))]

    def diff(self, _id: str, olds: Props, news: Props) -> DiffResult:
        changed = self.changed_fields(olds, news)
        replaces = [name for name in changed if name in self.replace_on]
        return DiffResult(changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=bool(replaces))

    @staticmethod
    def inputs_of(props: Props, names: Sequence[str]) -> Props:
        return {name: normalize(props.get(name)) for name in names}


def _is_unknown(value: Any) -> bool:
    return isinstance(value, str) and value == rpc.UNKNOWN


def _differs(old: Any, new: Any) -> bool:
    return _is_unknown(new) or normalize(old) != normalize(new)


GONE = ReadResult(id_="", outs={})  # read of an object that no longer exists


class ResourceBase(Resource):
    """Dynamic resource whose camelCase output properties are also snake_case attributes."""

    def __init__(self, provider: ResourceProvider, name: str, props: Props, opts: Optional[pulumi.ResourceOptions]) -> None:
        super().__init__(provider, name, props, opts)
        for prop in props:
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", prop).lower()
            if snake != prop:
                setattr(self, snake, getattr(self, prop))


def _opts(opts: Optional[pulumi.ResourceOptions], secrets: Sequence[str]) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=list(secrets)))


# ---------------------------------------------------------------------------- ApiToken
class ApiTokenProvider(GlitchTipProvider):
    """An API token, made with an admin browser session (a Bearer token cannot create tokens).

    Adopts an existing token with the same label (the token list shows token values).
    Tokens cannot be edited: a label or scope change replaces the token.
    """

    fields = ("label", "scopes")
    replace_on = ("label", "scopes")
    credentials = ("connection", "adminEmail", "adminPassword")

    @contextmanager
    def _session(self, props: Props) -> Iterator[GlitchTipClient]:
        with reach(props["connection"]) as base_url:
            yield GlitchTipClient.login_session(base_url, props["adminEmail"], props["adminPassword"])

    def _outs(self, props: Props, token: Mapping[str, Any]) -> Props:
        return {**self.inputs_of(props, (*self.fields, *self.credentials)), "token": token["token"], "tokenId": str(token["id"])}

    def create(self, props: Props) -> CreateResult:
        with self._session(props) as session:
            existing = [t for t in session.api_tokens() if t.get("label") == props["label"]]
            token = existing[0] if existing else session.create_api_token(props["label"], props["scopes"])
        return CreateResult(str(token["id"]), self._outs(props, token))

    def read(self, id_: str, props: Props) -> ReadResult:
        with self._session(props) as session:
            found = [t for t in session.api_tokens() if str(t["id"]) == id_]
        if not found:
            return GONE
        return ReadResult(id_, {**props, **self._outs(props, found[0]), "label": found[0]["label"], "scopes": found[0]["scopes"]})

    def update(self, id_: str, olds: Props, news: Props) -> UpdateResult:
        return UpdateResult({**self.inputs_of(news, (*self.fields, *self.credentials)), "token": olds["token"], "tokenId": olds["tokenId"]})

    def delete(self, id_: str, props: Props) -> None:
        with self._session(props) as session:
            try:
                session.delete_api_token(id_)
            except GlitchTipNotFound:
                pass


@dataclass(frozen=True)
class ApiTokenArgs:
    """Inputs of ApiToken."""

    access: ApiAccess
    admin_email: pulumi.Input[str]
    admin_password: pulumi.Input[str]
    """Secret."""
    label: pulumi.Input[str] = "pulumi"
    scopes: Sequence[str] = ALL_SCOPES


class ApiToken(ResourceBase, module="glitchtip", name="ApiToken"):
    """An API token created with the admin's session. Output `token` is secret."""

    token: pulumi.Output[str]
    token_id: pulumi.Output[str]

    def __init__(self, name: str, args: ApiTokenArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = {
            "connection": args.access.as_input(),
            "adminEmail": args.admin_email,
            "adminPassword": args.admin_password,
            "label": args.label,
            "scopes": list(args.scopes),
            "token": None,
            "tokenId": None,
        }
        super().__init__(ApiTokenProvider(), name, props, _opts(opts, ["connection", "adminPassword", "token"]))


# ---------------------------------------------------------------------------- Organization
class OrganizationProvider(GlitchTipProvider):
    """An organization, keyed by its slug. A name change renames it (the slug stays)."""

    fields = ("name",)

    def _outs(self, props: Props, org: Mapping[str, Any]) -> Props:
        return {**self.inputs_of(props, (*self.fields, *self.credentials)), "name": org["name"], "slug": org["slug"], "orgId": str(org["id"])}

    def create(self, props: Props) -> CreateResult:
        with api(props) as client:
            orgs = client.organizations()
            found = [o for o in orgs if o["name"] == props["name"]] or [o for o in orgs if o["slug"] == slugify(props["name"])]
            org = found[0] if found else client.create_organization(props["name"])
        return CreateResult(org["slug"], self._outs(props, org))

    def read(self, id_: str, props: Props) -> ReadResult:
        with api(props) as client:
            try:
                org = client.organization(id_)
            except GlitchTipNotFound:
                return GONE
        return ReadResult(id_, {**props, **self._outs(props, org)})

    def update(self, id_: str, olds: Props, news: Props) -> UpdateResult:
        with api(news) as client:
            org = client.update_organization(id_, news["name"]) if olds.get("name") != news["name"] else client.organization(id_)
        return UpdateResult(self._outs(news, org))

    def delete(self, id_: str, props: Props) -> None:
        with api(props) as client:
            try:
                client.delete_organization(id_)
            except GlitchTipNotFound:
                pass


@dataclass(frozen=True)
class OrganizationArgs:
    """Inputs of Organization."""

    access: ApiAccess
    token: pulumi.Input[str]
    name: pulumi.Input[str]


class Organization(ResourceBase, module="glitchtip", name="Organization"):
    """A GlitchTip organization (adopted when one with the same name or slug exists)."""

    slug: pulumi.Output[str]
    org_id: pulumi.Output[str]

    def __init__(self, name: str, args: OrganizationArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = {"connection": args.access.as_input(), "token": args.token, "name": args.name, "slug": None, "orgId": None}
        super().__init__(OrganizationProvider(), name, props, _opts(opts, CONNECTION_SECRETS))


# ---------------------------------------------------------------------------- Team
class TeamProvider(GlitchTipProvider):
    """A team, keyed by "<org>/<slug>". Nothing to update: a new org or slug replaces it."""

    fields = ("organization", "slug")
    replace_on = ("organization", "slug")

    def _outs(self, props: Props, team: Mapping[str, Any]) -> Props:
        return {**self.inputs_of(props, (*self.fields, *self.credentials)), "slug": team["slug"], "teamId": str(team["id"])}

    def create(self, props: Props) -> CreateResult:
        with api(props) as client:
            found = [t for t in client.teams(props["organization"]) if t["slug"] == props["slug"]]
            team = found[0] if found else client.create_team(props["organization"], props["slug"])
        return CreateResult(f"{props['organization']}/{team['slug']}", self._outs(props, team))

    def read(self, id_: str, props: Props) -> ReadResult:
        org, slug = id_.split("/", 1)
        with api(props) as client:
            try:
                team = client.team(org, slug)
            except GlitchTipNotFound:
                return GONE
        return ReadResult(id_, {**props, **self._outs(props, team)})

    def update(self, id_: str, olds: Props, news: Props) -> UpdateResult:
        return UpdateResult({**self.inputs_of(news, (*self.fields, *self.credentials)), "teamId": olds.get("teamId")})

    def delete(self, id_: str, props: Props) -> None:
        org, slug = id_.split("/", 1)
        with api(props) as client:
            try:
                client.delete_team(org, slug)
            except GlitchTipNotFound:
                pass


@dataclass(frozen=True)
class TeamArgs:
    """Inputs of Team."""

    access: ApiAccess
    token: pulumi.Input[str]
    organization: pulumi.Input[str]
    """Organization slug."""
    slug: pulumi.Input[str]


class Team(ResourceBase, module="glitchtip", name="Team"):
    """A team in an organization (adopted when the slug exists)."""

    slug: pulumi.Output[str]
    team_id: pulumi.Output[str]

    def __init__(self, name: str, args: TeamArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = {"connection": args.access.as_input(), "token": args.token, "organization": args.organization, "slug": args.slug, "teamId": None}
        super().__init__(TeamProvider(), name, props, _opts(opts, CONNECTION_SECRETS))


# ---------------------------------------------------------------------------- Project
def dsn_for(public_key: str, netloc_or_url: str, project_id: str) -> str:
    """`scheme://<key>@host[:port][/path]/<project id>`; a bare host:port means http."""
    url = netloc_or_url if "://" in netloc_or_url else f"http://{netloc_or_url}"
    parts = urlsplit(url)
    return f"{parts.scheme}://{public_key.replace('-', '')}@{parts.netloc}{parts.path.rstrip('/')}/{project_id}"


class ProjectProvider(GlitchTipProvider):
    """A project created under a team, keyed by "<org>/<slug>"; its first client key gives the DSN.

    Name and platform are updated in place; a new organization or team replaces the
    project (and so loses its events: protect the resource in production).
    """

    fields = ("organization", "team", "name", "platform", "publicUrl")
    replace_on = ("organization", "team")

    def _outs(self, props: Props, project: Mapping[str, Any], key: Mapping[str, Any]) -> Props:
        project_id = str(project["id"])
        public_key = str(key["public"]).replace("-", "")
        public_url = props.get("publicUrl")
        return {
            **self.inputs_of(props, (*self.fields, *self.credentials)),
            "name": project["name"],
            "platform": project.get("platform"),
            "slug": project["slug"],
            "projectId": project_id,
            "keyId": str(key["id"]),
            "publicKey": public_key,
            "dsn": dsn_for(public_key, server_local_url(props["connection"]), project_id),
            "publicDsn": dsn_for(public_key, public_url, project_id) if public_url else None,
        }

    @staticmethod
    def _first_key(client: GlitchTipClient, org: str, slug: str) -> Mapping[str, Any]:
        keys = client.keys(org, slug)
        return keys[0] if keys else client.create_key(org, slug, "default")

    def create(self, props: Props) -> CreateResult:
        org = props["organization"]
        with api(props) as client:
            found = [p for p in client.projects(org) if p["name"] == props["name"]]
            project = found[0] if found else client.create_project(org, props["team"], props["name"], props.get("platform"))
            if found and found[0].get("platform") != props.get("platform"):
                project = client.update_project(org, project["slug"], name=props["name"], platform=props.get("platform"))
            key = self._first_key(client, org, project["slug"])
        return CreateResult(f"{org}/{project['slug']}", self._outs(props, project, key))

    def read(self, id_: str, props: Props) -> ReadResult:
        org, slug = id_.split("/", 1)
        with api(props) as client:
            try:
                project = client.project(org, slug)
            except GlitchTipNotFound:
                return GONE
            keys = client.keys(org, slug)
        key = next((k for k in keys if str(k["id"]) == props.get("keyId")), keys[0] if keys else {"id": "", "public": ""})
        return ReadResult(id_, {**props, **self._outs(props, project, key)})

    def update(self, id_: str, olds: Props, news: Props) -> UpdateResult:
        org, slug = id_.split("/", 1)
        with api(news) as client:
            if (olds.get("name"), olds.get("platform")) != (news["name"], news.get("platform")):
                project = client.update_project(org, slug, name=news["name"], platform=news.get("platform"))
            else:
                project = client.project(org, slug)
            key = self._first_key(client, org, slug)
        return UpdateResult(self._outs(news, project, key))

    def delete(self, id_: str, props: Props) -> None:
        org, slug = id_.split("/", 1)
        with api(props) as client:
            try:
                client.delete_project(org, slug)
            except GlitchTipNotFound:
                pass


@dataclass(frozen=True)
class ProjectArgs:
    """Inputs of Project."""

    access: ApiAccess
    token: pulumi.Input[str]
    organization: pulumi.Input[str]
    """Organization slug."""
    team: pulumi.Input[str]
    """Team slug the project is created under."""
    name: pulumi.Input[str]
    platform: Optional[pulumi.Input[str]] = "node"
    public_url: Optional[pulumi.Input[str]] = None
    """GlitchTip's public URL (e.g. https://errors.example.com); gives `public_dsn`."""


class Project(ResourceBase, module="glitchtip", name="Project"):
    """A project and its DSN. `dsn` (server-local, 127.0.0.1:<port>) and `public_dsn` are secret."""

    slug: pulumi.Output[str]
    project_id: pulumi.Output[str]
    public_key: pulumi.Output[str]
    dsn: pulumi.Output[str]
    public_dsn: pulumi.Output[Optional[str]]

    def __init__(self, name: str, args: ProjectArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = {
            "connection": args.access.as_input(),
            "token": args.token,
            "organization": args.organization,
            "team": args.team,
            "name": args.name,
            "platform": args.platform,
            "publicUrl": args.public_url,
            **dict.fromkeys(("slug", "projectId", "keyId", "publicKey", "dsn", "publicDsn")),
        }
        super().__init__(ProjectProvider(), name, props, _opts(opts, [*CONNECTION_SECRETS, "dsn", "publicDsn"]))


# ---------------------------------------------------------------------------- AlertRule
def alert_body(props: Mapping[str, Any]) -> dict[str, Any]:
    """The API body of an alert rule from resource properties."""
    return {
        "name": props["name"],
        "timespanMinutes": int(props["timespanMinutes"]),
        "quantity": int(props["quantity"]),
        "uptime": bool(props.get("uptime", False)),
        "alertRecipients": [{"recipientType": r["type"], "url": r.get("url") or ""} for r in props.get("recipients") or []],
    }


class AlertRuleProvider(GlitchTipProvider):
    """A project alert: more than `quantity` events in `timespanMinutes` (1 in 1 = new issue).
    Keyed by the alert id; adopted by name; every field is updated in place."""

    fields = ("organization", "project", "name", "timespanMinutes", "quantity", "uptime", "recipients")
    replace_on = ("organization", "project")

    def _outs(self, props: Props, alert: Mapping[str, Any]) -> Props:
        return {
            **self.inputs_of(props, (*self.fields, *self.credentials)),
            "name": alert["name"],
            "timespanMinutes": alert["timespanMinutes"],
            "quantity": alert["quantity"],
            "uptime": alert["uptime"],
            "recipients": [{"type": r["recipientType"], "url": r.get("url") or ""} for r in alert["alertRecipients"]],
            "alertId": str(alert["id"]),
        }

    def create(self, props: Props) -> CreateResult:
        org, project = props["organization"], props["project"]
        with api(props) as client:
            found = [a for a in client.alerts(org, project) if a["name"] == props["name"]]
            if found:
                alert = client.update_alert(org, project, found[0]["id"], alert_body(props))
            else:
                client.project(org, project)  # a list on an unknown project answers 200 []: check first
                alert = client.create_alert(org, project, alert_body(props))
        return CreateResult(str(alert["id"]), self._outs(props, alert))

    def read(self, id_: str, props: Props) -> ReadResult:
        with api(props) as client:
            found = [a for a in client.alerts(props["organization"], props["project"]) if str(a["id"]) == id_]
        return ReadResult(id_, {**props, **self._outs(props, found[0])}) if found else GONE

    def update(self, id_: str, olds: Props, news: Props) -> UpdateResult:
        with api(news) as client:
            alert = client.update_alert(news["organization"], news["project"], id_, alert_body(news))
        return UpdateResult(self._outs(news, alert))

    def delete(self, id_: str, props: Props) -> None:
        with api(props) as client:
            try:
                client.delete_alert(props["organization"], props["project"], id_)
            except GlitchTipNotFound:
                pass


@dataclass(frozen=True)
class AlertRecipient:
    """Where an alert goes: `email` (the project's members) or `webhook` (url)."""

    type: str
    url: str = ""

    def __post_init__(self) -> None:
        if self.type not in ("email", "webhook", "discord", "googlechat"):
            raise ValueError(f"alert recipient type {self.type!r} is not one of email, webhook, discord, googlechat.")
        if self.type != "email" and not self.url:
            raise ValueError(f"a {self.type} alert recipient needs a url.")


@dataclass(frozen=True)
class AlertRuleArgs:
    """Inputs of AlertRule."""

    access: ApiAccess
    token: pulumi.Input[str]
    organization: pulumi.Input[str]
    project: pulumi.Input[str]
    """Project slug."""
    name: str
    quantity: int = 1
    """Alert when more than this many events arrive in the window; 1 = every new issue."""
    timespan_minutes: int = 1
    uptime: bool = False
    """Also alert on uptime monitor failures."""
    recipients: Sequence[AlertRecipient] = (AlertRecipient("email"),)

    def __post_init__(self) -> None:
        if self.quantity < 1 or self.timespan_minutes < 1:
            raise ValueError(f"alert {self.name!r}: quantity and timespan_minutes must be at least 1.")


class AlertRule(ResourceBase, module="glitchtip", name="AlertRule"):
    """A project alert rule (event count in a window, new issue, uptime)."""

    alert_id: pulumi.Output[str]

    def __init__(self, name: str, args: AlertRuleArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = {
            "connection": args.access.as_input(),
            "token": args.token,
            "organization": args.organization,
            "project": args.project,
            "name": args.name,
            "timespanMinutes": args.timespan_minutes,
            "quantity": args.quantity,
            "uptime": args.uptime,
            "recipients": [{"type": r.type, "url": r.url} for r in args.recipients],
            "alertId": None,
        }
        super().__init__(AlertRuleProvider(), name, props, _opts(opts, CONNECTION_SECRETS))


# ---------------------------------------------------------------------------- UptimeMonitor
MONITOR_FIELDS = ("monitorType", "name", "url", "expectedStatus", "expectedBody", "interval", "timeout")


def monitor_body(props: Mapping[str, Any]) -> dict[str, Any]:
    """The API body of a monitor from resource properties."""
    heartbeat = props["monitorType"] == "Heartbeat"
    return {
        "monitorType": props["monitorType"],
        "name": props["name"],
        "url": "" if heartbeat else props.get("url") or "",
        "expectedStatus": None if heartbeat else normalize(props.get("expectedStatus")),
        "expectedBody": props.get("expectedBody") or "",
        "interval": int(props.get("interval") or 60),
        "timeout": None if heartbeat else normalize(props.get("timeout")),
        "project": props.get("projectId"),
    }


class UptimeMonitorProvider(GlitchTipProvider):
    """An uptime monitor (GET/POST/Ping/TCP Port/SSL) or a Heartbeat monitor, keyed by its id,
    adopted by name. `heartbeatUrl` is the ping URL on the server's loopback (secret: no auth)."""

    fields = ("organization", "projectId", *MONITOR_FIELDS)
    replace_on = ("organization",)

    def _outs(self, props: Props, monitor: Mapping[str, Any]) -> Props:
        endpoint = monitor.get("endpointID")
        base = server_local_url(props["connection"])
        return {
            **self.inputs_of(props, (*self.fields, *self.credentials)),
            **{name: monitor.get(name) for name in MONITOR_FIELDS},
            "projectId": monitor.get("projectID"),
            "monitorId": str(monitor["id"]),
            "endpointId": endpoint,
            "heartbeatUrl": f"{base}/api/0/organizations/{props['organization']}/heartbeat_check/{endpoint}/" if endpoint else None,
        }

    def _comparable(self, props: Props) -> Props:
        body = monitor_body(props)
        return {k: body[k] for k in MONITOR_FIELDS}

    def changed_fields(self, olds: Props, news: Props) -> list[str]:
        # Heartbeat monitors have no url/status/timeout: compare what the API keeps.
        if any(_is_unknown(news.get(k)) for k in MONITOR_FIELDS):
            return super().changed_fields(olds, news)
        old_body, new_body = self._comparable(olds), self._comparable(news)
        changed = [k for k in MONITOR_FIELDS if old_body[k] != new_body[k]]
        others = [k for k in (*self.fields, *self.credentials) if k not in MONITOR_FIELDS]
        return changed + [k for k in others if _differs(olds.get(k), news.get(k))]

    def create(self, props: Props) -> CreateResult:
        org = props["organization"]
        with api(props) as client:
            found = [m for m in client.monitors(org) if m["name"] == props["name"]]
            if found:
                monitor = client.update_monitor(org, found[0]["id"], monitor_body(props))
            else:
                monitor = client.create_monitor(org, monitor_body(props))
        return CreateResult(str(monitor["id"]), self._outs(props, monitor))

    def read(self, id_: str, props: Props) -> ReadResult:
        with api(props) as client:
            try:
                monitor = client.monitor(props["organization"], id_)
            except GlitchTipNotFound:
                return GONE
        return ReadResult(id_, {**props, **self._outs(props, monitor)})

    def update(self, id_: str, olds: Props, news: Props) -> UpdateResult:
        with api(news) as client:
            monitor = client.update_monitor(news["organization"], id_, monitor_body(news))
        return UpdateResult(self._outs(news, monitor))

    def delete(self, id_: str, props: Props) -> None:
        with api(props) as client:
            try:
                client.delete_monitor(props["organization"], id_)
            except GlitchTipNotFound:
                pass


MONITOR_TYPES = ("GET", "POST", "Ping", "TCP Port", "SSL", "Heartbeat")


@dataclass(frozen=True)
class UptimeMonitorArgs:
    """Inputs of UptimeMonitor."""

    access: ApiAccess
    token: pulumi.Input[str]
    organization: pulumi.Input[str]
    project_id: Optional[pulumi.Input[str]]
    name: str
    monitor_type: str = "GET"
    url: str = ""
    expected_status: Optional[int] = 200
    expected_body: str = ""
    interval: int = 60
    """Seconds between checks; for Heartbeat, the longest allowed silence."""
    timeout: Optional[int] = 10

    def __post_init__(self) -> None:
        if self.monitor_type not in MONITOR_TYPES:
            raise ValueError(f"monitor {self.name!r}: type {self.monitor_type!r} is not one of {', '.join(MONITOR_TYPES)}.")
        if self.monitor_type != "Heartbeat" and not self.url:
            raise ValueError(f"monitor {self.name!r}: a {self.monitor_type} monitor needs a url.")


class UptimeMonitor(ResourceBase, module="glitchtip", name="UptimeMonitor"):
    """An uptime or heartbeat monitor. `heartbeat_url` (secret) is the server-local ping URL."""

    monitor_id: pulumi.Output[str]
    heartbeat_url: pulumi.Output[Optional[str]]

    def __init__(self, name: str, args: UptimeMonitorArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        props = {
            "connection": args.access.as_input(),
            "token": args.token,
            "organization": args.organization,
            "projectId": args.project_id,
            "monitorType": args.monitor_type,
            "name": args.name,
            "url": args.url,
            "expectedStatus": args.expected_status,
            "expectedBody": args.expected_body,
            "interval": args.interval,
            "timeout": args.timeout,
            "monitorId": None,
            "endpointId": None,
            "heartbeatUrl": None,
        }
        super().__init__(UptimeMonitorProvider(), name, props, _opts(opts, [*CONNECTION_SECRETS, "heartbeatUrl"]))

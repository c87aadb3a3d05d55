"""Request handling of the GlitchTip stand-in, independent of the HTTP server.

`App.handle(Request) -> Response` answers the way the recorded GlitchTip did
(shared/glitchtip-api/catalogue-5.2dev.md). Where the catalogue is silent the
choice made here is marked "unrecorded" in a comment.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from . import events as ev
from .store import Row, Store

Json = dict[str, Any]

ALL_SCOPES = (
    "project:read", "project:write", "project:admin", "project:releases",
    "team:read", "team:write", "team:admin", "event:read", "event:write", "event:admin",
    "org:read", "org:write", "org:admin", "member:read", "member:write", "member:admin",
)
ORG_ACCESS = [
    "event:write", "team:write", "project:read", "member:write", "org:write", "member:read",
    "member:admin", "team:read", "project:write", "project:admin", "org:integrations",
    "event:admin", "org:admin", "org:read", "project:releases", "team:admin", "event:read",
]
DEFAULT_PAGE_SIZE = 100
MAX_HITS = 1000
INGEST_LOG_SIZE = 2000
PBKDF2_ITERATIONS = 20_000


def now_iso() -> str:
    """A timestamp the way GlitchTip writes it: milliseconds and a Z."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def env_flag(name: str, default: bool, env: dict[str, str] | None = None) -> bool:
    value = (env if env is not None else os.environ).get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item"


def hash_password(password: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${salt}${base64.b64encode(digest).decode()}"


def check_password(password: str, encoded: str) -> bool:
    try:
        _, iterations, salt, expected = encoded.split("$", 3)
    except ValueError:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)


def create_user(store: Store, email: str, password: str | None, *, superuser: bool) -> Row:
    """Insert a user (used by the API and by `manage createsuperuser`)."""
    return store.insert(
        "users_user",
        {
            "email": email,
            "password": hash_password(password) if password else "!",
            "is_superuser": superuser,
            "date_joined": now_iso(),
            "last_login": None,
            "name": "",
        },
    )


@dataclass(frozen=True)
class Settings:
    """Server settings, read from the same environment variables GlitchTip reads."""

    domain: str = "http://127.0.0.1:8000"
    version: str = "6.2.6-standin"
    enable_user_registration: bool = True
    enable_organization_creation: bool = False
    bad_key_block_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *, default_domain: str) -> "Settings":
        env = dict(os.environ if env is None else env)
        return cls(
            domain=(env.get("GLITCHTIP_DOMAIN") or default_domain).rstrip("/"),
            version=env.get("GLITCHTIP_VERSION") or "6.2.6-standin",
            enable_user_registration=env_flag("ENABLE_USER_REGISTRATION", True, env),
            enable_organization_creation=env_flag("ENABLE_ORGANIZATION_CREATION", False, env),
            bad_key_block_seconds=float(env.get("STANDIN_BAD_KEY_BLOCK_SECONDS", "30")),
        )


@dataclass
class Request:
    """One HTTP request, body already de-chunked and decompressed."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    raw_query: str = ""

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for part in self.headers.get("cookie", "").split(";"):
            if "=" in part:
                name, value = part.strip().split("=", 1)
                jar[name] = value
        return jar

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HttpError(400, {"detail": "Cannot parse request body"}) from None

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    """What the server writes back."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


class HttpError(Exception):
    """Raised by a handler to answer with a status and a JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def json_response(status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    data = b"" if status == 204 else json.dumps(body).encode()
    return Response(status, data, headers=headers or [])


NOT_FOUND = HttpError(404, {"detail": "Not Found"})
UNAUTHORIZED = HttpError(401, {"detail": "Unauthorized"})


def missing_fields(body: Json, required: tuple[str, ...]) -> None:
    """422 in django-ninja's shape when required body fields are absent."""
    missing = [name for name in required if name not in body]
    if missing:
        raise HttpError(
            422,
            {"detail": [{"type": "missing", "loc": ["body", "payload", n], "msg": "Field required"} for n in missing]},
        )


Handler = Callable[..., Response]


@dataclass
class Hooks:
    """Fault injection, driven through /_standin/ (never part of GlitchTip's API)."""

    drop_next_events: int = 0
    hang_seconds: float = 0.0
    hang_count: int = 0
    throttle_count: int = 0
    retry_after: int = 60
    dropped: int = 0
    received: int = 0


class App:
    """The stand-in's behaviour: routing, auth, resources, ingest, pagination quirks."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.hooks = Hooks()
        self._sessions: dict[str, int] = {}
        self._blocked_until: dict[int, float] = {}
        self._lock = threading.RLock()
        self.ingested: collections.deque[Json] = collections.deque(maxlen=INGEST_LOG_SIZE)
        """The latest ingest requests (path, body sha256 and size, answer): GET /_standin/ingested."""
        self._routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        self._register_routes()

    # ------------------------------------------------------------------ routing
    def route(self, method: str, pattern: str, handler: Handler, auth: str = "user") -> None:
        """auth: none | user (token or session) | session (session only)."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler, auth))

    def _register_routes(self) -> None:
        r = self.route
        r("GET", "/_health/", self.health, "none")
        r("GET", "/api/0/internal/health", self.internal_health, "none")
        r("GET", "/api/0/internal/health/", self.internal_health, "none")
        r("GET", "/api/settings/", self.server_settings, "none")
        r("GET", "/api/0/", self.api_root, "none")
        r("GET", "/_allauth/browser/v1/config", self.allauth_config, "none")
        r("POST", "/_allauth/browser/v1/auth/login", self.allauth_login, "none")
        r("GET", "/_allauth/browser/v1/auth/session", self.allauth_session, "none")
        r("DELETE", "/_allauth/browser/v1/auth/session", self.allauth_logout, "none")
        r("GET", "/api/0/users/me/", self.users_me)
        r("GET", "/api/0/api-tokens/", self.list_tokens, "session")
        r("POST", "/api/0/api-tokens/", self.create_token, "session")
        r("DELETE", "/api/0/api-tokens/{token_id}/", self.delete_token, "session")
        r("GET", "/api/0/organizations/", self.list_orgs)
        r("POST", "/api/0/organizations/", self.create_org)
        r("GET", "/api/0/organizations/{org}/", self.get_org)
        r("PUT", "/api/0/organizations/{org}/", self.update_org)
        r("DELETE", "/api/0/organizations/{org}/", self.delete_org)
        r("GET", "/api/0/organizations/{org}/teams/", self.list_teams)
        r("POST", "/api/0/organizations/{org}/teams/", self.create_team)
        r("GET", "/api/0/teams/{org}/{team}/", self.get_team)
        r("DELETE", "/api/0/teams/{org}/{team}/", self.delete_team)
        r("GET", "/api/0/teams/{org}/{team}/projects/", self.list_team_projects)
        r("POST", "/api/0/teams/{org}/{team}/projects/", self.create_project)
        r("GET", "/api/0/organizations/{org}/projects/", self.list_projects)
        r("GET", "/api/0/projects/{org}/{project}/", self.get_project)
        r("PUT", "/api/0/projects/{org}/{project}/", self.update_project)
        r("DELETE", "/api/0/projects/{org}/{project}/", self.delete_project)
        r("GET", "/api/0/projects/{org}/{project}/keys/", self.list_keys)
        r("POST", "/api/0/projects/{org}/{project}/keys/", self.create_key)
        r("GET", "/api/0/projects/{org}/{project}/keys/{key}/", self.get_key)
        r("PUT", "/api/0/projects/{org}/{project}/keys/{key}/", self.update_key)
        r("DELETE", "/api/0/projects/{org}/{project}/keys/{key}/", self.delete_key)
        r("GET", "/api/0/projects/{org}/{project}/alerts/", self.list_alerts)
        r("POST", "/api/0/projects/{org}/{project}/alerts/", self.create_alert)
        r("PUT", "/api/0/projects/{org}/{project}/alerts/{alert}/", self.update_alert)
        r("DELETE", "/api/0/projects/{org}/{project}/alerts/{alert}/", self.delete_alert)
        r("GET", "/api/0/organizations/{org}/monitors/", self.list_monitors)
        r("POST", "/api/0/organizations/{org}/monitors/", self.create_monitor)
        r("GET", "/api/0/organizations/{org}/monitors/{monitor}/", self.get_monitor)
        r("PUT", "/api/0/organizations/{org}/monitors/{monitor}/", self.update_monitor)
        r("DELETE", "/api/0/organizations/{org}/monitors/{monitor}/", self.delete_monitor)
        r("GET", "/api/0/organizations/{org}/monitors/{monitor}/checks/", self.list_checks)
        r("POST", "/api/0/organizations/{org}/heartbeat_check/{endpoint}/", self.heartbeat, "none")
        r("GET", "/api/0/projects/{org}/{project}/issues/", self.list_project_issues)
        r("GET", "/api/0/organizations/{org}/issues/", self.list_org_issues)
        r("GET", "/api/0/issues/{issue}/", self.get_issue)
        r("DELETE", "/api/0/issues/{issue}/", self.delete_issue)
        r("GET", "/api/0/issues/{issue}/events/", self.list_issue_events)
        r("GET", "/api/0/issues/{issue}/events/latest/", self.latest_issue_event)
        r("GET", "/api/0/issues/{issue}/events/{event}/", self.get_issue_event)
        r("GET", "/api/0/projects/{org}/{project}/events/", self.list_project_events)
        r("GET", "/api/0/projects/{org}/{project}/events/{event}/", self.get_project_event)
        r("GET", "/api/0/organizations/{org}/issues/{issue}/events/{event}/json/", self.raw_event)
        r("POST", "/api/{project_id}/envelope/", self.ingest_envelope, "none")
        r("POST", "/api/{project_id}/store/", self.ingest_store, "none")
        r("GET", "/_standin/state", self.standin_state, "none")
        r("POST", "/_standin/drop-next-event", self.standin_drop, "none")
        r("POST", "/_standin/hang", self.standin_hang, "none")
        r("POST", "/_standin/throttle", self.standin_throttle, "none")
        r("POST", "/_standin/reset-hooks", self.standin_reset_hooks, "none")
        r("GET", "/_standin/ingested", self.standin_ingested, "none")

    def handle(self, req: Request) -> Response:
        """Dispatch one request; never raises."""
        path_matched = False
        for method, regex, handler, auth in self._routes:
            match = regex.match(req.path)
            if not match:
                continue
            path_matched = True
            if method != req.method:
                continue
            ingest = handler in (self.ingest_envelope, self.ingest_store)
            try:
                if ingest:
                    self._maybe_hang()
                with self._lock:
                    user = self._authenticate(req, auth)
                    response = handler(req, user, **match.groupdict())
            except HttpError as exc:
                response = json_response(exc.status, exc.body)
            if ingest:
                self._record_ingest(req, response.status)
            return response
        if path_matched:
            return json_response(405, {"detail": "Method not allowed"})
        return json_response(404, {"detail": "Not Found"})

    # ------------------------------------------------------------------ auth
    def _authenticate(self, req: Request, auth: str) -> Row | None:
        if auth == "none":
            return None
        header = req.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            if auth == "session":
                raise UNAUTHORIZED  # token creation needs a browser session (recorded quirk)
            tokens = self.store.find("api_tokens_apitoken", token=header[7:].strip())
            if not tokens:
                raise UNAUTHORIZED
            return self.store.get("users_user", tokens[0]["user_id"])
        user = self._session_user(req)
        if user is None:
            raise UNAUTHORIZED
        if req.method not in ("GET", "HEAD", "OPTIONS"):
            token = req.headers.get("x-csrftoken", "")
            if not token or token != req.cookies.get("csrftoken"):
                raise HttpError(403, {"detail": "CSRF check Failed"})
        return user

    def _session_user(self, req: Request) -> Row | None:
        user_id = self._sessions.get(req.cookies.get("sessionid", ""))
        return self.store.get("users_user", user_id) if user_id else None

    @staticmethod
    def _cookie(name: str, value: str, max_age: int, http_only: bool = False) -> tuple[str, str]:
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=max_age)
        flags = "; HttpOnly" if http_only else ""
        stamp = expires.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return ("Set-Cookie", f"{name}={value}; expires={stamp}{flags}; Max-Age={max_age}; Path=/; SameSite=Lax")

    # ------------------------------------------------------------------ lookups
    def _org(self, slug: str) -> Row:
        found = self.store.find("organizations_ext_organization", slug=slug)
        if not found:
            raise NOT_FOUND
        return found[0]

    def _project(self, org_slug: str, project_slug: str) -> Row | None:
        orgs = self.store.find("organizations_ext_organization", slug=org_slug)
        if not orgs:
            return None
        found = self.store.find("projects_project", org_id=orgs[0]["id"], slug=project_slug)
        return found[0] if found else None

    def _project_or_404(self, org_slug: str, project_slug: str) -> Row:
        project = self._project(org_slug, project_slug)
        if project is None:
            raise NOT_FOUND
        return project

    def _team(self, org: Row, slug: str) -> Row:
        found = self.store.find("teams_team", org_id=org["id"], slug=slug)
        if not found:
            raise NOT_FOUND
        return found[0]

    def _unique_slug(self, table: str, base: str, **scope: Any) -> str:
        # unrecorded: a clashing name gets "-2", "-3"... (django-extensions AutoSlugField style)
        slug, n = base, 1
        while self.store.find(table, slug=slug, **scope):
            n += 1
            slug = f"{base}-{n}"
        return slug

    @staticmethod
    def _int_id(value: str) -> int:
        if not value.isdigit():
            raise NOT_FOUND
        return int(value)

    # ------------------------------------------------------------------ serializers
    def _user_api(self, user: Row) -> Json:
        return {
            "id": str(user["id"]),
            "options": {"timezone": None, "stacktraceOrder": None, "language": None, "clock24Hours": None, "preferredTheme": None},
            "username": user["email"],
            "dateJoined": user["date_joined"],
            "email": user["email"],
            "hasPasswordAuth": user["password"] != "!",
            "identities": [],
            "lastLogin": user["last_login"],
            "isSuperuser": user["is_superuser"],
            "isActive": True,
            "name": user.get("name", ""),
        }

    @staticmethod
    def _token_api(token: Row) -> Json:
        return {k: token[k] for k in ("id", "label", "scopes", "token", "created")}

    def _org_api(self, org: Row, detail: bool = False) -> Json:
        out: Json = {
            "name": org["name"],
            "id": str(org["id"]),
            "dateCreated": org["date_created"],
            "status": {"id": "active", "name": "active"},
            "avatar": {"avatarType": "", "avatarUuid": None},
            "isEarlyAdopter": False,
            "require2fa": False,
            "slug": org["slug"],
            "isAcceptingEvents": True,
            "eventThrottleRate": 0,
        }
        if detail:
            projects = self.store.find("projects_project", org_id=org["id"])
            teams = self.store.find("teams_team", org_id=org["id"])
            out["projects"] = [self._project_api(p, teams=True) for p in projects]
            out["teams"] = [self._team_api(t) for t in teams]
            out["access"] = list(ORG_ACCESS)
            out["openMembership"] = True
        return out

    def _team_api(self, team: Row) -> Json:
        projects = [p for p in self.store.find("projects_project", org_id=team["org_id"]) if team["id"] in p["team_ids"]]
        return {
            "id": str(team["id"]),
            "slug": team["slug"],
            "dateCreated": team["date_created"],
            "isMember": True,
            "memberCount": 1,
            "projects": [self._project_api(p) for p in projects],
        }

    def _project_api(self, project: Row, teams: bool = False, organization: bool = False) -> Json:
        out: Json = {
            "name": project["name"],
            "slug": project["slug"],
            "id": str(project["id"]),
            "avatar": {"avatarType": "", "avatarUuid": None},
            "color": "",
            "features": [],
            "hasAccess": True,
            "isBookmarked": False,
            "isInternal": False,
            "isMember": True,
            "isPublic": False,
            "scrubIPAddresses": True,
            "dateCreated": project["date_created"],
            "platform": project["platform"],
            "firstEvent": project["first_event"],
            "eventThrottleRate": 0,
        }
        if teams:
            rows = [self.store.get("teams_team", t) for t in project["team_ids"]]
            out["teams"] = [{"id": str(t["id"]), "slug": t["slug"]} for t in rows if t]
        if organization:
            org = self.store.get("organizations_ext_organization", project["org_id"])
            out["organization"] = self._org_api(org) if org else None
        return out

    def _key_api(self, key: Row) -> Json:
        public = key["public"].replace("-", "")
        scheme, host = self.settings.domain.split("://", 1)
        dsn = f"{scheme}://{public}@{host}/{key['project_id']}"
        return {
            "name": key["name"],
            "rateLimit": None,
            "dateCreated": key["date_created"],
            "id": key["public"],
            "dsn": {
                "public": dsn,
                "secret": dsn,
                "security": f"{self.settings.domain}/api/{key['project_id']}/security/?glitchtip_key={public}",
            },
            "label": key["name"],
            "public": key["public"],
            "projectID": key["project_id"],
        }

    @staticmethod
    def _alert_api(alert: Row) -> Json:
        return {
            "alertRecipients": [dict(r) for r in alert["recipients"]],
            "id": alert["id"],
            "name": alert["name"],
            "timespanMinutes": alert["timespan_minutes"],
            "quantity": alert["quantity"],
            "uptime": alert["uptime"],
        }

    def _monitor_api(self, monitor: Row) -> Json:
        org = self.store.get("organizations_ext_organization", monitor["org_id"]) or {}
        project = self.store.get("projects_project", monitor["project_id"]) if monitor["project_id"] else None
        endpoint = monitor["endpoint_id"]
        checks = sorted(self.store.find("uptime_monitorcheck", monitor_id=monitor["id"]), key=lambda c: -c["id"])[:60]
        return {
            "projectID": str(monitor["project_id"]) if monitor["project_id"] else None,
            "environmentID": None,
            "isUp": monitor["is_up"],
            "lastChange": monitor["last_change"],
            "heartbeatEndpoint": (
                f"{self.settings.domain}/api/0/organizations/{org.get('slug')}/heartbeat_check/{endpoint}/" if endpoint else None
            ),
            "projectName": project["name"] if project else None,
            "envName": None,
            "checks": [self._check_api(c) for c in checks],
            "organizationID": monitor["org_id"],
            "monitorType": monitor["monitor_type"],
            "id": monitor["id"],
            "endpointID": endpoint,
            "created": monitor["created"],
            "name": monitor["name"],
            "url": monitor["url"],
            "expectedStatus": monitor["expected_status"],
            "expectedBody": monitor["expected_body"],
            "interval": monitor["interval"],
            "timeout": monitor["timeout"],
        }

    @staticmethod
    def _check_api(check: Row) -> Json:
        return {
            "isUp": check["is_up"],
            "startCheck": check["start_check"],
            "reason": check["reason"],
            "responseTime": check["response_time"],
        }

    def _issue_api(self, issue: Row, detail: bool = False) -> Json:
        project = self.store.get("projects_project", issue["project_id"]) or {}
        slug = project.get("slug", "")
        out = {
            "id": str(issue["id"]),
            "count": str(issue["count"]),
            "type": issue["type"],
            "level": issue["level"],
            "status": issue["status"],
            "project": {"id": str(issue["project_id"]), "platform": project.get("platform"), "slug": slug, "name": project.get("name")},
            "shortId": f"{slug.upper()}-{_base36(issue['short_num'])}",
            "numComments": 0,
            "stats": {"24h": []},
            "shareId": None,
            "logger": None,
            "permalink": f"{self.settings.domain}/{slug}/issues/{issue['id']}",
            "statusDetails": {},
            "subscriptionDetails": None,
            "userCount": 0,
            "matchingEventId": None,
            "firstSeen": issue["first_seen"],
            "lastSeen": issue["last_seen"],
            "title": issue["title"],
            "metadata": issue["metadata"],
            "culprit": "",
        }
        if detail:
            out["userReportCount"] = 0
        return out

    # ------------------------------------------------------------------ pagination
    def _paginate(self, req: Request, items: list[Json], *, hits: bool) -> Response:
        """Cursor pagination with GlitchTip's Link header quirk (a Python set literal)."""
        limit = min(max(int(req.param("limit", str(DEFAULT_PAGE_SIZE)) or DEFAULT_PAGE_SIZE), 1), DEFAULT_PAGE_SIZE)
        offset = _decode_cursor(req.param("cursor"))
        page = items[offset : offset + limit]
        base = f"{self.settings.domain}{req.path}"
        plain = base + (f"?{req.raw_query}" if req.raw_query else "")
        params = [(k, v) for k, vs in req.query.items() if k != "cursor" for v in vs]

        def link(cursor_offset: int) -> tuple[str, str]:
            cursor = _encode_cursor(cursor_offset)
            return f"{base}?{urlencode(sorted(params + [('cursor', cursor)]))}", cursor

        if offset > 0:
            url, cursor = link(max(offset - limit, 0))
            previous = f'<{url}>; rel="previous"; results="true"; cursor="{cursor}"'
        else:
            previous = f'<{plain}>; rel="previous"; results="false"'
        if offset + limit < len(items):
            url, cursor = link(offset + limit)
            nxt = f'<{url}>; rel="next"; results="true"; cursor="{cursor}"'
        else:
            nxt = f'<{plain}>; rel="next"; results="false"'
        headers = [("Link", "{'" + previous + ", " + nxt + "'}")]
        if hits:
            headers += [("X-Max-Hits", str(MAX_HITS)), ("X-Hits", str(min(len(items), MAX_HITS)))]
        return json_response(200, page, headers)

    # ------------------------------------------------------------------ health, settings, auth
    def health(self, req: Request, user: Row | None) -> Response:
        return Response(200, b"ok", content_type="text/plain")

    def internal_health(self, req: Request, user: Row | None) -> Response:
        return json_response(200, {"healthy": {}, "problems": []})

    def _registration_open(self) -> bool:
        # With zero users sign-up is open whatever the flag says (glitchtip-facts.md).
        return self.settings.enable_user_registration or not self.store.find("users_user")

    def server_settings(self, req: Request, user: Row | None) -> Response:
        return json_response(
            200,
            {
                "socialApps": [],
                "billingEnabled": False,
                "iPaidForGlitchTip": False,
                "enableUserRegistration": self._registration_open(),
                "enableSocialAppsUserRegistration": self._registration_open(),
                "enableOrganizationCreation": self.settings.enable_organization_creation,
                "stripePublicKey": None,
                "plausibleUrl": None,
                "plausibleDomain": None,
                "chatwootWebsiteToken": None,
                "sentryDSN": None,
                "sentryTracesSampleRate": 0.01,
                "environment": None,
                "version": self.settings.version,
                "serverTimeZone": "UTC",
                "glitchtipInstanceName": None,
            },
        )

    def api_root(self, req: Request, user: Row | None) -> Response:
        header = req.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            tokens = self.store.find("api_tokens_apitoken", token=header[7:].strip())
            if not tokens:
                raise UNAUTHORIZED
            owner = self.store.get("users_user", tokens[0]["user_id"])
            return json_response(200, {"version": "0", "user": self._user_api(owner or {}), "auth": self._token_api(tokens[0])})
        # Recorded quirk: GET /api/0/ with a session cookie may log the client out.
        self._sessions.pop(req.cookies.get("sessionid", ""), None)
        return json_response(200, {"version": "0", "user": None, "auth": None})

    def allauth_config(self, req: Request, user: Row | None) -> Response:
        body = {
            "status": 200,
            "data": {
                "account": {
                    "login_methods": ["email"],
                    "is_open_for_signup": self._registration_open(),
                    "email_verification_by_code_enabled": False,
                    "login_by_code_enabled": False,
                    "password_reset_by_code_enabled": False,
                    "authentication_method": "email",
                },
                "socialaccount": {"providers": []},
                "mfa": {"supported_types": ["totp", "webauthn", "recovery_codes"], "passkey_login_enabled": True},
            },
        }
        csrf = req.cookies.get("csrftoken") or secrets.token_urlsafe(24)[:32]
        return json_response(200, body, [self._cookie("csrftoken", csrf, 31449600)])

    def _allauth_session_body(self, user: Row) -> Json:
        return {
            "status": 200,
            "data": {
                "user": {"id": user["id"], "display": user["email"], "email": user["email"], "has_usable_password": user["password"] != "!"},
                "methods": [{"method": "password", "at": time.time(), "email": user["email"]}],
            },
            "meta": {"is_authenticated": True},
        }

    def allauth_login(self, req: Request, user: Row | None) -> Response:
        csrf = req.cookies.get("csrftoken")
        if not csrf or req.headers.get("x-csrftoken") != csrf:
            # Django answers its HTML "CSRF verification failed" page.
            return Response(403, b"<h1>Forbidden <span>(403)</span></h1><p>CSRF verification failed. Request aborted.</p>", "text/html")
        body = req.json() or {}
        found = self.store.find("users_user", email=str(body.get("email", "")))
        if not found or not check_password(str(body.get("password", "")), found[0]["password"]):
            return json_response(
                400,
                {
                    "status": 400,
                    "errors": [
                        {
                            "message": "The email address and/or password you specified are not correct.",
                            "code": "email_password_mismatch",
                            "param": "password",
                        }
                    ],
                },
            )
        account = found[0]
        account["last_login"] = now_iso()
        self.store.update("users_user", account)
        session = secrets.token_hex(16)
        self._sessions[session] = account["id"]
        new_csrf = secrets.token_urlsafe(24)[:32]
        return json_response(
            200,
            self._allauth_session_body(account),
            [self._cookie("csrftoken", new_csrf, 31449600), self._cookie("sessionid", session, 1209600, http_only=True)],
        )

    def allauth_session(self, req: Request, user: Row | None) -> Response:
        account = self._session_user(req)
        if account is None:
            return json_response(401, {"status": 401, "data": {"flows": []}, "meta": {"is_authenticated": False}})
        return json_response(200, self._allauth_session_body(account))

    def allauth_logout(self, req: Request, user: Row | None) -> Response:
        self._sessions.pop(req.cookies.get("sessionid", ""), None)
        return json_response(401, {"status": 401, "data": {"flows": []}, "meta": {"is_authenticated": False}})

    def users_me(self, req: Request, user: Row) -> Response:
        return json_response(200, {**self._user_api(user), "chatwootIdentifierHash": None})

    # ------------------------------------------------------------------ api tokens
    def list_tokens(self, req: Request, user: Row) -> Response:
        tokens = sorted(self.store.find("api_tokens_apitoken", user_id=user["id"]), key=lambda t: -t["id"])
        return self._paginate(req, [self._token_api(t) for t in tokens], hits=False)

    def create_token(self, req: Request, user: Row) -> Response:
        body = req.json() or {}
        missing_fields(body, ("scopes",))
        token = self.store.insert(
            "api_tokens_apitoken",
            {"user_id": user["id"], "label": body.get("label") or "", "scopes": list(body["scopes"]), "token": secrets.token_hex(32), "created": now_iso()},
        )
        return json_response(201, self._token_api(token))

    def delete_token(self, req: Request, user: Row, token_id: str) -> Response:
        token = self.store.get("api_tokens_apitoken", self._int_id(token_id))
        if not token or token["user_id"] != user["id"]:
            raise NOT_FOUND
        self.store.delete("api_tokens_apitoken", token["id"])
        return json_response(204, None)

    # ------------------------------------------------------------------ organizations
    def list_orgs(self, req: Request, user: Row) -> Response:
        return self._paginate(req, [self._org_api(o) for o in self.store.find("organizations_ext_organization")], hits=False)

    def create_org(self, req: Request, user: Row) -> Response:
        body = req.json() or {}
        missing_fields(body, ("name",))
        existing = self.store.find("organizations_ext_organization")
        if existing and not (self.settings.enable_organization_creation or user["is_superuser"]):
            raise HttpError(403, {"detail": "Organization creation is not allowed"})
        org = self.store.insert(
            "organizations_ext_organization",
            {"name": body["name"], "slug": self._unique_slug("organizations_ext_organization", slugify(body["name"])), "date_created": now_iso()},
        )
        return json_response(201, self._org_api(org, detail=True))

    def get_org(self, req: Request, user: Row, org: str) -> Response:
        return json_response(200, self._org_api(self._org(org), detail=True))

    def update_org(self, req: Request, user: Row, org: str) -> Response:
        row, body = self._org(org), req.json() or {}
        missing_fields(body, ("name",))
        row["name"] = body["name"]
        self.store.update("organizations_ext_organization", row)
        return json_response(200, self._org_api(row, detail=True))

    def delete_org(self, req: Request, user: Row, org: str) -> Response:
        row = self._org(org)
        for project in self.store.find("projects_project", org_id=row["id"]):
            self._delete_project_rows(project)
        for table in ("teams_team", "uptime_monitor"):
            for child in self.store.find(table, org_id=row["id"]):
                self._delete_monitor_rows(child) if table == "uptime_monitor" else self.store.delete(table, child["id"])
        self.store.delete("organizations_ext_organization", row["id"])
        return json_response(204, None)

    # ------------------------------------------------------------------ teams
    def list_teams(self, req: Request, user: Row, org: str) -> Response:
        return self._paginate(req, [self._team_api(t) for t in self.store.find("teams_team", org_id=self._org(org)["id"])], hits=False)

    def create_team(self, req: Request, user: Row, org: str) -> Response:
        row, body = self._org(org), req.json() or {}
        missing_fields(body, ("slug",))
        slug = str(body["slug"])
        if not re.fullmatch(r"[-a-zA-Z0-9_]+", slug) or len(slug) > 50:
            raise HttpError(422, {"detail": [{"type": "string_pattern_mismatch", "loc": ["body", "payload", "slug"], "msg": "String should match pattern '^[-a-zA-Z0-9_]+$'"}]})
        if self.store.find("teams_team", org_id=row["id"], slug=slug):
            raise HttpError(409, {"detail": "A team with this slug already exists."})  # unrecorded
        team = self.store.insert("teams_team", {"org_id": row["id"], "slug": slug, "date_created": now_iso()})
        return json_response(201, self._team_api(team))

    def get_team(self, req: Request, user: Row, org: str, team: str) -> Response:
        return json_response(200, self._team_api(self._team(self._org(org), team)))

    def delete_team(self, req: Request, user: Row, org: str, team: str) -> Response:
        row = self._team(self._org(org), team)
        for project in self.store.find("projects_project", org_id=row["org_id"]):
            if row["id"] in project["team_ids"]:
                project["team_ids"] = [t for t in project["team_ids"] if t != row["id"]]
                self.store.update("projects_project", project)
        self.store.delete("teams_team", row["id"])
        return json_response(204, None)

    # ------------------------------------------------------------------ projects
    def list_projects(self, req: Request, user: Row, org: str) -> Response:
        rows = self.store.find("projects_project", org_id=self._org(org)["id"])
        return self._paginate(req, [self._project_api(p, teams=True) for p in rows], hits=False)

    def list_team_projects(self, req: Request, user: Row, org: str, team: str) -> Response:
        row = self._team(self._org(org), team)
        rows = [p for p in self.store.find("projects_project", org_id=row["org_id"]) if row["id"] in p["team_ids"]]
        return self._paginate(req, [self._project_api(p) for p in rows], hits=True)

    def create_project(self, req: Request, user: Row, org: str, team: str) -> Response:
        org_row = self._org(org)
        team_row = self._team(org_row, team)
        body = req.json() or {}
        missing_fields(body, ("name",))
        slug = self._unique_slug("projects_project", slugify(body.get("slug") or body["name"]), org_id=org_row["id"])
        project = self.store.insert(
            "projects_project",
            {
                "org_id": org_row["id"],
                "name": body["name"],
                "slug": slug,
                "platform": body.get("platform"),
                "date_created": now_iso(),
                "first_event": None,
                "team_ids": [team_row["id"]],
                "next_short_num": 1,
            },
        )
        self._insert_key(project["id"], "")
        return json_response(201, self._project_api(project))

    def get_project(self, req: Request, user: Row, org: str, project: str) -> Response:
        return json_response(200, self._project_api(self._project_or_404(org, project), organization=True))

    def update_project(self, req: Request, user: Row, org: str, project: str) -> Response:
        row, body = self._project_or_404(org, project), req.json() or {}
        missing_fields(body, ("name",))
        row["name"] = body["name"]
        if body.get("slug"):
            row["slug"] = slugify(body["slug"])
        if "platform" in body:
            row["platform"] = body["platform"]
        self.store.update("projects_project", row)
        return json_response(200, self._project_api(row, organization=True))

    def delete_project(self, req: Request, user: Row, org: str, project: str) -> Response:
        self._delete_project_rows(self._project_or_404(org, project))
        return json_response(204, None)

    def _delete_project_rows(self, project: Row) -> None:
        for table in ("projects_projectkey", "alerts_projectalert", "issue_events_issueevent", "issue_events_issue"):
            for row in self.store.find(table, project_id=project["id"]):
                self.store.delete(table, row["id"])
        for monitor in self.store.find("uptime_monitor", project_id=project["id"]):
            self._delete_monitor_rows(monitor)
        self.store.delete("projects_project", project["id"])

    # ------------------------------------------------------------------ keys
    def _insert_key(self, project_id: int, name: str) -> Row:
        return self.store.insert(
            "projects_projectkey",
            {"project_id": project_id, "public": str(uuid.uuid4()), "name": name, "date_created": now_iso()},
        )

    def _key(self, project: Row, key_id: str) -> Row:
        found = self.store.find("projects_projectkey", project_id=project["id"], public=key_id)
        if not found:
            raise NOT_FOUND
        return found[0]

    def list_keys(self, req: Request, user: Row, org: str, project: str) -> Response:
        row = self._project(org, project)
        keys = self.store.find("projects_projectkey", project_id=row["id"]) if row else []
        return self._paginate(req, [self._key_api(k) for k in keys], hits=False)

    def create_key(self, req: Request, user: Row, org: str, project: str) -> Response:
        body = req.json() or {}
        key = self._insert_key(self._project_or_404(org, project)["id"], str(body.get("name") or ""))
        return json_response(201, self._key_api(key))

    def get_key(self, req: Request, user: Row, org: str, project: str, key: str) -> Response:
        return json_response(200, self._key_api(self._key(self._project_or_404(org, project), key)))

    def update_key(self, req: Request, user: Row, org: str, project: str, key: str) -> Response:
        # Recorded quirk: PUT answers 200 and changes nothing.
        return json_response(200, self._key_api(self._key(self._project_or_404(org, project), key)))

    def delete_key(self, req: Request, user: Row, org: str, project: str, key: str) -> Response:
        row = self._key(self._project_or_404(org, project), key)
        self.store.delete("projects_projectkey", row["id"])
        return json_response(204, None)

    # ------------------------------------------------------------------ alerts
    def _alert(self, project: Row, alert_id: str) -> Row:
        row = self.store.get("alerts_projectalert", self._int_id(alert_id))
        if not row or row["project_id"] != project["id"]:
            raise NOT_FOUND
        return row

    def _recipients(self, wanted: list[Json], current: list[Json]) -> list[Json]:
        """Recipients matched by (type, url) keep their id; new ones get max(existing)+1 (as recorded)."""
        next_id = max([r["id"] for a in self.store.find("alerts_projectalert") for r in a["recipients"]] + [0]) + 1
        out = []
        for item in wanted:
            kind, url = str(item.get("recipientType", "")), str(item.get("url") or "")
            if kind not in ("email", "webhook", "discord", "googlechat"):
                raise HttpError(422, {"detail": [{"type": "union_tag_invalid", "loc": ["body", "payload", "alertRecipients"], "msg": f"Input tag '{kind}' found using 'recipientType' does not match any of the expected tags"}]})
            same = next((r for r in current if r["recipientType"] == kind and r["url"] == url), None)
            if same is None:
                same = {"id": next_id, "recipientType": kind, "url": url}
                next_id += 1
            out.append(same)
        return out

    def list_alerts(self, req: Request, user: Row, org: str, project: str) -> Response:
        row = self._project(org, project)
        alerts = sorted(self.store.find("alerts_projectalert", project_id=row["id"]), key=lambda a: -a["id"]) if row else []
        return self._paginate(req, [self._alert_api(a) for a in alerts], hits=False)

    def create_alert(self, req: Request, user: Row, org: str, project: str) -> Response:
        row, body = self._project_or_404(org, project), req.json() or {}
        alert = self.store.insert(
            "alerts_projectalert",
            {
                "project_id": row["id"],
                "name": body.get("name") or "",
                "timespan_minutes": body.get("timespanMinutes"),
                "quantity": body.get("quantity"),
                "uptime": bool(body.get("uptime", False)),
                "recipients": self._recipients(list(body.get("alertRecipients") or []), []),
            },
        )
        return json_response(201, self._alert_api(alert))

    def update_alert(self, req: Request, user: Row, org: str, project: str, alert: str) -> Response:
        row = self._alert(self._project_or_404(org, project), alert)
        body = req.json() or {}
        for api_name, name in (("name", "name"), ("timespanMinutes", "timespan_minutes"), ("quantity", "quantity"), ("uptime", "uptime")):
            if api_name in body:
                row[name] = body[api_name]
        if "alertRecipients" in body:
            row["recipients"] = self._recipients(list(body["alertRecipients"] or []), row["recipients"])
        self.store.update("alerts_projectalert", row)
        return json_response(200, self._alert_api(row))

    def delete_alert(self, req: Request, user: Row, org: str, project: str, alert: str) -> Response:
        row = self._alert(self._project_or_404(org, project), alert)
        self.store.delete("alerts_projectalert", row["id"])
        return json_response(204, None)

    # ------------------------------------------------------------------ monitors
    MONITOR_TYPES = ("Ping", "GET", "POST", "TCP Port", "SSL", "Heartbeat")

    def _monitor(self, org: Row, monitor_id: str) -> Row:
        row = self.store.get("uptime_monitor", self._int_id(monitor_id))
        if not row or row["org_id"] != org["id"]:
            raise NOT_FOUND
        return row

    def _monitor_fields(self, org: Row, body: Json) -> Json:
        missing_fields(body, ("expectedBody", "expectedStatus", "timeout", "name"))
        kind = body.get("monitorType", "Ping")
        if kind not in self.MONITOR_TYPES:
            raise HttpError(422, {"detail": [{"type": "value_error", "loc": ["body", "payload", "monitorType"], "msg": f"Value error, invalid monitor type {kind!r}"}]})
        project_id = None
        if body.get("project"):
            project = self.store.get("projects_project", self._int_id(str(body["project"])))
            if not project or project["org_id"] != org["id"]:
                raise HttpError(404, {"detail": "Not Found"})  # unrecorded
            project_id = project["id"]
        return {
            "monitor_type": kind,
            "name": body["name"],
            "url": body.get("url") or "",
            "expected_status": body["expectedStatus"],
            "expected_body": body["expectedBody"],
            "interval": int(body.get("interval", 60)),
            "timeout": body["timeout"],
            "project_id": project_id,
        }

    def list_monitors(self, req: Request, user: Row, org: str) -> Response:
        rows = sorted(self.store.find("uptime_monitor", org_id=self._org(org)["id"]), key=lambda m: -m["id"])
        return self._paginate(req, [self._monitor_api(m) for m in rows], hits=False)

    def create_monitor(self, req: Request, user: Row, org: str) -> Response:
        org_row = self._org(org)
        fields = self._monitor_fields(org_row, req.json() or {})
        monitor = self.store.insert(
            "uptime_monitor",
            {
                **fields,
                "org_id": org_row["id"],
                "endpoint_id": str(uuid.uuid4()) if fields["monitor_type"] == "Heartbeat" else None,
                "created": now_iso(),
                "is_up": None,
                "last_change": None,
            },
        )
        return json_response(201, self._monitor_api(monitor))

    def get_monitor(self, req: Request, user: Row, org: str, monitor: str) -> Response:
        return json_response(200, self._monitor_api(self._monitor(self._org(org), monitor)))

    def update_monitor(self, req: Request, user: Row, org: str, monitor: str) -> Response:
        org_row = self._org(org)
        row = self._monitor(org_row, monitor)
        row.update(self._monitor_fields(org_row, req.json() or {}))
        if row["monitor_type"] == "Heartbeat" and not row["endpoint_id"]:
            row["endpoint_id"] = str(uuid.uuid4())
        self.store.update("uptime_monitor", row)
        return json_response(200, self._monitor_api(row))

    def delete_monitor(self, req: Request, user: Row, org: str, monitor: str) -> Response:
        self._delete_monitor_rows(self._monitor(self._org(org), monitor))
        return json_response(204, None)

    def _delete_monitor_rows(self, monitor: Row) -> None:
        for check in self.store.find("uptime_monitorcheck", monitor_id=monitor["id"]):
            self.store.delete("uptime_monitorcheck", check["id"])
        self.store.delete("uptime_monitor", monitor["id"])

    def list_checks(self, req: Request, user: Row, org: str, monitor: str) -> Response:
        row = self._monitor(self._org(org), monitor)
        checks = sorted(self.store.find("uptime_monitorcheck", monitor_id=row["id"]), key=lambda c: -c["id"])
        return self._paginate(req, [self._check_api(c) for c in checks], hits=True)

    def heartbeat(self, req: Request, user: Row | None, org: str, endpoint: str) -> Response:
        org_row = self._org(org)
        found = self.store.find("uptime_monitor", org_id=org_row["id"], endpoint_id=endpoint)
        if not found:
            raise NOT_FOUND
        monitor, stamp = found[0], now_iso()
        self.store.insert("uptime_monitorcheck", {"monitor_id": monitor["id"], "is_up": True, "start_check": stamp, "reason": None, "response_time": None})
        if monitor["is_up"] is not True:
            monitor["is_up"], monitor["last_change"] = True, stamp
            self.store.update("uptime_monitor", monitor)
        return json_response(200, {"is_up": True, "start_check": stamp, "reason": None})

    # ------------------------------------------------------------------ issues and events
    def _search(self, issues: list[Row], req: Request) -> list[Row]:
        """`query=`: is:<status> filters, key:value tag filters, every other word must be a whole word of the title."""
        words, filters = [], []
        for token in (req.param("query") or "").split():
            if ":" in token:
                filters.append(tuple(token.split(":", 1)))
            else:
                words.append(token.lower())
        status = next((v for k, v in filters if k == "is"), None)
        tag_filters = [(k, v) for k, v in filters if k != "is"]
        environment = req.param("environment")

        def matches(issue: Row) -> bool:
            text = set(re.findall(r"[\w@.-]+", f"{issue['title']} {issue['culprit']}".lower()))
            text |= {t.strip(".-") for t in text}
            if not all(w in text for w in words):
                return False
            if status and issue["status"] != status:
                return False
            tags = issue.get("tags", {})
            if environment and environment not in tags.get("environment", []):
                return False
            return all(v in tags.get(k, []) for k, v in tag_filters)

        found = [i for i in issues if matches(i)]
        sort = req.param("sort") or "-last_seen"
        keys: dict[str, Callable[[Row], Any]] = {
            "-last_seen": lambda i: (_neg(i["last_seen"]), -i["id"]),
            "last_seen": lambda i: (i["last_seen"], i["id"]),
            "-first_seen": lambda i: (_neg(i["first_seen"]), -i["id"]),
            "first_seen": lambda i: (i["first_seen"], i["id"]),
            "-count": lambda i: (-i["count"], i["id"]),
            "count": lambda i: (i["count"], i["id"]),
        }
        return sorted(found, key=keys.get(sort, keys["-last_seen"]))

    def list_project_issues(self, req: Request, user: Row, org: str, project: str) -> Response:
        row = self._project(org, project)  # unknown project: 200 [] (recorded quirk)
        issues = self._search(self.store.find("issue_events_issue", project_id=row["id"]), req) if row else []
        return self._paginate(req, [self._issue_api(i) for i in issues], hits=True)

    def list_org_issues(self, req: Request, user: Row, org: str) -> Response:
        org_row = self._org(org)
        projects = {p["id"] for p in self.store.find("projects_project", org_id=org_row["id"])}
        wanted = {int(p) for p in req.query.get("project", []) if p.isdigit()}
        issues = [i for i in self.store.find("issue_events_issue") if i["project_id"] in projects and (not wanted or i["project_id"] in wanted)]
        return self._paginate(req, [self._issue_api(i) for i in self._search(issues, req)], hits=True)

    def _issue(self, issue_id: str) -> Row:
        row = self.store.get("issue_events_issue", self._int_id(issue_id))
        if not row:
            raise NOT_FOUND
        return row

    def get_issue(self, req: Request, user: Row, issue: str) -> Response:
        return json_response(200, self._issue_api(self._issue(issue), detail=True))

    def delete_issue(self, req: Request, user: Row, issue: str) -> Response:
        row = self._issue(issue)
        for event in self.store.find("issue_events_issueevent", issue_id=row["id"]):
            self.store.delete("issue_events_issueevent", event["id"])
        self.store.delete("issue_events_issue", row["id"])
        return json_response(204, None)

    def _events_newest_first(self, **match: Any) -> list[Row]:
        return sorted(self.store.find("issue_events_issueevent", **match), key=lambda e: -e["id"])

    def list_issue_events(self, req: Request, user: Row, issue: str) -> Response:
        row = self._issue(issue)
        return self._paginate(req, [ev.event_to_api(e) for e in self._events_newest_first(issue_id=row["id"])], hits=True)

    def latest_issue_event(self, req: Request, user: Row, issue: str) -> Response:
        found = self._events_newest_first(issue_id=self._issue(issue)["id"])
        if not found:
            raise NOT_FOUND
        return json_response(200, ev.event_to_api(found[0]))

    def get_issue_event(self, req: Request, user: Row, issue: str, event: str) -> Response:
        found = self.store.find("issue_events_issueevent", issue_id=self._issue(issue)["id"], event_id=event.replace("-", "").lower())
        if not found:
            raise NOT_FOUND
        return json_response(200, ev.event_to_api(found[0]))

    def list_project_events(self, req: Request, user: Row, org: str, project: str) -> Response:
        row = self._project(org, project)
        rows = self._events_newest_first(project_id=row["id"]) if row else []
        return self._paginate(req, [ev.event_to_api(e) for e in rows], hits=True)

    def get_project_event(self, req: Request, user: Row, org: str, project: str, event: str) -> Response:
        row = self._project_or_404(org, project)
        found = self.store.find("issue_events_issueevent", project_id=row["id"], event_id=event.replace("-", "").lower())
        if not found:
            raise NOT_FOUND
        return json_response(200, ev.event_to_api(found[0]))

    def raw_event(self, req: Request, user: Row, org: str, issue: str, event: str) -> Response:
        found = self.store.find("issue_events_issueevent", issue_id=self._issue(issue)["id"], event_id=event.replace("-", "").lower())
        if not found:
            raise NOT_FOUND
        return json_response(200, found[0]["raw"])

    # ------------------------------------------------------------------ ingest
    def _maybe_hang(self) -> None:
        with self._lock:
            seconds = self.hooks.hang_seconds if self.hooks.hang_count > 0 else 0.0
            if seconds:
                self.hooks.hang_count -= 1
        if seconds:
            time.sleep(seconds)

    def _ingest_project(self, req: Request, project_id: str) -> Row:
        """Check the (project id, key) pair; a wrong key blocks the project for a while."""
        if self.hooks.throttle_count > 0:
            self.hooks.throttle_count -= 1
            raise _Throttled(self.hooks.retry_after)
        project = self.store.get("projects_project", self._int_id(project_id))
        key = ev.key_from_request(req.query, req.headers)
        if project is None:
            raise HttpError(403, {"detail": "Denied"})  # unrecorded body
        if time.monotonic() < self._blocked_until.get(project["id"], 0.0):
            raise HttpError(403, {"detail": "Denied"})
        keys = {k["public"].replace("-", "") for k in self.store.find("projects_projectkey", project_id=project["id"])}
        if not key or key.replace("-", "").lower() not in keys:
            if key:
                self._blocked_until[project["id"]] = time.monotonic() + self.settings.bad_key_block_seconds
            raise HttpError(403, {"detail": "Denied"})
        return project

    def ingest_envelope(self, req: Request, user: Row | None, project_id: str) -> Response:
        try:
            project = self._ingest_project(req, project_id)
        except _Throttled as exc:
            return json_response(429, {"detail": "Too Many Requests"}, [("Retry-After", str(exc.retry_after))])
        try:
            envelope = ev.parse_envelope(req.body)
        except ev.IngestError as exc:
            raise HttpError(400, {"detail": str(exc)}) from None
        header_id = envelope.header.get("event_id")
        stored = None
        for item_type, payload in envelope.items:
            if item_type == "event":  # transactions, feedback and logs are accepted, not shown as issues
                payload["event_id"] = payload.get("event_id") or header_id
                stored = self._store_event(project, payload)
        return json_response(200, {"id": header_id or stored})

    def ingest_store(self, req: Request, user: Row | None, project_id: str) -> Response:
        try:
            project = self._ingest_project(req, project_id)
        except _Throttled as exc:
            return json_response(429, {"detail": "Too Many Requests"}, [("Retry-After", str(exc.retry_after))])
        payload = req.json()
        if not isinstance(payload, dict):
            raise HttpError(400, {"detail": "Cannot parse request body"})
        event_id = self._store_event(project, payload)
        return json_response(200, {"event_id": event_id, "task_id": None})

    def _store_event(self, project: Row, raw: Json) -> str:
        """Group the event into an issue and keep it; returns the 32-hex event id."""
        event_id = str(raw.get("event_id") or uuid.uuid4().hex).replace("-", "").lower()
        raw["event_id"] = event_id
        self.hooks.received += 1
        if self.hooks.drop_next_events > 0:
            self.hooks.drop_next_events -= 1
            self.hooks.dropped += 1
            return event_id
        if self.store.find("issue_events_issueevent", project_id=project["id"], event_id=event_id):
            return event_id
        summary = ev.summarize(raw)
        stamp = now_iso()
        tags = {t["key"]: t["value"] for t in ev.tags_of(raw)}
        found = self.store.find("issue_events_issue", project_id=project["id"], hash=summary["hash"])
        if found:
            issue = found[0]
            issue["count"] += 1
            issue["last_seen"] = stamp
            for k, v in tags.items():
                issue["tags"].setdefault(k, [])
                if v not in issue["tags"][k]:
                    issue["tags"][k].append(v)
            self.store.update("issue_events_issue", issue)
        else:
            project = self.store.get("projects_project", project["id"]) or project
            issue = self.store.insert(
                "issue_events_issue",
                {
                    "project_id": project["id"],
                    "hash": summary["hash"],
                    "title": summary["title"],
                    "type": summary["type"],
                    "culprit": summary["culprit"],
                    "metadata": summary["metadata"],
                    "level": summary["level"],
                    "status": "unresolved",
                    "count": 1,
                    "first_seen": stamp,
                    "last_seen": stamp,
                    "short_num": project.get("next_short_num", 1),
                    "tags": {k: [v] for k, v in tags.items()},
                },
            )
            project["next_short_num"] = project.get("next_short_num", 1) + 1
            if project.get("first_event") is None:
                project["first_event"] = stamp
            self.store.update("projects_project", project)
        self.store.insert(
            "issue_events_issueevent",
            {
                "project_id": project["id"],
                "issue_id": issue["id"],
                "event_id": event_id,
                "raw": raw,
                "title": summary["title"],
                "type": summary["type"],
                "culprit": summary["culprit"],
                "metadata": summary["metadata"],
                "date_created": _event_time(raw) or stamp,
                "date_received": stamp,
            },
        )
        return event_id

    # ------------------------------------------------------------------ /_standin/ hooks
    def standin_state(self, req: Request, user: Row | None) -> Response:
        hooks = self.hooks
        return json_response(
            200,
            {
                "counts": self.store.counts(),
                "eventsReceived": hooks.received,
                "eventsDropped": hooks.dropped,
                "hooks": {"dropNextEvents": hooks.drop_next_events, "hangSeconds": hooks.hang_seconds, "hangCount": hooks.hang_count, "throttleCount": hooks.throttle_count},
                "version": self.settings.version,
            },
        )

    def standin_drop(self, req: Request, user: Row | None) -> Response:
        body = req.json() or {}
        self.hooks.drop_next_events += int(body.get("count", 1))
        return self.standin_state(req, user)

    def standin_hang(self, req: Request, user: Row | None) -> Response:
        body = req.json() or {}
        self.hooks.hang_seconds = float(body.get("seconds", 5))
        self.hooks.hang_count = int(body.get("count", 1))
        return self.standin_state(req, user)

    def standin_throttle(self, req: Request, user: Row | None) -> Response:
        body = req.json() or {}
        self.hooks.throttle_count = int(body.get("count", 1))
        self.hooks.retry_after = int(body.get("retryAfter", 60))
        return self.standin_state(req, user)

    def _record_ingest(self, req: Request, status: int) -> None:
        """Keep what arrived (the body as decoded, like the Sentry stand-in's log) so tests can compare copies."""
        with self._lock:
            self.ingested.append({"time": time.time(), "path": req.path, "status": status,
                                  "sha256": hashlib.sha256(req.body).hexdigest(), "bytes": len(req.body)})

    def standin_ingested(self, req: Request, user: Row | None) -> Response:
        """The latest ingest requests, oldest first: {"ingested": [{time, path, status, sha256, bytes}]}."""
        with self._lock:
            return json_response(200, {"ingested": list(self.ingested)})

    def standin_reset_hooks(self, req: Request, user: Row | None) -> Response:
        received, dropped = self.hooks.received, self.hooks.dropped
        self.hooks = Hooks(received=received, dropped=dropped)
        self._blocked_until.clear()
        return self.standin_state(req, user)


class _Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"o={offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return max(int(text.split("=", 1)[1].split("&")[0]), 0)
    except (ValueError, IndexError):
        raise HttpError(400, {"detail": "Invalid cursor"}) from None


def _base36(number: int) -> str:
    digits, out = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _neg(stamp: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in stamp)


def _event_time(raw: Json) -> str | None:
    stamp = raw.get("timestamp")
    if isinstance(stamp, (int, float)):
        moment = dt.datetime.fromtimestamp(float(stamp), dt.timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return stamp if isinstance(stamp, str) else None

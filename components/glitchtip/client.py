"""A small, typed GlitchTip API client (stdlib only).

Used by the Pulumi dynamic providers (resources.py) and by operator scripts. It
follows what a real GlitchTip answered (shared/glitchtip-api/catalogue-5.2dev.md):

- API tokens can only be created with a browser session (allauth flow), never with a
  Bearer token: `GlitchTipClient.login()` then `create_api_token()`.
- List endpoints paginate with a cursor. The Link header arrives wrapped in a Python
  set literal (`{'<...>; rel="next"; results="true"; cursor="..."'}`) and its URLs use
  GLITCHTIP_DOMAIN, which is not the address we reach the server on through an SSH
  tunnel: only the cursor is taken from it, requests always go to `base_url`.
- X-Hits is capped at 1000: `count_issues` pages through instead of trusting it.
- An unknown project slug in a list endpoint answers 200 []: `project()` (detail) is
  the way to learn whether a project exists.

Errors are `GlitchTipError` (status + one sentence). Messages name the method and
path, never the token, a password or a request body.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlencode, urlsplit, parse_qs, quote

ApiObject = dict[str, Any]

ALL_SCOPES: tuple[str, ...] = (
    "project:read", "project:write", "project:admin", "project:releases",
    "team:read", "team:write", "team:admin",
    "event:read", "event:write", "event:admin",
    "org:read", "org:write", "org:admin",
    "member:read", "member:write", "member:admin",
)

_LINK_PART = re.compile(r'<([^>]*)>((?:\s*;\s*[\w-]+="[^"]*")*)')
_LINK_PARAM = re.compile(r'([\w-]+)="([^"]*)"')
_MAX_PAGES = 10_000


class GlitchTipError(Exception):
    """An API call failed. `status` is the HTTP status, None when the server was not reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class GlitchTipNotFound(GlitchTipError):
    """The object does not exist (404)."""


class GlitchTipAuthError(GlitchTipError):
    """Wrong credentials, an expired session or token, or a missing CSRF token (400 on login, 401, 403)."""


@dataclass(frozen=True)
class Link:
    """One entry of a Link header."""

    url: str
    rel: str
    results: bool
    cursor: str | None


def parse_link_header(value: str | None) -> dict[str, Link]:
    """Parse GlitchTip's Link header, with or without the Python-set wrapper `{'...'}`."""
    if not value:
        return {}
    text = value.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    links: dict[str, Link] = {}
    for url, params_text in _LINK_PART.findall(text):
        params = dict(_LINK_PARAM.findall(params_text))
        cursor = params.get("cursor")
        if cursor is None:
            cursor = (parse_qs(urlsplit(url).query).get("cursor") or [None])[0]
        rel = params.get("rel", "")
        links[rel] = Link(url=url, rel=rel, results=params.get("results", "false") == "true", cursor=cursor)
    return links


def _detail(body: Any) -> str:
    """A short, safe description of an error body."""
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            return body["detail"]
        if isinstance(body.get("detail"), list):
            parts = []
            for item in body["detail"][:3]:
                loc = ".".join(str(p) for p in item.get("loc", [])[1:]) if isinstance(item, dict) else ""
                parts.append(f"{loc}: {item.get('msg')}" if isinstance(item, dict) else str(item))
            return "; ".join(parts)
        if isinstance(body.get("errors"), list) and body["errors"]:
            return str(body["errors"][0].get("message", "request refused"))
    if isinstance(body, str) and body and "<" not in body:
        return body[:200]
    return "no details"


@dataclass
class _Answer:
    status: int
    headers: Message
    body: Any


class GlitchTipClient:
    """A GlitchTip API client bound to one base URL, authenticated by a token or a session.

    >>> admin = GlitchTipClient.login_session("http://127.0.0.1:8000", "admin@example.com", pw)  # doctest: +SKIP
    >>> token = admin.create_api_token("pulumi")["token"]                                      # doctest: +SKIP
    >>> api = GlitchTipClient("http://127.0.0.1:8000", token)                                   # doctest: +SKIP
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._cookies: dict[str, str] = {}
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __repr__(self) -> str:
        auth = "token" if self._token else ("session" if "sessionid" in self._cookies else "anonymous")
        return f"GlitchTipClient({self.base_url!r}, auth={auth})"

    # ------------------------------------------------------------------ transport
    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: Sequence[int] = (200, 201, 204),
    ) -> _Answer:
        """One call; raises GlitchTipError unless the status is in `expect`."""
        url = self.base_url + path
        if params:
            url += "?" + urlencode([(k, v) for k, v in params.items() if v is not None])
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        if self._cookies:
            req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self._cookies.items()))
            if method not in ("GET", "HEAD") and "csrftoken" in self._cookies:
                req.add_header("X-CSRFToken", self._cookies["csrftoken"])
        where = f"{method} {path}"
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            status, headers, raw = exc.code, exc.headers, exc.read()
        except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GlitchTipError(f"{where} could not reach {self.base_url}: {reason}.") from None
        self._remember_cookies(headers)
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        if status not in expect:
            message = f"{where} answered {status}: {_detail(parsed)}."
            if status == 404:
                raise GlitchTipNotFound(message, status)
            if status in (401, 403) or (status == 400 and path.startswith("/_allauth/")):
                raise GlitchTipAuthError(message, status)
            raise GlitchTipError(message, status)
        return _Answer(status, headers, parsed)

    def _remember_cookies(self, headers: Message) -> None:
        for header in headers.get_all("Set-Cookie") or []:
            for cookie in re.split(r",\s*(?=[A-Za-z0-9_-]+=)", header):
                name, _, rest = cookie.partition("=")
                value = rest.split(";", 1)[0]
                if name.strip() in ("csrftoken", "sessionid"):
                    self._cookies[name.strip()] = value

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).body

    def _post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body=body).body

    def _put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body=body).body

    def _delete(self, path: str) -> None:
        self.request("DELETE", path)

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[ApiObject]:
        """Every item of a list endpoint, following cursors (only the cursor is taken from Link)."""
        query = dict(params or {})
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            answer = self.request("GET", path, params=query)
            yield from answer.body or []
            nxt = parse_link_header(answer.headers.get("Link")).get("next")
            if nxt is None or not nxt.results or not nxt.cursor or nxt.cursor in seen:
                return
            seen.add(nxt.cursor)
            query["cursor"] = nxt.cursor

    def list_all(self, path: str, params: Mapping[str, Any] | None = None) -> list[ApiObject]:
        return list(self.pages(path, params))

    # ------------------------------------------------------------------ health and auth
    def health(self) -> bool:
        """True when /_health/ answers 200 (the web process is up; says nothing about the worker)."""
        try:
            return self.request("GET", "/_health/").status == 200
        except GlitchTipError:
            return False

    def wait_healthy(self, timeout: float = 60.0, interval: float = 1.0) -> None:
        """Poll /_health/ until 200, at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.health():
            if time.monotonic() >= deadline:
                raise GlitchTipError(f"{self.base_url} was not healthy within {timeout:.0f} s.")
            time.sleep(interval)

    def server_settings(self) -> ApiObject:
        return self._get("/api/settings/")

    def me(self) -> ApiObject:
        return self._get("/api/0/users/me/")

    def login(self, email: str, password: str) -> None:
        """allauth browser flow: csrftoken cookie from /config, then /auth/login."""
        self._token = None
        self.request("GET", "/_allauth/browser/v1/config")
        if "csrftoken" not in self._cookies:
            raise GlitchTipAuthError("GET /_allauth/browser/v1/config set no csrftoken cookie.")
        self.request("POST", "/_allauth/browser/v1/auth/login", body={"email": email, "password": password})
        if "sessionid" not in self._cookies:
            raise GlitchTipAuthError("POST /_allauth/browser/v1/auth/login set no session cookie.")

    @classmethod
    def login_session(cls, base_url: str, email: str, password: str, *, timeout: float = 30.0) -> "GlitchTipClient":
        client = cls(base_url, timeout=timeout)
        client.login(email, password)
        return client

    # ------------------------------------------------------------------ api tokens (session only)
    def create_api_token(self, label: str, scopes: Sequence[str] = ALL_SCOPES) -> ApiObject:
        return self._post("/api/0/api-tokens/", {"label": label, "scopes": list(scopes)})

    def api_tokens(self) -> list[ApiObject]:
        return self.list_all("/api/0/api-tokens/")

    def delete_api_token(self, token_id: int | str) -> None:
        self._delete(f"/api/0/api-tokens/{token_id}/")

    # ------------------------------------------------------------------ organizations
    def organizations(self) -> list[ApiObject]:
        return self.list_all("/api/0/organizations/")

    def organization(self, org: str) -> ApiObject:
        return self._get(f"/api/0/organizations/{_seg(org)}/")

    def create_organization(self, name: str) -> ApiObject:
        return self._post("/api/0/organizations/", {"name": name})

    def update_organization(self, org: str, name: str) -> ApiObject:
        return self._put(f"/api/0/organizations/{_seg(org)}/", {"name": name})

    def delete_organization(self, org: str) -> None:
        self._delete(f"/api/0/organizations/{_seg(org)}/")

    # ------------------------------------------------------------------ teams
    def teams(self, org: str) -> list[ApiObject]:
        return self.list_all(f"/api/0/organizations/{_seg(org)}/teams/")

    def team(self, org: str, team: str) -> ApiObject:
        return self._get(f"/api/0/teams/{_seg(org)}/{_seg(team)}/")

    def create_team(self, org: str, slug: str) -> ApiObject:
        return self._post(f"/api/0/organizations/{_seg(org)}/teams/", {"slug": slug})

    def delete_team(self, org: str, team: str) -> None:
        self._delete(f"/api/0/teams/{_seg(org)}/{_seg(team)}/")

    # ------------------------------------------------------------------ projects
    def projects(self, org: str) -> list[ApiObject]:
        return self.list_all(f"/api/0/organizations/{_seg(org)}/projects/")

    def project(self, org: str, project: str) -> ApiObject:
        return self._get(f"/api/0/projects/{_seg(org)}/{_seg(project)}/")

    def create_project(self, org: str, team: str, name: str, platform: str | None = None) -> ApiObject:
        return self._post(f"/api/0/teams/{_seg(org)}/{_seg(team)}/projects/", {"name": name, "platform": platform})

    def update_project(self, org: str, project: str, *, name: str, platform: str | None) -> ApiObject:
        return self._put(f"/api/0/projects/{_seg(org)}/{_seg(project)}/", {"name": name, "platform": platform})

    def delete_project(self, org: str, project: str) -> None:
        self._delete(f"/api/0/projects/{_seg(org)}/{_seg(project)}/")

    # ------------------------------------------------------------------ client keys (DSN)
    def keys(self, org: str, project: str) -> list[ApiObject]:
        return self.list_all(f"/api/0/projects/{_seg(org)}/{_seg(project)}/keys/")

    def key(self, org: str, project: str, key_id: str) -> ApiObject:
        return self._get(f"/api/0/projects/{_seg(org)}/{_seg(project)}/keys/{_seg(key_id)}/")

    def create_key(self, org: str, project: str, name: str = "") -> ApiObject:
        return self._post(f"/api/0/projects/{_seg(org)}/{_seg(project)}/keys/", {"name": name})

    def delete_key(self, org: str, project: str, key_id: str) -> None:
        self._delete(f"/api/0/projects/{_seg(org)}/{_seg(project)}/keys/{_seg(key_id)}/")

    # ------------------------------------------------------------------ alerts
    def alerts(self, org: str, project: str) -> list[ApiObject]:
        return self.list_all(f"/api/0/projects/{_seg(org)}/{_seg(project)}/alerts/")

    def create_alert(self, org: str, project: str, alert: Mapping[str, Any]) -> ApiObject:
        return self._post(f"/api/0/projects/{_seg(org)}/{_seg(project)}/alerts/", dict(alert))

    def update_alert(self, org: str, project: str, alert_id: int | str, alert: Mapping[str, Any]) -> ApiObject:
        return self._put(f"/api/0/projects/{_seg(org)}/{_seg(project)}/alerts/{alert_id}/", dict(alert))

    def delete_alert(self, org: str, project: str, alert_id: int | str) -> None:
        self._delete(f"/api/0/projects/{_seg(org)}/{_seg(project)}/alerts/{alert_id}/")

    # ------------------------------------------------------------------ uptime monitors
    def monitors(self, org: str) -> list[ApiObject]:
        return self.list_all(f"/api/0/organizations/{_seg(org)}/monitors/")

    def monitor(self, org: str, monitor_id: int | str) -> ApiObject:
        return self._get(f"/api/0/organizations/{_seg(org)}/monitors/{monitor_id}/")

    def create_monitor(self, org: str, monitor: Mapping[str, Any]) -> ApiObject:
        return self._post(f"/api/0/organizations/{_seg(org)}/monitors/", dict(monitor))

    def update_monitor(self, org: str, monitor_id: int | str, monitor: Mapping[str, Any]) -> ApiObject:
        return self._put(f"/api/0/organizations/{_seg(org)}/monitors/{monitor_id}/", dict(monitor))

    def delete_monitor(self, org: str, monitor_id: int | str) -> None:
        self._delete(f"/api/0/organizations/{_seg(org)}/monitors/{monitor_id}/")

    def monitor_checks(self, org: str, monitor_id: int | str) -> list[ApiObject]:
        return self.list_all(f"/api/0/organizations/{_seg(org)}/monitors/{monitor_id}/checks/")

    def ping_heartbeat(self, org: str, endpoint_id: str) -> ApiObject:
        """POST the heartbeat endpoint (no auth needed) through this client's base URL."""
        return self._post(f"/api/0/organizations/{_seg(org)}/heartbeat_check/{_seg(endpoint_id)}/", {})

    # ------------------------------------------------------------------ issues and events
    def search_issues(self, org: str, project: str, query: str = "", *, limit: int = 25, sort: str | None = None) -> list[ApiObject]:
        """The first `limit` issues matching `query` (one page)."""
        params = {"query": query or None, "limit": limit, "sort": sort}
        return self._get(f"/api/0/projects/{_seg(org)}/{_seg(project)}/issues/", params) or []

    def iter_issues(self, org: str, project: str, query: str = "") -> Iterator[ApiObject]:
        return self.pages(f"/api/0/projects/{_seg(org)}/{_seg(project)}/issues/", {"query": query or None, "limit": 100})

    def count_issues(self, org: str, project: str, query: str = "") -> int:
        """Exact count by paging (X-Hits stops at 1000)."""
        return sum(1 for _ in self.iter_issues(org, project, query))

    def issue(self, issue_id: int | str) -> ApiObject:
        return self._get(f"/api/0/issues/{issue_id}/")

    def latest_event(self, issue_id: int | str) -> ApiObject:
        return self._get(f"/api/0/issues/{issue_id}/events/latest/")

    def event(self, org: str, project: str, event_id: str) -> ApiObject:
        """An event by the 32-hex id the SDK returned from capture_*."""
        return self._get(f"/api/0/projects/{_seg(org)}/{_seg(project)}/events/{event_id.replace('-', '').lower()}/")

    def wait_for_event(self, org: str, project: str, event_id: str, *, timeout: float = 30.0, interval: float = 0.5) -> ApiObject:
        """Poll for an event until it is visible (GlitchTip batches ingest every ~2 s)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.event(org, project, event_id)
            except GlitchTipNotFound:
                if time.monotonic() >= deadline:
                    raise GlitchTipNotFound(f"event {event_id} did not arrive in {project} within {timeout:.0f} s.", 404) from None
                time.sleep(interval)


def _seg(value: str | int) -> str:
    """One URL path segment, quoted."""
    return quote(str(value), safe="")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow redirects: a 30x would resend the token to wherever Location points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None

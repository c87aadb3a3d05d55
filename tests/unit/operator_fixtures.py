"""Fixtures for the operator tools' tests: an in-process GlitchTip stand-in with a project.

Import the fixtures into a test module (`from tests.unit.operator_fixtures import glitchtip, tool_env  # noqa: F401`).
Nothing here leaves loopback.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from components.glitchtip.client import GlitchTipClient
from tests.standins.glitchtip.server import StandIn

ADMIN, PASSWORD = "admin@example.com", "operator tools test password"
ORG, TEAM, PROJECT = "acme", "backend", "web-app"


@dataclass
class GlitchTip:
    """A started stand-in with org `acme`, project `web-app`, and an API token."""

    standin: StandIn
    token: str
    api: GlitchTipClient
    dsn: str

    @property
    def url(self) -> str:
        return self.standin.url

    def hook(self, name: str, body: dict | None = None) -> dict:
        """POST a fault hook under /_standin/ (drop-next-event, throttle, hang, reset-hooks)."""
        req = urllib.request.Request(f"{self.url}/_standin/{name}", data=json.dumps(body or {}).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_standin/state", timeout=10) as resp:
            return json.loads(resp.read())

    def stored_events(self) -> list[dict]:
        """Raw events the stand-in stored (what GlitchTip would show), oldest first."""
        return [row["raw"] for row in self.standin.store.find("issue_events_issueevent")]


@pytest.fixture()
def tool_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GLITCHTIP_* from the caller's shell, no pulumi CLI, no proxy for loopback."""
    import os

    for name in list(os.environ):
        if name.startswith("GLITCHTIP_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLITCHTIP_NO_PULUMI", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture()
def glitchtip(tool_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[GlitchTip]:
    server = StandIn(bad_key_block_seconds=0.5)
    server.create_superuser(ADMIN, PASSWORD)
    server.start()
    try:
        session = GlitchTipClient.login_session(server.url, ADMIN, PASSWORD)
        token = session.create_api_token("operator-tools")["token"]
        api = GlitchTipClient(server.url, token)
        api.create_organization("Acme")
        api.create_team(ORG, TEAM)
        api.create_project(ORG, TEAM, PROJECT, "node")
        dsn = api.keys(ORG, PROJECT)[0]["dsn"]["public"]
        monkeypatch.setenv("GLITCHTIP_TOKEN", token)
        yield GlitchTip(server, token, api, dsn)
    finally:
        server.stop()

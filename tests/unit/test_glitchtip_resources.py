"""The dynamic providers' create / read / diff / update / delete, called directly against the stand-in."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import dill
import pytest

from components.glitchtip.client import GlitchTipClient, GlitchTipNotFound
from components.glitchtip.resources import (
    AlertRuleProvider,
    ApiTokenProvider,
    OrganizationProvider,
    ProjectProvider,
    TeamProvider,
    UptimeMonitorProvider,
    dsn_for,
)
from tests.standins.glitchtip.server import StandIn

ADMIN, PASSWORD = "admin@example.com", "admin-pw-123"


@pytest.fixture()
def standin() -> Iterator[StandIn]:
    server = StandIn()
    server.create_superuser(ADMIN, PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def conn(standin: StandIn) -> dict:
    return {"baseUrl": standin.url, "remotePort": 8000.0}


@pytest.fixture()
def token(conn: dict) -> str:
    props = {"connection": conn, "adminEmail": ADMIN, "adminPassword": PASSWORD, "label": "pulumi", "scopes": ["org:admin", "project:admin"]}
    return ApiTokenProvider().create(props).outs["token"]


@pytest.fixture()
def client(conn: dict, token: str) -> GlitchTipClient:
    return GlitchTipClient(conn["baseUrl"], token)


@pytest.fixture()
def base(conn: dict, token: str) -> dict:
    """Org acme, team backend, project web-app, made through the providers."""
    OrganizationProvider().create({"connection": conn, "token": token, "name": "Acme"})
    TeamProvider().create({"connection": conn, "token": token, "organization": "acme", "slug": "backend"})
    ProjectProvider().create({"connection": conn, "token": token, "organization": "acme", "team": "backend", "name": "web-app", "platform": "node", "publicUrl": None})
    return {"connection": conn, "token": token, "organization": "acme"}


def test_providers_carry_no_secrets_when_pickled(token: str) -> None:
    for provider in (ApiTokenProvider(), OrganizationProvider(), TeamProvider(), ProjectProvider(), AlertRuleProvider(), UptimeMonitorProvider()):
        blob = dill.dumps(provider, protocol=pickle.DEFAULT_PROTOCOL, recurse=True)
        assert token.encode() not in blob and PASSWORD.encode() not in blob
        assert vars(provider) == {}


def test_api_token_create_adopts_reads_and_deletes(conn: dict) -> None:
    provider = ApiTokenProvider()
    props = {"connection": conn, "adminEmail": ADMIN, "adminPassword": PASSWORD, "label": "pulumi", "scopes": ["org:read"]}
    first = provider.create(props)
    second = provider.create(props)  # adopts the token with the same label
    assert second.id == first.id and second.outs["token"] == first.outs["token"]
    assert provider.read(first.id, first.outs).outs["token"] == first.outs["token"]
    assert provider.diff(first.id, first.outs, {**props, "scopes": ["org:admin"]}).replaces == ["scopes"]
    moved = provider.diff(first.id, first.outs, {**props, "adminPassword": "rotated"})
    assert moved.changes and moved.replaces == []
    provider.delete(first.id, first.outs)
    assert provider.read(first.id, first.outs).id == ""
    provider.delete(first.id, first.outs)  # already gone: no error


def test_organization_lifecycle(conn: dict, token: str, client: GlitchTipClient) -> None:
    provider = OrganizationProvider()
    props = {"connection": conn, "token": token, "name": "Acme Corp"}
    created = provider.create(props)
    assert created.id == "acme-corp" and created.outs["orgId"] == "1"
    assert provider.create(props).id == created.id and len(client.organizations()) == 1
    client.update_organization("acme-corp", "Renamed by hand")
    drift = provider.read(created.id, created.outs)
    assert drift.outs["name"] == "Renamed by hand"
    assert provider.changed_fields(drift.outs, props) == ["name"]
    diff = provider.diff(created.id, drift.outs, props)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, drift.outs, props)
    assert updated.outs["name"] == "Acme Corp" and client.organization("acme-corp")["name"] == "Acme Corp"
    assert provider.diff(created.id, updated.outs, props).changes is False
    provider.delete(created.id, updated.outs)
    assert provider.read(created.id, updated.outs).id == ""


def test_team_lifecycle(base: dict, client: GlitchTipClient) -> None:
    provider = TeamProvider()
    props = {**base, "slug": "backend"}
    adopted = provider.create(props)
    assert adopted.id == "acme/backend" and len(client.teams("acme")) == 1
    assert provider.diff(adopted.id, adopted.outs, {**props, "slug": "platform"}).replaces == ["slug"]
    provider.delete(adopted.id, adopted.outs)
    assert provider.read(adopted.id, adopted.outs).id == ""


def test_project_outputs_dsn_and_adopts(base: dict, client: GlitchTipClient, standin: StandIn) -> None:
    provider = ProjectProvider()
    props = {**base, "team": "backend", "name": "web-app", "platform": "node", "publicUrl": "https://errors.example.com"}
    created = provider.create(props)
    outs = created.outs
    key = client.keys("acme", "web-app")[0]
    assert created.id == "acme/web-app" and outs["projectId"] == "1"
    assert outs["publicKey"] == key["public"].replace("-", "")
    assert outs["dsn"] == f"http://{outs['publicKey']}@{standin.url.removeprefix('http://')}/1"
    assert outs["publicDsn"] == f"https://{outs['publicKey']}@errors.example.com/1"
    assert len(client.projects("acme")) == 1  # the base fixture's project was adopted
    client.update_project("acme", "web-app", name="web-app", platform="python")
    drift = provider.read(created.id, outs)
    assert drift.outs["platform"] == "python"
    assert provider.changed_fields(drift.outs, props) == ["platform"]
    updated = provider.update(created.id, drift.outs, props)
    assert client.project("acme", "web-app")["platform"] == "node" and updated.outs["dsn"] == outs["dsn"]
    assert provider.diff(created.id, updated.outs, {**props, "team": "other"}).replaces == ["team"]
    provider.delete(created.id, updated.outs)
    with pytest.raises(GlitchTipNotFound):
        client.project("acme", "web-app")


def test_project_dsn_over_a_tunnel_points_at_the_server_loopback() -> None:
    assert dsn_for("ab-cd", "http://127.0.0.1:8000", "3") == "http://abcd@127.0.0.1:8000/3"
    assert dsn_for("abcd", "https://errors.example.com/", "3") == "https://abcd@errors.example.com/3"


def test_alert_rule_lifecycle(base: dict, client: GlitchTipClient) -> None:
    provider = AlertRuleProvider()
    props = {**base, "project": "web-app", "name": "burst", "timespanMinutes": 1.0, "quantity": 5.0, "uptime": False,
             "recipients": [{"type": "email", "url": ""}, {"type": "webhook", "url": "http://127.0.0.1:9/hook"}]}
    created = provider.create(props)
    assert provider.create(props).id == created.id and len(client.alerts("acme", "web-app")) == 1
    assert provider.diff(created.id, created.outs, props).changes is False  # floats from the engine compare equal
    client.update_alert("acme", "web-app", created.id, {"name": "burst", "timespanMinutes": 10, "quantity": 5, "alertRecipients": []})
    drift = provider.read(created.id, created.outs)
    assert provider.changed_fields(drift.outs, props) == ["timespanMinutes", "recipients"]
    provider.update(created.id, drift.outs, props)
    live = client.alerts("acme", "web-app")[0]
    assert live["timespanMinutes"] == 1 and [r["recipientType"] for r in live["alertRecipients"]] == ["email", "webhook"]
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == ""


def test_alert_rule_on_unknown_project_fails_instead_of_adopting_nothing(base: dict) -> None:
    props = {**base, "project": "nope", "name": "new issue", "timespanMinutes": 1, "quantity": 1, "uptime": False, "recipients": []}
    with pytest.raises(GlitchTipNotFound):
        AlertRuleProvider().create(props)


def test_monitors_get_and_heartbeat(base: dict, client: GlitchTipClient, standin: StandIn) -> None:
    provider = UptimeMonitorProvider()
    get = {**base, "projectId": "1", "monitorType": "GET", "name": "app health", "url": "http://127.0.0.1:3000/health",
           "expectedStatus": 200.0, "expectedBody": "", "interval": 60.0, "timeout": 10.0}
    beat = {**base, "projectId": "1", "monitorType": "Heartbeat", "name": "backup", "url": "",
            "expectedStatus": None, "expectedBody": "", "interval": 86400.0, "timeout": None}
    created_get, created_beat = provider.create(get), provider.create(beat)
    assert created_get.outs["heartbeatUrl"] is None
    ping = created_beat.outs["heartbeatUrl"]
    assert ping == f"{standin.url}/api/0/organizations/acme/heartbeat_check/{created_beat.outs['endpointId']}/"
    assert provider.create(beat).id == created_beat.id and len(client.monitors("acme")) == 2
    assert provider.diff(created_beat.id, created_beat.outs, beat).changes is False
    client.ping_heartbeat("acme", created_beat.outs["endpointId"])
    assert client.monitor("acme", created_beat.id)["isUp"] is True
    client.update_monitor("acme", created_get.id, {**{k: v for k, v in client.monitor("acme", created_get.id).items()}, "project": "1", "interval": 300})
    drift = provider.read(created_get.id, created_get.outs)
    assert provider.changed_fields(drift.outs, get) == ["interval"]
    provider.update(created_get.id, drift.outs, get)
    assert client.monitor("acme", created_get.id)["interval"] == 60
    for created in (created_get, created_beat):
        provider.delete(created.id, created.outs)
    assert client.monitors("acme") == []

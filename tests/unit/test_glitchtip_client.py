"""GlitchTipClient against the in-process GlitchTip stand-in (tests/standins/glitchtip)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from components.glitchtip.client import (
    GlitchTipAuthError,
    GlitchTipClient,
    GlitchTipError,
    GlitchTipNotFound,
    parse_link_header,
)
from tests.standins.glitchtip.server import StandIn

ADMIN, PASSWORD = "admin@example.com", "correct horse battery staple"


@pytest.fixture()
def standin() -> Iterator[StandIn]:
    server = StandIn()
    server.create_superuser(ADMIN, PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def api(standin: StandIn) -> GlitchTipClient:
    session = GlitchTipClient.login_session(standin.url, ADMIN, PASSWORD)
    return GlitchTipClient(standin.url, session.create_api_token("tests")["token"])


@pytest.fixture()
def project(api: GlitchTipClient) -> dict:
    api.create_organization("Acme")
    api.create_team("acme", "backend")
    return api.create_project("acme", "backend", "web-app", "node")


def _post_store(url: str, project_id: str, key: str, payload: dict) -> dict:
    req = urllib.request.Request(
        f"{url}/api/{project_id}/store/?sentry_key={key}", data=json.dumps(payload).encode(), method="POST"
    )
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def test_link_header_quirk_is_parsed() -> None:
    header = (
        "{'<http://127.0.0.1:8000/api/0/x/?limit=2>; rel=\"previous\"; results=\"false\", "
        "<http://127.0.0.1:8000/api/0/x/?cursor=bz0y&limit=2>; rel=\"next\"; results=\"true\"; cursor=\"bz0y\"'}"
    )
    links = parse_link_header(header)
    assert links["next"].cursor == "bz0y" and links["next"].results
    assert not links["previous"].results
    assert parse_link_header('<http://h/x/?cursor=abc>; rel="next"; results="true"')["next"].cursor == "abc"


def test_session_login_creates_a_token_and_token_cannot_create_tokens(standin: StandIn) -> None:
    session = GlitchTipClient.login_session(standin.url, ADMIN, PASSWORD)
    token = session.create_api_token("ci")
    assert len(token["token"]) == 64 and "org:admin" in token["scopes"]
    api = GlitchTipClient(standin.url, token["token"])
    assert api.me()["email"] == ADMIN
    with pytest.raises(GlitchTipAuthError) as caught:
        api.create_api_token("nope")
    assert caught.value.status == 401
    assert [t["label"] for t in session.api_tokens()] == ["ci"]
    session.delete_api_token(token["id"])
    with pytest.raises(GlitchTipAuthError):
        api.me()


def test_wrong_password_is_an_auth_error_without_the_password(standin: StandIn) -> None:
    with pytest.raises(GlitchTipAuthError) as caught:
        GlitchTipClient.login_session(standin.url, ADMIN, "wrong-pass-123")
    assert caught.value.status == 400
    assert "not correct" in str(caught.value)
    assert "wrong-pass-123" not in str(caught.value)


def test_error_message_never_contains_the_token(standin: StandIn) -> None:
    secret = "f" * 64
    api = GlitchTipClient(standin.url, secret)
    with pytest.raises(GlitchTipAuthError) as caught:
        api.organizations()
    assert secret not in str(caught.value) and secret not in repr(api)
    assert str(caught.value) == "GET /api/0/organizations/ answered 401: Unauthorized."


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(GlitchTipError) as caught:
        GlitchTipClient("http://127.0.0.1:9", "t", timeout=2).organizations()
    assert caught.value.status is None and "could not reach" in str(caught.value)


def test_org_team_project_key_crud(api: GlitchTipClient, project: dict) -> None:
    assert project["slug"] == "web-app" and project["id"] == "1"
    assert [o["slug"] for o in api.organizations()] == ["acme"]
    assert [t["slug"] for t in api.teams("acme")] == ["backend"]
    keys = api.keys("acme", "web-app")
    assert len(keys) == 1 and keys[0]["dsn"]["public"].endswith("/1")
    second = api.create_key("acme", "web-app", "second")
    assert api.key("acme", "web-app", second["id"])["name"] == "second"
    api.delete_key("acme", "web-app", second["id"])
    assert len(api.keys("acme", "web-app")) == 1
    updated = api.update_project("acme", "web-app", name="Web App", platform="javascript-node")
    assert updated["name"] == "Web App" and updated["slug"] == "web-app"
    assert updated["organization"]["slug"] == "acme"
    api.delete_project("acme", "web-app")
    with pytest.raises(GlitchTipNotFound):
        api.project("acme", "web-app")
    assert api.keys("acme", "web-app") == []  # unknown project in a list endpoint: 200 []
    api.delete_team("acme", "backend")
    api.delete_organization("acme")
    assert api.organizations() == []


def test_alerts_and_monitors(api: GlitchTipClient, project: dict) -> None:
    alert = api.create_alert(
        "acme", "web-app",
        {"name": "burst", "timespanMinutes": 1, "quantity": 5, "uptime": False,
         "alertRecipients": [{"recipientType": "email", "url": ""}]},
    )
    assert alert["id"] == 1 and alert["alertRecipients"][0]["id"] == 1
    changed = api.update_alert(
        "acme", "web-app", alert["id"],
        {"name": "burst", "timespanMinutes": 5, "quantity": 5,
         "alertRecipients": [{"recipientType": "email", "url": ""}, {"recipientType": "webhook", "url": "http://127.0.0.1:9/x"}]},
    )
    assert changed["timespanMinutes"] == 5 and [r["id"] for r in changed["alertRecipients"]] == [1, 2]
    api.delete_alert("acme", "web-app", alert["id"])
    assert api.alerts("acme", "web-app") == []

    heartbeat = api.create_monitor(
        "acme",
        {"monitorType": "Heartbeat", "name": "backup", "url": "", "expectedStatus": None,
         "expectedBody": "", "interval": 300, "timeout": None, "project": project["id"]},
    )
    assert heartbeat["heartbeatEndpoint"].endswith(f"/heartbeat_check/{heartbeat['endpointID']}/")
    assert api.ping_heartbeat("acme", heartbeat["endpointID"])["is_up"] is True
    assert api.monitor("acme", heartbeat["id"])["isUp"] is True
    assert len(api.monitor_checks("acme", heartbeat["id"])) == 1
    with pytest.raises(GlitchTipError) as caught:
        api.create_monitor("acme", {"monitorType": "GET", "name": "x"})
    assert caught.value.status == 422 and "expectedBody" in str(caught.value)
    api.delete_monitor("acme", heartbeat["id"])
    assert api.monitors("acme") == []


def test_pagination_follows_cursors_past_the_x_hits_cap(standin: StandIn, api: GlitchTipClient, project: dict) -> None:
    key = api.keys("acme", "web-app")[0]["public"]
    for i in range(1003):
        _post_store(standin.url, project["id"], key, {"message": f"marker-{i} bulk", "level": "error"})
    answer = api.request("GET", "/api/0/projects/acme/web-app/issues/", params={"query": "bulk", "limit": 5})
    assert answer.headers["X-Hits"] == "1000"
    assert answer.headers["Link"].startswith("{'<")
    assert api.count_issues("acme", "web-app", "bulk") == 1003


def test_search_issues_and_event_by_id(standin: StandIn, api: GlitchTipClient, project: dict) -> None:
    key = api.keys("acme", "web-app")[0]["public"]
    sent = _post_store(
        standin.url, project["id"], key,
        {"event_id": "a" * 32, "platform": "python", "level": "error",
         "exception": {"values": [{"type": "RuntimeError", "value": "payment failed run 1a2b3c",
                                   "stacktrace": {"frames": [{"filename": "pay.py", "function": "charge", "module": "pay", "lineno": 7, "in_app": True}]}}]},
         "tags": {"tenant": "acme"}, "user": {"id": "42"}, "extra": {"order": 1234}},
    )
    assert sent["event_id"] == "a" * 32
    issues = api.search_issues("acme", "web-app", "1a2b3c")
    assert [i["title"] for i in issues] == ["RuntimeError: payment failed run 1a2b3c"]
    assert api.search_issues("acme", "web-app", "1a2b3") == []  # whole words only
    event = api.event("acme", "web-app", "a" * 32)
    frames = event["entries"][0]["data"]["values"][0]["stacktrace"]["frames"]
    assert frames[0]["function"] == "charge" and frames[0]["lineNo"] == 7
    assert {"key": "tenant", "value": "acme"} in event["tags"] and event["context"] == {"order": 1234}
    assert api.latest_event(issues[0]["id"])["eventID"] == "a" * 32
    with pytest.raises(GlitchTipNotFound):
        api.wait_for_event("acme", "web-app", "b" * 32, timeout=0.3, interval=0.1)

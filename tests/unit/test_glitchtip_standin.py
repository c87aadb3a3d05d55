"""The GlitchTip stand-in answers like the recorded GlitchTip (quirks included) and takes real SDK traffic."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sentry_sdk

from components.glitchtip.client import GlitchTipClient
from tests.standins.glitchtip.server import StandIn

ADMIN, PASSWORD = "admin@example.com", "s3cret-admin-pw"
STANDIN_DIR = Path(__file__).resolve().parents[1] / "standins" / "glitchtip"


@pytest.fixture()
def standin() -> Iterator[StandIn]:
    server = StandIn(bad_key_block_seconds=0.5)
    server.create_superuser(ADMIN, PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def api(standin: StandIn) -> GlitchTipClient:
    token = GlitchTipClient.login_session(standin.url, ADMIN, PASSWORD).create_api_token("t")["token"]
    client = GlitchTipClient(standin.url, token)
    client.create_organization("Acme")
    client.create_team("acme", "backend")
    client.create_project("acme", "backend", "web-app", "node")
    return client


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_health_and_settings(standin: StandIn) -> None:
    assert call(standin.url + "/_health/")[2] == b"ok"
    assert json.loads(call(standin.url + "/api/0/internal/health")[2]) == {"healthy": {}, "problems": []}
    settings = json.loads(call(standin.url + "/api/settings/")[2])
    assert settings["version"] == "6.2.6-standin"
    assert settings["enableUserRegistration"] is False and settings["enableOrganizationCreation"] is False


def test_registration_is_open_with_zero_users() -> None:
    with StandIn(enable_user_registration=False) as server:
        assert json.loads(call(server.url + "/api/settings/")[2])["enableUserRegistration"] is True


def test_session_flow_needs_csrf_and_get_api_root_logs_out(standin: StandIn) -> None:
    status, headers, _ = call(standin.url + "/_allauth/browser/v1/config")
    csrf = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    body = json.dumps({"email": ADMIN, "password": PASSWORD}).encode()
    no_csrf = call(standin.url + "/_allauth/browser/v1/auth/login", "POST", body, {"Cookie": f"csrftoken={csrf}"})
    assert no_csrf[0] == 403
    client = GlitchTipClient.login_session(standin.url, ADMIN, PASSWORD)
    assert client.me()["isSuperuser"] is True
    client.request("GET", "/api/0/")  # recorded quirk: a session GET of /api/0/ may log out
    with pytest.raises(Exception):
        client.me()


def test_wrong_password_answers_recorded_400(standin: StandIn) -> None:
    _, headers, _ = call(standin.url + "/_allauth/browser/v1/config")
    csrf = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    status, _, raw = call(
        standin.url + "/_allauth/browser/v1/auth/login", "POST",
        json.dumps({"email": ADMIN, "password": "wrong"}).encode(),
        {"Cookie": f"csrftoken={csrf}", "X-CSRFToken": csrf, "Content-Type": "application/json"},
    )
    assert status == 400 and json.loads(raw)["errors"][0]["code"] == "email_password_mismatch"


def test_list_quirks(api: GlitchTipClient, standin: StandIn) -> None:
    answer = api.request("GET", "/api/0/organizations/")
    assert answer.headers["Link"] == (
        "{'<" + standin.url + "/api/0/organizations/>; rel=\"previous\"; results=\"false\", <"
        + standin.url + "/api/0/organizations/>; rel=\"next\"; results=\"false\"'}"
    )
    unknown = api.request("GET", "/api/0/projects/acme/does-not-exist/issues/")
    assert unknown.status == 200 and unknown.body == [] and unknown.headers["X-Hits"] == "0"
    assert api.request("GET", "/api/0/projects/acme/web-app/issues/").headers["X-Max-Hits"] == "1000"
    project = api.project("acme", "web-app")
    assert project["id"] == "1" and isinstance(project["organization"]["id"], str)


def test_put_on_a_key_changes_nothing(api: GlitchTipClient) -> None:
    key = api.keys("acme", "web-app")[0]
    answer = api.request("PUT", f"/api/0/projects/acme/web-app/keys/{key['id']}/", body={"name": "renamed", "rateLimit": {"count": 1, "window": 60}})
    assert answer.status == 200 and answer.body == key


def test_alert_recipients_keep_ids_as_recorded(api: GlitchTipClient) -> None:
    first = api.create_alert("acme", "web-app", {"name": "a", "timespanMinutes": 1, "quantity": 5, "uptime": False,
        "alertRecipients": [{"recipientType": "email", "url": ""}, {"recipientType": "webhook", "url": "http://127.0.0.1:9009/a"}]})
    second = api.create_alert("acme", "web-app", {"name": "b", "timespanMinutes": 1, "quantity": 1, "uptime": True,
        "alertRecipients": [{"recipientType": "webhook", "url": "http://127.0.0.1:9009/b"}]})
    assert second["id"] == 2 and second["alertRecipients"][0]["id"] == 3
    moved = api.update_alert("acme", "web-app", first["id"], {"name": "a", "timespanMinutes": 1, "quantity": 5,
        "alertRecipients": [{"recipientType": "email", "url": ""}, {"recipientType": "webhook", "url": "http://127.0.0.1:47011/a"}]})
    assert [r["id"] for r in moved["alertRecipients"]] == [1, 4] and moved["uptime"] is False


def _dsn(api: GlitchTipClient) -> str:
    return api.keys("acme", "web-app")[0]["dsn"]["public"]


def test_sentry_python_sdk_events_arrive_with_details(api: GlitchTipClient) -> None:
    sentry_sdk.init(dsn=_dsn(api), default_integrations=False, transport_queue_size=1000)
    try:
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("tenant", "acme-7f3e")
            scope.set_user({"id": "user-42", "email": "jane@example.com"})
            scope.set_extra("order", 1234)
            sentry_sdk.add_breadcrumb(category="checkout", message="cart loaded")
            try:
                raise RuntimeError("payment failed run 7f3e")
            except RuntimeError:
                event_id = sentry_sdk.capture_exception()
        sentry_sdk.flush(timeout=5)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # back to a disabled client
    assert event_id
    event = api.wait_for_event("acme", "web-app", event_id, timeout=5)
    assert event["title"] == "RuntimeError: payment failed run 7f3e"
    kinds = [e["type"] for e in event["entries"]]
    assert kinds == ["exception", "breadcrumbs"]
    assert {"key": "tenant", "value": "acme-7f3e"} in event["tags"]
    assert event["user"]["email"] == "jane@example.com" and event["context"]["order"] == 1234
    assert event["entries"][0]["data"]["values"][0]["stacktrace"]["frames"][-1]["function"] == "test_sentry_python_sdk_events_arrive_with_details"


def test_chunked_envelope_with_key_in_query_like_sentry_node(api: GlitchTipClient, standin: StandIn) -> None:
    key = api.keys("acme", "web-app")[0]["public"].replace("-", "")
    envelope = b'{"event_id":"' + b"c" * 32 + b'"}\n{"type":"session"}\n{"sid":"x"}\n{"type":"event"}\n{"message":"node chunked probe","level":"error"}\n'
    host, port = standin.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("POST", f"/api/1/envelope/?sentry_version=7&sentry_key={key}", body=iter([envelope[:30], envelope[30:]]), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"id": "c" * 32}
    assert api.event("acme", "web-app", "c" * 32)["message"] == "node chunked probe"


def test_unknown_item_type_drops_the_rest_of_the_envelope(api: GlitchTipClient, standin: StandIn) -> None:
    key = api.keys("acme", "web-app")[0]["public"].replace("-", "")
    envelope = b'{}\n{"type":"mystery"}\n{}\n{"type":"event"}\n{"event_id":"' + b"d" * 32 + b'","message":"lost"}\n'
    status, _, _ = call(f"{standin.url}/api/1/envelope/?sentry_key={key}", "POST", gzip.compress(envelope), {"Content-Encoding": "gzip"})
    assert status == 200
    assert api.search_issues("acme", "web-app", "lost") == []


def test_wrong_key_is_403_and_blocks_the_project_for_a_while(api: GlitchTipClient, standin: StandIn) -> None:
    good = api.keys("acme", "web-app")[0]["public"].replace("-", "")
    body = json.dumps({"message": "x"}).encode()
    assert call(f"{standin.url}/api/1/store/?sentry_key={'0' * 32}", "POST", body)[0] == 403
    assert call(f"{standin.url}/api/1/store/?sentry_key={good}", "POST", body)[0] == 403
    assert call(f"{standin.url}/api/1/store/", "POST", body)[0] == 403  # no key at all
    import time

    time.sleep(0.6)
    assert call(f"{standin.url}/api/1/store/", "POST", body, {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={good}"})[0] == 200


def test_fault_hooks(api: GlitchTipClient, standin: StandIn) -> None:
    key = api.keys("acme", "web-app")[0]["public"]
    store = f"{standin.url}/api/1/store/?sentry_key={key}"
    call(standin.url + "/_standin/drop-next-event", "POST", b'{"count": 1}')
    assert call(store, "POST", json.dumps({"message": "dropped one"}).encode())[0] == 200
    call(standin.url + "/_standin/throttle", "POST", b'{"count": 1, "retryAfter": 7}')
    status, headers, _ = call(store, "POST", json.dumps({"message": "throttled"}).encode())
    assert status == 429 and headers["Retry-After"] == "7"
    call(standin.url + "/_standin/hang", "POST", b'{"seconds": 0.3, "count": 1}')
    import time

    start = time.monotonic()
    assert call(store, "POST", json.dumps({"message": "slow one"}).encode())[0] == 200
    assert time.monotonic() - start >= 0.3
    state = json.loads(call(standin.url + "/_standin/state")[2])
    assert state["eventsDropped"] == 1 and state["counts"]["issue_events_issueevent"] == 1
    assert api.search_issues("acme", "web-app", "dropped") == []


def test_entry_points_import_as_glitchtip_standin(tmp_path: Path) -> None:
    """The container runs the package as `glitchtip_standin` from /code: relative imports only."""
    (tmp_path / "glitchtip_standin").symlink_to(STANDIN_DIR)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(tmp_path)
    env["DJANGO_SUPERUSER_EMAIL"] = ADMIN
    run = subprocess.run([sys.executable, "-m", "glitchtip_standin.migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-m", "glitchtip_standin.manage", "createsuperuser", "--noinput"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "DATABASE_URL is not set" in run.stderr


def test_ingested_log_keeps_each_bodys_digest_and_answer(api: GlitchTipClient, standin: StandIn) -> None:
    import hashlib

    key = api.keys("acme", "web-app")[0]["public"].replace("-", "")
    envelope = b'{}\n{"type":"event"}\n{"message":"digest me"}\n'
    assert call(f"{standin.url}/api/1/envelope/?sentry_key={key}", "POST", gzip.compress(envelope), {"Content-Encoding": "gzip"})[0] == 200
    assert call(f"{standin.url}/api/999/envelope/?sentry_key={key}", "POST", envelope)[0] == 403
    log = json.loads(call(standin.url + "/_standin/ingested")[2])["ingested"]
    assert [(e["path"], e["status"], e["sha256"], e["bytes"]) for e in log] == [
        ("/api/1/envelope/", 200, hashlib.sha256(envelope).hexdigest(), len(envelope)),  # decoded, as the Sentry stand-in logs it
        ("/api/999/envelope/", 403, hashlib.sha256(envelope).hexdigest(), len(envelope)),
    ]

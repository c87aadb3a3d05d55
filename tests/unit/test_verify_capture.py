"""scripts/verify_capture.py against the in-process GlitchTip stand-in (loopback only)."""

from __future__ import annotations

import copy
import json

import pytest

from scripts import verify_capture as vc
from tests.unit.operator_fixtures import GlitchTip, glitchtip, tool_env  # noqa: F401

ENV = "verify-capture"


def run(glitchtip: GlitchTip, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    rc = vc.main(["--api-url", glitchtip.url, "--timeout", "3", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def rows(out: str) -> dict[str, list[str]]:
    """The table's rows by check name."""
    return {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in {c.name for c in vc.CHECKS}}


def test_every_check_arrives_complete_and_the_stand_in_holds_each_pattern(glitchtip: GlitchTip, capsys) -> None:
    rc, out, err = run(glitchtip, capsys)
    assert rc == 0, out + err
    table = rows(out)
    assert list(table) == ["basic", "context", "breadcrumbs", "database", "repository", "whatsapp"]
    assert all(row[1] == "ok" for row in table.values()), out
    assert table["context"][4] == "ok" and table["basic"][4] == "-"  # USER checked only where a user was set
    assert "6/6 checks arrived complete." in out
    # What GlitchTip stored is what the app's patterns send: tags, extras, user, breadcrumbs.
    stored = {e["exception"]["values"][-1]["value"].rsplit(":", 1)[-1].rstrip("]"): e for e in glitchtip.stored_events()}
    assert stored["whatsapp"]["tags"]["companyId"] == "962302" and stored["whatsapp"]["tags"]["component"] == "whatsapp"
    assert stored["database"]["extra"] == {"host": "localhost", "port": 5432}
    assert stored["repository"]["extra"]["filters"] == {"phone": "1234567890"}
    assert stored["context"]["user"] == {"id": "test-123", "email": "test@example.com"}
    assert [b["message"] for b in stored["breadcrumbs"]["breadcrumbs"]["values"]] == ["Test breadcrumb before error"]
    assert "breadcrumbs" not in stored["basic"] or not stored["basic"]["breadcrumbs"]["values"]  # no leak between checks
    # sentry-sdk was told to send no sessions (GlitchTip drops them) and the operator is warned
    assert "autoSessionTracking: false" in err and "profiles are dropped" in err


def test_a_dropped_event_fails_the_run_naming_its_check(glitchtip: GlitchTip, capsys) -> None:
    glitchtip.hook("drop-next-event", {"count": 1})  # the first event to arrive: "basic"
    rc, out, _ = run(glitchtip, capsys)
    assert rc == 1
    table = rows(out)
    assert table["basic"][1] == "FAIL" and all(table[n][1] == "ok" for n in table if n != "basic")
    assert "FAILED 1/6 checks:" in out
    assert "basic: not visible in GlitchTip after 3 s" in out
    assert glitchtip.state()["eventsDropped"] == 1


def test_events_refused_by_glitchtip_are_reported_as_lost_in_the_sdk(glitchtip: GlitchTip, capsys) -> None:
    project_id = glitchtip.dsn.rsplit("/", 1)[1]
    wrong = glitchtip.url.replace("http://", f"http://{'0' * 32}@") + f"/{project_id}"
    rc, out, _ = run(glitchtip, capsys, "--dsn", wrong)
    assert rc == 1
    for check in vc.CHECKS:
        assert f"{check.name}: lost in the SDK before GlitchTip accepted it: status_403" in out
    assert "0" * 32 not in out  # a DSN key is never printed


def test_json_output_and_explicit_org_project(glitchtip: GlitchTip, capsys) -> None:
    rc, out, _ = run(glitchtip, capsys, "--org", "acme", "--project", "web-app", "--json")
    report = json.loads(out)
    assert rc == 0 and report["passed"] is True
    assert [c["name"] for c in report["checks"]] == [c.name for c in vc.CHECKS]
    assert report["checks"][3]["fields"] == {"message": "ok", "tags": "ok", "user": "-", "extras": "ok", "breadcrumbs": "-", "stack": "ok"}
    assert report["dsnHost"] == glitchtip.url.removeprefix("http://")
    assert glitchtip.token not in out


def test_without_a_token_the_superusers_session_serves_and_without_either_it_cannot_run(glitchtip: GlitchTip, capsys, monkeypatch) -> None:
    from tests.unit.operator_fixtures import ADMIN, PASSWORD

    monkeypatch.delenv("GLITCHTIP_TOKEN")
    rc = vc.run_main("verify_capture", vc.main, ["--api-url", glitchtip.url])
    assert rc == 2 and "no API credentials" in capsys.readouterr().err
    monkeypatch.setenv("GLITCHTIP_ADMIN_EMAIL", ADMIN)  # what the stack exports as adminEmail / adminPassword
    monkeypatch.setenv("GLITCHTIP_ADMIN_PASSWORD", PASSWORD)
    rc, out, err = run(glitchtip, capsys)
    assert rc == 0 and "6/6 checks arrived complete." in out
    assert PASSWORD not in out + err


# ------------------------------------------------------------------------------ evaluation, offline
RUN = "0123456789"
RELEASE = f"verify_capture@{RUN}"


def _sent(name: str) -> vc.Sent:
    check = next(c for c in vc.CHECKS if c.name == name)
    return vc.Sent(check, vc.marked(check, RUN), "a" * 32)


def _detail(name: str) -> dict:
    """An event detail shaped like GlitchTip's recorded answer (catalogue-5.2dev.md), for check `name`."""
    sent = _sent(name)
    check = sent.check
    tags = [{"key": k, "value": v} for k, v in check.tags.items()]
    tags += [{"key": "release", "value": RELEASE}, {"key": "environment", "value": ENV}]
    entries = [{"type": "exception", "data": {"values": [{"type": "Error", "value": sent.message, "stacktrace": {
        "frames": [{"function": "send_checks", "inApp": True}, {"function": "_throw", "inApp": True}]}}]}}]
    if check.breadcrumbs:
        entries.append({"type": "breadcrumbs", "data": {"values": [dict(b, timestamp="2026-12-04T20:11:43Z") for b in check.breadcrumbs]}})
    return {"eventID": "a" * 32, "groupID": "7", "title": f"Error: {sent.message}", "message": f"Error: {sent.message}",
            "tags": tags, "entries": entries, "context": dict(check.capture_extras) or None,
            "user": dict(check.scope_user) or None}


@pytest.mark.parametrize("name", [c.name for c in vc.CHECKS])
def test_a_complete_detail_passes(name: str) -> None:
    result = vc.evaluate(_sent(name), _detail(name), environment=ENV, release=RELEASE)
    assert result.ok, result.problems


def test_each_missing_part_is_named() -> None:
    event = _detail("whatsapp")
    event["tags"] = [t for t in event["tags"] if t["key"] != "companyId"]
    result = vc.evaluate(_sent("whatsapp"), event, environment=ENV, release=RELEASE)
    assert result.problems == ["tags missing: companyId=962302"] and result.cells["tags"] == "MISSING"

    event = _detail("repository")
    event["context"] = {"filters": {"phone": "0000"}}
    event["entries"][0]["data"]["values"][0]["stacktrace"]["frames"] = []
    result = vc.evaluate(_sent("repository"), event, environment=ENV, release=RELEASE)
    assert result.problems == ['extras missing: filters={"phone": "1234567890"}', "stack missing: no frame of _throw()"]

    event = _detail("context")
    event["user"] = None
    event["title"] = event["message"] = "Error: Test error 2: With context [other-run:context]"
    event["entries"][0]["data"]["values"][0]["value"] = "Test error 2: With context [other-run:context]"
    result = vc.evaluate(_sent("context"), event, environment=ENV, release=RELEASE)
    assert [p.split(":")[0] for p in result.problems] == ["message missing", "user missing"]


def test_user_shown_only_as_tags_counts_and_raw_json_completes_the_detail() -> None:
    event = _detail("context")
    event["user"] = None
    event["tags"] += [{"key": "user.id", "value": "test-123"}, {"key": "user.email", "value": "test@example.com"}]
    assert vc.evaluate(_sent("context"), event, environment=ENV, release=RELEASE).ok

    event = _detail("breadcrumbs")
    event["entries"] = event["entries"][:1]  # a detail without the breadcrumbs entry
    bare = vc.evaluate(_sent("breadcrumbs"), event, environment=ENV, release=RELEASE)
    assert bare.problems == ["breadcrumbs missing: Test breadcrumb before error"]
    raw = {"breadcrumbs": {"values": [{"category": "test", "message": "Test breadcrumb before error", "level": "info"}]},
           "tags": [["release", RELEASE]], "exception": {"values": []}}
    assert vc.evaluate(_sent("breadcrumbs"), copy.deepcopy(event), environment=ENV, release=RELEASE, raw=raw).ok


def test_not_arrived_reasons() -> None:
    sent = _sent("basic")
    assert vc.evaluate(sent, None, environment=ENV, release=RELEASE, timeout=60).problems == ["not visible in GlitchTip after 60 s"]
    sent.lost = "queue_overflow"
    assert "lost in the SDK before GlitchTip accepted it: queue_overflow" in vc.evaluate(sent, None, environment=ENV, release=RELEASE).problems[0]
    sent.event_id = None
    assert "capture returned no event id" in vc.evaluate(sent, None, environment=ENV, release=RELEASE).problems[0]

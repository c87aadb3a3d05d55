"""scripts/load_test.py against the in-process GlitchTip stand-in (loopback only): counts match what it stored."""

from __future__ import annotations

import io
import json
import time

import pytest

from scripts import load_test as lt
from tests.unit.operator_fixtures import GlitchTip, glitchtip, tool_env  # noqa: F401


def run(glitchtip: GlitchTip, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    rc = lt.main(["--api-url", glitchtip.url, "--json", "--no-progress", "--quiet", "1.5", "--poll-interval", "0.3", *extra])
    return rc, json.loads(capsys.readouterr().out)


def project_events(glitchtip: GlitchTip) -> int:
    return glitchtip.state()["counts"]["issue_events_issueevent"]


def test_counts_match_what_the_stand_in_stored(glitchtip: GlitchTip, capsys) -> None:
    rc, report = run(glitchtip, capsys, "-n", "200", "--rate", "1000", "--concurrency", "4", "--keep-issues")
    state = glitchtip.state()
    assert rc == 0
    assert report["sent"] == report["captured"] == 200
    assert report["visible"] == state["counts"]["issue_events_issueevent"] == state["eventsReceived"] == 200
    assert report["sdkLost"] == {} and report["missingOnServer"] == 0 and report["captureRate"] == 1.0
    assert 0 < report["latencySeconds"]["p50"] <= report["latencySeconds"]["p95"] <= report["latencySeconds"]["max"] < 30
    assert report["stoppedBy"] == "all events arrived" and report["issuesDeleted"] == 0
    # one issue per event, each titled with the run's marker and its index
    titles = sorted(i["title"] for i in glitchtip.api.iter_issues("acme", "web-app", report["run"]))
    assert len(titles) == 200 and titles[0] == f"LoadTestError00000: {report['run']} #0"


def test_events_lost_on_the_server_are_counted_apart_from_the_sdk(glitchtip: GlitchTip, capsys) -> None:
    glitchtip.hook("drop-next-event", {"count": 5})
    rc, report = run(glitchtip, capsys, "-n", "60", "--rate", "2000", "--concurrency", "1", "--keep-issues")
    assert rc == 1  # --min-capture-rate defaults to 1.0: every event
    assert glitchtip.state()["eventsDropped"] == 5
    assert report["visible"] == project_events(glitchtip) == 55
    assert report["sdkLost"] == {} and report["missingOnServer"] == 5 and report["captureRate"] == round(55 / 60, 4)
    assert report["notVisible"] == [0, 1, 2, 3, 4]  # one client sends in order: the first five were dropped
    assert report["stoppedBy"] == "no new arrival for --quiet (1.5 s)"

    rc, report = run(glitchtip, capsys, "-n", "40", "--rate", "2000", "--min-capture-rate", "0.9")
    assert rc == 0 and report["captureRate"] == 1.0


def test_a_full_transport_queue_is_counted_as_lost_in_the_sdk(glitchtip: GlitchTip, capsys) -> None:
    # glitchtip-facts.md: sentry-python's queue drops silently; here it is made tiny on purpose
    rc, report = run(glitchtip, capsys, "-n", "200", "--rate", "20000", "--concurrency", "1", "--queue-size", "5")
    received = glitchtip.state()["eventsReceived"]
    assert rc == 1
    assert report["captured"] == 200  # the SDK handed out an id for every event ...
    assert report["sdkLost"]["queue_overflow"] == 200 - received > 0  # ... and lost these before sending
    assert report["visible"] == received and report["missingOnServer"] == 0


def test_the_run_deletes_its_issues_one_by_one(glitchtip: GlitchTip, capsys) -> None:
    glitchtip.api.create_key("acme", "web-app")  # something else in the project that must stay
    other = glitchtip.standin.store.find("issue_events_issue")
    rc, report = run(glitchtip, capsys, "-n", "30", "--rate", "1000")
    assert rc == 0 and report["issuesDeleted"] == 30 and report["issuesLeft"] == 0
    assert glitchtip.standin.store.find("issue_events_issue") == other == []
    assert glitchtip.state()["eventsReceived"] == 30


def test_arrivals_are_counted_past_x_hits(glitchtip: GlitchTip) -> None:
    """X-Hits stops at 1000: 1200 of the run's issues must all be counted (paging, not the header)."""
    marker = "loadtestpaging01"
    stamp = "2026-12-04T20:00:00.000Z"
    for index in range(1200):
        glitchtip.standin.store.insert("issue_events_issue", {
            "project_id": 1, "hash": f"h{index}", "title": f"LoadTestError{index:05d}: {marker} #{index}", "type": "error",
            "culprit": "", "metadata": {}, "level": "error", "status": "unresolved", "count": 1,
            "first_seen": stamp, "last_seen": stamp, "short_num": index + 1, "tags": {}})
    answer = glitchtip.api.request("GET", "/api/0/projects/acme/web-app/issues/", params={"query": marker})
    assert answer.headers["X-Hits"] == "1000"
    arrivals = lt.Arrivals(glitchtip.api, "acme", "web-app", marker)
    assert arrivals.poll(complete=True) == 1200 and sorted(arrivals.seen) == list(range(1200))
    assert arrivals.poll() == 0  # a later pass finds nothing new (and stops early)


def test_percentile_and_progress() -> None:
    assert lt.percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert (lt.percentile(values, 50), lt.percentile(values, 95), lt.percentile(values, 100)) == (50.0, 95.0, 100.0)
    assert lt.percentile([2.0, 1.0], 50) == 1.0
    stream = io.StringIO()
    bar = lt.Progress(200, stream=stream, width=10)
    assert bar.line(100, 50).startswith("[##++------] 100/200 sent, 50 visible")
    bar.update(100, 50)
    bar.update(150, 60)  # within 5 s on a non-terminal: not written
    bar.close(200, 200)
    assert stream.getvalue().splitlines()[0].startswith("[##++------] 100/200") and stream.getvalue().splitlines()[-1].startswith("[##########] 200/200")
    quiet = io.StringIO()
    lt.Progress(10, stream=quiet, enabled=False).close(10, 10)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("argv, message", [
    (["-n", "0"], "--count must be between 1 and 20000"),
    (["-n", "20001"], "--count must be between 1 and 20000"),
    (["-n", "1000", "--rate", "1", "--max-seconds", "100"], "take 1000 s, more than --max-seconds 100"),
    (["--concurrency", "0"], "--concurrency between 1 and 64"),
])
def test_bounds_are_refused_up_front(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        lt.parse_args(argv)
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_sending_stops_at_max_seconds(glitchtip: GlitchTip) -> None:
    # parse_args refuses a schedule longer than --max-seconds; a slow SDK or server can still overrun it
    started = time.monotonic()
    report = lt.run_load(glitchtip.api, "acme", "web-app", glitchtip.dsn, count=100, rate=20, concurrency=2, queue_size=None,
                         settle=2, quiet=2, max_seconds=2, poll_interval=0.5, keep_issues=True, min_capture_rate=1.0,
                         environment="load-test", progress=lt.Progress(100, enabled=False))
    assert time.monotonic() - started < 12
    assert not report.passed and 20 <= report.sent < 100 and report.stoppedBy.startswith("--max-seconds (2 s) reached")
    assert report.visible == report.sent == glitchtip.state()["eventsReceived"]

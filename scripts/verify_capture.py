#!/usr/bin/env python3
"""Send the migration plan's SDK compatibility checks with sentry-sdk and confirm, through
GlitchTip's API, that each one arrived whole: message, tags, user, extras, breadcrumbs
and stack trace.

The checks are the runbook's (phase 1.3 and 1.4): a basic error; a scope with a user
and a tag; breadcrumbs; and the app's three real patterns (postgres.js database errors,
BaseRepository errors, WhatsApp errors). Each message carries this run's id and the
check's name, so a check can only be satisfied by this run's event.

    .venv/bin/python scripts/verify_capture.py                 # inside the project: reads the stack
    GLITCHTIP_TOKEN=... scripts/verify_capture.py --api-url https://glitchtip.example.com --org acme --project app

Exit status: 0 every check arrived complete; 1 a check is missing or incomplete (named);
2 the tool could not run (settings, unreachable server).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `components` and `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sentry_sdk  # noqa: E402

from components.glitchtip.client import GlitchTipClient, GlitchTipError, GlitchTipNotFound  # noqa: E402
from scripts._common import (  # noqa: E402
    EXIT_OK,
    EXIT_PROBLEM,
    add_connection_args,
    bound_client,
    dsn_host,
    format_table,
    glitchtip_project,
    load_target,
    run_main,
    sdk_client,
)

TOOL = "verify_capture"
FIELDS = ("message", "tags", "user", "extras", "breadcrumbs", "stack")

# What GlitchTip accepts but throws away (glitchtip-facts.md, "Ingest and SDKs").
IGNORED_FEATURES = (
    "sessions (release health) are dropped: turn them off in the app's Sentry.init, with autoSessionTracking: false "
    "(@sentry/node < 8.44) or integrations: [Sentry.httpIntegration({ trackIncomingRequestsAsSessions: false })] (8.44+)",
    "attachments (scope.addAttachment, hint attachments) are dropped",
    "profiles are dropped: profilesSampleRate and the profiling integration only cost the app CPU",
    "replays and Sentry Crons check-ins are dropped: use a GlitchTip heartbeat monitor for cron jobs",
)


class Error(Exception):
    """Named like JavaScript's Error, so issue titles read like the app's ("Error: ...")."""


@dataclass(frozen=True)
class Check:
    """One compatibility check: how the app reports an error, and so what must arrive."""

    name: str
    message: str
    scope_user: dict[str, str] = field(default_factory=dict)
    """scope.setUser(...) inside withScope."""
    scope_tags: dict[str, str] = field(default_factory=dict)
    """scope.setTag(...) inside withScope."""
    capture_tags: dict[str, str] = field(default_factory=dict)
    """captureException(error, {tags})."""
    capture_extras: dict[str, Any] = field(default_factory=dict)
    """captureException(error, {extra})."""
    breadcrumbs: tuple[dict[str, str], ...] = ()
    """addBreadcrumb(...) before the capture."""

    @property
    def tags(self) -> dict[str, str]:
        return {**self.scope_tags, **self.capture_tags}


CHECKS: tuple[Check, ...] = (
    Check("basic", "Test error 1: Basic"),
    Check("context", "Test error 2: With context",
          scope_user={"id": "test-123", "email": "test@example.com"}, scope_tags={"test-type": "context"}),
    Check("breadcrumbs", "Test error 3: With breadcrumbs",
          breadcrumbs=({"category": "test", "message": "Test breadcrumb before error", "level": "info"},)),
    Check("database", "ECONNREFUSED - Database connection failed",  # src/database/postgres.js
          capture_tags={"component": "database", "operation": "connect"},
          capture_extras={"host": "localhost", "port": 5432}),
    Check("repository", "Unique constraint violation",  # src/repositories/BaseRepository.js
          capture_tags={"repository": "ClientRepository", "operation": "upsert"},
          capture_extras={"filters": {"phone": "1234567890"}}),
    Check("whatsapp", "Session not found",  # src/integrations/whatsapp/auth-state-timeweb.js
          capture_tags={"component": "whatsapp", "companyId": "962302"}),
)


def marked(check: Check, run_id: str) -> str:
    """The check's message with this run's marker: only this run's event can match it."""
    return f"{check.message} [{run_id}:{check.name}]"


def _throw(message: str) -> None:
    raise Error(message)  # a real raise, so the event carries a real stack trace


# ------------------------------------------------------------------------------ sending
@dataclass
class Sent:
    check: Check
    message: str
    event_id: str | None
    lost: str | None = None
    """Why the SDK lost it (queue_overflow, status_403, ...), if it did."""


def send_checks(dsn: str, run_id: str, *, environment: str, checks: tuple[Check, ...] = CHECKS,
                flush_seconds: float = 30.0) -> list[Sent]:
    """Capture every check with one sentry-sdk client, flush, and say what the SDK lost."""
    client = sdk_client(dsn, environment=environment, release=f"{TOOL}@{run_id}")
    transport = client.transport  # close() forgets it
    sent: list[Sent] = []
    try:
        for check in checks:
            message = marked(check, run_id)
            with bound_client(client):
                for crumb in check.breadcrumbs:
                    sentry_sdk.add_breadcrumb(**crumb)
                with sentry_sdk.new_scope() as scope:
                    if check.scope_user:
                        scope.set_user(dict(check.scope_user))
                    for key, value in check.scope_tags.items():
                        scope.set_tag(key, value)
                    try:
                        _throw(message)
                    except Error as exc:
                        kwargs: dict[str, Any] = {}
                        if check.capture_tags:
                            kwargs["tags"] = dict(check.capture_tags)
                        if check.capture_extras:
                            kwargs["extras"] = json.loads(json.dumps(check.capture_extras))
                        event_id = sentry_sdk.capture_exception(exc, **kwargs)
            sent.append(Sent(check, message, event_id))
        client.flush(timeout=flush_seconds)
    finally:
        client.close(timeout=0)
    for item in sent:
        if item.event_id and item.event_id in transport.lost:
            item.lost = transport.lost[item.event_id]
        elif item.event_id and item.event_id not in transport.attempted:
            item.lost = "still queued when the flush timed out"
    return sent


# ------------------------------------------------------------------------------ what arrived
def raw_event(client: GlitchTipClient, org: str, issue_id: str, event_id: str) -> dict[str, Any]:
    """The event as ingested (organizations/{org}/issues/{issue}/events/{id}/json/); the client has no wrapper."""
    path = f"/api/0/organizations/{org}/issues/{issue_id}/events/{event_id}/json/"
    return client.request("GET", path).body or {}


def wait_for_events(client: GlitchTipClient, org: str, project: str, sent: list[Sent], *,
                    timeout: float, interval: float = 0.5) -> dict[str, dict[str, Any]]:
    """Poll until every sent (and not lost) event is visible, or the timeout passes. name -> event detail."""
    pending = {s.check.name: s.event_id for s in sent if s.event_id and not s.lost}
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for name, event_id in list(pending.items()):
            try:
                found[name] = client.event(org, project, event_id)
                del pending[name]
            except GlitchTipNotFound:
                pass
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return found


def _pairs(tags: Any) -> set[tuple[str, str]]:
    """Tags as (key, value) pairs, from the API's [{key, value}], raw [[k, v]] or {k: v}."""
    if isinstance(tags, dict):
        return {(str(k), str(v)) for k, v in tags.items()}
    pairs = set()
    for tag in tags or []:
        if isinstance(tag, dict):
            pairs.add((str(tag.get("key")), str(tag.get("value"))))
        elif isinstance(tag, (list, tuple)) and len(tag) == 2:
            pairs.add((str(tag[0]), str(tag[1])))
    return pairs


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(_same(actual.get(k), v) for k, v in expected.items())
    return actual == expected or str(actual) == str(expected)


@dataclass
class Observed:
    """What GlitchTip shows of one event, from its detail answer or its raw JSON."""

    texts: list[str]
    tags: set[tuple[str, str]]
    user: dict[str, Any]
    extras: dict[str, Any]
    breadcrumbs: list[dict[str, Any]]
    frames: list[dict[str, Any]]

    @classmethod
    def from_detail(cls, event: dict[str, Any]) -> "Observed":
        entries = {e.get("type"): e.get("data") or {} for e in event.get("entries") or []}
        values = (entries.get("exception") or {}).get("values") or []
        return cls(
            texts=[str(event.get("title") or ""), str(event.get("message") or "")] + [str(v.get("value") or "") for v in values],
            tags=_pairs(event.get("tags")),
            user=event.get("user") or {},
            extras=event.get("context") or {},
            breadcrumbs=list((entries.get("breadcrumbs") or {}).get("values") or []),
            frames=[f for v in values for f in ((v.get("stacktrace") or {}).get("frames") or [])],
        )

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> "Observed":
        values = (raw.get("exception") or {}).get("values") or []
        crumbs = raw.get("breadcrumbs")
        return cls(
            texts=[str(v.get("value") or "") for v in values],
            tags=_pairs(raw.get("tags")),
            user=raw.get("user") or {},
            extras=raw.get("extra") or {},
            breadcrumbs=list((crumbs.get("values") if isinstance(crumbs, dict) else crumbs) or []),
            frames=[f for v in values for f in ((v.get("stacktrace") or {}).get("frames") or [])],
        )


def missing_parts(check: Check, message: str, seen: Observed, environment: str, release: str) -> dict[str, list[str]]:
    """field -> what is missing from `seen` (empty lists for fields that are complete)."""
    missing: dict[str, list[str]] = {f: [] for f in FIELDS}
    if not any(message in text for text in seen.texts):
        missing["message"].append(repr(message))
    expected_tags = {**check.tags, "environment": environment, "release": release}
    for key, value in expected_tags.items():
        if (key, value) not in seen.tags:
            missing["tags"].append(f"{key}={value}")
    for key, value in check.scope_user.items():
        if not _same(seen.user.get(key), value) and (f"user.{key}", value) not in seen.tags:
            missing["user"].append(f"{key}={value}")
    for key, value in check.capture_extras.items():
        if not _same(seen.extras.get(key), value):
            missing["extras"].append(f"{key}={json.dumps(value)}")
    for crumb in check.breadcrumbs:
        if not any(_same(b, crumb) for b in seen.breadcrumbs):
            missing["breadcrumbs"].append(crumb["message"])
    if not any(f.get("function") == _throw.__name__ for f in seen.frames):
        missing["stack"].append(f"no frame of {_throw.__name__}()")
    return missing


@dataclass
class Result:
    name: str
    event_id: str | None
    arrived: bool
    cells: dict[str, str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def evaluate(sent: Sent, event: dict[str, Any] | None, *, environment: str, release: str,
             raw: dict[str, Any] | None = None, timeout: float = 0.0) -> Result:
    """Compare one check with what arrived (the detail answer, completed by the raw JSON if given)."""
    check = sent.check
    expected = {
        "message": True, "tags": True, "stack": True,
        "user": bool(check.scope_user), "extras": bool(check.capture_extras), "breadcrumbs": bool(check.breadcrumbs),
    }
    if event is None:
        if sent.event_id is None:
            reason = "the SDK did not send it (capture returned no event id)"
        elif sent.lost:
            reason = f"lost in the SDK before GlitchTip accepted it: {sent.lost}"
        else:
            reason = f"not visible in GlitchTip after {timeout:.0f} s"
        cells = {f: ("?" if expected[f] else "-") for f in FIELDS}
        return Result(check.name, sent.event_id, False, cells, [reason])
    missing = missing_parts(check, sent.message, Observed.from_detail(event), environment, release)
    if raw is not None and any(missing.values()):
        from_raw = missing_parts(check, sent.message, Observed.from_raw(raw), environment, release)
        missing = {f: [m for m in missing[f] if m in from_raw[f]] for f in FIELDS}
    cells = {f: ("MISSING" if missing[f] else "ok") if expected[f] else "-" for f in FIELDS}
    problems = [f"{f} missing: {', '.join(missing[f])}" for f in FIELDS if missing[f]]
    return Result(check.name, sent.event_id, True, cells, problems)


# ------------------------------------------------------------------------------ report
def render(results: list[Result]) -> str:
    rows = [
        [r.name, "ok" if r.ok else "FAIL", *(r.cells[f] for f in FIELDS), r.event_id or "-"]
        for r in results
    ]
    table = format_table(["CHECK", "RESULT", *(f.upper() for f in FIELDS), "EVENT"], rows)
    failed = [r for r in results if not r.ok]
    if not failed:
        return f"{table}\n\n{len(results)}/{len(results)} checks arrived complete."
    lines = [table, "", f"FAILED {len(failed)}/{len(results)} checks:"]
    lines += [f"  {r.name}: {'; '.join(r.problems)}" for r in failed]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="verify_capture.py",
        description="Send the migration plan's SDK compatibility checks with sentry-sdk and confirm each "
        "arrived in GlitchTip with its message, tags, user, extras, breadcrumbs and stack trace.",
        epilog="Exit status: 0 all checks arrived complete, 1 a check is missing or incomplete, 2 cannot run.",
    )
    add_connection_args(parser, dsn=True)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the events to become visible (default 60; GlitchTip batches ingest every ~2 s)")
    parser.add_argument("--environment", default="verify-capture", help="environment the events are sent with (default verify-capture)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = load_target(args)
    run_id = uuid.uuid4().hex[:10]
    release = f"{TOOL}@{run_id}"
    with glitchtip_project(target) as access:
        client, org, project, dsn = access.api.client, access.org, access.project, access.dsn
        if not args.json:
            print(f"{TOOL}: run {run_id}, sending {len(CHECKS)} checks with sentry-sdk {sentry_sdk.VERSION} "
                  f"to {dsn_host(dsn)} ({org}/{project})", file=sys.stderr)
        sent = send_checks(dsn, run_id, environment=args.environment)
        events = wait_for_events(client, org, project, sent, timeout=args.timeout)
        results = []
        for item in sent:
            event = events.get(item.check.name)
            result = evaluate(item, event, environment=args.environment, release=release, timeout=args.timeout)
            if event is not None and not result.ok:  # the detail may leave out what the raw JSON keeps
                try:
                    raw = raw_event(client, org, str(event.get("groupID")), item.event_id or "")
                    result = evaluate(item, event, environment=args.environment, release=release, raw=raw)
                except GlitchTipError:
                    pass
            results.append(result)
    passed = all(r.ok for r in results)
    if args.json:
        print(json.dumps({
            "run": run_id, "dsnHost": dsn_host(dsn), "org": org, "project": project, "passed": passed,
            "checks": [{"name": r.name, "eventId": r.event_id, "arrived": r.arrived, "ok": r.ok,
                        "fields": r.cells, "problems": r.problems} for r in results],
            "ignoredByGlitchTip": list(IGNORED_FEATURES),
        }, indent=2))
    else:
        print(render(results))
        for note in IGNORED_FEATURES:
            print(f"warning: GlitchTip ignores part of the SDK: {note}", file=sys.stderr)
    return EXIT_OK if passed else EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(run_main(TOOL, main))

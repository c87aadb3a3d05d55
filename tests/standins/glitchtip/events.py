"""Ingest side of the stand-in: envelopes and store payloads in, issues and events out.

Shapes follow the recorded answers in shared/glitchtip-api/catalogue-5.2dev.md:
event detail (`entries` with exception / message / breadcrumbs, `tags` as key/value
pairs, camelCase frames), issue list items, and the raw event JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

# Item types GlitchTip keeps (stored as events) and those it knowingly drops.
# Anything else stops processing of the rest of the envelope (glitchtip-facts.md).
KEPT_ITEM_TYPES = frozenset({"event", "transaction", "user_report", "feedback", "log"})
DROPPED_ITEM_TYPES = frozenset(
    {
        "session",
        "sessions",
        "attachment",
        "client_report",
        "replay_event",
        "replay_recording",
        "replay_video",
        "profile",
        "profile_chunk",
        "check_in",
        "span",
        "statsd",
        "metric_buckets",
        "otel_log",
    }
)

_SENTRY_KEY = re.compile(r"sentry_key=([0-9a-fA-F-]+)")


class IngestError(ValueError):
    """The payload cannot be parsed (answered 400)."""


@dataclass
class Envelope:
    """A parsed envelope: its header and the items kept in order."""

    header: Json
    items: list[tuple[str, Json]] = field(default_factory=list)
    stopped_at: str | None = None  # first unknown item type, if any


def key_from_request(query: dict[str, list[str]], headers: dict[str, str]) -> str | None:
    """The public key: `sentry_key` query parameter first, then X-Sentry-Auth."""
    if query.get("sentry_key"):
        return query["sentry_key"][0]
    for name in ("x-sentry-auth", "authorization"):
        found = _SENTRY_KEY.search(headers.get(name, ""))
        if found:
            return found.group(1)
    return None


def parse_envelope(body: bytes) -> Envelope:
    """Split an envelope into header and (type, payload) items."""
    pos = 0

    def read_line() -> bytes:
        nonlocal pos
        end = body.find(b"\n", pos)
        if end < 0:
            end = len(body)
        line = body[pos:end]
        pos = end + 1
        return line

    try:
        header = json.loads(read_line() or b"{}")
    except ValueError as exc:
        raise IngestError("envelope header is not JSON") from exc
    envelope = Envelope(header=header)
    while pos < len(body):
        line = read_line()
        if not line.strip():
            continue
        try:
            item_header = json.loads(line)
        except ValueError as exc:
            raise IngestError("envelope item header is not JSON") from exc
        length = item_header.get("length")
        if length is not None:
            payload = body[pos : pos + int(length)]
            pos += int(length) + 1
        else:
            payload = read_line()
        item_type = str(item_header.get("type", ""))
        if item_type in DROPPED_ITEM_TYPES:
            continue
        if item_type not in KEPT_ITEM_TYPES:
            envelope.stopped_at = item_type
            break
        try:
            envelope.items.append((item_type, json.loads(payload or b"{}")))
        except ValueError as exc:
            raise IngestError(f"envelope item {item_type!r} is not JSON") from exc
    return envelope


def _frames(exc: Json) -> list[Json]:
    return list(((exc.get("stacktrace") or {}).get("frames")) or [])


def _message_text(event: Json) -> str:
    message = event.get("message")
    if isinstance(message, dict):
        return str(message.get("formatted") or message.get("message") or "")
    if message:
        return str(message)
    logentry = event.get("logentry") or {}
    return str(logentry.get("formatted") or logentry.get("message") or "")


def summarize(event: Json) -> Json:
    """Title, type, culprit, metadata and grouping hash of a raw SDK event."""
    values = list(((event.get("exception") or {}).get("values")) or [])
    if values:
        exc = values[-1]
        frames = _frames(exc)
        frame = next((f for f in reversed(frames) if f.get("in_app")), frames[-1] if frames else {})
        exc_type, exc_value = str(exc.get("type", "Error")), str(exc.get("value", ""))
        title = f"{exc_type}: {exc_value}" if exc_value else exc_type
        where = frame.get("module") or frame.get("filename") or ""
        culprit = f"{where} in {frame.get('function')}" if frame.get("function") else str(where)
        metadata = {
            "type": exc_type,
            "value": exc_value,
            "filename": frame.get("filename"),
            "function": frame.get("function"),
        }
        kind, group_key = "error", f"error|{title}|{culprit}"
    else:
        title = _message_text(event) or "<unlabeled event>"
        culprit, metadata, kind = str(event.get("culprit") or ""), {"title": title}, "default"
        group_key = f"default|{title}"
    if event.get("fingerprint"):
        group_key = "fp|" + "|".join(map(str, event["fingerprint"]))
    return {
        "title": title,
        "type": kind,
        "culprit": culprit,
        "metadata": metadata,
        "level": str(event.get("level") or "error"),
        "hash": hashlib.md5(group_key.encode()).hexdigest(),
    }


def _camel_frame(frame: Json) -> Json:
    renames = {"in_app": "inApp", "abs_path": "absPath", "lineno": "lineNo", "colno": "colNo", "context_line": "contextLine"}
    out = {renames.get(k, k): v for k, v in frame.items() if k not in ("pre_context", "post_context")}
    out.setdefault("context", [])
    return out


def tags_of(event: Json) -> list[Json]:
    tags = event.get("tags") or {}
    pairs = list(tags.items()) if isinstance(tags, dict) else [tuple(t) for t in tags]
    for name in ("release", "environment", "server_name"):
        if event.get(name):
            pairs.append((name, event[name]))
    user = event.get("user") or {}
    for name in ("id", "email", "username"):
        if user.get(name):
            pairs.append((f"user.{name}", user[name]))
    return [{"key": str(k), "value": str(v)} for k, v in pairs]


def event_to_api(row: Json) -> Json:
    """The event detail answer (projects/{org}/{proj}/events/{id}/, issues/{id}/events/latest/)."""
    raw: Json = row["raw"]
    entries: list[Json] = []
    values = list(((raw.get("exception") or {}).get("values")) or [])
    if values:
        api_values = []
        for exc in values:
            item = {k: v for k, v in exc.items() if k != "stacktrace"}
            if exc.get("stacktrace") is not None:
                item["stacktrace"] = {"frames": [_camel_frame(f) for f in _frames(exc)]}
            api_values.append(item)
        entries.append({"type": "exception", "data": {"values": api_values, "hasSystemFrames": True}})
    elif _message_text(raw):
        entries.append({"type": "message", "data": {"formatted": _message_text(raw)}})
    crumbs = raw.get("breadcrumbs")
    crumb_values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    if crumb_values:
        entries.append({"type": "breadcrumbs", "data": {"values": crumb_values}})
    event_id = row["event_id"]
    return {
        "platform": raw.get("platform"),
        "errors": None,
        "id": event_id,
        "eventID": event_id,
        "projectID": row["project_id"],
        "groupID": str(row["issue_id"]),
        "dateCreated": row["date_created"],
        "dateReceived": row["date_received"],
        "dist": raw.get("dist"),
        "culprit": row["culprit"],
        "packages": None,
        "type": row["type"],
        "message": row["title"],
        "metadata": row["metadata"],
        "tags": tags_of(raw),
        "entries": entries,
        "contexts": raw.get("contexts"),
        "context": raw.get("extra"),
        "user": raw.get("user"),
        "sdk": raw.get("sdk"),
        "title": row["title"],
        "userReport": None,
    }

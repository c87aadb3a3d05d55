#!/usr/bin/env python3
"""Send N error events with sentry-sdk at a set rate and concurrency, and count what
GlitchTip really shows: capture rate, events the SDK lost (reported apart), and
send-to-visible latency (p50 / p95 / max).

Why it is built this way (glitchtip-facts.md):
- sentry-python's transport queue holds 100 events and drops the rest SILENTLY; each
  client here gets a queue as large as its share of the run, and a transport that
  records every event it loses and why (queue overflow, backoff, 4xx/5xx, network).
- GlitchTip's X-Hits header stops at 1000: arrivals are counted by paging through
  the issues carrying this run's unique marker (one issue per event), never from X-Hits.
- GlitchTip makes events visible in batches (~2 s): latency is measured by polling,
  so it is an upper bound within one poll interval.

Bounded: at most --count events (<= 20000), sending stops at --max-seconds, waiting
for arrivals stops --settle seconds after the last send (or once all arrived, or
after --quiet seconds without a new arrival). The run's issues are deleted afterwards
one by one (never with the bulk endpoint) unless --keep-issues.

Exit status: 0 capture rate >= --min-capture-rate; 1 below it; 2 cannot run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

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
    human_duration,
    load_target,
    run_main,
    sdk_client,
)

TOOL = "load_test"
MAX_COUNT = 20_000


# ------------------------------------------------------------------------------ progress
class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, a line every 5 s otherwise."""

    def __init__(self, total: int, *, stream: TextIO = sys.stderr, enabled: bool = True, width: int = 30) -> None:
        self.total, self.stream, self.enabled, self.width = total, stream, enabled, width
        self.tty = enabled and stream.isatty()
        self._last = 0.0
        self._started = time.monotonic()

    def line(self, sent: int, visible: int) -> str:
        done = min(self.width, self.width * visible // max(self.total, 1))
        ahead = min(self.width - done, self.width * max(sent - visible, 0) // max(self.total, 1))
        bar = "#" * done + "+" * ahead + "-" * (self.width - done - ahead)
        elapsed = time.monotonic() - self._started
        return f"[{bar}] {sent}/{self.total} sent, {visible} visible, {elapsed:.0f} s"

    def update(self, sent: int, visible: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        self.stream.write(("\r" + self.line(sent, visible)) if self.tty else self.line(sent, visible) + "\n")
        self.stream.flush()

    def close(self, sent: int, visible: int) -> None:
        if self.enabled:
            self.update(sent, visible, force=True)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()


# ------------------------------------------------------------------------------ sending
def _raise(index: int, marker: str) -> None:
    # One exception type per event: GlitchTip groups by type, so every event is its own issue.
    error_type = type(f"LoadTestError{index:05d}", (Exception,), {})
    raise error_type(f"{marker} #{index}")


class Sender:
    """`concurrency` threads, each with its own sentry-sdk client (like PM2's processes), sharing
    one schedule: event i is captured at start + i / rate."""

    def __init__(self, dsn: str, marker: str, *, count: int, rate: float, concurrency: int,
                 queue_size: int, deadline: float, environment: str) -> None:
        self.dsn, self.marker, self.count, self.rate = dsn, marker, count, rate
        self.deadline = deadline
        self.clients = [
            sdk_client(dsn, queue_size=queue_size, environment=environment, release=f"{TOOL}@{marker}")
            for _ in range(concurrency)
        ]
        self.transports = [c.transport for c in self.clients]
        self.send_times: dict[int, float] = {}
        self.event_ids: dict[int, str] = {}
        self.no_id = 0
        self._next = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self.finished = 0.0

    @property
    def sent(self) -> int:
        return len(self.send_times)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.count:
                return None
            self._next += 1
            return self._next - 1

    def _run(self, client: sentry_sdk.Client) -> None:
        with bound_client(client):
            while (index := self._take()) is not None:
                due = self.started + index / self.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                if time.monotonic() >= self.deadline:
                    return
                try:
                    _raise(index, self.marker)
                except Exception as exc:  # noqa: BLE001 - the generated LoadTestError
                    sent_at = time.time()
                    event_id = sentry_sdk.capture_exception(exc)
                with self._lock:
                    self.send_times[index] = sent_at
                    if event_id:
                        self.event_ids[index] = event_id
                    else:
                        self.no_id += 1

    def start(self) -> None:
        self.started = time.monotonic()
        for number, client in enumerate(self.clients):
            thread = threading.Thread(target=self._run, args=(client,), name=f"load-sender-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def sending(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def finish(self, flush_seconds: float) -> None:
        """Wait for the senders, flush every client within flush_seconds in all, close them."""
        for thread in self._threads:
            thread.join()
        self.finished = time.monotonic()
        end = time.monotonic() + max(flush_seconds, 0.0)
        for client in self.clients:
            client.flush(timeout=max(end - time.monotonic(), 0.01))
            client.close(timeout=0)

    def lost(self) -> dict[str, int]:
        """Events the SDK lost, by reason; events still queued at close count as flush_timeout."""
        reasons: dict[str, int] = {}
        lost_ids: set[str] = set()
        attempted: set[str] = set()
        for transport in self.transports:
            for reason, n in transport.lost_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
            lost_ids |= set(transport.lost)
            attempted |= transport.attempted
        unflushed = sum(1 for e in self.event_ids.values() if e not in attempted and e not in lost_ids)
        if unflushed:
            reasons["flush_timeout"] = unflushed
        if self.no_id:
            reasons["not_captured"] = self.no_id
        return reasons


# ------------------------------------------------------------------------------ counting
class Arrivals:
    """Which of this run's events GlitchTip shows, found through its issues (one per event)."""

    def __init__(self, client: GlitchTipClient, org: str, project: str, marker: str) -> None:
        self.client, self.org, self.project, self.marker = client, org, project, marker
        self.pattern = re.compile(rf"{re.escape(marker)} #(\d+)")
        self.seen: dict[int, float] = {}
        self.issue_ids: dict[int, str] = {}
        self.polls = 0
        self.errors = 0
        self.last_error = ""

    def try_poll(self) -> int:
        """poll(), but a failed API call while the run goes on only skips this pass."""
        try:
            return self.poll()
        except GlitchTipError as exc:
            self.errors += 1
            self.last_error = str(exc)
            return 0

    def poll(self, *, complete: bool = False) -> int:
        """One pass over the run's issues, newest first; returns how many were new.

        Without `complete`, the pass stops after a page's worth of already-known issues
        in a row (newer arrivals come first); the final count uses a complete pass.
        """
        self.polls += 1
        new, known_in_a_row = 0, 0
        for issue in self.client.iter_issues(self.org, self.project, self.marker):
            now = time.time()
            match = self.pattern.search(str(issue.get("title", "")))
            if not match:
                continue
            index = int(match.group(1))
            if index in self.seen:
                known_in_a_row += 1
                if not complete and known_in_a_row >= 100:
                    break
                continue
            known_in_a_row = 0
            self.seen[index] = now
            self.issue_ids[index] = str(issue["id"])
            new += 1
        return new

    def delete(self, deadline: float) -> tuple[int, int]:
        """Delete the run's issues one by one until the deadline: (deleted, left)."""
        deleted = 0
        for index, issue_id in list(self.issue_ids.items()):
            if time.monotonic() >= deadline:
                break
            try:
                self.client.request("DELETE", f"/api/0/issues/{issue_id}/")  # the client has no delete_issue
            except GlitchTipNotFound:
                pass
            del self.issue_ids[index]
            deleted += 1
        return deleted, len(self.issue_ids)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (pct in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


# ------------------------------------------------------------------------------ the run
@dataclass
class Report:
    run: str
    dsnHost: str
    org: str
    project: str
    requested: int
    rate: float
    concurrency: int
    sent: int
    captured: int
    sdkLost: dict[str, int]
    visible: int
    missingOnServer: int
    captureRate: float
    latencySeconds: dict[str, float | None]
    pollIntervalSeconds: float
    sendSeconds: float
    achievedRate: float
    issuesDeleted: int = 0
    issuesLeft: int = 0
    stoppedBy: str = ""
    passed: bool = True
    notVisible: list[int] = field(default_factory=list)

    @property
    def sdk_lost_total(self) -> int:
        return sum(self.sdkLost.values())


def run_load(client: GlitchTipClient, org: str, project: str, dsn: str, *, count: int, rate: float,
             concurrency: int, queue_size: int | None, settle: float, quiet: float, max_seconds: float,
             poll_interval: float, keep_issues: bool, min_capture_rate: float, environment: str,
             progress: Progress) -> Report:
    marker = "loadtest" + uuid.uuid4().hex[:10]
    start = time.monotonic()
    hard_stop = start + max_seconds
    share = -(-count // concurrency)
    sender = Sender(dsn, marker, count=count, rate=rate, concurrency=concurrency,
                    queue_size=queue_size or max(share, 100), deadline=hard_stop, environment=environment)
    arrivals = Arrivals(client, org, project, marker)
    sender.start()
    stopped_by = ""
    next_poll = time.monotonic()
    while sender.sending:
        if time.monotonic() >= next_poll:
            arrivals.try_poll()
            next_poll = time.monotonic() + poll_interval
        progress.update(sender.sent, len(arrivals.seen))
        time.sleep(0.05)
    sender.finish(flush_seconds=max(min(settle, hard_stop - time.monotonic()), 2.0))  # a short flush even at the limit
    if sender.sent < count:
        stopped_by = f"--max-seconds ({max_seconds:g} s) reached while sending"
    expected = len(sender.event_ids)
    settle_end = min(time.monotonic() + settle, hard_stop)
    last_new = time.monotonic()
    while len(arrivals.seen) < expected:
        if arrivals.try_poll():
            last_new = time.monotonic()
        progress.update(sender.sent, len(arrivals.seen))
        now = time.monotonic()
        if now >= settle_end:
            stopped_by = stopped_by or f"--settle ({settle:g} s) passed"
            break
        if now - last_new >= quiet:
            stopped_by = stopped_by or f"no new arrival for --quiet ({quiet:g} s)"
            break
        time.sleep(min(poll_interval, max(settle_end - now, 0.0)))
    arrivals.poll(complete=True)  # the exact count: every page
    progress.close(sender.sent, len(arrivals.seen))

    latencies = [arrivals.seen[i] - sender.send_times[i] for i in arrivals.seen if i in sender.send_times]
    lost = sender.lost()
    visible = len(arrivals.seen)
    deleted = left = 0
    if not keep_issues:
        deleted, left = arrivals.delete(deadline=max(hard_stop, time.monotonic() + 120))
    capture_rate = visible / count if count else 0.0
    send_seconds = (sender.finished - sender.started) if sender.finished else 0.0
    return Report(
        run=marker,
        dsnHost=dsn_host(dsn),
        org=org,
        project=project,
        requested=count,
        rate=rate,
        concurrency=concurrency,
        sent=sender.sent,
        captured=len(sender.event_ids),
        sdkLost=lost,
        visible=visible,
        missingOnServer=max(len(sender.event_ids) - sum(v for k, v in lost.items() if k != "not_captured") - visible, 0),
        captureRate=round(capture_rate, 4),
        latencySeconds={k: (round(v, 3) if v is not None else None) for k, v in (
            ("p50", percentile(latencies, 50)), ("p95", percentile(latencies, 95)), ("max", max(latencies, default=None)))},
        pollIntervalSeconds=poll_interval,
        sendSeconds=round(send_seconds, 2),
        achievedRate=round(sender.sent / send_seconds, 1) if send_seconds > 0 else 0.0,
        issuesDeleted=deleted,
        issuesLeft=left,
        stoppedBy=stopped_by or "all events arrived",
        passed=capture_rate >= min_capture_rate,
        notVisible=sorted(set(range(count)) - set(arrivals.seen))[:50],
    )


def render(report: Report) -> str:
    lost = report.sdk_lost_total
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.sdkLost.items())) or "none"
    lat = report.latencySeconds
    rows = [
        ["requested", report.requested, f"at {report.rate:g}/s over {report.concurrency} SDK client{'s' if report.concurrency != 1 else ''}"],
        ["sent", report.sent, f"in {human_duration(report.sendSeconds)} ({report.achievedRate:g}/s achieved)"],
        ["captured by the SDK", report.captured, "capture_exception returned an event id"],
        ["lost in the SDK", lost, reasons],
        ["lost after the SDK", report.missingOnServer, "sent, but not visible in GlitchTip"],
        ["visible in GlitchTip", report.visible, f"counted over {report.org}/{report.project}'s issues, not X-Hits"],
        ["capture rate", f"{report.captureRate * 100:.1f} %", "visible / requested"],
        ["latency p50", human_duration(lat["p50"]), f"send -> visible, upper bound within one poll ({report.pollIntervalSeconds:g} s)"],
        ["latency p95", human_duration(lat["p95"]), ""],
        ["latency max", human_duration(lat["max"]), ""],
        ["stopped", "", report.stoppedBy],
        ["issues deleted", report.issuesDeleted, f"{report.issuesLeft} left" if report.issuesLeft else ""],
    ]
    verdict = "PASS" if report.passed else "FAIL"
    missing = ""
    if report.notVisible:
        missing = "\nnot visible (first 50 indexes): " + " ".join(str(i) for i in report.notVisible)
    return f"{format_table(['METRIC', 'VALUE', 'NOTE'], rows)}{missing}\n\n{verdict}: capture rate {report.captureRate * 100:.1f} %"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="load_test.py",
        description="Send N error events with sentry-sdk at a set rate and concurrency; report GlitchTip's capture "
        "rate (counted on the server), events lost inside the SDK, and send-to-visible latency.",
        epilog="Exit status: 0 capture rate >= --min-capture-rate, 1 below it, 2 cannot run.",
    )
    add_connection_args(parser, dsn=True)
    run = parser.add_argument_group("the run")
    run.add_argument("-n", "--count", type=int, default=1000, help=f"events to send (default 1000, at most {MAX_COUNT})")
    run.add_argument("--rate", type=float, default=50.0, help="events per second, all clients together (default 50)")
    run.add_argument("--concurrency", type=int, default=4, help="SDK clients sending in parallel, like app processes (default 4)")
    run.add_argument("--queue-size", type=int, help="transport_queue_size per client (default: its share of --count, at least 100)")
    run.add_argument("--settle", type=float, default=60.0, help="seconds to wait for arrivals after the last send (default 60)")
    run.add_argument("--quiet", type=float, default=15.0, help="stop waiting after this many seconds without a new arrival (default 15)")
    run.add_argument("--poll-interval", type=float, default=1.0, help="seconds between arrival counts (default 1)")
    run.add_argument("--max-seconds", type=float, default=900.0, help="hard limit on sending and waiting (default 900)")
    run.add_argument("--min-capture-rate", type=float, default=1.0, help="fail below this fraction (default 1.0: every event)")
    run.add_argument("--environment", default="load-test", help="environment of the events (default load-test)")
    run.add_argument("--keep-issues", action="store_true", help="keep the run's issues (default: delete them one by one)")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT}")
    if args.rate <= 0 or args.concurrency < 1 or args.concurrency > 64:
        parser.error("--rate must be > 0 and --concurrency between 1 and 64")
    if args.count / args.rate > args.max_seconds:
        parser.error(f"{args.count} events at {args.rate:g}/s take {args.count / args.rate:.0f} s, more than --max-seconds {args.max_seconds:.0f}")
    if not 0 <= args.min_capture_rate <= 1:
        parser.error("--min-capture-rate must be between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    target = load_target(args)
    with glitchtip_project(target) as access:
        if not args.json:
            print(f"{TOOL}: {args.count} events at {args.rate:g}/s over {args.concurrency} SDK client{'s' if args.concurrency != 1 else ''} "
                  f"to {dsn_host(access.dsn)} ({access.org}/{access.project})", file=sys.stderr)
        report = run_load(
            access.api.client, access.org, access.project, access.dsn,
            count=args.count, rate=args.rate, concurrency=args.concurrency, queue_size=args.queue_size,
            settle=args.settle, quiet=args.quiet, max_seconds=args.max_seconds, poll_interval=args.poll_interval,
            keep_issues=args.keep_issues, min_capture_rate=args.min_capture_rate, environment=args.environment,
            progress=Progress(args.count, enabled=not args.no_progress),
        )
    print(json.dumps(asdict(report), indent=2) if args.json else render(report))
    return EXIT_OK if report.passed else EXIT_PROBLEM


if __name__ == "__main__":
    sys.exit(run_main(TOOL, main))

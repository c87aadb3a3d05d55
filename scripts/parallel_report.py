#!/usr/bin/env python3
"""The parallel run (dsnTarget=dual), hour by hour: did GlitchTip get what Sentry got?

Reads the relay's access log (`docker logs` of the compose service `relay`, over SSH with
the pinned host key; or a saved copy with --log-file) and GlitchTip's API, and prints per
hour (UTC): envelopes the relay received, what Sentry SaaS answered (statuses), what
GlitchTip answered to the mirrored copies (statuses), events visible in GlitchTip, and the
delivery ratio (copies GlitchTip accepted / envelopes received). A failed copy is lost, not
retried, and the SDK never knows: this report is how you find out. The ratio is the relay's
view: a copy it gave up on (504) may still have been stored by a slow GlitchTip, which
the "visible" column shows.

    .venv/bin/python scripts/parallel_report.py                  # inside the project: reads the stack
    .venv/bin/python scripts/parallel_report.py --hours 48 --min-ratio 0.99

Exit status: 0 every hour at or above --min-ratio, 1 below it (or nothing received),
2 cannot run. The relay's log lines carry no key (components/relay.py's log_format).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `components` and `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.relay import LOG_PREFIX, PROJECT, SERVICE  # noqa: E402
from scripts._common import (  # noqa: E402
    EXIT_OK,
    EXIT_PROBLEM,
    ToolError,
    add_connection_args,
    authenticate,
    format_table,
    glitchtip_api,
    load_target,
    resolve_project,
    run_main,
    ssh_runner,
)

TOOL = "parallel_report"
LINE = re.compile(
    rf"\b{LOG_PREFIX} (?P<kind>main|mirror) (?P<time>\S+) (?P<method>\S+) (?P<path>\S+) (?P<status>\d{{3}}) (?P<upstream>\S+)"
)
LOGS_COMMAND = (
    f"docker ps -aq --filter label=com.docker.compose.project={PROJECT} --filter label=com.docker.compose.service={SERVICE}"
    " | head -n1 | xargs -r docker logs 2>&1"
)


@dataclass
class Hour:
    received: int = 0
    saas: Counter = field(default_factory=Counter)
    mirror: Counter = field(default_factory=Counter)
    visible: int = 0

    @property
    def copies(self) -> int:
        """Mirrored copies that were meant for GlitchTip (204: not an ingest request, nothing copied)."""
        return sum(n for status, n in self.mirror.items() if status != "204")

    @property
    def delivered(self) -> int:
        return sum(n for status, n in self.mirror.items() if status.startswith("2") and status != "204")

    @property
    def ratio(self) -> float | None:
        return self.delivered / self.copies if self.copies else None


def _hour(stamp: datetime) -> datetime:
    return stamp.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def parse_log(text: str, hours: dict[datetime, Hour], since: datetime) -> None:
    """Count the relay's `relay main|mirror TIME METHOD PATH STATUS UPSTREAM ...` lines into hours."""
    for line in text.splitlines():
        match = LINE.search(line)
        if not match:
            continue
        stamp = datetime.fromisoformat(match["time"])
        if stamp < since:
            continue
        hour = hours.setdefault(_hour(stamp), Hour())
        if match["kind"] == "main":
            hour.received += 1
            # what SaaS answered ("-" when it was not reached: then the status nginx answered)
            upstream = match["upstream"].split(",")[-1].strip()
            hour.saas[upstream if upstream not in ("-", "") else f"relay-{match['status']}"] += 1
        else:
            hour.mirror[match["status"]] += 1


def count_visible(client, org: str, project: str, hours: dict[datetime, Hour], since: datetime) -> None:
    """Events GlitchTip shows for the project, by the hour they were received."""
    for event in client.list_all(f"/api/0/projects/{org}/{project}/events/"):
        raw = event.get("dateReceived") or event.get("dateCreated")
        if not raw:
            continue
        stamp = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        if stamp >= since:
            hours.setdefault(_hour(stamp), Hour()).visible += 1


def _statuses(counter: Counter) -> str:
    return " ".join(f"{status}:{n}" for status, n in sorted(counter.items())) or "-"


def render(hours: dict[datetime, Hour]) -> str:
    rows = []
    for start in sorted(hours):
        h = hours[start]
        rows.append([
            start.strftime("%Y-%m-%d %H:00"),
            h.received,
            _statuses(h.saas),
            _statuses(h.mirror),
            h.visible,
            "-" if h.ratio is None else f"{h.ratio:.1%}",
        ])
    total = Hour()
    for h in hours.values():
        total.received += h.received
        total.saas.update(h.saas)
        total.mirror.update(h.mirror)
        total.visible += h.visible
    rows.append(["total", total.received, _statuses(total.saas), _statuses(total.mirror), total.visible,
                 "-" if total.ratio is None else f"{total.ratio:.1%}"])
    return format_table(["hour (UTC)", "received", "to SaaS", "to GlitchTip", "visible", "delivered"], rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parallel_report.py", description=__doc__.split("\n\n")[0])
    add_connection_args(parser)
    parser.add_argument("--hours", type=int, default=48, help="how far back to report (default 48)")
    parser.add_argument("--min-ratio", type=float, default=0.99,
                        help="exit 1 when any hour's delivery ratio is below this (default 0.99)")
    parser.add_argument("--log-file", help="read the relay's log from this file instead of over SSH")
    parser.add_argument("--no-api", action="store_true", help="do not count visible events in GlitchTip")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = load_target(args)
    since = datetime.now(timezone.utc) - timedelta(hours=args.hours)
    hours: dict[datetime, Hour] = {}
    if args.log_file:
        parse_log(Path(args.log_file).read_text(), hours, since)
    else:
        if not target.ssh:
            raise ToolError("no server to read the relay's log from: pass --ssh-host (or --log-file).")
        with ssh_runner(target.ssh) as ssh:
            result = ssh.run(LOGS_COMMAND, timeout=120)
        if result.rc != 0:
            raise ToolError(f"reading the relay's log failed (exit {result.rc}): {result.stderr.strip()[:200]}")
        parse_log(result.stdout, hours, since)
    if not args.no_api:
        with glitchtip_api(target) as api:
            authenticate(api, target)
            org, project = resolve_project(api.client, target.org, target.project)
            count_visible(api.client, org, project, hours, since)
    print(render(hours))
    low = [start for start, h in hours.items() if h.ratio is not None and h.ratio < args.min_ratio]
    if not any(h.received for h in hours.values()):
        print(f"{TOOL}: the relay received nothing in the last {args.hours} h: is dsnTarget dual and the app sending?", file=sys.stderr)
        return EXIT_PROBLEM
    if low:
        print(f"{TOOL}: delivery to GlitchTip below {args.min_ratio:.1%} in {len(low)} hour(s): "
              + ", ".join(s.strftime("%H:00") for s in sorted(low)), file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_main(TOOL, main))

"""A STAND-IN for GlitchTip's HTTP API, for tests only. It is not GlitchTip.

What it is: a small stdlib HTTP server (psycopg2 optional) that answers the API calls
this project makes the way a real GlitchTip answered them, call by call, as recorded in
shared/glitchtip-api/catalogue-5.2dev.md: status codes, camelCase JSON, ids as strings
where GlitchTip sends strings, the Link header wrapped in a Python set literal, X-Hits
capped at 1000, 200 [] for an unknown project slug in list endpoints, 401 for a Bearer
token on POST /api/0/api-tokens/ (tokens need an allauth browser session), the recorded
400 on a wrong password, PUT on a project key changing nothing, alert recipients keeping
their ids, heartbeat pings without auth, ingest with the key in the query or
X-Sentry-Auth (wrong key -> 403 and the project blocked for 30 s), gzip and chunked
bodies. Fault injection lives apart, under /_standin/ (state, drop-next-event, hang,
throttle, reset-hooks, ingested: the digest of every ingest body).

Run modes:
  in-process  `from tests.standins.glitchtip.server import StandIn` (memory storage);
  in a container (as package `glitchtip_standin`): `python3 -m glitchtip_standin.migrate`,
              `python3 -m glitchtip_standin.manage createsuperuser --noinput`,
              `python3 -m glitchtip_standin.start`; with DATABASE_URL set, rows live in
              PostgreSQL tables named like GlitchTip's (users_user, projects_project, ...).

What it does NOT prove:
  - anything about GlitchTip's own code, performance, memory, migrations or upgrades;
  - the worker: no alert is ever sent, no uptime check is ever run (checks exist only
    from heartbeat pings), no retention cleanup, no 2 s ingest batching (events are
    visible at once), no throttling unless injected;
  - issue grouping and search: grouping is by exception type+value+culprit (or message);
    search matches whole words of the title/culprit, not Postgres full-text search;
  - permissions: every authenticated user sees every organization;
  - 6.x specifics (private-IP checks on monitors and webhooks, new recipient types);
  - answers the catalogue does not record (duplicate slugs, 403/404 bodies on ingest,
    validation messages) are plausible guesses, marked "unrecorded" in app.py.
"""

from .app import App, Settings
from .server import StandIn

__all__ = ["App", "Settings", "StandIn"]

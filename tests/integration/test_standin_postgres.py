"""The GlitchTip stand-in's PostgreSQL storage, against the test server's Postgres stand-in.

A throwaway `postgres` container (the stand-in image, Debian's PostgreSQL) runs on the test
server, published on its 127.0.0.1 only and reached from here through the SSH tunnel; the
stand-in's tables are created in it, used, and the container is removed at the end.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from components.glitchtip.client import GlitchTipClient
from components.glitchtip.tunnel import SshTarget, open_tunnel
from tests.standins.glitchtip.server import StandIn
from tests.standins.glitchtip.store import TABLES, PostgresStore

pytestmark = pytest.mark.integration

CONTAINER, PORT = "gtm-standin-postgres", 15432


@pytest.fixture(scope="module")
def database_url(testhost) -> Iterator[str]:
    password = secrets.token_hex(16)
    testhost.put_file(f"/tmp/{CONTAINER}.env", f"POSTGRES_PASSWORD={password}\n", 0o600)
    testhost.ssh(f"docker rm -f {CONTAINER} >/dev/null 2>&1")
    try:
        testhost.run(f"docker run -d --name {CONTAINER} --env-file /tmp/{CONTAINER}.env -p 127.0.0.1:{PORT}:5432"
                     f" {testhost.images['postgres']} >/dev/null", timeout=300)
        testhost.run(f"i=0; until docker exec {CONTAINER} pg_isready -q -h 127.0.0.1 -U postgres; do i=$((i+1)); "
                     "[ $i -lt 150 ] || exit 1; sleep 0.2; done", timeout=60)
        target = SshTarget(host=testhost.address, host_key=testhost.host_key, private_key=testhost.private_key)
        with open_tunnel(target, PORT) as url:
            yield f"postgresql://postgres:{password}@127.0.0.1:{urlsplit(url).port}/postgres"
    finally:
        testhost.ssh(f"docker rm -f {CONTAINER} >/dev/null 2>&1; rm -f /tmp/{CONTAINER}.env", timeout=120)


@pytest.fixture()
def store(database_url: str) -> PostgresStore:
    store = PostgresStore(database_url)
    with store._conn.cursor() as cur:  # noqa: SLF001 - test cleanup of a throwaway database
        for table in TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    assert store.missing_tables() == list(TABLES)
    assert store.migrate() == list(TABLES) and store.migrate() == []
    return store


def test_rows_persist_across_restarts_in_glitchtip_named_tables(store: PostgresStore, database_url: str) -> None:
    with StandIn(store=store) as first:
        first.create_superuser("admin@example.com", "pw-123456")
        token = GlitchTipClient.login_session(first.url, "admin@example.com", "pw-123456").create_api_token("t")["token"]
        api = GlitchTipClient(first.url, token)
        api.create_organization("Acme")
        api.create_team("acme", "backend")
        api.create_project("acme", "backend", "web-app", "node")
        key = api.keys("acme", "web-app")[0]["public"]
        req = urllib.request.Request(f"{first.url}/api/1/store/?sentry_key={key}", data=json.dumps({"message": "persisted probe"}).encode(), method="POST")
        urllib.request.urlopen(req).read()
    with StandIn(store=PostgresStore(database_url)) as second:
        api = GlitchTipClient(second.url, token)
        assert [i["title"] for i in api.search_issues("acme", "web-app", "persisted")] == ["persisted probe"]
    counts = store.counts()
    assert counts["users_user"] == 1 and counts["organizations_ext_organization"] == 1
    assert counts["projects_project"] == 1 and counts["issue_events_issue"] == 1 and counts["issue_events_issueevent"] == 1

"""The stand-in's PostgreSQL storage. Runs only with STANDIN_TEST_DATABASE_URL set (a throwaway
database: its stand-in tables are dropped) and psycopg2 importable; skipped otherwise."""

from __future__ import annotations

import os

import pytest

from components.glitchtip.client import GlitchTipClient
from tests.standins.glitchtip.server import StandIn
from tests.standins.glitchtip.store import TABLES, PostgresStore

URL = os.environ.get("STANDIN_TEST_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="STANDIN_TEST_DATABASE_URL is not set")


@pytest.fixture()
def store() -> PostgresStore:
    pytest.importorskip("psycopg2")
    store = PostgresStore(URL)
    with store._conn.cursor() as cur:  # noqa: SLF001 - test cleanup of a throwaway database
        for table in TABLES:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    assert store.missing_tables() == list(TABLES)
    assert store.migrate() == list(TABLES) and store.migrate() == []
    return store


def test_rows_persist_across_restarts_in_glitchtip_named_tables(store: PostgresStore) -> None:
    with StandIn(store=store) as first:
        first.create_superuser("admin@example.com", "pw-123456")
        token = GlitchTipClient.login_session(first.url, "admin@example.com", "pw-123456").create_api_token("t")["token"]
        api = GlitchTipClient(first.url, token)
        api.create_organization("Acme")
        api.create_team("acme", "backend")
        api.create_project("acme", "backend", "web-app", "node")
        key = api.keys("acme", "web-app")[0]["public"]
        import json
        import urllib.request

        req = urllib.request.Request(f"{first.url}/api/1/store/?sentry_key={key}", data=json.dumps({"message": "persisted probe"}).encode(), method="POST")
        urllib.request.urlopen(req).read()
    with StandIn(store=PostgresStore(URL)) as second:
        api = GlitchTipClient(second.url, token)
        assert [i["title"] for i in api.search_issues("acme", "web-app", "persisted")] == ["persisted probe"]
    counts = store.counts()
    assert counts["users_user"] == 1 and counts["organizations_ext_organization"] == 1
    assert counts["projects_project"] == 1 and counts["issue_events_issue"] == 1 and counts["issue_events_issueevent"] == 1

"""Storage for the GlitchTip stand-in: in memory, or PostgreSQL through psycopg2.

Every table is `(id bigserial primary key, data jsonb not null)`. The table names
copy GlitchTip's real ones where a backup manifest counts rows (`users_user`,
`organizations_ext_organization`, `projects_project`, `issue_events_issue`,
`issue_events_issueevent`), so row counts before a backup and after a restore can
be compared exactly as on the real server. Rows are plain dicts; the row id is
kept under the key ``"id"``.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any, Protocol

Row = dict[str, Any]

TABLES: tuple[str, ...] = (
    "users_user",
    "api_tokens_apitoken",
    "organizations_ext_organization",
    "teams_team",
    "projects_project",
    "projects_projectkey",
    "alerts_projectalert",
    "uptime_monitor",
    "uptime_monitorcheck",
    "issue_events_issue",
    "issue_events_issueevent",
)


class StoreError(RuntimeError):
    """The database cannot be used (unreachable, wrong password, tables missing)."""


class Store(Protocol):
    """What the stand-in needs from a storage backend."""

    def insert(self, table: str, data: Row) -> Row: ...
    def update(self, table: str, row: Row) -> None: ...
    def delete(self, table: str, row_id: int) -> bool: ...
    def get(self, table: str, row_id: int) -> Row | None: ...
    def find(self, table: str, **match: Any) -> list[Row]: ...
    def counts(self) -> dict[str, int]: ...


class MemoryStore:
    """Tables as dicts of rows, guarded by one lock. Used by the in-process stand-in."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[int, Row]] = {t: {} for t in TABLES}
        self._next: dict[str, int] = {t: 1 for t in TABLES}
        self._lock = threading.RLock()

    def insert(self, table: str, data: Row) -> Row:
        with self._lock:
            row_id = self._next[table]
            self._next[table] += 1
            row = {**copy.deepcopy(data), "id": row_id}
            self._tables[table][row_id] = row
            return copy.deepcopy(row)

    def update(self, table: str, row: Row) -> None:
        with self._lock:
            self._tables[table][int(row["id"])] = copy.deepcopy(row)

    def delete(self, table: str, row_id: int) -> bool:
        with self._lock:
            return self._tables[table].pop(int(row_id), None) is not None

    def get(self, table: str, row_id: int) -> Row | None:
        with self._lock:
            row = self._tables[table].get(int(row_id))
            return copy.deepcopy(row) if row is not None else None

    def find(self, table: str, **match: Any) -> list[Row]:
        with self._lock:
            rows = [r for _, r in sorted(self._tables[table].items())]
            return [copy.deepcopy(r) for r in rows if all(r.get(k) == v for k, v in match.items())]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {t: len(rows) for t, rows in self._tables.items()}


class PostgresStore:
    """The same tables in PostgreSQL (jsonb rows). One connection, serialised by a lock."""

    def __init__(self, database_url: str, *, connect_timeout: int = 5) -> None:
        try:
            import psycopg2  # type: ignore[import-not-found]
            import psycopg2.extras  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - depends on the image
            raise StoreError("DATABASE_URL is set but psycopg2 is not installed") from exc
        self._json = psycopg2.extras.Json
        try:
            self._conn = psycopg2.connect(database_url, connect_timeout=connect_timeout)
        except psycopg2.OperationalError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot connect to the database: {first_line}") from exc
        self._conn.autocommit = True
        self._lock = threading.RLock()

    def close(self) -> None:
        self._conn.close()

    def migrate(self) -> list[str]:
        """Create the tables that do not exist yet; return the names created."""
        created = []
        with self._lock, self._conn.cursor() as cur:
            for table in TABLES:
                cur.execute("SELECT to_regclass(%s)", (f"public.{table}",))
                if cur.fetchone()[0] is None:
                    cur.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, data jsonb NOT NULL)")
                    created.append(table)
        return created

    def missing_tables(self) -> list[str]:
        with self._lock, self._conn.cursor() as cur:
            missing = []
            for table in TABLES:
                cur.execute("SELECT to_regclass(%s)", (f"public.{table}",))
                if cur.fetchone()[0] is None:
                    missing.append(table)
            return missing

    def insert(self, table: str, data: Row) -> Row:
        body = {k: v for k, v in data.items() if k != "id"}
        with self._lock, self._conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (data) VALUES (%s) RETURNING id", (self._json(body),))
            row_id = cur.fetchone()[0]
        return {**json.loads(json.dumps(body)), "id": row_id}

    def update(self, table: str, row: Row) -> None:
        body = {k: v for k, v in row.items() if k != "id"}
        with self._lock, self._conn.cursor() as cur:
            cur.execute(f"UPDATE {table} SET data = %s WHERE id = %s", (self._json(body), int(row["id"])))

    def delete(self, table: str, row_id: int) -> bool:
        with self._lock, self._conn.cursor() as cur:
            cur.execute(f"DELETE FROM {table} WHERE id = %s", (int(row_id),))
            return cur.rowcount > 0

    def get(self, table: str, row_id: int) -> Row | None:
        with self._lock, self._conn.cursor() as cur:
            cur.execute(f"SELECT id, data FROM {table} WHERE id = %s", (int(row_id),))
            found = cur.fetchone()
        return {**found[1], "id": found[0]} if found else None

    def find(self, table: str, **match: Any) -> list[Row]:
        with self._lock, self._conn.cursor() as cur:
            cur.execute(
                f"SELECT id, data FROM {table} WHERE data @> %s ORDER BY id", (self._json(match),)
            )
            return [{**data, "id": row_id} for row_id, data in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        with self._lock, self._conn.cursor() as cur:
            result = {}
            for table in TABLES:
                cur.execute(f"SELECT count(*) FROM {table}")
                result[table] = cur.fetchone()[0]
            return result

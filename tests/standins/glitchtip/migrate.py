"""`python3 -m glitchtip_standin.migrate`: create the stand-in's tables (idempotent)."""

from __future__ import annotations

from .runtime import fail, open_store
from .store import PostgresStore, StoreError


def main() -> None:
    try:
        store = open_store()
    except StoreError as exc:
        fail(str(exc))
    if not isinstance(store, PostgresStore):
        print("No DATABASE_URL: in-memory storage, no migrations to apply.", flush=True)
        return
    created = store.migrate()
    print("Operations to perform:\n  Apply all migrations: glitchtip_standin", flush=True)
    if created:
        for table in created:
            print(f"  Creating table {table}... OK", flush=True)
    else:
        print("  No migrations to apply.", flush=True)
    store.close()


if __name__ == "__main__":
    main()

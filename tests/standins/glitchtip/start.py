"""`python3 -m glitchtip_standin.start`: serve on 0.0.0.0:$GRANIAN_PORT (default 8000).

With DATABASE_URL set, refuses to start (exit 1, one clear line on stderr) when the
database cannot be reached, the password is wrong or the tables are missing. With
SERVER_ROLE=all_in_one it migrates first, as GlitchTip's all-in-one start does
(migrate, then serve with an embedded worker); the `web` role never migrates.
"""

from __future__ import annotations

import logging
import os
import signal

from .app import App, Settings
from .runtime import fail, open_store
from .server import StandInServer
from .store import PostgresStore, StoreError


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # docker stop sends SIGTERM: leave serve_forever cleanly


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        store = open_store()
    except StoreError as exc:
        fail(f"FATAL {exc}")
    if isinstance(store, PostgresStore):
        if os.environ.get("SERVER_ROLE") == "all_in_one":
            created = store.migrate()
            logging.getLogger("glitchtip_standin").info("all_in_one: migrations applied (%d tables created)", len(created))
        missing = store.missing_tables()
        if missing:
            fail(f"FATAL database tables missing ({', '.join(missing)}): run the migrate step first")
    host = os.environ.get("GRANIAN_HOST", "0.0.0.0")
    port = int(os.environ.get("GRANIAN_PORT") or 8000)
    settings = Settings.from_env(default_domain=f"http://127.0.0.1:{port}")
    server = StandInServer((host, port), App(store, settings))
    signal.signal(signal.SIGTERM, _stop)
    logging.getLogger("glitchtip_standin").info(
        "glitchtip stand-in %s listening on %s:%d (%s storage)",
        settings.version, host, port, "postgres" if isinstance(store, PostgresStore) else "memory",
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

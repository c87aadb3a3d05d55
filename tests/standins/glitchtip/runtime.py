"""Shared by the container entry points: open the store named by DATABASE_URL."""

from __future__ import annotations

import os
import sys
import time
from typing import NoReturn

from .store import MemoryStore, PostgresStore, Store, StoreError


def open_store(*, wait_seconds: float | None = None) -> Store:
    """PostgreSQL when DATABASE_URL is set (waiting a bounded time for it to accept
    connections), memory otherwise. Raises StoreError with a one-line reason."""
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return MemoryStore()
    if wait_seconds is None:
        wait_seconds = float(os.environ.get("STANDIN_DB_WAIT_SECONDS", "15"))
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return PostgresStore(url)
        except StoreError as exc:
            text = str(exc)
            retryable = "Connection refused" in text or "starting up" in text or "could not translate host" in text
            if not retryable or time.monotonic() >= deadline:
                raise
            time.sleep(1)


def fail(message: str) -> NoReturn:
    print(f"glitchtip-standin: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)

"""`python3 -m glitchtip_standin.manage createsuperuser --noinput`, as Django's command behaves.

Reads DJANGO_SUPERUSER_EMAIL and DJANGO_SUPERUSER_PASSWORD. An existing email exits 1
with "CommandError: Error: That email is already taken." on stderr, like Django.
"""

from __future__ import annotations

import os
import sys

from .app import create_user
from .runtime import open_store
from .store import MemoryStore, StoreError


def _command_error(message: str) -> None:
    print(f"CommandError: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def createsuperuser(argv: list[str]) -> None:
    if "--noinput" not in argv and "--no-input" not in argv:
        _command_error("The stand-in only supports createsuperuser --noinput.")
    email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "").strip()
    if not email:
        _command_error("You must use --email with --noinput.")
    try:
        store = open_store()
    except StoreError as exc:
        _command_error(str(exc))
        return
    if isinstance(store, MemoryStore):
        _command_error("DATABASE_URL is not set: a superuser would not outlive this process.")
    if store.find("users_user", email=email):
        _command_error("Error: That email is already taken.")
    create_user(store, email, os.environ.get("DJANGO_SUPERUSER_PASSWORD") or None, superuser=True)
    print("Superuser created successfully.", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        _command_error("No command given (supported: createsuperuser).")
    if args[0] == "createsuperuser":
        createsuperuser(args[1:])
    else:
        print(f"Unknown command: '{args[0]}'", file=sys.stderr, flush=True)
        raise SystemExit(1)


if __name__ == "__main__":
    main()

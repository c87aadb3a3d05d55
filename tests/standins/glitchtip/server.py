"""HTTP front of the stand-in: a threaded http.server speaking HTTP/1.1 with keep-alive.

Request bodies may be chunked (@sentry/node) and gzip- or deflate-compressed
(sentry-python); `br` is refused with 415 because the stand-in is stdlib-only.
"""

from __future__ import annotations

import gzip
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .app import App, Request, Response, Settings, json_response
from .store import MemoryStore, Store

log = logging.getLogger("glitchtip_standin")


def _read_chunked(rfile) -> bytes:  # type: ignore[no-untyped-def]
    body = bytearray()
    while True:
        size_line = rfile.readline(65537)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        body += rfile.read(size)
        rfile.readline(65537)  # CRLF after each chunk


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # keep-alive clients otherwise wait ~40 ms per answer (delayed ACK)
    server_version = "glitchtip-standin"
    sys_version = ""
    app: App  # set on the subclass made per server

    def _dispatch(self) -> None:
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = _read_chunked(self.rfile)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            encoding = self.headers.get("Content-Encoding", "").lower().strip()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                self._send(json_response(415, {"detail": f"Unsupported Content-Encoding {encoding}"}))
                return
        except (ValueError, OSError, EOFError, zlib.error):
            self.close_connection = True
            self._send(json_response(400, {"detail": "Cannot read request body"}))
            return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw_query=parts.query,
        )
        try:
            response = self.app.handle(request)
        except Exception:  # noqa: BLE001 - a stand-in bug must answer 500, as Django would
            log.exception("unhandled error on %s %s", self.command, parts.path)
            response = json_response(500, {"detail": "Internal Server Error"})
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        if response.status != 204:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)


class StandInServer(ThreadingHTTPServer):
    """ThreadingHTTPServer bound to one App."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        handler = type("BoundHandler", (_Handler,), {"app": app})
        super().__init__(address, handler)


class StandIn:
    """The stand-in run in-process for unit tests: 127.0.0.1, an ephemeral port, in-memory storage.

    >>> s = StandIn(); s.start(); s.url  # doctest: +SKIP
    'http://127.0.0.1:41234'
    """

    def __init__(
        self,
        *,
        store: Store | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = "6.2.6-standin",
        enable_user_registration: bool = False,
        enable_organization_creation: bool = False,
        bad_key_block_seconds: float = 30.0,
        domain: str | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self._settings_args = dict(
            version=version,
            enable_user_registration=enable_user_registration,
            enable_organization_creation=enable_organization_creation,
            bad_key_block_seconds=bad_key_block_seconds,
        )
        self._domain = domain
        self._address = (host, port)
        self._server: StandInServer | None = None
        self._thread: threading.Thread | None = None
        self.app = App(self.store, Settings(**self._settings_args))  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "StandIn":
        self._server = StandInServer(self._address, self.app)
        self.app.settings = Settings(domain=self._domain or self.url, **self._settings_args)  # type: ignore[arg-type]
        self._thread = threading.Thread(target=self._server.serve_forever, name="glitchtip-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def create_superuser(self, email: str, password: str) -> None:
        """What `manage createsuperuser --noinput` does, for tests."""
        from .app import create_user

        create_user(self.store, email, password, superuser=True)

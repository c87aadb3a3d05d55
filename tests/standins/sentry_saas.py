"""Stand-in for Sentry SaaS ingest: records every request it gets, answers like Sentry.

Run by the integration test host inside the server's network namespace
(`ip netns exec NS python3 sentry_saas.py --port P --dir D --key K`), so it listens on
the SERVER's loopback. Each request becomes D/NNNNNN.json (method, path, query,
headers, status, body_sha256, body_file) and D/NNNNNN.body (the body, de-chunked and
gunzipped). Requests with a sentry_key other than --key get 403, as Sentry answers.
It proves the app sent an event to the DSN it was given, nothing about Sentry itself.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import os
import re
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_BODY = 20 * 1024 * 1024
_KEY_IN_AUTH = re.compile(r"sentry_key=([0-9a-fA-F]+)")


def read_chunked(rfile) -> bytes:
    out = bytearray()
    while True:
        line = rfile.readline(1024)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass
            return bytes(out)
        out += rfile.read(size)
        rfile.readline(8)
        if len(out) > MAX_BODY:
            raise ValueError("body too large")


def decode(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class Recorder:
    def __init__(self, directory: Path, key: str | None) -> None:
        self.dir = directory
        self.key = key
        self.counter = itertools.count(1)
        self.lock = threading.Lock()

    def record(self, entry: dict, body: bytes) -> None:
        with self.lock:
            n = next(self.counter)
        stem = f"{n:06d}"
        (self.dir / f"{stem}.body.tmp").write_bytes(body)
        os.replace(self.dir / f"{stem}.body.tmp", self.dir / f"{stem}.body")
        entry["body_file"] = f"{stem}.body"
        tmp = self.dir / f"{stem}.json.tmp"
        tmp.write_text(json.dumps(entry, indent=1), encoding="utf-8")
        os.replace(tmp, self.dir / f"{stem}.json")


def make_handler(rec: Recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            raw = b""
            error = None
            try:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    raw = read_chunked(self.rfile)
                else:
                    n = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(min(n, MAX_BODY)) if n else b""
                body = decode(raw, self.headers.get("Content-Encoding", ""))
            except (ValueError, OSError, zlib.error) as exc:
                body, error = raw, f"{type(exc).__name__}: {exc}"
            key = (query.get("sentry_key") or [None])[0]
            if key is None:
                m = _KEY_IN_AUTH.search(self.headers.get("X-Sentry-Auth", ""))
                key = m.group(1) if m else None
            if error:
                status = 400
            elif rec.key and key != rec.key:
                status = 403
            else:
                status = 200
            rec.record({
                "time": time.time(),
                "method": self.command,
                "path": parts.path,
                "query": query,
                "headers": {k: v for k, v in self.headers.items()},
                "status": status,
                "error": error,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_bytes": len(body),
            }, body)
            payload = json.dumps({"id": uuid.uuid4().hex} if status == 200
                                 else {"detail": "invalid or missing sentry_key"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_HEAD = _handle  # noqa: N815

        def log_message(self, fmt, *args):
            sys.stderr.write("sentry-standin: " + fmt % args + "\n")

    return Handler


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--key", default=None, help="32-hex public key; others get 403")
    ap.add_argument("--ready-file", type=Path, default=None,
                    help="written (HOST:PORT) once listening; default DIR/../sentry.ready")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Recorder(args.dir, args.key)))
    ready = args.ready_file or args.dir.parent / "sentry.ready"
    ready.write_text(f"{args.host}:{server.server_address[1]}\n", encoding="utf-8")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

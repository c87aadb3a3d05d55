"""PLACEHOLDER for a module of tests/standins/glitchtip that does not exist yet.

The image build copies this file in as glitchtip_standin.<module> only when the real
stand-in lacks that module. As `start`: serves GET /_health/ -> 200 `ok` on
GRANIAN_PORT/PORT (8000). As `migrate`: prints a line and exits 0. As `manage`:
exits 1 with a message (nothing to manage).
"""
import http.server
import os
import sys

ROLE = os.path.splitext(os.path.basename(__file__))[0]


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        if self.path.split("?")[0] == "/_health/":
            body, code = b"ok", 200
        else:
            body, code = b"placeholder glitchtip stand-in: not implemented", 404
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("placeholder: " + fmt % args + "\n")


def main():
    if ROLE == "migrate":
        print("placeholder glitchtip stand-in: no migrations")
        return 0
    if ROLE == "manage":
        sys.stderr.write(f"placeholder glitchtip stand-in: manage.py {' '.join(sys.argv[1:])}"
                         " is not implemented\n")
        return 1
    port = int(os.environ.get("GRANIAN_PORT") or os.environ.get("PORT") or 8000)
    http.server.ThreadingHTTPServer(("0.0.0.0", port), Health).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A stand-in for the Agents API in the first run: answers every request with JSON describing
what it received, so you can see the identity headers agents-authz set through Envoy.

Standard library only. Binds 127.0.0.1. Usage: echo_upstream.py [--port 8090]
"""

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoHandler(BaseHTTPRequestHandler):
    server_version = "agents-demo-upstream"

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        identity = {
            name.lower(): value
            for name, value in self.headers.items()
            if name.lower().startswith("x-agents-") or name.lower() == "x-request-id"
        }
        reply = {
            "upstream": "demo echo",
            "method": self.command,
            "path": self.path,
            "headersFromGateway": identity,
            "bodyBytes": len(body),
        }
        payload = (json.dumps(reply, indent=2, sort_keys=True) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _echo

    def log_message(self, format, *args):  # noqa: A002 - the base class names it so
        sys.stderr.write("upstream: %s\n" % (format % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), EchoHandler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

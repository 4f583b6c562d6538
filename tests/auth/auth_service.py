#!/usr/bin/env python3
"""A real external-auth service for tests/auth.rs (what `auth-url` points at).

Every request is appended as one JSON line to the --log file: method, path, headers
(lower-case names) and the body length received. The answer depends on the request:
- header `X-Token: letmein`: 200 with `X-User: alice`, `X-Auth-Groups: staff` and
  `Set-Cookie: authsession=fresh; Path=/`;
- header `X-Token: forbidden`: 403 with `Set-Cookie: authforbidden=1`;
- an `X-Original-URL` with `/teapot` in it: 418 (neither 2xx, 401 nor 403);
- anything else: 401 with `WWW-Authenticate: Bearer realm="test-auth"` and a
  `Set-Cookie: authtried=1`.
It speaks HTTP/1.1 with keep-alive (so the proxy can pool connections) and prints
`auth-service listening on PORT` once bound.
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_len": len(body),
            "conn": "%s:%d" % self.client_address,
        }
        with open(self.server.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        token = self.headers.get("X-Token", "")
        headers = []
        if token == "letmein":
            status = 200
            headers = [("X-User", "alice"), ("X-Auth-Groups", "staff"),
                       ("Set-Cookie", "authsession=fresh; Path=/")]
        elif token == "forbidden":
            status = 403
            headers = [("Set-Cookie", "authforbidden=1")]
        elif "/teapot" in self.headers.get("X-Original-URL", ""):
            status = 418
        else:
            status = 401
            headers = [("WWW-Authenticate", 'Bearer realm="test-auth"'),
                       ("Set-Cookie", "authtried=1")]
        payload = b"auth says %d\n" % status
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.log_path = args.log
    print("auth-service listening on %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

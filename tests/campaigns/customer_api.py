"""A local HTTP server standing in for a customer's API, for API tool tests.

Routes: `/status` answers `{"data": {"status": <?status= or "active">}, "items":
[{"id": 7}], "verified": true}`; `/slow` sleeps 3 s first; `/error` answers 500;
`/text` answers plain text; `/redirect` answers 302 to /status; `/flip` waits up to
0.5 s for a second request to /flip, then answers "gold" to the first and "silver" to
the others. Every request is recorded (method, path with query, headers, body).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class _Server(ThreadingHTTPServer):
    # Several calls connect at once (a batch of API tool calls): room for them all.
    request_queue_size = 64


class CustomerApi:
    """`keep_alive`: HTTP/1.1, connections kept open between requests (`connections`
    counts those opened); else HTTP/1.0, one connection per request."""

    def __init__(self, keep_alive: bool = False):
        self.requests: list[dict] = []
        self.connections = 0
        self.flip_count = 0
        self.flip_lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
            disable_nagle_algorithm = keep_alive

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with api.flip_lock:
                    api.connections += 1

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                api.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                parts = urlsplit(self.path)
                route = parts.path
                if route == "/slow":
                    time.sleep(3)
                    return self._json(200, {"data": {"status": "late"}})
                if route == "/flip":
                    with api.flip_lock:
                        api.flip_count += 1
                        first = api.flip_count == 1
                    if first:
                        # Both calls are in flight at once: the first waits for the second.
                        deadline = time.monotonic() + 0.5
                        while api.flip_count < 2 and time.monotonic() < deadline:
                            time.sleep(0.01)
                    return self._json(200, {"data": {"status": "gold" if first else "silver"}})
                if route == "/error":
                    return self._json(500, {"error": "boom"})
                if route == "/text":
                    return self._send(200, b"<html>not json</html>", "text/html")
                if route == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/status")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                status = parse_qs(parts.query).get("status", ["active"])[0]
                return self._json(
                    200, {"data": {"status": status}, "items": [{"id": 7}], "verified": True}
                )

            def _json(self, code, payload):
                self._send(code, json.dumps(payload).encode(), "application/json")

            def _send(self, code, content, content_type):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client that gave up (the timeout test) leaves a broken pipe: not news.
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

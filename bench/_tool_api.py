"""A customer's API for the conditions bench, run in a process of its own (so it
does not share the evaluator's interpreter lock): HTTP/1.1 with keep-alive, a
thread per connection. `GET /status...` answers {"data": {"status": "active"}}
after BENCH_TOOL_LATENCY_MS (default 0); `GET /calls` answers how many /status
calls it has served.

python -m bench._tool_api PORT
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(port: int, latency: float) -> None:
    lock = threading.Lock()
    counts = {"calls": 0, "connections": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: without TCP_NODELAY (which web
        # servers such as nginx set on keep-alive connections) the body would wait
        # for the client's delayed ACK, 40 ms a call.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def setup(self):
            super().setup()
            with lock:
                counts["connections"] += 1

        def do_GET(self):
            if self.path == "/calls":
                with lock:
                    payload = dict(counts)
            else:
                if latency:
                    time.sleep(latency)
                with lock:
                    counts["calls"] += 1
                payload = {"data": {"status": "active"}}
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        request_queue_size = 128

    httpd = Server(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), float(os.environ.get("BENCH_TOOL_LATENCY_MS", "0")) / 1000)

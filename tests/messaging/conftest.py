"""Shared fixtures for messaging tests: a relay simulator over real HTTP, a line on
it, Twilio settings, and a helper that drives the outbox like the worker does."""

from datetime import UTC, datetime

import pytest

TWILIO_SID = "AC" + "0" * 32
TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


@pytest.fixture
def sim(relay):
    """The relay simulator of tests/lines/relay_fixtures.py, under the name these tests use."""
    return relay


@pytest.fixture
def make_sim_line(make_line):
    """Create a line on the simulator (all gaps 0 unless given)."""

    def make(workspace, **fields):
        fields.setdefault("contact_gap_seconds", 0)
        return make_line(workspace, **fields)

    return make


@pytest.fixture
def line(acme, make_sim_line):
    return make_sim_line(acme, first_name="Ava", last_name="Line")


@pytest.fixture
def twilio(acme):
    from messaging.models import FallbackConfig

    return FallbackConfig.objects.create(
        workspace=acme,
        enabled=True,
        twilio_account_sid=TWILIO_SID,
        twilio_auth_token="twilio-token",
        twilio_from_number="+15005550006",
    )


def twilio_ok(rsps, sid="SM" + "1" * 32):
    """Register a successful Twilio message-create answer on a `responses` mock."""
    rsps.add(
        "POST",
        TWILIO_URL,
        json={"sid": sid, "status": "queued", "to": "+1", "from": "+1", "body": ""},
        status=201,
    )


def twilio_error(rsps, code: int, status: int = 400):
    rsps.add(
        "POST",
        TWILIO_URL,
        json={"code": code, "message": f"error {code}", "more_info": "", "status": status},
        status=status,
    )


@pytest.fixture
def run_outbox(django_capture_on_commit_callbacks):
    """Run the worker's side: dispatch due messages and their send tasks."""
    from messaging.dispatch import dispatch_due

    def run(now=None):
        with django_capture_on_commit_callbacks(execute=True):
            return dispatch_due(now=now)

    return run


class FileServer:
    """Serves a small PNG at any path on 127.0.0.1 (a private address, so tests opt
    in); `?type=` changes the Content-Type it claims. Records the paths asked for."""

    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        server = self
        self.paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.paths.append(self.path)
                query = parse_qs(urlsplit(self.path).query)
                self.send_response(200)
                self.send_header("Content-Type", query.get("type", ["image/png"])[0])
                self.send_header("Content-Length", str(len(server.png)))
                self.end_headers()
                self.wfile.write(server.png)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def files():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def file_server(files):
    return files.url


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Webhooks out: a local HTTP receiver that records every request.


class WebhookReceiver:
    """A stdlib HTTP server on 127.0.0.1 that records requests and answers `status`
    with the body `answer`, after `delay` seconds."""

    def __init__(self):
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self
        self.requests: list[dict] = []
        self.status = 200
        self.answer = b"ok"
        self.delay = 0.0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers.items()), "body": body}
                    )
                    status, answer, delay = receiver.status, receiver.answer, receiver.delay
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def events(self, name: str | None = None) -> list[dict]:
        import json

        with self._lock:
            found = [json.loads(r["body"]) for r in self.requests]
        return [e for e in found if name is None or e["event"] == name]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture
def allow_private(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True


@pytest.fixture
def make_endpoint(allow_private):
    from messaging.models.webhooks import WEBHOOK_EVENTS
    from messaging.webhooks import webhook_endpoint_create

    def make(workspace, url, events=WEBHOOK_EVENTS, name="Receiver"):
        return webhook_endpoint_create(workspace=workspace, url=url, events=list(events), name=name)

    return make


def verify_signature(secret: str, request: dict) -> bool:
    """Check both signatures of a recorded request on its raw body, as a customer
    would: `X-Tuco-Signature` keyed with the secret string as given, the Standard
    Webhooks `webhook-signature` with its base64-decoded part."""
    import base64
    import hashlib
    import hmac

    headers = {k.lower(): v for k, v in request["headers"].items()}
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request["body"]
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    plain = hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["webhook-signature"], expected) and hmac.compare_digest(
        headers["x-tuco-signature"], plain
    )

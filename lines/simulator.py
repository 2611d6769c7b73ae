"""A relay simulator that speaks the BlueBubbles subset in RELAY.md over real HTTP.

Start it in-process (`with RelaySimulator() as sim: ...`) or as its own process
(`python manage.py relay_simulator --port 1234 --password secret`, or
`python -m lines.simulator`). It uses only the standard library, so the demo, the
tests and the benchmarks all exercise the real client against real sockets.

Registry (who is on iMessage), unless overridden per address by `registry` or a
JSON file mapping address -> true | false | "error":
- a phone number is on iMessage when its last digit is even;
- an email is on iMessage when its domain is icloud.com, me.com or mac.com;
- an address whose last four digits are 9999, or whose local part is `error`,
  makes the relay answer 500 `iMessage Error` (a technical failure), both for
  availability checks and for sends.

Switches (constructor arguments, plain attributes, or `POST /sim/config` JSON):
- latency: seconds added to every /api request (sends hold their tempGuid in flight
  for that long, so a second send with the same tempGuid gets a 400);
- helper_connected: False makes availability checks and private-api sends fail with
  "iMessage Private API Helper is not connected!" and server/info report it;
- imessage_signed_in: False is a Mac signed out of iMessage: the relay still answers,
  server/info reports detected_imessage = null, availability checks answer false
  and sends fail with 500 "Message Send Error" (data.error = 39);
- silent_undelivered: sends are accepted (200, both new-message webhooks) but no
  delivery receipt and no send error ever follow, as on a line Apple quietly filters;
- false_negative_rate: share of available addresses answered `false` anyway;
- send_timeout: sends sleep `timeout_delay` seconds, then 504 "Transaction timeout"
  (the message is not sent);
- throttle_per_hour: after this many accepted sends in the last hour, sends fail with
  500 "Message Send Error" and data.error > 0;
- drop_webhooks: webhook deliveries are silently dropped (the query still has them);
- delivery_delay: seconds between a send and its `updated-message` (delivered) or
  `message-send-error` webhook;
- chat_prefix: the prefix of chat guids the simulator creates ("any;-;" mimics
  macOS 26).

Webhooks: registered with POST /api/v1/webhook {"url", "events"} (a URL already
registered keeps its one registration), listed with GET /api/v1/webhook (each
`{"id", "url", "events"}`), removed with DELETE /api/v1/webhook/{id}; posted one at a
time by a background
thread (5 s timeout, no retry), in the order they were caused. A successful send
emits `new-message` twice (the first carrying the tempGuid), then `updated-message`
with dateDelivered; a send to an address not on iMessage answers 200 and later emits
`message-send-error` with data.error = 22. The first webhook can arrive before the
send's HTTP response does, as with a real relay. As with a real relay, tempGuid is
only echoed by the send response and the first webhook: message look-ups and queries
do not carry it.

Admin endpoints (no password): POST /sim/inbound {"from", "text"[, "chat_guid"]},
POST /sim/read {"guid"}, POST /sim/config {switch: value, "registry": {...}},
GET /sim/config, GET /sim/stats, POST /sim/reset (forgets messages and stats, keeps
webhooks and switches).

In-process observation: `stats` (request counts by route) and `request_log()` (the
arrival time and route of the latest requests, e.g. to measure gaps between checks).
"""

from __future__ import annotations

import argparse
import contextlib
import email.message
import email.parser
import email.policy
import heapq
import http.client
import itertools
import json
import random
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

IMESSAGE_DOMAINS = frozenset({"icloud.com", "me.com", "mac.com"})
ERROR = "error"
# Codes carried in data.error of failed sends. 22 is what a real relay reports for
# an address that is not on iMessage.
NOT_REGISTERED_ERROR = 22
THROTTLED_ERROR = 1
SIGNED_OUT_ERROR = 39

WEBHOOK_TIMEOUT = 5
REQUEST_LOG_SIZE = 10_000
HELPER_DISCONNECTED = "iMessage Private API Helper is not connected!"
_CHAT_GUID = re.compile(r"(?P<service>[^;]+);-;(?P<address>.+)")


def default_availability(address: str) -> bool | str:
    """The built-in registry: True, False or "error" for `address`."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if at and local.lower() == "error":
        return ERROR
    digits = "".join(ch for ch in address if ch.isdigit())
    if digits.endswith("9999"):
        return ERROR
    if at:
        return domain.lower() in IMESSAGE_DOMAINS
    return bool(digits) and int(digits[-1]) % 2 == 0


def load_registry(path: str | Path) -> dict[str, bool | str]:
    """Read a registry override file: a JSON object of address -> true/false/"error"."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of address -> true/false/'error'")
    return _checked_registry(data)


def _checked_registry(data: Mapping) -> dict[str, bool | str]:
    for address, verdict in data.items():
        if verdict not in (True, False, ERROR):
            raise ValueError(f"registry value for {address!r} must be true, false or 'error'")
    return {str(address).strip(): verdict for address, verdict in data.items()}


def _now_ms() -> int:
    return int(time.time() * 1000)


class _ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str, detail: str, data=None):
        super().__init__(detail)
        self.status = status
        self.envelope = {
            "status": status,
            "message": message,
            "error": {"type": error_type, "message": detail},
        }
        if data is not None:
            self.envelope["data"] = data

    @classmethod
    def bad_request(cls, detail: str) -> _ApiError:
        return cls(
            400,
            "You've made a bad request! Please check your request params & body",
            "Validation Error",
            detail,
        )

    @classmethod
    def not_found(cls, detail: str) -> _ApiError:
        return cls(404, "The requested resource was not found", "Database Error", detail)

    @classmethod
    def imessage(cls, message: str, detail: str, data=None) -> _ApiError:
        return cls(500, message, "iMessage Error", detail, data)


def _ok(data: Any = None, message: str = "Success", **extra) -> dict:
    return {"status": 200, "message": message, "data": data, **extra}


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: email.message.Message
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> dict:
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except ValueError:
            raise _ApiError.bad_request("The request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _ApiError.bad_request("The request body must be a JSON object")
        return data


def _bool(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("expected a number of seconds >= 0")
    return float(value)


def _rate(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError("expected a number between 0 and 1")
    return float(value)


def _optional_count(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected a whole number >= 0, or null")
    return value


def _chat_prefix(value) -> str:
    if not isinstance(value, str) or not value.endswith(";-;"):
        raise ValueError("expected a direct chat prefix such as 'iMessage;-;'")
    return value


SWITCHES: dict[str, Callable[[Any], Any]] = {
    "latency": _seconds,
    "helper_connected": _bool,
    "imessage_signed_in": _bool,
    "silent_undelivered": _bool,
    "false_negative_rate": _rate,
    "send_timeout": _bool,
    "timeout_delay": _seconds,
    "throttle_per_hour": _optional_count,
    "drop_webhooks": _bool,
    "delivery_delay": _seconds,
    "chat_prefix": _chat_prefix,
}

# (method, path pattern, route name). The route name is also the stats key.
_ROUTES = [
    ("GET", r"/api/v1/ping", "ping"),
    ("GET", r"/api/v1/server/info", "server_info"),
    ("GET", r"/api/v1/handle/availability/imessage", "availability"),
    ("POST", r"/api/v1/chat/new", "chat_new"),
    ("POST", r"/api/v1/message/text", "message_text"),
    ("POST", r"/api/v1/message/attachment", "message_attachment"),
    ("POST", r"/api/v1/message/query", "message_query"),
    ("GET", r"/api/v1/message/(?P<guid>[^/]+)", "message_get"),
    ("GET", r"/api/v1/webhook", "webhook_list"),
    ("POST", r"/api/v1/webhook", "webhook_create"),
    ("DELETE", r"/api/v1/webhook/(?P<webhook_id>[^/]+)", "webhook_delete"),
    ("POST", r"/sim/inbound", "sim_inbound"),
    ("POST", r"/sim/read", "sim_read"),
    ("GET", r"/sim/config", "sim_config_get"),
    ("POST", r"/sim/config", "sim_config"),
    ("GET", r"/sim/stats", "sim_stats"),
    ("POST", r"/sim/reset", "sim_reset"),
]
_COMPILED_ROUTES = [(m, re.compile(p), name) for m, p, name in _ROUTES]
# Sends apply the latency themselves, inside the window their tempGuid is in flight.
_SELF_TIMED = frozenset({"chat_new", "message_text", "message_attachment"})


class RelaySimulator:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "secret",
        registry: dict | None = None,
        latency: float = 0.0,
        helper_connected: bool = True,
        false_negative_rate: float = 0.0,
        send_timeout: bool = False,
        throttle_per_hour: int | None = None,
        drop_webhooks: bool = False,
        delivery_delay: float = 0.2,
        seed: int = 0,
        *,
        imessage_signed_in: bool = True,
        silent_undelivered: bool = False,
        timeout_delay: float = 1.0,
        chat_prefix: str = "iMessage;-;",
        verbose: bool = False,
    ):
        self.host = host
        self.port = port
        self.password = password
        self.registry: dict[str, bool | str] = _checked_registry(registry or {})
        self.verbose = verbose
        self.configure(
            latency=latency,
            helper_connected=helper_connected,
            imessage_signed_in=imessage_signed_in,
            silent_undelivered=silent_undelivered,
            false_negative_rate=false_negative_rate,
            send_timeout=send_timeout,
            timeout_delay=timeout_delay,
            throttle_per_hour=throttle_per_hour,
            drop_webhooks=drop_webhooks,
            delivery_delay=delivery_delay,
            chat_prefix=chat_prefix,
        )

        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._messages: dict[str, dict] = {}
        self._sent: list[dict] = []
        self._in_flight: set[str] = set()
        self._send_times: deque[float] = deque()
        # url -> (id, events): one registration per URL, as the real relay keeps them.
        self._webhooks: dict[str, tuple[int, list[str]]] = {}
        self._webhook_ids = itertools.count(1)
        self._requests: Counter[str] = Counter()
        # (time.monotonic() at arrival, route name) of the latest requests, oldest first.
        self._request_log: deque[tuple[float, str]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._webhook_counts: Counter[str] = Counter()
        self._connections = 0

        # Webhooks wait in a heap of (due, seq, make_event) for the one delivery thread.
        self._events: list[tuple[float, int, Callable[[], tuple[str, dict] | None]]] = []
        self._events_ready = threading.Condition()
        self._seq = itertools.count()
        self._stopping = False

        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # Lifecycle

    def start(self) -> RelaySimulator:
        if self._server is not None:
            return self
        self._stopping = False
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"relay-sim-http-{self.port}",
                daemon=True,
            ),
            threading.Thread(
                target=self._deliver_webhooks, name=f"relay-sim-webhooks-{self.port}", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        with self._events_ready:
            self._stopping = True
            self._events.clear()
            self._events_ready.notify_all()
        server.shutdown()
        server.server_close()
        # Keep-alive handler threads would otherwise sit in readline until the client
        # hangs up.
        server.close_connections()
        for thread in self._threads:
            thread.join(timeout=WEBHOOK_TIMEOUT + 1)
        self._threads = []

    def __enter__(self) -> RelaySimulator:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The simulator is not running; call start() first")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    # Switches and observation

    def configure(self, **switches) -> None:
        """Change switches at runtime; raises ValueError on an unknown or bad value."""
        checked = {}
        for name, value in switches.items():
            if name not in SWITCHES:
                raise ValueError(f"unknown switch {name!r}")
            try:
                checked[name] = SWITCHES[name](value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        for name, value in checked.items():
            setattr(self, name, value)

    @property
    def config(self) -> dict:
        return {name: getattr(self, name) for name in SWITCHES}

    @property
    def stats(self) -> dict:
        with self._lock:
            return {
                "total": sum(self._requests.values()),
                "connections": self._connections,
                "by_endpoint": dict(self._requests),
                "webhooks": dict(self._webhook_counts),
                "messages": len(self._messages),
                "sent": len(self._sent),
            }

    def request_log(self, name: str | None = None) -> list[tuple[float, str]]:
        """(time.monotonic() at arrival, route name) of the latest requests (the last
        REQUEST_LOG_SIZE), oldest first; only route `name` when given."""
        with self._lock:
            return [entry for entry in self._request_log if name is None or entry[1] == name]

    @property
    def sent(self) -> list[dict]:
        """Messages accepted by send calls, oldest first (copies)."""
        with self._lock:
            return [_copy(message) for message in self._sent]

    @property
    def webhooks(self) -> dict[str, list[str]]:
        with self._lock:
            return {url: list(events) for url, (_, events) in self._webhooks.items()}

    def reset(self) -> None:
        """Forget messages, sends and stats; keep webhooks and switches."""
        with self._lock:
            self._messages.clear()
            self._sent.clear()
            self._send_times.clear()
            self._requests.clear()
            self._request_log.clear()
            self._webhook_counts.clear()
            self._connections = 0

    def availability_of(self, address: str) -> bool | str:
        address = address.strip()
        override = self.registry.get(address, self.registry.get(address.lower()))
        if override is not None:
            return override
        return default_availability(address)

    def inbound(self, sender: str, text: str, chat_guid: str | None = None) -> dict:
        """Receive a message from `sender` and emit its `new-message` webhook."""
        message = self._new_message(
            address=sender,
            text=text,
            chat_guid=chat_guid or f"{self.chat_prefix}{sender}",
            is_from_me=False,
        )
        with self._lock:
            self._messages[message["guid"]] = message
            public = _copy(message)
        self._emit(0, "new-message", public)
        return public

    def mark_read(self, guid: str) -> dict | None:
        """The recipient read `guid`: set dateRead and emit `updated-message`."""
        with self._lock:
            message = self._messages.get(guid)
            if message is None:
                return None
            now = _now_ms()
            message["dateDelivered"] = message["dateDelivered"] or now
            message["isDelivered"] = True
            message["dateRead"] = now
            public = _without_chats(message)
        self._emit(0, "updated-message", public)
        return public

    # Request handling (called from the HTTP handler threads)

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> tuple[int, dict]:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        request = _Request(method, path, parse_qs(parts.query), headers, body)
        name, kwargs = self._route(method, path)
        with self._lock:
            self._requests[name] += 1
            self._request_log.append((time.monotonic(), name))
        try:
            if name == "not_found":
                raise _ApiError(404, "Not Found", "Server Error", f"No route for {method} {path}")
            if not name.startswith("sim_"):
                self._authenticate(request)
                if name not in _SELF_TIMED:
                    self._sleep_latency()
            return 200, getattr(self, f"_route_{name}")(request, **kwargs)
        except _ApiError as exc:
            return exc.status, exc.envelope
        except Exception as exc:  # a bug here must not kill the connection thread
            return 500, _ApiError(
                500, "The server has encountered an error", "Server Error", repr(exc)
            ).envelope

    def _route(self, method: str, path: str) -> tuple[str, dict]:
        for route_method, pattern, name in _COMPILED_ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return name, {k: unquote(v) for k, v in match.groupdict().items()}
        return "not_found", {}

    def _authenticate(self, request: _Request) -> None:
        supplied = [request.param(key) for key in ("password", "guid", "token")]
        if self.password not in supplied:
            raise _ApiError(
                401,
                "You are not authorized to access this resource",
                "Authentication Error",
                "Unauthorized",
            )

    def _sleep_latency(self) -> None:
        if self.latency:
            time.sleep(self.latency)

    # /api/v1 routes

    def _route_ping(self, request: _Request) -> dict:
        return _ok("pong", "Ping received!")

    def _route_server_info(self, request: _Request) -> dict:
        account = "simulator@icloud.com" if self.imessage_signed_in else None
        return _ok(
            {
                "computer_name": "Relay Simulator",
                "os_version": "15.5",
                "server_version": "1.9.9",
                "private_api": True,
                "proxy_service": "lan-url",
                "helper_connected": self.helper_connected,
                "detected_icloud": account,
                "detected_imessage": account,
                "macos_time_sync": None,
                "local_ipv4s": ["127.0.0.1"],
                "local_ipv6s": [],
                "simulator": True,
            },
            "Successfully fetched server info",
        )

    def _route_availability(self, request: _Request) -> dict:
        address = (request.param("address") or "").strip()
        if not address:
            raise _ApiError.bad_request("The address parameter is required")
        if not self.helper_connected:
            raise _ApiError.imessage("iMessage has encountered an error", HELPER_DISCONNECTED)
        if not self.imessage_signed_in:
            # No account to look the address up with: every answer is "no".
            return _ok({"available": False}, "Successfully determined iMessage availability")
        verdict = self.availability_of(address)
        if verdict == ERROR:
            raise _ApiError.imessage(
                "iMessage has encountered an error",
                f"Failed to determine iMessage availability for {address}",
            )
        if verdict and self.false_negative_rate:
            with self._lock:
                if self._rng.random() < self.false_negative_rate:
                    verdict = False
        return _ok({"available": bool(verdict)}, "Successfully determined iMessage availability")

    def _route_chat_new(self, request: _Request) -> dict:
        body = request.json()
        addresses = body.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            raise _ApiError.bad_request("'addresses' must be a non-empty list")
        if len(addresses) != 1 or not isinstance(addresses[0], str) or not addresses[0].strip():
            raise _ApiError.bad_request("The simulator only creates direct chats (one address)")
        service = body.get("service", "iMessage")
        if service != "iMessage":
            raise _ApiError.bad_request("The simulator only supports the iMessage service")
        address = addresses[0].strip()
        chat_guid = f"{self.chat_prefix}{address}"
        chat = {
            "guid": chat_guid,
            "chatIdentifier": address,
            "displayName": "",
            "style": 45,
            "isArchived": False,
            "participants": [{"address": address, "service": "iMessage"}],
            "messages": [],
        }
        text = body.get("message")
        if text is None or text == "":
            self._sleep_latency()
            return _ok(chat, "Successfully created chat!")
        if not isinstance(text, str):
            raise _ApiError.bad_request("'message' must be a string")
        temp_guid, method = self._send_fields(body)
        chat["messages"] = [
            self._send(
                address=address, chat_guid=chat_guid, text=text, temp_guid=temp_guid, method=method
            )
        ]
        return _ok(chat, "Successfully created chat!")

    def _route_message_text(self, request: _Request) -> dict:
        body = request.json()
        chat_guid = body.get("chatGuid")
        text = body.get("message")
        if not isinstance(text, str) or not text:
            raise _ApiError.bad_request("A 'message' is required when sending via AppleScript")
        temp_guid, method = self._send_fields(body)
        address = self._address_of(chat_guid)
        message = self._send(
            address=address, chat_guid=chat_guid, text=text, temp_guid=temp_guid, method=method
        )
        return _ok(message, "Message sent!")

    def _route_message_attachment(self, request: _Request) -> dict:
        fields, files = _parse_multipart(request.headers.get("Content-Type", ""), request.body)
        chat_guid = fields.get("chatGuid")
        name = fields.get("name")
        if not name:
            raise _ApiError.bad_request("'name' is required")
        temp_guid, method = self._send_fields(fields)
        upload = files.get("attachment")
        if upload is None or not upload[2]:
            raise _ApiError.bad_request("Attachment not provided or was empty!")
        _, mime_type, content = upload
        address = self._address_of(chat_guid)
        attachment = {
            "guid": str(uuid.uuid4()).upper(),
            "transferName": name,
            "mimeType": mime_type,
            "totalBytes": len(content),
        }
        message = self._send(
            address=address,
            chat_guid=chat_guid,
            text="\ufffc",
            temp_guid=temp_guid,
            method=method,
            attachments=[attachment],
        )
        return _ok(message, "Attachment sent!")

    def _route_message_get(self, request: _Request, guid: str) -> dict:
        with self._lock:
            message = self._messages.get(guid)
            if message is None:
                raise _ApiError.not_found("Message does not exist!")
            return _ok(_copy(message), "Successfully fetched message!")

    def _route_message_query(self, request: _Request) -> dict:
        body = request.json()
        after = _number(body, "after", 0)
        before = _number(body, "before", None)
        offset = int(_number(body, "offset", 0))
        limit = int(_number(body, "limit", 100))
        if not 1 <= limit <= 1000:
            raise _ApiError.bad_request("'limit' must be between 1 and 1000")
        sort = body.get("sort", "DESC")
        if sort not in ("ASC", "DESC"):
            raise _ApiError.bad_request("'sort' must be ASC or DESC")
        chat_guid = body.get("chatGuid")
        with self._lock:
            found = [
                m
                for m in self._messages.values()
                if m["dateCreated"] >= after
                and (before is None or m["dateCreated"] < before)
                and (chat_guid is None or m["chats"][0]["guid"] == chat_guid)
            ]
            found.sort(key=lambda m: m["dateCreated"], reverse=sort == "DESC")
            page = [_copy(m) for m in found[offset : offset + limit]]
        metadata = {"offset": offset, "limit": limit, "total": len(found), "count": len(page)}
        return _ok(page, "Successfully fetched messages!", metadata=metadata)

    def _route_webhook_list(self, request: _Request) -> dict:
        with self._lock:
            hooks = [
                {"id": hook_id, "url": url, "events": list(events)}
                for url, (hook_id, events) in self._webhooks.items()
            ]
        return _ok(hooks, "Successfully fetched webhooks!")

    def _route_webhook_create(self, request: _Request) -> dict:
        body = request.json()
        url = body.get("url")
        events = body.get("events")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _ApiError.bad_request("'url' must be an http(s) URL")
        if not (isinstance(events, list) and events and all(isinstance(e, str) for e in events)):
            raise _ApiError.bad_request("'events' must be a non-empty list of event names")
        with self._lock:
            hook_id = self._webhooks[url][0] if url in self._webhooks else next(self._webhook_ids)
            self._webhooks[url] = (hook_id, list(events))
        return _ok({"id": hook_id, "url": url, "events": events}, "Successfully created webhook!")

    def _route_webhook_delete(self, request: _Request, webhook_id: str) -> dict:
        with self._lock:
            url = next((u for u, (i, _) in self._webhooks.items() if str(i) == webhook_id), None)
            if url is None:
                raise _ApiError.not_found("Webhook does not exist!")
            del self._webhooks[url]
        return _ok(None, "Successfully deleted webhook!")

    # /sim routes

    def _route_sim_inbound(self, request: _Request) -> dict:
        body = request.json()
        sender, text = body.get("from"), body.get("text")
        if not isinstance(sender, str) or not sender.strip():
            raise _ApiError.bad_request("'from' is required")
        if not isinstance(text, str):
            raise _ApiError.bad_request("'text' must be a string")
        chat_guid = body.get("chat_guid")
        if chat_guid is not None and not isinstance(chat_guid, str):
            raise _ApiError.bad_request("'chat_guid' must be a string")
        return _ok(self.inbound(sender.strip(), text, chat_guid), "Inbound message received")

    def _route_sim_read(self, request: _Request) -> dict:
        guid = request.json().get("guid")
        if not isinstance(guid, str):
            raise _ApiError.bad_request("'guid' is required")
        message = self.mark_read(guid)
        if message is None:
            raise _ApiError.not_found("Message does not exist!")
        return _ok(message, "Message marked as read")

    def _route_sim_config(self, request: _Request) -> dict:
        body = request.json()
        registry = body.pop("registry", {})
        try:
            if not isinstance(registry, dict):
                raise ValueError("'registry' must be an object of address -> verdict")
            checked = _checked_registry(registry)
            self.configure(**body)
        except ValueError as exc:
            raise _ApiError.bad_request(str(exc)) from None
        self.registry.update(checked)
        return self._route_sim_config_get(request)

    def _route_sim_config_get(self, request: _Request) -> dict:
        return _ok({**self.config, "registry": dict(self.registry)})

    def _route_sim_stats(self, request: _Request) -> dict:
        return _ok(self.stats)

    def _route_sim_reset(self, request: _Request) -> dict:
        self.reset()
        return _ok(None, "Reset")

    # Sending

    def _send_fields(self, body: Mapping) -> tuple[str, str]:
        temp_guid = body.get("tempGuid")
        method = body.get("method") or "apple-script"
        if method not in ("apple-script", "private-api"):
            raise _ApiError.bad_request("'method' must be apple-script or private-api")
        if not isinstance(temp_guid, str) or not temp_guid:
            raise _ApiError.bad_request("A 'tempGuid' is required when sending via AppleScript")
        return temp_guid, method

    def _address_of(self, chat_guid) -> str:
        if not isinstance(chat_guid, str) or not chat_guid:
            raise _ApiError.bad_request("'chatGuid' is required")
        match = _CHAT_GUID.fullmatch(chat_guid)
        if match is None:
            raise _ApiError.bad_request(f"The simulator only sends to direct chats: {chat_guid}")
        return match["address"]

    def _send(
        self,
        *,
        address: str,
        chat_guid: str,
        text: str,
        temp_guid: str,
        method: str,
        attachments: list | None = None,
    ) -> dict:
        with self._lock:
            if temp_guid in self._in_flight:
                raise _ApiError.bad_request(
                    f"Message is already queued to be sent! (Temp GUID: {temp_guid})"
                )
            self._in_flight.add(temp_guid)
        try:
            return self._send_in_flight(
                address=address,
                chat_guid=chat_guid,
                text=text,
                temp_guid=temp_guid,
                method=method,
                attachments=attachments,
            )
        finally:
            with self._lock:
                self._in_flight.discard(temp_guid)

    def _send_in_flight(
        self,
        *,
        address: str,
        chat_guid: str,
        text: str,
        temp_guid: str,
        method: str,
        attachments: list | None,
    ) -> dict:
        self._sleep_latency()
        if self.send_timeout:
            time.sleep(self.timeout_delay)
            raise _ApiError(504, "Transaction timeout", "Gateway Timeout", "Transaction timeout")
        if method == "private-api" and not self.helper_connected:
            raise _ApiError.imessage("Message Send Error", HELPER_DISCONNECTED)
        verdict = self.availability_of(address)
        if verdict == ERROR:
            raise _ApiError.imessage("Message Send Error", f"Failed to send message to {address}")
        if not self.imessage_signed_in:
            raise _ApiError.imessage(
                "Message Send Error",
                "Failed to send message! iMessage is not signed in.",
                data={"error": SIGNED_OUT_ERROR, "tempGuid": temp_guid},
            )

        message = self._new_message(
            address=address,
            text=text,
            chat_guid=chat_guid,
            is_from_me=True,
            attachments=attachments,
        )
        with self._lock:
            now = time.monotonic()
            while self._send_times and self._send_times[0] <= now - 3600:
                self._send_times.popleft()
            limit = self.throttle_per_hour
            if limit is not None and len(self._send_times) >= limit:
                failed = {**_copy(message), "error": THROTTLED_ERROR, "tempGuid": temp_guid}
                raise _ApiError.imessage(
                    "Message Send Error",
                    "Failed to send message! See attached message error code.",
                    data=failed,
                )
            self._send_times.append(now)
            self._messages[message["guid"]] = message
            self._sent.append(message)
            public = _copy(message)

        with_temp_guid = {**public, "tempGuid": temp_guid}
        self._emit(0, "new-message", with_temp_guid)
        self._emit(0, "new-message", public)
        guid = message["guid"]
        if self.silent_undelivered:
            return with_temp_guid
        if verdict:
            self._schedule(self.delivery_delay, lambda: self._delivered(guid))
        else:
            self._schedule(self.delivery_delay, lambda: self._failed(guid))
        return with_temp_guid

    def _new_message(self, *, address, text, chat_guid, is_from_me, attachments=None) -> dict:
        return {
            "guid": str(uuid.uuid4()).upper(),
            "text": text,
            "subject": None,
            "isFromMe": is_from_me,
            "error": 0,
            "isDelivered": not is_from_me,
            "dateCreated": _now_ms(),
            "dateDelivered": None,
            "dateRead": None,
            "handle": {"address": address, "service": "iMessage"},
            "chats": [{"guid": chat_guid}],
            "attachments": attachments or [],
        }

    def _delivered(self, guid: str) -> tuple[str, dict] | None:
        with self._lock:
            message = self._messages.get(guid)
            if message is None:
                return None
            message["isDelivered"] = True
            message["dateDelivered"] = message["dateDelivered"] or _now_ms()
            return "updated-message", _without_chats(message)

    def _failed(self, guid: str) -> tuple[str, dict] | None:
        with self._lock:
            message = self._messages.get(guid)
            if message is None:
                return None
            message["error"] = NOT_REGISTERED_ERROR
            return "message-send-error", _copy(message)

    # Webhooks

    def _emit(self, delay: float, event_type: str, data: dict) -> None:
        self._schedule(delay, lambda: (event_type, data))

    def _schedule(self, delay: float, make_event: Callable[[], tuple[str, dict] | None]) -> None:
        with self._events_ready:
            if self._stopping:
                return
            due = time.monotonic() + delay
            heapq.heappush(self._events, (due, next(self._seq), make_event))
            self._events_ready.notify()

    def _deliver_webhooks(self) -> None:
        while True:
            with self._events_ready:
                while not self._stopping:
                    wait = self._events[0][0] - time.monotonic() if self._events else None
                    if wait is not None and wait <= 0:
                        break
                    self._events_ready.wait(wait)
                if self._stopping:
                    return
                _, _, make_event = heapq.heappop(self._events)
            event = make_event()
            if event is not None:
                self._post_event(*event)

    def _post_event(self, event_type: str, data: dict) -> None:
        with self._lock:
            targets = [
                url
                for url, (_, events) in self._webhooks.items()
                if event_type in events or "*" in events
            ]
        if not targets:
            return
        if self.drop_webhooks:
            with self._lock:
                self._webhook_counts["dropped"] += len(targets)
            return
        body = json.dumps({"type": event_type, "data": data}).encode()
        for url in targets:
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            outcome = "sent"
            try:
                with self._opener.open(request, timeout=WEBHOOK_TIMEOUT) as response:
                    response.read()
            except urllib.error.HTTPError as exc:
                exc.close()
                outcome = "failed"
            except (OSError, http.client.HTTPException, ValueError):
                outcome = "failed"
            with self._lock:
                self._webhook_counts[outcome] += 1
                self._webhook_counts[f"{outcome}:{event_type}"] += 1
            if self.verbose:
                print(f"webhook {event_type} -> {url}: {outcome}", file=sys.stderr)


def _copy(message: dict) -> dict:
    """A copy safe to serialise while the original keeps changing."""
    return {
        **message,
        "handle": dict(message["handle"]),
        "chats": [dict(chat) for chat in message["chats"]],
        "attachments": [dict(a) for a in message["attachments"]],
    }


def _without_chats(message: dict) -> dict:
    # A real relay leaves chats out of updated-message; receivers must match by guid.
    public = _copy(message)
    del public["chats"]
    return public


def _number(body: Mapping, key: str, default):
    value = body.get(key, default)
    if value is default:
        return value
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _ApiError.bad_request(f"'{key}' must be a number >= 0")
    return value


def _parse_multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """Split a multipart/form-data body into text fields and (filename, type, bytes) files."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _ApiError.bad_request("Expected a multipart/form-data body")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    parser = email.parser.Parser(policy=email.policy.HTTP)
    for chunk in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if chunk.startswith(b"--"):
            break
        head, separator, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise _ApiError.bad_request("Malformed multipart part")
        content = content.removesuffix(b"\r\n")
        part = parser.parsestr(head.decode("utf-8", "replace") + "\r\n\r\n", headersonly=True)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        if filename is None:
            fields[name] = content.decode("utf-8", "replace")
        else:
            files[name] = (filename, part.get_content_type(), content)
    return fields, files


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool reuses connections
    server_version = "RelaySimulator/1.0"
    sys_version = ""
    # Buffer the status line, headers and body into one write, and do not let Nagle
    # hold a small response back waiting for the client's delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True
    # Idle keep-alive connections are closed after this; clients notice and reconnect.
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_expect_100(self) -> bool:
        # The write buffer would otherwise hold "100 Continue" back from the client.
        proceed = super().handle_expect_100()
        self.wfile.flush()
        return proceed

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._reply(411, _ApiError.bad_request("Send a Content-Length body").envelope)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.sim.handle(self.command, self.path, self.headers, body)
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        if self.server.sim.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: RelaySimulator):
        self.sim = sim
        self._connections: set = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection) -> None:
        with self._connections_lock:
            self._connections.add(connection)
        with self.sim._lock:
            self.sim._connections += 1

    def untrack(self, connection) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in readline

    def handle_error(self, request, client_address) -> None:
        # Clients hanging up mid-request is routine (timeouts, stop()); stay quiet.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def measure_raw_rate(url: str, password: str, n: int, concurrency: int = 8) -> float:
    """Fire `n` availability GETs at a relay from `concurrency` threads; return requests/s.

    Each thread keeps its own pooled session, so this is the ceiling a client can reach
    against this relay on this machine, with no application work around the calls.
    """
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from requests.adapters import HTTPAdapter

    local = threading.local()
    sessions: list[requests.Session] = []
    sessions_lock = threading.Lock()
    endpoint = url.rstrip("/") + "/api/v1/handle/availability/imessage"

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            # Like BlueBubblesClient: skip the per-request scan of os.environ.
            local.session.trust_env = False
            local.session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1))
            with sessions_lock:
                sessions.append(local.session)
        return local.session

    def one(i: int) -> int:
        # Even last digit and never ...9999: every answer is a plain 200.
        address = f"+1555{(2 * i) % 10_000_000:07d}"
        response = session().get(
            endpoint, params={"password": password, "address": address}, timeout=(5, 30)
        )
        return response.status_code

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            statuses = list(pool.map(one, range(n)))
        elapsed = time.perf_counter() - started
    finally:
        for s in sessions:
            s.close()
    failures = n - statuses.count(200)
    if failures:
        raise RuntimeError(f"{failures} of {n} availability requests did not answer 200")
    return n / elapsed


# Command line (shared by `python -m lines.simulator` and `manage.py relay_simulator`)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--password", default="secret")
    parser.add_argument(
        "--registry", metavar="FILE", help='JSON object: address -> true | false | "error"'
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--helper-disconnected", action="store_true")
    parser.add_argument("--false-negative-rate", type=float, default=0.0, metavar="RATE")
    parser.add_argument("--send-timeout", action="store_true")
    parser.add_argument("--throttle-per-hour", type=int, default=None, metavar="N")
    parser.add_argument("--drop-webhooks", action="store_true")
    parser.add_argument("--delivery-delay", type=float, default=0.2, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=0)


def from_options(options: Mapping[str, Any], *, verbose: bool = False) -> RelaySimulator:
    registry = load_registry(options["registry"]) if options.get("registry") else None
    return RelaySimulator(
        host=options["host"],
        port=options["port"],
        password=options["password"],
        registry=registry,
        latency=options["latency"],
        helper_connected=not options["helper_disconnected"],
        false_negative_rate=options["false_negative_rate"],
        send_timeout=options["send_timeout"],
        throttle_per_hour=options["throttle_per_hour"],
        drop_webhooks=options["drop_webhooks"],
        delivery_delay=options["delivery_delay"],
        seed=options["seed"],
        verbose=verbose,
    )


def serve(sim: RelaySimulator, write: Callable[[str], Any] = print) -> None:
    """Run `sim` in the foreground until Ctrl-C or SIGTERM."""
    import signal

    sim.start()
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        write(f"Relay simulator listening on {sim.url} (password {sim.password!r})")
        while not stop.wait(1):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        write("Relay simulator stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lines.simulator", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_arguments(parser)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    options = vars(parser.parse_args(argv))
    try:
        sim = from_options(options, verbose=options["verbose"])
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    try:
        serve(sim)
    except OSError as exc:
        parser.exit(1, f"Could not listen on {sim.host}:{sim.port}: {exc}\n")


if __name__ == "__main__":
    main()

"""Client for a line's relay: the BlueBubbles Server REST API v1 subset in RELAY.md.

Callers talk to `RelayClient`; `BlueBubblesClient` is the one implementation today.
Every failure is a `RelayError` that says whether retrying can help (`permanent`) and
whether the request got to the relay at all (`reached`), so a send that never left
this machine need not count against a line's caps.
"""

from __future__ import annotations

import ipaddress
import mimetypes
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from urllib3.exceptions import MaxRetryError, NewConnectionError

from tuco.logging import redact_password_params
from tuco.netguard import PeerCheckedAdapter

IMESSAGE_PREFIX = "iMessage;-;"
# macOS 26 hands back direct chats as "any;-;<address>"; both name the same chat.
ANY_PREFIX = "any;-;"
DIRECT_CHAT_PREFIXES = (IMESSAGE_PREFIX, ANY_PREFIX)

WEBHOOK_EVENTS = ("new-message", "updated-message", "message-send-error")

# Availability checks sent together (a background job's round) go out from this many
# threads at most, each over its client's keep-alive pool (as large, so all of them
# can talk to one relay at once).
CHECK_CONCURRENCY = 32


def chat_guid_for(address: str) -> str:
    """The direct-chat guid the relay uses for `address` (E.164 number or email)."""
    return f"{IMESSAGE_PREFIX}{address}"


def address_from_chat_guid(chat_guid: str) -> str | None:
    """The address of a direct chat guid with either prefix, None for anything else."""
    for prefix in DIRECT_CHAT_PREFIXES:
        if chat_guid.startswith(prefix):
            return chat_guid[len(prefix) :] or None
    return None


# How long a relay's signed-in account is trusted before a "not on iMessage" answer.
SIGNED_IN_TRUST_SECONDS = 2.0
NOT_SIGNED_IN = "The Mac is not signed in to iMessage"


class RelayError(Exception):
    """A relay call failed.

    permanent: retrying the same call cannot succeed (bad password, invalid body).
    status: the HTTP status, None when no response came back.
    reached: False only when the request certainly never got to the relay
        (refused, DNS, connect timeout); a send that failed this way was not sent.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        reached: bool = True,
        error_type: str | None = None,
        data: Any = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status
        self.reached = reached
        self.error_type = error_type
        self.data = data

    @property
    def send_outcome_unknown(self) -> bool:
        """Did a failed send call leave it open whether the relay sent the message?

        - no answer after the request got there (read timeout, connection reset);
        - 504 / `Gateway Timeout` / "Transaction timeout": the Mac did not confirm in
          time, but may still write the message;
        - 400 "tempGuid already in flight": an earlier call with our tempGuid is still
          sending it.
        Such a send is neither retried (a duplicate text) nor failed (a fallback SMS on
        top of a delivered iMessage): the caller looks it up by tempGuid.
        """
        if self.status is None:
            return self.reached
        if (
            self.status == 504
            or self.error_type == "Gateway Timeout"
            or "transaction timeout" in self.message.lower()
        ):
            return True
        return self.status == 400 and bool(_TEMP_GUID_IN_FLIGHT.search(self.message))


# "Message is already queued to be sent (Temp GUID: ...)" in BlueBubbles and the
# simulator; also read more loosely, as other relays word it differently.
_TEMP_GUID_IN_FLIGHT = re.compile(
    r"already\s+(queued|in\s+flight|being\s+sent)|temp\s*guid\b.*\bin\s+flight", re.IGNORECASE
)


@dataclass(frozen=True)
class RelayMessage:
    """A message the relay accepted. `guid` is None if the relay did not echo it back."""

    guid: str | None
    chat_guid: str | None
    temp_guid: str | None
    raw: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class HealthResult:
    healthy: bool
    detail: str
    info: dict = field(default_factory=dict)


class RelayAddressRefused(Exception):
    """A connection landed on an address outside RELAY_ALLOWED_NETWORKS."""

    def __init__(self, address: str):
        super().__init__(address)
        self.address = address


def relay_address_allowed(address: str) -> bool:
    """Whether RELAY_ALLOWED_NETWORKS lets relays be reached at this IP address
    (anywhere when it is empty). An IPv4-mapped IPv6 address counts as its IPv4."""
    networks = settings.RELAY_ALLOWED_NETWORKS
    if not networks:
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


ACCOUNT_NAME_MAX = 100


def _account_name(value) -> str:
    """The account a relay says it is signed in to, as one line of printable text of at
    most ACCOUNT_NAME_MAX characters (HTML is escaped where it is shown)."""
    text = value if isinstance(value, str) else str(value)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(text) > ACCOUNT_NAME_MAX:
        text = text[: ACCOUNT_NAME_MAX - 1] + "…"
    return text


def _check_relay_peer(sock) -> None:
    peer = sock.getpeername()[0]
    if not relay_address_allowed(peer):
        sock.close()
        raise RelayAddressRefused(peer)


def relay_host_check(server_url: str) -> None:
    """Raise ValueError when RELAY_ALLOWED_NETWORKS is set and the URL's host resolves
    to an address outside it (or does not resolve): for saving a line's server URL.
    Connections are checked again when they are made."""
    if not settings.RELAY_ALLOWED_NETWORKS:
        return
    parts = urlsplit(server_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise ValueError(f"The host {parts.hostname!r} cannot be resolved") from None
    outside = sorted({i[4][0] for i in infos if not relay_address_allowed(i[4][0])})
    if outside:
        raise ValueError(
            f"{parts.hostname} resolves to {outside[0]}, outside the networks relays may "
            "be reached at (RELAY_ALLOWED_NETWORKS)"
        )


class RelayClient:
    """What the rest of Tuco needs from a line's relay."""

    def check(self, address: str) -> bool:
        """True when `address` is on iMessage. `False` may be a false negative."""
        raise NotImplementedError

    def send_text(
        self,
        *,
        chat_guid: str | None = None,
        address: str | None = None,
        text: str,
        temp_guid: str,
    ) -> RelayMessage:
        """Send to an existing chat, or open one with `address` (first contact).

        Blocks until the relay has written the message (up to about two minutes);
        not safe to call while holding a database transaction open.
        """
        raise NotImplementedError

    def send_attachment(
        self, *, chat_guid: str, filename: str, content: bytes, temp_guid: str
    ) -> RelayMessage:
        raise NotImplementedError

    def get(self, guid: str) -> dict | None:
        """The relay's message object, None when the relay does not know the guid."""
        raise NotImplementedError

    def health(self) -> HealthResult:
        raise NotImplementedError

    def register_webhook(self, url: str, events: list[str] | tuple[str, ...]) -> dict:
        raise NotImplementedError

    def list_webhooks(self) -> list[dict]:
        """The relay's webhook registrations, each `{"id", "url", "events"}`."""
        raise NotImplementedError

    def delete_webhook(self, webhook_id) -> None:
        raise NotImplementedError

    def query_messages(self, after_ms: int, limit: int = 1000) -> list[dict]:
        """Messages (sent and received) created at or after `after_ms`, oldest first."""
        raise NotImplementedError


class BlueBubblesClient(RelayClient):
    """Speaks to a BlueBubbles Server (or the simulator) over HTTP.

    One pooled `requests.Session` per client; the pool is shared by threads, which
    urllib3 supports. The relay sets no cookies, so the session's jar stays empty.
    """

    def __init__(
        self,
        server_url: str,
        password: str,
        timeout: tuple[float, float] = (5, 130),
        *,
        send_method: str = "apple-script",
        pool_maxsize: int = CHECK_CONCURRENCY,
    ):
        self.server_url = server_url.rstrip("/")
        self.password = password
        self.timeout = timeout
        self.send_method = send_method
        self._signed_in_seen = -SIGNED_IN_TRUST_SECONDS
        # Health checks run from the UI and the scheduler; they must not hang for the
        # two minutes a send is allowed.
        self.health_timeout = (timeout[0], min(timeout[1], 15))
        self.session = requests.Session()
        # requests re-reads proxy and CA settings from os.environ on every call, about a
        # quarter of the cost of a small request; read them once instead.
        self.session.trust_env = False
        self.session.proxies.update(requests.utils.get_environ_proxies(self.server_url))
        self.session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        adapter = PeerCheckedAdapter(
            _check_relay_peer, pool_connections=1, pool_maxsize=pool_maxsize
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"<BlueBubblesClient {self.server_url}>"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> BlueBubblesClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # The API

    def check(self, address: str) -> bool:
        data = self._call(
            "GET", "/api/v1/handle/availability/imessage", params={"address": address}
        )
        if not isinstance(data, dict) or not isinstance(data.get("available"), bool):
            raise RelayError(
                f"Relay answered availability without a boolean: {data!r:.200}", permanent=False
            )
        if not data["available"]:
            self._confirm_signed_in()
        return data["available"]

    def _confirm_signed_in(self) -> None:
        """A Mac signed out of iMessage answers "no" for every address: before a "no"
        is believed, make sure an account is signed in (asked at most every
        SIGNED_IN_TRUST_SECONDS), or report the line's failure instead of an answer."""
        now = time.monotonic()
        if now - self._signed_in_seen < SIGNED_IN_TRUST_SECONDS:
            return
        info = self._call("GET", "/api/v1/server/info", timeout=self.health_timeout)
        if isinstance(info, dict) and info.get("detected_imessage") is None:
            raise RelayError(
                NOT_SIGNED_IN, permanent=False, status=500, error_type="iMessage Error"
            )
        self._signed_in_seen = now

    def send_text(
        self,
        *,
        chat_guid: str | None = None,
        address: str | None = None,
        text: str,
        temp_guid: str,
    ) -> RelayMessage:
        if chat_guid:
            data = self._call(
                "POST",
                "/api/v1/message/text",
                json={
                    "chatGuid": chat_guid,
                    "tempGuid": temp_guid,
                    "message": text,
                    "method": self.send_method,
                },
            )
            return _message_from(data, chat_guid=chat_guid, temp_guid=temp_guid)
        if not address:
            raise ValueError("send_text needs a chat_guid or an address")
        chat = self._call(
            "POST",
            "/api/v1/chat/new",
            json={
                "addresses": [address],
                "message": text,
                "service": "iMessage",
                "method": self.send_method,
                "tempGuid": temp_guid,
            },
        )
        if not isinstance(chat, dict) or not isinstance(chat.get("guid"), str):
            raise RelayError(
                f"Relay created a chat but sent no chat guid: {chat!r:.200}", permanent=False
            )
        messages = chat.get("messages") or [{}]
        return _message_from(messages[0], chat_guid=chat["guid"], temp_guid=temp_guid)

    def send_attachment(
        self, *, chat_guid: str, filename: str, content: bytes, temp_guid: str
    ) -> RelayMessage:
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        data = self._call(
            "POST",
            "/api/v1/message/attachment",
            data={
                "chatGuid": chat_guid,
                "name": filename,
                "tempGuid": temp_guid,
                "method": self.send_method,
            },
            files={"attachment": (filename, content, mime)},
        )
        return _message_from(data, chat_guid=chat_guid, temp_guid=temp_guid)

    def get(self, guid: str) -> dict | None:
        try:
            data = self._call(
                "GET", f"/api/v1/message/{quote(guid, safe='')}", params={"with": "chats"}
            )
        except RelayError as exc:
            if exc.status == 404:
                return None
            raise
        return data if isinstance(data, dict) else None

    def health(self) -> HealthResult:
        try:
            pong = self._call("GET", "/api/v1/ping", timeout=self.health_timeout)
            info = self._call("GET", "/api/v1/server/info", timeout=self.health_timeout)
        except RelayError as exc:
            return HealthResult(healthy=False, detail=exc.message, info={})
        if pong != "pong":
            return HealthResult(False, f"Unexpected ping answer: {pong!r:.100}", {})
        if not isinstance(info, dict):
            return HealthResult(False, "Server info is not an object", {})
        if not info.get("helper_connected"):
            return HealthResult(False, "Private API helper is not connected", info)
        if info.get("detected_imessage") is None:
            return HealthResult(False, NOT_SIGNED_IN, info)
        # Only now is the server known to be a relay; what it calls its account is
        # still its own words, so it is shown as plain text of a bounded length.
        return HealthResult(True, f"Signed in as {_account_name(info['detected_imessage'])}", info)

    def register_webhook(
        self, url: str, events: list[str] | tuple[str, ...] = WEBHOOK_EVENTS
    ) -> dict:
        return self._call("POST", "/api/v1/webhook", json={"url": url, "events": list(events)})

    def list_webhooks(self) -> list[dict]:
        data = self._call("GET", "/api/v1/webhook")
        if not isinstance(data, list):
            raise RelayError("The relay's webhook list is not a list", permanent=False)
        return [
            hook
            for hook in data
            if isinstance(hook, dict) and isinstance(hook.get("url"), str) and "id" in hook
        ]

    def delete_webhook(self, webhook_id) -> None:
        self._call("DELETE", f"/api/v1/webhook/{quote(str(webhook_id), safe='')}")

    def query_messages(self, after_ms: int, limit: int = 1000) -> list[dict]:
        data = self._call(
            "POST",
            "/api/v1/message/query",
            json={"after": after_ms, "sort": "ASC", "limit": limit, "with": ["chat", "handle"]},
        )
        if not isinstance(data, list):
            raise RelayError(f"Message query answered {type(data).__name__}", permanent=False)
        return data

    # Transport

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        timeout: tuple[float, float] | None = None,
        **kwargs,
    ) -> Any:
        """One request; returns the envelope's `data` or raises RelayError."""
        url = self.server_url + path
        try:
            response = self.session.request(
                method,
                url,
                params={"password": self.password, **(params or {})},
                timeout=timeout or self.timeout,
                # A relay answers where it is asked; a redirect would carry the
                # password (and the health check) to wherever it points.
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as exc:
            # The password travels in the URL, which requests and urllib3 put in their
            # exceptions' messages: take it out before anything can show or log them.
            _redact_exception_chain(exc)
            raise self._transport_error(exc, method, path) from exc
        except RelayAddressRefused as exc:
            raise RelayError(
                f"The relay at {self.server_url} is at {exc.address}, outside "
                "RELAY_ALLOWED_NETWORKS",
                permanent=True,
                reached=False,
            ) from None
        return _unwrap(response)

    def _transport_error(
        self, exc: requests.RequestException, method: str, path: str
    ) -> RelayError:
        if isinstance(exc, requests.ConnectTimeout):
            return RelayError(
                f"Timed out connecting to the relay at {self.server_url}",
                permanent=False,
                reached=False,
            )
        if isinstance(exc, requests.ReadTimeout):
            return RelayError(f"The relay did not answer {method} {path} in time", permanent=False)
        if isinstance(exc, requests.ConnectionError):
            never_sent = _never_connected(exc)
            where = "reach" if never_sent else "finish talking to"
            return RelayError(
                f"Could not {where} the relay at {self.server_url}: {_root_cause(exc)}",
                permanent=False,
                reached=not never_sent,
            )
        return RelayError(f"Relay request failed: {exc}", permanent=False)


def _unwrap(response: requests.Response) -> Any:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # A proxy error page or a relay mid-restart; worth another try later. Nothing
        # of the body is repeated: the URL may point at a service that is not a relay.
        kind = "a redirect" if 300 <= status < 400 else "a body that is not a relay envelope"
        raise RelayError(
            f"Not a relay: the server answered HTTP {status} with {kind}",
            permanent=False,
            status=status,
        )
    if 200 <= status < 300 and body.get("status", status) == 200 and "error" not in body:
        return body.get("data")

    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    error_type = error.get("type")
    detail = error.get("message") or body.get("message") or f"HTTP {status}"
    summary = body.get("message")
    message = f"{summary}: {detail}" if summary and summary != detail else str(detail)
    if status in (401, 403):
        message = f"The relay refused the password ({message})"
    # 408 and 429 are worth retrying; the rest of 4xx means the request itself is wrong.
    permanent = 400 <= status < 500 and status not in (408, 429)
    raise RelayError(
        message,
        permanent=permanent,
        status=status,
        error_type=error_type,
        data=body.get("data"),
    )


def _message_from(data: Any, *, chat_guid: str, temp_guid: str) -> RelayMessage:
    if not isinstance(data, dict):
        raise RelayError(
            f"The relay accepted a send but returned {type(data).__name__}", permanent=False
        )
    chats = data.get("chats") or []
    if chats and isinstance(chats[0], dict) and chats[0].get("guid"):
        chat_guid = chats[0]["guid"]
    return RelayMessage(
        guid=data.get("guid"),
        chat_guid=chat_guid,
        temp_guid=data.get("tempGuid") or temp_guid,
        raw=data,
    )


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection itself failed (refused, DNS), so nothing was sent.

    A reset or an aborted response is different: the relay may have acted on it.
    """
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)


def _redact_exception_chain(exc: BaseException) -> None:
    """Replace the `password=` query value with *** in `exc` and every exception it
    carries: its cause and context, the exceptions among its args (requests wraps
    urllib3's), urllib3's `reason`, and the URLs they keep (`url`, and those of
    requests' `request` and `response`)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        args = []
        for arg in current.args:
            if isinstance(arg, str):
                arg = redact_password_params(arg)
            elif isinstance(arg, BaseException):
                pending.append(arg)
            args.append(arg)
        current.args = tuple(args)
        if isinstance(getattr(current, "url", None), str):
            current.url = redact_password_params(current.url)
        response = getattr(current, "response", None)
        for holder in (
            getattr(current, "request", None),
            response,
            getattr(response, "request", None),
        ):
            if isinstance(getattr(holder, "url", None), str):
                holder.url = redact_password_params(holder.url)
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        pending += [current.__cause__, current.__context__]


def _root_cause(exc: BaseException) -> str:
    reason = exc.args[0] if exc.args else exc
    if isinstance(reason, MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    return str(reason)


_clients: dict[tuple[str, str], RelayClient] = {}
_clients_lock = threading.Lock()


def get_client(line) -> RelayClient:
    """The relay client for a line (anything with `server_url` and `relay_password`).

    Clients are kept per (url, password) so their connection pools are reused; a
    changed password simply makes a new client.
    """
    key = (line.server_url.rstrip("/"), line.relay_password)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = BlueBubblesClient(*key)
        return client


def clear_client_cache() -> None:
    """Close and forget cached clients (tests, or after a line's relay moved)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        if isinstance(client, BlueBubblesClient):
            client.close()


_check_pool: ThreadPoolExecutor | None = None
_check_pool_lock = threading.Lock()


def check_many(
    requests: Sequence[tuple[RelayClient, str]], *, while_waiting: Callable[[], None] | None = None
) -> list[bool | RelayError]:
    """Ask `client.check(address)` for every pair at once; the answers (or the
    RelayError of each failed request) in the same order.

    `while_waiting` runs in the calling thread while the requests are out (other
    work to overlap with them). A single request runs in the calling thread, after it.
    """

    def one(request: tuple[RelayClient, str]) -> bool | RelayError:
        client, address = request
        try:
            return client.check(address)
        except RelayError as exc:
            return exc

    if len(requests) <= 1:
        if while_waiting is not None:
            while_waiting()
        return [one(request) for request in requests]
    futures = [_pool().submit(one, request) for request in requests]
    if while_waiting is not None:
        while_waiting()
    return [future.result() for future in futures]


def _pool() -> ThreadPoolExecutor:
    global _check_pool
    with _check_pool_lock:
        if _check_pool is None:
            _check_pool = ThreadPoolExecutor(
                max_workers=CHECK_CONCURRENCY, thread_name_prefix="relay-check"
            )
        return _check_pool


def _forget_pool_after_fork() -> None:
    # A forked worker process inherits the object but none of its threads.
    global _check_pool, _check_pool_lock
    _check_pool = None
    _check_pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)

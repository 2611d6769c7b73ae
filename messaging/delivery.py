"""Signing and sending webhook requests, refusing targets inside our own network.

Signatures and body (what the published verifiers in message-webhooks.mdx accept):
- `X-Tuco-Signature: <hex HMAC-SHA256 of the body>`, keyed with the secret exactly as
  the user was given it (the whole `whsec_...` string, as UTF-8 bytes);
- `X-Tuco-Timestamp: <ISO 8601 UTC time of the attempt>`;
- the Standard Webhooks headers, `webhook-id` (the delivery's id, the same on every
  retry), `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
  "{webhook-id}.{webhook-timestamp}.{body}">`, keyed as Standard Webhooks libraries
  expect: with the base64-decoded part of the secret.
The published verifiers do not check the raw body: they parse it and serialize it
again (`JSON.stringify(body)` in Node, `json.dumps(body, separators=(',', ':'))` in
Python), so the body is sent in exactly that compact form. The two differ on
non-ASCII text only (Node keeps it, Python escapes it): we send it unescaped, as
`JSON.stringify` does (see `encode_body`), so the Node verifier accepts every event
and the Python one every ASCII-only event; verifying the raw body works for both.

SSRF: a URL whose host resolves to a private, loopback, link-local, multicast or
reserved address (also inside an IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64
or 6to4 IPv6 address, judged by the IPv4 address it carries) is refused when the
endpoint is saved, and again when each request connects: the peer address of the
actual socket is checked, so a DNS answer that changes between the two checks
(rebinding) cannot reach an internal host.
`WEBHOOKS_ALLOW_PRIVATE_TARGETS` turns both checks off (local development, tests).
`guarded_session` is the same transport for other URLs API callers give us
(attachments).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http
import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from messaging.models.webhooks import SECRET_PREFIX
from tuco.api.fields import iso_utc
from tuco.errors import ValidationFailed
from tuco.netguard import PeerCheckedAdapter

TIMEOUT_SECONDS = 10
RESPONSE_EXCERPT = 500
USER_AGENT = "Tuco-Webhooks/1.0"


class BlockedTarget(Exception):
    """The target resolves to an address webhooks may not reach."""


def private_targets_allowed() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE_TARGETS", False))


# IPv6 addresses that carry an IPv4 address a gateway or relay forwards to: the
# well-known NAT64 prefix (RFC 6052, the IPv4 address in the last 32 bits) and 6to4
# (RFC 3056, the IPv4 address in bits 16-48). Such an address is as public as the
# IPv4 address inside it.
NAT64_NETWORK = ipaddress.IPv6Network("64:ff9b::/96")
# IPv4-compatible addresses (::a.b.c.d, RFC 4291, deprecated but still routed by some
# stacks and tunnels) and IPv4-translated ones (::ffff:0:a.b.c.d, RFC 2765): the IPv4
# address in the last 32 bits too.
IPV4_COMPATIBLE_NETWORK = ipaddress.IPv6Network("::/96")
IPV4_TRANSLATED_NETWORK = ipaddress.IPv6Network("::ffff:0:0:0/96")
# The local-use NAT64 prefix (RFC 8215) translates inside one network only.
LOCAL_NAT64_NETWORK = ipaddress.IPv6Network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64_NETWORK or ip in IPV4_COMPATIBLE_NETWORK or ip in IPV4_TRANSLATED_NETWORK:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public_ip(value: str) -> bool:
    ip = ipaddress.ip_address(value.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in LOCAL_NAT64_NETWORK:
            return False
        ip = _embedded_ipv4(ip) or ip
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise BlockedTarget(f"The host {host!r} cannot be resolved") from exc
    return sorted({info[4][0] for info in infos})


def target_check(
    url: str,
    *,
    allow_private: bool | None = None,
    purpose: str = "webhooks",
    code: str = "WEBHOOK_TARGET_NOT_ALLOWED",
) -> None:
    """Validate an outbound URL for saving: http(s), a host, and (unless private
    targets are allowed: `allow_private`, else the webhooks setting) a public address.
    `purpose` and `code` word the refusal ("webhooks can only reach ...")."""
    if not isinstance(url, str):
        raise ValidationFailed("Enter a valid URL", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("Enter a valid http(s) URL", field="url")
    if parts.username or parts.password:
        raise ValidationFailed("Credentials in the URL are not allowed", field="url")
    if private_targets_allowed() if allow_private is None else allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationFailed("Enter a valid port", field="url") from None
    try:
        addresses = _resolve(parts.hostname, port)
    except BlockedTarget as exc:
        raise ValidationFailed(str(exc), field="url") from None
    blocked = [a for a in addresses if not is_public_ip(a)]
    if blocked:
        raise ValidationFailed(
            f"{parts.hostname} resolves to a private, loopback or link-local "
            f"address ({blocked[0]}); {purpose} can only reach public addresses",
            field="url",
            code=code,
        )


def _check_peer(sock) -> None:
    peer = sock.getpeername()[0]
    if not is_public_ip(peer):
        sock.close()
        raise BlockedTarget(f"Refused to deliver to the non-public address {peer}")


def guarded_session(*, allow_private: bool = False) -> requests.Session:
    """A session for a URL an API caller gave us: no proxy or settings from the
    environment, no retries, and unless `allow_private` every connection is refused
    when its peer address is not public (checked on the connected socket).
    BlockedTarget is raised for a refused connection."""
    session = requests.Session()
    # An environment proxy would make the proxy the peer and hide the real target.
    session.trust_env = False
    adapter = (
        HTTPAdapter(max_retries=0)
        if allow_private
        else PeerCheckedAdapter(_check_peer, max_retries=0)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _session() -> requests.Session:
    return guarded_session(allow_private=private_targets_allowed())


# Signing


def _standard_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(*, secret: str, webhook_id: str, timestamp: float, body: bytes) -> dict[str, str]:
    """The signature and time headers of one attempt at `timestamp` (Unix seconds)."""
    seconds = int(timestamp)
    signed = f"{webhook_id}.{seconds}.".encode() + body
    v1 = base64.b64encode(hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()).decode()
    return {
        "X-Tuco-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "X-Tuco-Timestamp": iso_utc(datetime.fromtimestamp(timestamp, tz=UTC)),
        "webhook-id": webhook_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": f"v1,{v1}",
    }


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_body(payload: dict) -> bytes:
    """`payload` as `JSON.stringify` writes it: compact, non-ASCII text as is, and a
    lone surrogate (which UTF-8 cannot hold) escaped as `\\udxxx`, as Node does.
    Payloads carry no floats: Python and Node write some of them differently."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode()


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    response_body: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def post_signed(
    *, url: str, secret: str, webhook_id: str, event: str, payload: dict, now: float | None = None
) -> Outcome:
    """One signed POST. Never raises for network trouble: the outcome says what happened.

    Makes a network call: not to be used while holding a database transaction open.
    """
    body = encode_body(payload)
    timestamp = now if now is not None else time.time()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Tuco-Event": event,
        **sign(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=body),
    }
    started = time.monotonic()
    status, error, excerpt = None, "", ""
    try:
        with _session() as session:
            response = session.post(
                url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False
            )
            status = response.status_code
            excerpt = response.text[:RESPONSE_EXCERPT]
            if not 200 <= status < 300:
                error = f"HTTP {status}: {_reason(response)}"
    except requests.ConnectionError as exc:
        cause = exc
        while cause is not None and not isinstance(cause, BlockedTarget):
            cause = cause.__cause__ or cause.__context__
        error = str(cause) if cause is not None else f"Connection failed: {_root(exc)}"
    except requests.Timeout:
        # The published wording of a health check that timed out (test-webhook.mdx).
        error = "The operation was aborted due to timeout"
    except BlockedTarget as exc:
        error = str(exc)
    except requests.RequestException as exc:
        error = f"Request failed: {exc}"
    duration = int((time.monotonic() - started) * 1000)
    return Outcome(status_code=status, error=error, response_body=excerpt, duration_ms=duration)


def _reason(response: requests.Response) -> str:
    """The status line's reason phrase ("Bad Gateway"), or the standard one."""
    if response.reason:
        return str(response.reason)
    try:
        return http.HTTPStatus(response.status_code).phrase
    except ValueError:
        return "Unknown status"


def _root(exc: BaseException) -> str:
    reason = exc.args[0] if exc.args else exc
    inner = getattr(reason, "reason", None)
    return str(inner or reason)

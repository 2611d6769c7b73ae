"""Attachments given as public URLs: validated at submit time, fetched at send time.

Only http(s) URLs whose file name ends in an allowed extension are accepted, and
the download must say it is one of the allowed types (Content-Type). The fetch
refuses private, loopback, link-local and other non-public targets (the URL comes
from an API caller; without this it could reach our own network) unless
`MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS` is set (the demo): the host is checked
when it is resolved, and the connected socket's peer again (the webhook
transport, messaging.delivery), so a DNS answer that changes in between cannot
reach an internal host; no proxy is taken from the environment. It follows no
redirects and stops reading past MAX_ATTACHMENT_BYTES.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import requests
from django.conf import settings

from messaging.delivery import BlockedTarget, guarded_session

MAX_ATTACHMENTS = 2
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
ALLOWED_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "webp", "heic", "mp4", "mov", "caf", "pdf"}
)
# What a download of each kind may say it is. Many storage services serve HEIC,
# CAF and other files as a generic binary type; that is accepted too, the URL's
# extension (already checked) saying what the file is.
GENERIC_CONTENT_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
CONTENT_TYPES = {
    "png": {"image/png"},
    "jpg": {"image/jpeg", "image/jpg", "image/pjpeg"},
    "jpeg": {"image/jpeg", "image/jpg", "image/pjpeg"},
    "gif": {"image/gif"},
    "webp": {"image/webp"},
    "heic": {"image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence"},
    "mp4": {"video/mp4"},
    "mov": {"video/quicktime"},
    "caf": {"audio/x-caf", "audio/caf"},
    "pdf": {"application/pdf"},
}
ALLOWED_CONTENT_TYPES = frozenset().union(*CONTENT_TYPES.values())
FETCH_TIMEOUT = (5, 30)


class AttachmentError(Exception):
    def __init__(self, message: str, *, permanent: bool = True):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes


def filename_of(url: str) -> str:
    return os.path.basename(unquote(urlsplit(url).path)) or "attachment"


def display_names(urls: list[str], names: list[str]) -> list[str]:
    """The file name each attachment is sent under: its `attachmentNames` entry (with
    the URL's extension added when it has none, so the recipient's device still
    knows the kind of file), else the URL's file name."""
    shown = []
    for index, url in enumerate(urls):
        name = (names[index] if index < len(names) else "").strip()
        from_url = filename_of(url)
        if not name:
            shown.append(from_url)
            continue
        extension = os.path.splitext(from_url)[1]
        if extension and not os.path.splitext(name)[1]:
            name += extension
        shown.append(name.replace("/", "_"))
    return shown


def validate_url(url) -> str:
    """The URL, stripped, or ValueError with a message fit for the API."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("each item must be a URL")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    extension = filename_of(url).rpartition(".")[2].lower()
    if extension not in ALLOWED_EXTENSIONS:
        allowed = ", ".join(sorted(ALLOWED_EXTENSIONS))
        raise ValueError(f"{url!r} is not a supported file type ({allowed})")
    return url


def _allow_private() -> bool:
    return bool(getattr(settings, "MESSAGING_ALLOW_PRIVATE_ATTACHMENT_URLS", False))


def _check_public(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise AttachmentError(f"Cannot resolve {host}", permanent=False) from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise AttachmentError(f"Attachment host {host} is not a public address")


def _content_type(response: requests.Response) -> str:
    return (response.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def fetch(url: str) -> Attachment:
    """Download one attachment. Raises AttachmentError (permanent unless the failure
    is the network's). Blocking network I/O: not inside a transaction."""
    url = validate_url(url)
    parts = urlsplit(url)
    allow_private = _allow_private()
    if not allow_private:
        _check_public(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    try:
        with (
            guarded_session(allow_private=allow_private) as session,
            session.get(url, stream=True, timeout=FETCH_TIMEOUT, allow_redirects=False) as r,
        ):
            if r.is_redirect:
                raise AttachmentError(f"Attachment URL {url} redirects; give the final URL")
            if r.status_code >= 500 or r.status_code in (408, 429):
                raise AttachmentError(
                    f"Attachment URL answered HTTP {r.status_code}", permanent=False
                )
            if r.status_code != 200:
                raise AttachmentError(f"Attachment URL answered HTTP {r.status_code}")
            content_type = _content_type(r)
            if content_type not in ALLOWED_CONTENT_TYPES | GENERIC_CONTENT_TYPES:
                raise AttachmentError(
                    f"Attachment URL {url} answered Content-Type {content_type or '(none)'!r}, "
                    "not a supported file type"
                )
            declared = r.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_ATTACHMENT_BYTES:
                raise AttachmentError("Attachment is larger than 25 MB")
            chunks, size = [], 0
            for chunk in r.iter_content(64 * 1024):
                size += len(chunk)
                if size > MAX_ATTACHMENT_BYTES:
                    raise AttachmentError("Attachment is larger than 25 MB")
                chunks.append(chunk)
    except BlockedTarget as exc:
        raise AttachmentError(f"Attachment host {parts.hostname} is not a public address") from exc
    except requests.RequestException as exc:
        if _blocked(exc):
            raise AttachmentError(
                f"Attachment host {parts.hostname} is not a public address"
            ) from exc
        raise AttachmentError(f"Could not download {url}: {exc}", permanent=False) from exc
    return Attachment(filename=filename_of(url), content=b"".join(chunks))


def _blocked(exc: BaseException) -> bool:
    """Was this connection error the connect-time peer check refusing the address?"""
    cause = exc
    while cause is not None and not isinstance(cause, BlockedTarget):
        cause = cause.__cause__ or cause.__context__
    return cause is not None

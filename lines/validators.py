"""What a line's server URL and iMessage handles must look like, in one place for
the API's input serializer, the dashboard and admin forms, and the line services
(which store them normalized). Each returns the normalized value or raises
ValueError with the message to show."""

import ipaddress
import re
from urllib.parse import urlsplit

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

INVALID_URL = "Enter a valid http(s) URL, e.g. https://mac.example.com:1234"

# Underscores are not RFC 1123, but container DNS (compose service names) uses them.
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)", re.IGNORECASE)


def _valid_host(host: str) -> bool:
    """A host name (with or without a dot: relays often sit at http://macmini:1234 on
    a LAN or http://relay:1234 in a compose network) or an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


def clean_server_url(value: str) -> str:
    value = (value or "").strip().rstrip("/")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError(INVALID_URL) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not _valid_host(parts.hostname)
        or any(ch.isspace() for ch in value)
    ):
        raise ValueError(INVALID_URL)
    if parts.query or parts.fragment:
        raise ValueError("The server URL must not carry a query or fragment")
    return value


def clean_phone(value: str) -> str:
    """E.164, US when there is no country code; "" stays ""."""
    value = (value or "").strip()
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, None if value.startswith("+") else "US")
    except phonenumbers.NumberParseException:
        raise ValueError(f"{value!r} is not a valid phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def clean_email(value: str) -> str:
    """Lower case; "" stays ""."""
    value = (value or "").strip().lower()
    if not value:
        return ""
    try:
        validate_email(value)
    except ValidationError:
        raise ValueError(f"{value!r} is not a valid email address") from None
    return value

"""Recipient addresses, normalized one way for the whole app.

Lead matching, the do-not-contact list, the unibox and the send pipeline must
agree on what an address is, so a phone without a country code is read in the
same default country the leads app uses (`LEADS_DEFAULT_COUNTRY_CODE`).
"""

from __future__ import annotations

from leads.normalize import InvalidIdentifier, default_region, normalize_email, normalize_phone
from lines.relay import address_from_chat_guid


def is_email(address: str) -> bool:
    return "@" in address


def phone_normalize(value) -> str:
    """E.164, reading a number without country code in the default country.
    Raises InvalidIdentifier."""
    return normalize_phone(value, default_region())


class InvalidRecipient(ValueError):
    """Not a phone number (or email address); the message is worded for the API."""


def recipient_normalize(value, kind: str) -> str:
    """A phone number (`kind` "phone": E.164 in the default country) or an email
    address as the app keeps it; "" for none. InvalidRecipient otherwise."""
    if value in (None, ""):
        return ""
    try:
        return phone_normalize(value) if kind == "phone" else normalize_email(value)
    except InvalidIdentifier:
        label = "phone number" if kind == "phone" else "email address"
        raise InvalidRecipient(f"{value!r} is not a valid {label}") from None


def normalize_address(raw: str) -> str:
    """E.164 for a phone, lowercase for an email; the trimmed input when neither parses."""
    value = (raw or "").strip()
    if not value:
        return ""
    try:
        return normalize_email(value) if "@" in value else phone_normalize(value)
    except InvalidIdentifier:
        return value.lower() if "@" in value else value


def direct_chat_guid(chat_guid: str | None, address: str) -> str:
    """`chat_guid` when it is the direct chat with `address` (`iMessage;-;<address>` or
    `any;-;<address>`), else "": a group chat, or a chat with someone else, must never
    become the thread a 1:1 conversation sends to."""
    if not chat_guid or not address:
        return ""
    other = address_from_chat_guid(chat_guid)
    if other is None:
        return ""
    return chat_guid if normalize_address(other) == normalize_address(address) else ""

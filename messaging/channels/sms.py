"""SMS through Twilio (the `twilio` library), for `sms` messages and fallback SMS."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

# Twilio error codes that name a bad or unreachable destination: retrying the same
# request cannot succeed.
PERMANENT_CODES = frozenset(
    {
        21211,  # invalid 'To' number
        21408,  # permission to send to this region not enabled
        21610,  # recipient unsubscribed (STOP)
        21612,  # 'To' not reachable through this 'From'
        21614,  # 'To' is not a mobile number
        21617,  # body too long
        21606,  # 'From' cannot send to this destination
        21660,  # 'From' does not belong to the account
        20003,  # authentication failed
    }
)


class SmsError(Exception):
    def __init__(self, message: str, *, permanent: bool, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code


@dataclass(frozen=True)
class SmsResult:
    sid: str
    status: str


def status_callback_url() -> str | None:
    site = getattr(settings, "SITE_URL", "")
    return f"{site}/api/webhooks/twilio/status" if site else None


def send_sms(*, config, to: str, body: str) -> SmsResult:
    """Send one SMS with the workspace's Twilio account. Raises SmsError.

    Makes an HTTP call: not for use inside a database transaction.
    """
    if not config or not config.is_configured:
        raise SmsError("Twilio is not configured for this workspace", permanent=True)
    client = Client(config.twilio_account_sid, config.twilio_auth_token)
    kwargs = {"to": to, "from_": config.twilio_from_number, "body": body}
    callback = status_callback_url()
    if callback:
        kwargs["status_callback"] = callback
    try:
        created = client.messages.create(**kwargs)
    except TwilioRestException as exc:
        status = exc.status or 0
        permanent = exc.code in PERMANENT_CODES or (400 <= status < 500 and status != 429)
        raise SmsError(
            f"Twilio error {exc.code}: {exc.msg}", permanent=permanent, code=exc.code
        ) from exc
    except (TwilioException, OSError) as exc:
        raise SmsError(f"Could not reach Twilio: {exc}", permanent=False) from exc
    return SmsResult(sid=created.sid, status=created.status or "queued")

"""Email through Django's configured email backend."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMessage


class EmailError(Exception):
    def __init__(self, message: str, *, permanent: bool):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


def send_email(*, to: str, subject: str, body: str, message_id: str) -> str:
    """Send one email; returns the Message-ID header used. Raises EmailError.

    Talks to the mail server: not for use inside a database transaction.
    """
    header_id = f"<{message_id}@{settings.SITE_URL.split('://')[-1].split('/')[0] or 'tuco'}>"
    email = EmailMessage(
        subject=subject or "",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
        headers={"Message-ID": header_id},
    )
    try:
        email.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise EmailError(f"The mail server refused {to}", permanent=True) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailError(f"Could not send the email: {exc}", permanent=False) from exc
    return header_id

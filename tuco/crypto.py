"""Secrets at rest (relay passwords, Twilio tokens), encrypted with Fernet.

The key comes from FIELD_ENCRYPTION_KEY or, failing that, is derived from
SECRET_KEY, so rotating SECRET_KEY without setting FIELD_ENCRYPTION_KEY makes
stored secrets unreadable: set FIELD_ENCRYPTION_KEY in production.
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models

from tuco.env import envstr


@cache
def _fernet() -> Fernet:
    raw = envstr("FIELD_ENCRYPTION_KEY") or settings.SECRET_KEY
    key = base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest())
    return Fernet(key)


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return ""


class EncryptedTextField(models.TextField):
    """A text field stored encrypted; reads give back the plain value."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

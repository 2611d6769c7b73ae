"""Idempotency-Key handling for POSTs that create things.

The first request with a key inserts a row (the unique constraint decides who
is first, across processes), runs, and stores its response; a repeat with the
same body gets the stored response back, with another body a 422, and while
the first still runs a 409.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from tuco.errors import ServiceError
from tuco.models import IdempotencyRecord

# A first request that has not finished after this long died with its process;
# a repeat may then take the key over instead of waiting out the whole TTL.
ABANDONED_AFTER = timedelta(minutes=5)
MAX_KEY_LENGTH = 255


@dataclass
class Replay:
    status: int
    body: dict


def request_fingerprint(method: str, path: str, data) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path} {canonical}".encode()).hexdigest()


def idempotency_begin(*, workspace, key: str, fingerprint: str) -> IdempotencyRecord | Replay:
    if len(key) > MAX_KEY_LENGTH:
        raise ServiceError(
            "Idempotency-Key is too long (255 characters at most)", code="VALIDATION_ERROR"
        )
    now = timezone.now()
    for _ in range(2):
        try:
            with transaction.atomic():
                return IdempotencyRecord.objects.create(
                    workspace=workspace, key=key, request_hash=fingerprint, created_at=now
                )
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(workspace=workspace, key=key).first()
        if existing is None:
            continue  # removed in between; try to insert again
        expired = existing.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_TTL_SECONDS)
        abandoned = not existing.completed and existing.created_at < now - ABANDONED_AFTER
        if expired or abandoned:
            IdempotencyRecord.objects.filter(
                pk=existing.pk, created_at=existing.created_at
            ).delete()
            continue
        if existing.request_hash != fingerprint:
            raise ServiceError(
                "Idempotency-Key was already used with a different request body",
                code="IDEMPOTENCY_KEY_REUSED",
                status=422,
            )
        if not existing.completed:
            raise ServiceError(
                "A request with this Idempotency-Key is still being processed",
                code="IDEMPOTENCY_IN_PROGRESS",
                status=409,
            )
        return Replay(existing.response_status, existing.response_body)
    raise ServiceError(
        "A request with this Idempotency-Key is still being processed",
        code="IDEMPOTENCY_IN_PROGRESS",
        status=409,
    )


def idempotency_finish(*, record: IdempotencyRecord, status: int, body) -> None:
    if status >= 500 or status in (409, 429):
        # Nothing was done (or we cannot tell): let the client try again with the same key.
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        completed=True, response_status=status, response_body=body
    )

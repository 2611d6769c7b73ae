"""Idempotency-Key handling for POSTs that create things.

The first request with a key inserts a row in a transaction of its own (the unique
constraint decides who is first, across processes), so that a repeat arriving
while it runs sees it and gets a 409. The request's work then runs in one
transaction that also stores its answer on that row: the rows it created and the
answer it gave are committed together or not at all. A repeat therefore replays
the first answer whenever the work committed, even if what came after the commit
failed (an on-commit hook raising, the response lost on the way); and when the
work rolled back, the row is released so the client can simply try again. A repeat
with another body gets a 422.
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


def _in_progress() -> ServiceError:
    return ServiceError(
        "A request with this Idempotency-Key is still being processed",
        code="IDEMPOTENCY_IN_PROGRESS",
        status=409,
    )


def is_replayable(status: int) -> bool:
    """Whether an answer is stored and replayed. A 5xx, 409 or 429 says nothing was
    done, or that trying again may go otherwise: the key is released instead."""
    return status < 500 and status not in (409, 429)


def idempotency_begin(*, workspace, key: str, fingerprint: str) -> IdempotencyRecord | Replay:
    """Claim the key (committed at once, so must run outside any transaction) or
    answer from the request that claimed it first."""
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
            raise _in_progress()
        return Replay(existing.response_status, existing.response_body)
    raise _in_progress()


def idempotency_complete(*, record: IdempotencyRecord, status: int, body) -> None:
    """Store the answer, inside the transaction of the work it answers for.

    The key may have been taken over meanwhile (this request ran past
    ABANDONED_AFTER): the work must then not commit, so this raises the 409 that
    rolls it back."""
    stored = IdempotencyRecord.objects.filter(
        pk=record.pk, created_at=record.created_at, completed=False
    ).update(completed=True, response_status=status, response_body=body)
    if not stored:
        raise _in_progress()


def idempotency_settle(*, record: IdempotencyRecord, status: int, body) -> None:
    """After a request whose work did not commit with its answer (it raised, or its
    answer is not replayed): store a replayable refusal, or release the key.

    A record that did commit with its work is left alone: this also runs when
    something failed after that commit, and the stored answer is then the true one."""
    pending = IdempotencyRecord.objects.filter(
        pk=record.pk, created_at=record.created_at, completed=False
    )
    if is_replayable(status):
        pending.update(completed=True, response_status=status, response_body=body)
    else:
        pending.delete()

"""The do-not-contact list: its entries, and which addresses are on it.

Adding an address also cancels the messages waiting for it: that is
`messaging.services.dnc_add`, since it writes the outbox too."""

from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Q

from leads.normalize import InvalidIdentifier, normalize_email
from messaging.addresses import is_email, phone_normalize
from messaging.models import DoNotContact
from tuco.errors import NotFound, ValidationFailed
from tuco.ids import looks_like_id


def dnc_address(*, phone: str | None = None, email: str | None = None) -> tuple[str, str]:
    """(kind, normalized value) for exactly one of phone / email; ValidationFailed otherwise."""
    phone = (phone or "").strip() if isinstance(phone, str) else phone
    email = (email or "").strip() if isinstance(email, str) else email
    if phone and email:
        raise ValidationFailed("Provide either phone or email, not both")
    if not phone and not email:
        raise ValidationFailed("Either phone or email is required")
    try:
        if phone:
            return "phone", phone_normalize(phone)
        return "email", normalize_email(email)
    except InvalidIdentifier as exc:
        field = "phone" if phone else "email"
        raise ValidationFailed(str(exc), field=field) from None


def dnc_entry_add(
    *, workspace, kind: str, value: str, reason: str, source: str
) -> tuple[DoNotContact, bool]:
    """The entry for a normalized address, created when missing (an existing entry is
    returned as is); (entry, created)."""
    entry = DoNotContact.objects.filter(workspace=workspace, value=value).first()
    created = False
    if entry is None:
        try:
            with transaction.atomic():
                entry = DoNotContact.objects.create(
                    workspace=workspace,
                    value=value,
                    kind=kind,
                    reason=(reason or "")[:300],
                    source=source,
                )
                created = True
        except IntegrityError:
            entry = DoNotContact.objects.get(workspace=workspace, value=value)
    return entry, created


def dnc_remove(*, workspace, entry_id) -> None:
    deleted = 0
    if looks_like_id(entry_id):
        deleted, _ = DoNotContact.objects.filter(workspace=workspace, pk=entry_id).delete()
    if not deleted:
        raise NotFound("Do-not-contact entry not found")


def dnc_list(*, workspace, search: str = ""):
    rows = DoNotContact.objects.filter(workspace=workspace)
    search = (search or "").strip()
    if search:
        digits = "".join(ch for ch in search if ch.isdigit())
        match = Q(value__icontains=search) | Q(reason__icontains=search)
        if digits and not is_email(search):
            match |= Q(value__contains=digits)
        rows = rows.filter(match)
    return rows.order_by("-created_at", "-id")


def dnc_blocked_values(*, workspace_id: str, values: Iterable[str]) -> set[str]:
    """Those of these normalized addresses that are on the do-not-contact list."""
    return {value for _, value in dnc_blocked_pairs(workspace_ids=[workspace_id], values=values)}


def dnc_blocked_pairs(*, workspace_ids: Iterable[str], values: Iterable[str]) -> set[tuple]:
    """(workspace id, value) for those of these values on the list of one of these
    workspaces, read together."""
    wanted = sorted({v for v in values if v})
    if not wanted:
        return set()
    return set(
        DoNotContact.objects.filter(
            workspace_id__in=sorted(set(workspace_ids)), value__in=wanted
        ).values_list("workspace_id", "value")
    )


def dnc_blocked_address(*, workspace, addresses: Iterable[str]) -> str | None:
    """The first of these normalized addresses that is on the do-not-contact list, if any."""
    wanted = [a for a in addresses if a]
    found = dnc_blocked_values(workspace_id=workspace.pk, values=wanted)
    return next((a for a in wanted if a in found), None)

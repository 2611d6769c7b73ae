from collections.abc import Iterable

from messaging.models import DoNotContact


def dnc_blocked_values(*, workspace_id: str, values: Iterable[str]) -> set[str]:
    """Those of these normalized addresses that are on the do-not-contact list."""
    wanted = sorted({v for v in values if v})
    if not wanted:
        return set()
    return set(
        DoNotContact.objects.filter(workspace_id=workspace_id, value__in=wanted).values_list(
            "value", flat=True
        )
    )


def dnc_blocked_address(*, workspace, addresses: Iterable[str]) -> str | None:
    """The first of these normalized addresses that is on the do-not-contact list, if any."""
    wanted = [a for a in addresses if a]
    found = dnc_blocked_values(workspace_id=workspace.pk, values=wanted)
    return next((a for a in wanted if a in found), None)

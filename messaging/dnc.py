from collections.abc import Iterable

from messaging.models import DoNotContact


def dnc_blocked_address(*, workspace, addresses: Iterable[str]) -> str | None:
    """The first of these normalized addresses that is on the do-not-contact list, if any."""
    wanted = [a for a in addresses if a]
    if not wanted:
        return None
    found = set(
        DoNotContact.objects.filter(workspace=workspace, value__in=wanted).values_list(
            "value", flat=True
        )
    )
    return next((a for a in wanted if a in found), None)

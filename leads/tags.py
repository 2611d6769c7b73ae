"""Tags on leads: a workspace's labels (names unique ignoring case), added by the API,
imports, the dashboard and reply rules, each LeadTag row saying which (`source`).

Writes are set-based: the tags named are created once (missing ones in one insert),
then one insert adds every (lead, tag) pair, skipping pairs that exist, so tagging
ten thousand leads costs a few statements, not one per lead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.db import transaction
from django.db.models.functions import Lower

from leads.models import Lead, LeadTag, Tag
from tuco.errors import ValidationFailed

MAX_TAG_LENGTH = 100
MAX_TAGS_PER_LEAD = 50
SOURCES = ("api", "import", "dashboard", "rule")
_SEPARATORS = re.compile(r"[,;]")


def clean_tag_names(value) -> list[str]:
    """Tag names from a list of strings, or one string of names separated by commas
    or semicolons (a CSV cell); trimmed, each once ignoring case, in order.
    ValueError with the reason for anything else."""
    if value is None:
        return []
    if isinstance(value, str):
        items = _SEPARATORS.split(value)
    elif isinstance(value, list | tuple):
        items = list(value)
        if not all(isinstance(item, str) for item in items):
            raise ValueError("Must be a list of tag names (strings)")
    else:
        raise ValueError("Must be a list of tag names")
    names: dict[str, str] = {}
    for item in items:
        name = " ".join(item.split())
        if not name:
            continue
        if len(name) > MAX_TAG_LENGTH:
            raise ValueError(f"A tag has at most {MAX_TAG_LENGTH} characters")
        if "\x00" in name:
            raise ValueError("Null characters are not allowed")
        names.setdefault(name.lower(), name)
    if len(names) > MAX_TAGS_PER_LEAD:
        raise ValueError(f"At most {MAX_TAGS_PER_LEAD} tags per lead")
    return list(names.values())


def tags_resolve(*, workspace, names: Iterable[str]) -> dict[str, Tag]:
    """{lowercased name: Tag} for `names` (cleaned), creating the missing tags."""
    wanted = {name.lower(): name for name in names}
    if not wanted:
        return {}

    def existing() -> dict[str, Tag]:
        return {
            tag.lname: tag
            for tag in Tag.objects.annotate(lname=Lower("name")).filter(
                workspace=workspace, lname__in=list(wanted)
            )
        }

    found = existing()
    missing = [Tag(workspace=workspace, name=wanted[key]) for key in wanted if key not in found]
    if missing:
        # A concurrent writer may create the same name: its row wins, ours is skipped.
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        found = existing()
    return found


def lead_tags_add(*, workspace, pairs: Iterable[tuple[str, Iterable[str]]], source: str) -> int:
    """Add tags to leads of the workspace: `pairs` of (lead id, cleaned tag names);
    ids of other workspaces' leads are ignored. A tag a lead already has is left as
    it is (its source and time kept). Returns how many tags were added."""
    pairs = [(lead_id, list(names)) for lead_id, names in pairs if names]
    if not pairs:
        return 0
    ours = set(
        Lead.objects.filter(workspace=workspace, pk__in={lead_id for lead_id, _ in pairs})
        .values_list("pk", flat=True)
    )  # fmt: skip
    return tags_insert(workspace=workspace, pairs=[p for p in pairs if p[0] in ours], source=source)


def tags_insert(*, workspace, pairs: list[tuple[str, list[str]]], source: str) -> int:
    """lead_tags_add for leads known to be the workspace's (an import's own)."""
    if not pairs:
        return 0
    tags = tags_resolve(workspace=workspace, names={n for _, names in pairs for n in names})
    rows = {(lead_id, tags[name.lower()].pk) for lead_id, names in pairs for name in names}
    lead_ids = {lead_id for lead_id, _ in pairs}
    tag_ids = {tag.pk for tag in tags.values()}
    rows -= set(
        LeadTag.objects.filter(lead_id__in=lead_ids, tag_id__in=tag_ids).values_list(
            "lead_id", "tag_id"
        )
    )
    LeadTag.objects.bulk_create(
        [LeadTag(lead_id=lead_id, tag_id=tag_id, source=source) for lead_id, tag_id in rows],
        ignore_conflicts=True,
        batch_size=5000,
    )
    return len(rows)


def lead_tags_remove(*, workspace, lead_ids: Iterable[str], names: Iterable[str]) -> int:
    """Take tags off leads of the workspace; returns how many were removed."""
    lowered = [name.lower() for name in names]
    if not lowered:
        return 0
    deleted, _ = (
        LeadTag.objects.filter(lead__workspace=workspace, lead_id__in=list(lead_ids))
        .annotate(lname=Lower("tag__name"))
        .filter(lname__in=lowered)
        .delete()
    )
    return deleted


def lead_tags_set(*, workspace, lead: Lead, names: list[str], source: str) -> None:
    """Make the lead's tags exactly `names` (kept tags keep their source and time)."""
    keep = {name.lower() for name in names}
    current = dict(
        LeadTag.objects.filter(lead=lead)
        .annotate(lname=Lower("tag__name"))
        .values_list("lname", "pk")
    )  # fmt: skip
    gone = [pk for lname, pk in current.items() if lname not in keep]
    if gone:
        LeadTag.objects.filter(pk__in=gone).delete()
    lead_tags_add(
        workspace=workspace,
        pairs=[(lead.pk, [n for n in names if n.lower() not in current])],
        source=source,
    )


@transaction.atomic
def lead_tags_change(
    *, workspace, lead: Lead, add: list[str], remove: list[str], source: str = "api"
) -> None:
    """Add then remove tags on one lead of the workspace. ValidationFailed for a bad
    name (field "add" or "remove")."""
    names = {}
    for field, value in (("add", add), ("remove", remove)):
        try:
            names[field] = clean_tag_names(value)
        except ValueError as exc:
            raise ValidationFailed(str(exc), field=field) from None
    lead_tags_add(workspace=workspace, pairs=[(lead.pk, names["add"])], source=source)
    lead_tags_remove(workspace=workspace, lead_ids=[lead.pk], names=names["remove"])

"""Reads for leads and lists, always scoped to one workspace."""

import math
import re
from dataclasses import dataclass

from django.db.models import Count, Q
from django.db.models.functions import Lower

from leads.models import PHONE_FIELDS, Lead, LeadList, LeadTag, ListMembership, Tag
from tuco.errors import NotFound
from tuco.ids import looks_like_id

LEAD_NOT_FOUND = "Lead not found or access denied"
LIST_NOT_FOUND = "List not found"


class NotFoundExact(NotFound):
    """404 whose body is exactly {"error": message}, as the published API answers."""

    code = None


_SEARCH_FIELDS = ("first_name", "last_name", "email", "company_name")
_PHONE_CHARS = re.compile(r"[\s().\-]")


def lead_get(*, workspace, lead_id, message: str = LEAD_NOT_FOUND) -> Lead:
    """The workspace's lead with its list ids; NotFound (same body) for unknown,
    malformed or foreign ids."""
    lead = None
    if looks_like_id(lead_id):
        lead = Lead.objects.filter(workspace=workspace, pk=lead_id).first()
    if lead is None:
        raise NotFoundExact(message)
    attach_list_ids([lead])
    attach_tags([lead])
    return lead


def lead_list_get(*, workspace, list_id) -> LeadList:
    lead_list = None
    if looks_like_id(list_id):
        lead_list = LeadList.objects.filter(workspace=workspace, pk=list_id).first()
    if lead_list is None:
        raise NotFoundExact(LIST_NOT_FOUND)
    return lead_list


def attach_list_ids(leads: list[Lead]) -> list[Lead]:
    """Set `list_ids` on each lead with one query for all of them."""
    by_lead: dict[str, list[str]] = {lead.pk: [] for lead in leads}
    if by_lead:
        memberships = (
            ListMembership.objects.filter(lead_id__in=list(by_lead))
            .order_by("created_at", "id")
            .values_list("lead_id", "lead_list_id")
        )
        for lead_id, list_id in memberships:
            by_lead[lead_id].append(list_id)
    for lead in leads:
        lead.list_ids = by_lead[lead.pk]
    return leads


def attach_tags(leads: list[Lead]) -> list[Lead]:
    """Set `tag_names` (sorted, ignoring case) on each lead with one query for all."""
    by_lead: dict[str, list[str]] = {lead.pk: [] for lead in leads}
    if by_lead:
        for lead_id, name in LeadTag.objects.filter(lead_id__in=list(by_lead)).values_list(
            "lead_id", "tag__name"
        ):
            by_lead[lead_id].append(name)
    for lead in leads:
        lead.tag_names = sorted(by_lead[lead.pk], key=str.lower)
    return leads


def tag_list(*, workspace):
    """The workspace's tags with `lead_count`, by name ignoring case."""
    return (
        Tag.objects.filter(workspace=workspace)
        .annotate(lead_count=Count("lead_tags"))
        .order_by(Lower("name"), "name")
    )


def tag_find(*, workspace, name: str) -> Tag | None:
    return Tag.objects.filter(workspace=workspace, name__iexact=name.strip()).first()


def _phone_match(digits: str) -> Q:
    condition = Q()
    for name in PHONE_FIELDS:
        condition |= Q(**{f"{name}__contains": digits})
    return condition


def _search_filter(search: str) -> Q:
    """Every word must match a name, email, phone or company (case-insensitive)."""
    condition = Q()
    for term in search.split():
        term_q = Q()
        for name in _SEARCH_FIELDS:
            term_q |= Q(**{f"{name}__icontains": term})
        digits = _PHONE_CHARS.sub("", term)
        if digits.lstrip("+").isdigit():
            term_q |= _phone_match(digits)
        condition &= term_q
    compact = _PHONE_CHARS.sub("", search)
    if " " in search.strip() and compact.lstrip("+").isdigit():
        # A number as people write it: "(202) 555-0123" is also one term.
        condition |= _phone_match(compact)
    return condition


@dataclass
class Page:
    items: list
    page: int
    limit: int
    total_count: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total_count / self.limit) if self.limit else 0


def lead_search(
    *,
    workspace,
    search: str = "",
    list_id: str | None = None,
    availability: str | None = None,
    tag: str | None = None,
    page: int = 1,
    limit: int = 50,
) -> Page:
    """One page of the workspace's leads, newest first, with list ids attached.

    Ordering follows the (workspace, -created_at) index so a page costs an index
    walk, not a sort of the whole workspace; the total is counted once.
    """
    queryset = Lead.objects.filter(workspace=workspace)
    if list_id:
        lead_list = lead_list_get(workspace=workspace, list_id=list_id)
        queryset = queryset.filter(
            pk__in=ListMembership.objects.filter(lead_list=lead_list).values("lead_id")
        )
    if availability:
        queryset = queryset.filter(availability_status=availability)
    if tag:
        found = tag_find(workspace=workspace, name=tag)
        queryset = (
            queryset.filter(pk__in=LeadTag.objects.filter(tag=found).values("lead_id"))
            if found
            else queryset.none()
        )
    search = (search or "").strip()
    if search:
        queryset = queryset.filter(_search_filter(search))
    total = queryset.count()
    offset = (page - 1) * limit
    items = []
    if offset < total:
        items = list(queryset.order_by("-created_at", "-id")[offset : offset + limit])
    attach_list_ids(items)
    attach_tags(items)
    return Page(items=items, page=page, limit=limit, total_count=total)


def lead_lists_with_counts(*, workspace):
    """The workspace's lists with `lead_count`, oldest first, in one query."""
    # Explicit order: Meta.ordering does not apply to an aggregating query.
    return (
        LeadList.objects.filter(workspace=workspace)
        .annotate(lead_count=Count("memberships"))
        .order_by("created_at", "pk")
    )

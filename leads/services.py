"""Writes for leads and lists.

Identity: a normalized phone or email belongs to at most one lead per workspace.
`LeadIdentifier` mirrors every identifier with a unique (workspace, value)
index, so the database enforces it. Writers that create or change identifiers
take a per-workspace advisory lock first, so two imports into one workspace
queue behind each other instead of racing for the same values and failing on
the constraint (SQLite needs no lock: it runs one writer at a time).
"""

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import islice
from typing import TypedDict, Unpack

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from leads.models import (
    DEFAULT_LIST_NAME,
    EMAIL_FIELDS,
    IDENTIFIER_FIELDS,
    PHONE_FIELDS,
    QUICK_SENDS_LIST_DESCRIPTION,
    QUICK_SENDS_LIST_NAME,
    Lead,
    LeadIdentifier,
    LeadList,
    ListMembership,
)
from leads.normalize import InvalidIdentifier, Normalizer
from leads.selectors import LEAD_NOT_FOUND, LIST_NOT_FOUND, NotFoundExact
from leads.signals import leads_created, leads_deleting
from leads.tags import clean_tag_names, lead_tags_set, tags_insert
from tuco.errors import Conflict, ValidationFailed
from tuco.models import Membership

DEFAULT_BATCH_SIZE = 5000
MAX_REPORTED_ERRORS = 1000

# API name -> model field, for every writable lead field.
API_FIELDS = {
    "firstName": "first_name",
    "lastName": "last_name",
    "email": "email",
    "phone": "phone",
    "altPhone1": "alt_phone1",
    "altPhone2": "alt_phone2",
    "altPhone3": "alt_phone3",
    "altEmail1": "alt_email1",
    "altEmail2": "alt_email2",
    "altEmail3": "alt_email3",
    "companyName": "company_name",
    "jobTitle": "job_title",
    "notes": "notes",
    "customFields": "custom_fields",
    "source": "source",
    "optedOut": "opted_out",
}
MODEL_TO_API = {v: k for k, v in API_FIELDS.items()}
# Rows may use API names or model field names.
_INPUT_KEYS = {**API_FIELDS, **{v: v for v in API_FIELDS.values()}}
_TEXT_FIELDS = ("first_name", "last_name", "company_name", "job_title", "notes", "source")
_MAX_LENGTHS = {
    f.name: f.max_length
    for f in Lead._meta.concrete_fields
    if f.name in _INPUT_KEYS.values() and getattr(f, "max_length", None)
}
_PHONE_SET = frozenset(PHONE_FIELDS)
# A lead's custom fields: objects and arrays at most this many levels deep (the
# customFields object itself is the first), and at most this long as JSON.
MAX_CUSTOM_FIELDS_DEPTH = 5
MAX_CUSTOM_FIELDS_BYTES = 10 * 1024
CUSTOM_FIELDS_TOO_DEEP = f"Must not nest more than {MAX_CUSTOM_FIELDS_DEPTH} levels deep"
CUSTOM_FIELDS_TOO_BIG = f"Must be at most {MAX_CUSTOM_FIELDS_BYTES // 1024} KB as JSON"


# --------------------------------------------------------------------------- rows


class RowError(Exception):
    """One input row is invalid: `field` is the API name of its bad field (or empty),
    `where` the row and field as the API names them ("leads[3].phone")."""

    def __init__(self, index: int, field_name: str, message: str):
        self.where = f"leads[{index}].{field_name}" if field_name else f"leads[{index}]"
        super().__init__(f"{self.where}: {message}")
        self.index = index
        self.field = field_name
        self.message = message
        self.line = None  # line in the source file, when the rows came from one


_TEXT, _PHONE, _EMAIL, _CUSTOM, _BOOL = range(5)
# Input key (API or model name) -> (model field, API name, kind, max length).
_FIELD_SPECS = {
    key: (
        name,
        MODEL_TO_API[name],
        _PHONE
        if name in PHONE_FIELDS
        else _EMAIL
        if name in EMAIL_FIELDS
        else _CUSTOM
        if name == "custom_fields"
        else _BOOL
        if name == "opted_out"
        else _TEXT,
        _MAX_LENGTHS.get(name),
    )
    for key, name in _INPUT_KEYS.items()
}


def clean_lead_fields(
    row, normalizer: Normalizer, *, index: int = 0, partial: bool = False
) -> dict:
    """Validate and normalize one lead's input (API or model names) to model fields.

    Unknown keys are ignored. Raises RowError naming the field (API name).
    """
    return _clean_lead(row, normalizer, index, partial)[0]


def _clean_lead(row, normalizer: Normalizer, index: int, partial: bool):
    """clean_lead_fields, and (unless partial) the lead's identifiers as
    _identifiers lists them. Runs once per imported row, so it is written for speed."""
    if not isinstance(row, dict):
        raise RowError(index, "", "Must be an object")
    cleaned = {}
    identifiers = []
    specs = _FIELD_SPECS
    for key, value in row.items():
        spec = specs.get(key)
        if spec is None:
            if key == "tags":
                try:
                    cleaned["tags"] = clean_tag_names(value)
                except ValueError as exc:
                    raise RowError(index, "tags", str(exc)) from None
            continue
        name, api_name, kind, limit = spec
        if kind == _TEXT:
            if value is None:
                value = ""
            elif type(value) is not str:
                raise RowError(index, api_name, "Must be a string")
            else:
                value = value.strip()
                if "\x00" in value:
                    raise RowError(index, api_name, "Null characters are not allowed")
                if limit and len(value) > limit:
                    raise RowError(
                        index, api_name, f"Ensure this field has no more than {limit} characters"
                    )
            cleaned[name] = value
        elif kind in (_PHONE, _EMAIL):
            if value is None or value == "":
                cleaned[name] = ""
                continue
            if type(value) is not str:
                raise RowError(index, api_name, "Must be a string")
            try:
                if kind == _PHONE:
                    value = normalizer.phone(value)
                else:
                    value = normalizer.email(value)
            except InvalidIdentifier as exc:
                raise RowError(index, api_name, str(exc)) from None
            cleaned[name] = value
            identifiers.append((name, value))
        elif kind == _CUSTOM:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise RowError(index, api_name, "Must be an object")
            if value:
                if _nested_too_deep(value, 1):
                    raise RowError(index, api_name, CUSTOM_FIELDS_TOO_DEEP)
                serialized = json.dumps(value)
                if "\\u0000" in serialized:
                    raise RowError(index, api_name, "Null characters are not allowed")
                if len(serialized) > MAX_CUSTOM_FIELDS_BYTES:
                    raise RowError(index, api_name, CUSTOM_FIELDS_TOO_BIG)
            cleaned[name] = value
        else:
            if not isinstance(value, bool):
                raise RowError(index, api_name, "Must be a boolean")
            cleaned[name] = value
    if partial:
        return cleaned, None
    if len(identifiers) > 1:
        identifiers = _ordered_distinct(cleaned, identifiers)
    elif not identifiers:
        raise RowError(index, "phone", "A lead needs at least one phone or email")
    elif cleaned[identifiers[0][0]] != identifiers[0][1]:
        identifiers = _identifiers(cleaned)  # the field was given again, empty
    return cleaned, identifiers


def _nested_too_deep(value: dict | list, depth: int) -> bool:
    """Whether objects and arrays nest more than MAX_CUSTOM_FIELDS_DEPTH levels in
    `value` (at level `depth`). Flat custom fields, the common case, cost one look at
    each value."""
    if depth > MAX_CUSTOM_FIELDS_DEPTH:
        return True
    for item in value.values() if type(value) is dict else value:
        if isinstance(item, dict | list) and _nested_too_deep(item, depth + 1):
            return True
    return False


_IDENTIFIER_POSITION = {name: n for n, name in enumerate(IDENTIFIER_FIELDS)}


def _ordered_distinct(fields: dict, found: list) -> list[tuple[str, str]]:
    """_drop_repeated_identifiers, then _identifiers, for a lead whose identifiers
    were found (in input order) as `found`; a phone and an email, the common
    case, without looking at all eight fields."""
    if len(found) == 2:
        (first, a), (second, b) = found
        if first != second and fields[first] == a and fields[second] == b:
            if _IDENTIFIER_POSITION[first] > _IDENTIFIER_POSITION[second]:
                first, a, second, b = second, b, first, a
            if a == b:
                fields[second] = ""
                return [(first, a)]
            return [(first, a), (second, b)]
    _drop_repeated_identifiers(fields)
    return _identifiers(fields)


def _drop_repeated_identifiers(fields: dict) -> None:
    """The same number or address twice on one lead is kept in its first field only."""
    seen = set()
    for name in IDENTIFIER_FIELDS:
        value = fields.get(name)
        if not value:
            continue
        if value in seen:
            fields[name] = ""
        else:
            seen.add(value)


def _identifiers(fields: dict) -> list[tuple[str, str]]:
    return [(f, fields[f]) for f in IDENTIFIER_FIELDS if fields.get(f)]


# --------------------------------------------------------------------------- locks


def _lock_workspace(workspace) -> None:
    """Serialize identifier writes in one workspace until the transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"tuco.leads.identity:{workspace.pk}"],
            )


def _lock_identifiers(workspace, values: Iterable[str]) -> None:
    """Serialize writes of these identifier values until the transaction ends, and
    only those: writers of other values go on at the same time.

    Shares the workspace lock that imports and edits hold alone (_lock_workspace),
    then takes one lock per value, always in the same order, so two writers of
    overlapping values queue instead of deadlocking."""
    if connection.vendor != "postgresql":
        return  # SQLite has one writer at a time anyway
    prefix = f"tuco.leads.identity:{workspace.pk}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, 0))", [prefix])
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM ("
            " SELECT DISTINCT hashtextextended(%s || ':' || v, 0) AS k"
            " FROM unnest(%s::text[]) AS v ORDER BY 1) AS keys",
            [prefix, sorted(set(values))],
        )


# False while a caller creates leads whose availability it checks itself (a send
# that is about to check its recipient): leads_created then says so.
_check_created = ContextVar("leads_check_created", default=True)


def _send_created(workspace, lead_ids: list[str]) -> None:
    if not lead_ids:
        return
    ids = list(lead_ids)
    check = _check_created.get()
    transaction.on_commit(
        lambda: leads_created.send(
            sender=Lead, workspace=workspace, lead_ids=ids, check_availability=check
        ),
        robust=True,
    )


# --------------------------------------------------------------------------- lists


def _get_or_create_list(
    workspace, name: str, *, is_default: bool = False, description: str = ""
) -> LeadList:
    lead_list = LeadList.objects.filter(workspace=workspace, name=name).first()
    if lead_list is None:
        try:
            with transaction.atomic():
                lead_list = LeadList.objects.create(
                    workspace=workspace, name=name, is_default=is_default, description=description
                )
        except IntegrityError:
            # Someone created it at the same moment; theirs is as good as ours.
            lead_list = LeadList.objects.get(workspace=workspace, name=name)
    return lead_list


def lead_list_get_or_create(*, workspace, name: str) -> LeadList:
    """The workspace's list with this name, created if missing (race-safe)."""
    return _get_or_create_list(workspace, _clean_list_name(name))


def lead_list_get_or_create_default(*, workspace) -> LeadList:
    """The list leads go to when no list is named."""
    lead_list = LeadList.objects.filter(workspace=workspace, is_default=True).first()
    if lead_list is None:
        lead_list = _get_or_create_list(workspace, DEFAULT_LIST_NAME, is_default=True)
    return lead_list


def lead_list_quick_sends(*, workspace) -> LeadList:
    """The "Quick Sends" list, created the first time a send needs it."""
    return _get_or_create_list(
        workspace, QUICK_SENDS_LIST_NAME, description=QUICK_SENDS_LIST_DESCRIPTION
    )


def _clean_list_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("This field is required.", field="name")
    name = name.strip()
    if "\x00" in name:
        raise ValidationFailed("Null characters are not allowed.", field="name")
    if len(name) > 200:
        raise ValidationFailed("Ensure this field has no more than 200 characters.", field="name")
    return name


def _clean_description(description) -> str:
    description = (description or "").strip()
    if "\x00" in description:
        raise ValidationFailed("Null characters are not allowed.", field="description")
    if len(description) > 500:
        raise ValidationFailed(
            "Ensure this field has no more than 500 characters.", field="description"
        )
    return description


def lead_list_create(*, workspace, name: str, description: str = "") -> LeadList:
    name = _clean_list_name(name)
    description = _clean_description(description)
    try:
        with transaction.atomic():
            return LeadList.objects.create(workspace=workspace, name=name, description=description)
    except IntegrityError:
        raise Conflict("A list with this name already exists") from None


def lead_list_update(
    *, workspace, lead_list: LeadList, name: str | None = None, description: str | None = None
) -> LeadList:
    """Change the given fields (None: unchanged)."""
    if lead_list.workspace_id != workspace.pk:
        raise NotFoundExact(LIST_NOT_FOUND)
    changed = []
    if name is not None:
        lead_list.name = _clean_list_name(name)
        changed.append("name")
    if description is not None:
        lead_list.description = _clean_description(description)
        changed.append("description")
    if changed:
        try:
            with transaction.atomic():
                lead_list.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:
            raise Conflict("A list with this name already exists") from None
    return lead_list


@transaction.atomic
def lead_list_delete(*, workspace, lead_list: LeadList, delete_leads: bool = False) -> int:
    """Delete the list; with delete_leads also its leads. Returns the number of leads deleted."""
    if lead_list.workspace_id != workspace.pk:
        raise NotFoundExact(LIST_NOT_FOUND)
    _lock_workspace(workspace)
    deleted = 0
    if delete_leads:
        lead_ids = ListMembership.objects.filter(lead_list=lead_list).values("lead_id")
        deleted = _delete_leads(
            workspace, Lead.objects.filter(workspace=workspace, id__in=lead_ids)
        )
    lead_list.delete()
    return deleted


# --------------------------------------------------------------------------- import


@dataclass
class ImportResult:
    saved_count: int = 0
    duplicate_count: int = 0
    linked_count: int = 0
    total_processed: int = 0
    list_id: str = ""
    lead_ids: list[str] = field(default_factory=list)
    # (row index, id of the lead it duplicates) for each duplicate row, in input order
    # (collected with lead_ids).
    duplicates: list[tuple[int, str]] = field(default_factory=list)
    invalid_count: int = 0
    # RowError for skipped rows (skip_invalid=True), the first MAX_REPORTED_ERRORS of them.
    errors: list[RowError] = field(default_factory=list)


@dataclass
class _CleanedBatch:
    # (fields, identifiers in field order, id the lead gets if it is new, row index)
    rows: list[tuple[dict, list[tuple[str, str]], str, int]]
    values: set[str]  # every identifier value of the batch


def _batches(rows: Iterable[dict], size: int) -> Iterator[list]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def lead_import(
    *,
    workspace,
    rows: Iterable[dict],
    lead_list: LeadList | None = None,
    source: str = "",
    default_country_code: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    atomic: bool = True,
    skip_invalid: bool = False,
    collect_ids: bool = True,
    progress: Callable[[ImportResult], None] | None = None,
    identifiers_locked: bool = False,
    to_quick_sends: bool = False,
    contact_owners: "ContactOwners | None" = None,
    tag_source: str = "api",
) -> ImportResult:
    """Create leads from rows (API or model field names) and put them in a list.

    A row is a duplicate when one of its identifiers matches a lead already in
    the list or an earlier row; it is skipped. A row matching a workspace lead
    that is not in the list adds that lead to the list (its fields are left
    alone) and counts as a duplicate and as linked. When a row's identifiers
    match two different leads, the first match in identifier order (phone,
    altPhone1-3, email, altEmail1-3) wins.

    atomic=True: one transaction; the first invalid row raises ValidationFailed
    ("leads[3].phone: Invalid phone number") and nothing is saved.
    atomic=False: each batch commits on its own (large files); with
    skip_invalid=True invalid rows are counted and reported instead of raising.
    Rows are read lazily, `batch_size` at a time, so memory stays flat.

    identifiers_locked=True: the caller's transaction already holds the locks of
    every identifier in `rows` (_lock_identifiers), so the import does not take
    the workspace's (atomic imports only).

    Without `lead_list` the leads go to the workspace's default list, or with
    to_quick_sends to the "Quick Sends" list. With `contact_owners` each new lead
    gets its owner from its row's `contactOwnerEmail` (see ContactOwners).
    """
    if default_country_code is None:
        default_country_code = getattr(settings, "LEADS_DEFAULT_COUNTRY_CODE", "+1")
    try:
        normalizer = Normalizer(default_country_code)
    except InvalidIdentifier as exc:
        raise ValidationFailed(str(exc), field="defaultCountryCode") from None
    if source and len(source) > _MAX_LENGTHS["source"]:
        raise ValidationFailed("Ensure this field has no more than 100 characters", field="source")
    if lead_list is not None and lead_list.workspace_id != workspace.pk:
        raise NotFoundExact(LIST_NOT_FOUND)

    def new_state() -> _ImportState:
        target = lead_list if lead_list is not None else _default_list(workspace, to_quick_sends)
        state = _ImportState(
            workspace,
            target,
            source,
            normalizer,
            skip_invalid,
            collect_ids,
            tag_source,
            few=_few(rows),
        )
        state.contact_owners = contact_owners
        return state

    if atomic:
        # Locked identifiers live in the caller's transaction, which is then the unit
        # of work (and its savepoint, if any): a second savepoint would only cost
        # two more round trips on every send to a new recipient.
        with transaction.atomic(savepoint=not identifiers_locked):
            if not identifiers_locked:
                _lock_workspace(workspace)
            # Inside the transaction, so a rejected first upload leaves no default list.
            state = new_state()
            _write_batches(state, rows, batch_size, progress, batch_transactions=False)
    else:
        state = new_state()
        _write_batches(state, rows, batch_size, progress, batch_transactions=True)
    return state.result


# Imports of fewer rows than this are written with plain INSERTs on every database.
# The COPY writer's staging table, created and dropped with each batch, costs the
# server more than it saves on a few rows, and every send to a new recipient
# creates its lead through here: a send cost Postgres 3.4 ms of CPU with its lead
# COPYed, 2.4 ms with it INSERTed.
COPY_MIN_ROWS = 50


def _few(rows: Iterable[dict]) -> bool:
    """Whether `rows` is known to hold fewer than COPY_MIN_ROWS rows (a list does)."""
    return isinstance(rows, list | tuple) and len(rows) < COPY_MIN_ROWS


def _default_list(workspace, quick_sends: bool) -> LeadList:
    if quick_sends:
        return lead_list_quick_sends(workspace=workspace)
    return lead_list_get_or_create_default(workspace=workspace)


class ContactOwners:
    """Who owns the leads an API upload creates, as the published API decides it: the
    workspace member whose email is given (the row's `contactOwnerEmail`, else the
    request's), and when that is missing or not a member's, the workspace's first
    member. The email is stored as the member's account has it."""

    def __init__(self, workspace, default=None):
        emails = list(
            Membership.objects.filter(workspace=workspace)
            .order_by("created_at", "pk")
            .values_list("user__email", flat=True)
        )
        self.members = {email.strip().lower(): email for email in reversed(emails) if email}
        first = next((email for email in emails if email), "")
        self.default = self.member(default) or first

    def member(self, given) -> str:
        """The member's email matching `given` (any case), or ""."""
        if not isinstance(given, str):
            return ""
        return self.members.get(given.strip().lower(), "")

    def __call__(self, given) -> str:
        return self.member(given) or self.default


def _write_batches(state, rows, batch_size, progress, *, batch_transactions: bool) -> None:
    """Clean and write the rows a batch at a time, each batch in a transaction of
    its own with `batch_transactions`.

    A batch's statements may still be running on the database server when
    write_batch returns (see _CopyWriter); the next batch is cleaned meanwhile,
    and the batch is settled (its statements waited for, its transaction
    committed) before anything else uses the connection. A row that fails to
    clean ends the import after the batches before it are settled, as if each had
    been written before the next was read."""
    pending = None
    try:
        for batch in _batches(rows, batch_size):
            cleaned = state.clean_batch(batch)
            pending, settling = None, pending
            _settle(settling, state, progress)
            pending = _start_batch(state, cleaned, batch_transactions)
    finally:
        _settle(pending, state, progress)


def _start_batch(state, cleaned, own_transaction: bool) -> ExitStack:
    """Write a cleaned batch; returns what settles it."""
    batch = ExitStack()
    try:
        if own_transaction:
            batch.enter_context(transaction.atomic())
            _lock_workspace(state.workspace)
            state.writer.check_references_per_statement()
        # Exit callbacks run last first: the batch's statements are waited for
        # (finish), then its tags go in, then its transaction commits.
        batch.push(state.tags_exit)
        batch.callback(state.writer.finish)
        state.write_batch(cleaned)
    except BaseException:
        if not batch.__exit__(*sys.exc_info()):
            raise
    return batch


def _settle(batch: ExitStack | None, state, progress) -> None:
    if batch is None:
        return
    batch.close()
    if progress:
        progress(state.result)


class _ImportState:
    def __init__(
        self,
        workspace,
        lead_list,
        source,
        normalizer,
        skip_invalid,
        collect_ids,
        tag_source,
        few=False,
    ):
        self.workspace = workspace
        self.lead_list = lead_list
        self.source = source
        self.normalizer = normalizer
        self.skip_invalid = skip_invalid
        self.collect_ids = collect_ids
        self.result = ImportResult(list_id=lead_list.pk)
        self.contact_owners: ContactOwners | None = None
        self.next_index = 0
        # Identifiers of duplicate rows that were not saved anywhere, so a later row
        # carrying one of them is still recognised as a repeat of an earlier row.
        self.unsaved_seen: dict[str, str] = {}
        writer = _CopyWriter if connection.vendor == "postgresql" and not few else _OrmWriter
        self.writer = writer(workspace, lead_list, source)
        self.tag_source = tag_source
        # (lead id, tag names) of the batch being written, new and matched leads alike.
        self.pending_tags: list[tuple[str, list[str]]] = []

    def tags_exit(self, exc_type, exc, tb) -> bool:
        """Add the batch's tags once its leads are written (an ExitStack exit)."""
        pairs, self.pending_tags = self.pending_tags, []
        if exc_type is None and pairs:
            tags_insert(workspace=self.workspace, pairs=pairs, source=self.tag_source)
        return False

    def clean_batch(self, batch: list) -> "_CleanedBatch":
        """Validate and normalize rows (no database work); invalid rows raise
        ValidationFailed, or are counted and reported with skip_invalid.

        Also lists each row's identifiers and the batch's distinct values, and
        gives each row the id it gets if it turns out to be new (an id is cheap;
        a duplicate just does not use its own)."""
        result = self.result
        cleaned_rows = []
        values = set()
        normalizer = self.normalizer
        new_id = Lead._meta.pk.default
        add_value = values.add
        owners = self.contact_owners
        for row in batch:
            index = self.next_index
            self.next_index += 1
            try:
                fields, idents = _clean_lead(row, normalizer, index, False)
                if owners is not None:
                    fields["contact_owner_email"] = owners(row.get("contactOwnerEmail"))
                cleaned_rows.append((fields, idents, new_id(), index))
                for _, value in idents:
                    add_value(value)
            except RowError as exc:
                exc.line = row.get("_line") if isinstance(row, dict) else None
                if not self.skip_invalid:
                    extra = {"row": index}
                    if exc.field:
                        extra["field"] = exc.field
                    if exc.line:
                        extra["line"] = exc.line
                    raise ValidationFailed(exc.message, field=exc.where, extra=extra) from None
                result.invalid_count += 1
                if len(result.errors) < MAX_REPORTED_ERRORS:
                    result.errors.append(exc)
        return _CleanedBatch(cleaned_rows, values)

    def write_batch(self, cleaned: "_CleanedBatch") -> None:
        """Save cleaned rows: new leads, links of existing ones, duplicates skipped."""
        result = self.result
        cleaned_rows, values = cleaned.rows, cleaned.values
        owner = self.writer.existing_owners(values)
        unsaved_seen = self.unsaved_seen
        candidates = set(owner.values())
        candidates.update(unsaved_seen[v] for v in values if v in unsaved_seen)
        in_list = self.writer.members(candidates)

        now = timezone.now()
        new_leads: list[tuple[str, dict, list]] = []
        link_ids: list[str] = []
        duplicates = result.duplicates if self.collect_ids else None
        pending_tags = self.pending_tags
        for fields, idents, lead_id, index in cleaned_rows:
            tags = fields.pop("tags", None)
            match = None
            for _, value in idents:
                match = owner.get(value) or unsaved_seen.get(value)
                if match:
                    break
            if match is None:
                if fields.get("opted_out"):
                    fields["opted_out_at"] = now
                new_leads.append((lead_id, fields, idents))
                for _, value in idents:
                    owner[value] = lead_id
                in_list.add(lead_id)
                if tags:
                    pending_tags.append((lead_id, tags))
                continue
            result.duplicate_count += 1
            if duplicates is not None:
                duplicates.append((index, match))
            # Tags add up: a duplicate row's tags go on the lead it matched.
            if tags:
                pending_tags.append((match, tags))
            if match not in in_list:
                in_list.add(match)
                link_ids.append(match)
                result.linked_count += 1
            for _, value in idents:
                if value not in owner:
                    unsaved_seen[value] = match

        self.writer.insert(new_leads, link_ids, now)
        created_ids = [new_lead[0] for new_lead in new_leads]
        result.saved_count += len(new_leads)
        result.total_processed += len(cleaned_rows)
        if self.collect_ids:
            result.lead_ids.extend(created_ids)
        _send_created(self.workspace, created_ids)


class _CopyWriter:
    """Postgres: each batch's new leads are copied into a temporary staging table,
    then moved into the real tables with one INSERT ... SELECT per table (leads,
    their identifiers, list memberships), which checks the foreign keys as any
    insert does.

    The moving statements go out in pipeline mode: the server runs them (and
    their foreign key checks, made immediate for that) while the caller cleans
    the next batch, and finish() waits for them. On a quiet two-core machine
    the bench's first case runs at 18,400 to 19,200 leads/s this way, against
    about 14,800 when each batch waits for its statements; the database's 4.5 s
    of CPU per 100,000 leads, half of it in foreign key checks, is the floor.

    Postgres only because it pays: 100,000 E.164 rows as the bench's first case
    (`python -m bench lead_import`, batches of 5,000) took 2.6 s of Python CPU and
    5.4 s of database CPU through this writer, 17.2 s and 9.9 s through
    _OrmWriter on Postgres: 4,729 against 1,579 leads/s, one after the other on
    the same busy two-core machine (load average 4 to 7), three times as fast.
    """

    STAGING = "leads_import_lead"

    def __init__(self, workspace, lead_list, source: str):
        self.pipeline = None
        self.workspace_id = workspace.pk
        self.lead_list_id = lead_list.pk
        fields = Lead._meta.concrete_fields
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        # One row of column values for a lead that sets nothing; each new lead is a
        # copy with its own fields written over it.
        base = {f.attname: f.get_default() for f in fields}
        base.update(workspace_id=workspace.pk, source=source)
        base["custom_fields"] = json.dumps(base["custom_fields"])
        self.template = [base[f.attname] for f in fields]
        self.position = {f.attname: n for n, f in enumerate(fields)}
        self.id_position = self.position["id"]
        self.created_positions = (self.position["created_at"], self.position["updated_at"])
        self.custom_position = self.position["custom_fields"]
        lead, ident, member = (m._meta.db_table for m in (Lead, LeadIdentifier, ListMembership))
        staging = self.STAGING
        # ON COMMIT DROP: a batch that fails half-way leaves nothing behind either.
        self.create_staging = (
            f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS "
            f"SELECT {columns} FROM {lead} WITH NO DATA"
        )
        self.drop_staging = f"DROP TABLE {staging}"
        self.insert_leads = f"INSERT INTO {lead} ({columns}) SELECT {columns} FROM {staging}"  # noqa: S608
        # A lead's identifier columns hold its identifiers, each once (cleaning
        # drops repeats), so its LeadIdentifier rows are its non-empty ones. A
        # conflict on the unique (workspace, value) index would mean the
        # workspace's lock was not held: that fails the batch rather than leave a
        # lead without its identifier.
        unpivot = ", ".join(f"('{name}', s.{name})" for name in IDENTIFIER_FIELDS)
        self.insert_identifiers = (
            f"INSERT INTO {ident} (workspace_id, value, lead_id, field) "  # noqa: S608
            f"SELECT s.workspace_id, i.value, s.id, i.field FROM {staging} s "
            f"CROSS JOIN LATERAL (VALUES {unpivot}) AS i(field, value) WHERE i.value <> ''"
        )
        # New leads cannot be in the list yet; for existing leads linked to it, a
        # link another writer made meanwhile is already what was wanted.
        self.insert_memberships = (
            f"INSERT INTO {member} (lead_list_id, lead_id, created_at) "  # noqa: S608
            f"SELECT %s, id, %s FROM {staging}"
        )
        self.insert_links = (
            f"INSERT INTO {member} (lead_list_id, lead_id, created_at) "  # noqa: S608
            "SELECT %s, unnest(%s::varchar[]), %s ON CONFLICT DO NOTHING"
        )
        self.ident_table = ident
        self.member_table = member

    def existing_owners(self, values: set[str]) -> dict[str, str]:
        if not values:
            return {}
        with connection.cursor() as cursor:
            # One probe of the unique (workspace, value) index per value, whatever
            # the statistics say: LIMIT keeps the planner from turning the lateral
            # subquery into a join, which stale statistics during a big import
            # make it plan as a read of all the workspace's identifiers per batch.
            # The values travel as one text, a line each (normalized identifiers,
            # like lead ids, hold no line breaks): adapting a list of thousands of
            # strings costs more than the look-up. Only values with an owner return.
            cursor.execute(
                "SELECT v.value, i.lead_id "
                "FROM unnest(string_to_array(%s, E'\\n')) AS v(value) "
                f"CROSS JOIN LATERAL (SELECT i.lead_id FROM {self.ident_table} i "  # noqa: S608
                "WHERE i.workspace_id = %s AND i.value = v.value LIMIT 1) i",
                ["\n".join(values), self.workspace_id],
            )
            return dict(cursor.fetchall())

    def members(self, lead_ids: set[str]) -> set[str]:
        if not lead_ids:
            return set()
        with connection.cursor() as cursor:
            # As in existing_owners: one index probe per id, the ids as one text.
            cursor.execute(
                "SELECT v.id FROM unnest(string_to_array(%s, E'\\n')) AS v(id) "
                f"CROSS JOIN LATERAL (SELECT 1 FROM {self.member_table} m "  # noqa: S608
                "WHERE m.lead_list_id = %s AND m.lead_id = v.id LIMIT 1) m",
                ["\n".join(lead_ids), self.lead_list_id],
            )
            return {lead_id for (lead_id,) in cursor.fetchall()}

    def insert(self, new_leads, link_ids: list[str], now) -> None:
        if not new_leads and not link_ids:
            return
        template, position = self.template, self.position
        id_position, custom_position = self.id_position, self.custom_position
        created, updated = self.created_positions
        with connection.cursor() as wrapper:
            cursor = wrapper.cursor
            cursor.execute(self.create_staging)
            with cursor.copy(f"COPY {self.STAGING} FROM STDIN") as copy:
                for lead_id, fields, _ in new_leads:
                    row = template.copy()
                    for name, value in fields.items():
                        row[position[name]] = value
                    if "custom_fields" in fields:
                        row[custom_position] = json.dumps(fields["custom_fields"])
                    row[id_position] = lead_id
                    row[created] = row[updated] = now
                    copy.write_row(row)
        # The statements that move the rows (and check their references) run while
        # the caller cleans the next batch: sent in pipeline mode, waited for in
        # finish(). COPY cannot be pipelined; it streams as the rows are formatted.
        raw = connection.connection
        self.pipeline = raw.pipeline()
        self.pipeline.__enter__()
        with raw.cursor() as cursor:
            cursor.execute(self.insert_leads)
            cursor.execute(self.insert_identifiers)
            cursor.execute(self.insert_memberships, [self.lead_list_id, now])
            if link_ids:
                cursor.execute(self.insert_links, [self.lead_list_id, link_ids, now])
            cursor.execute(self.drop_staging)

    def check_references_per_statement(self) -> None:
        """In a transaction of the import's own: check foreign keys as each statement
        ends rather than at commit (Django declares them deferred), so the checks
        run with the pipelined statements instead of after them."""
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    def finish(self) -> None:
        """Wait for the batch's statements; raises their error, if any."""
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            with connection.wrap_database_errors:
                pipeline.__exit__(None, None, None)


class _OrmWriter:
    """Portable bulk inserts (SQLite, the demo). On Postgres, a third of
    _CopyWriter's speed (see there)."""

    CHUNK = 500  # stays under SQLite's bound-parameter limit

    def __init__(self, workspace, lead_list, source: str):
        self.workspace = workspace
        self.lead_list = lead_list
        self.source = source

    def check_references_per_statement(self) -> None:
        """Nothing to move earlier: this writer's statements have run when insert()
        returns, so its foreign keys are checked at commit."""

    def finish(self) -> None:
        """Each batch is written when insert() returns."""

    def existing_owners(self, values: set[str]) -> dict[str, str]:
        values = list(values)
        owners = {}
        for start in range(0, len(values), self.CHUNK):
            owners.update(
                LeadIdentifier.objects.filter(
                    workspace=self.workspace, value__in=values[start : start + self.CHUNK]
                ).values_list("value", "lead_id")
            )
        return owners

    def members(self, lead_ids: set[str]) -> set[str]:
        ids = list(lead_ids)
        found = set()
        for start in range(0, len(ids), self.CHUNK):
            found.update(
                ListMembership.objects.filter(
                    lead_list=self.lead_list, lead_id__in=ids[start : start + self.CHUNK]
                ).values_list("lead_id", flat=True)
            )
        return found

    def insert(self, new_leads, link_ids: list[str], now) -> None:
        workspace, source, lead_list = self.workspace, self.source, self.lead_list
        leads = []
        identifiers = []
        for lead_id, fields, idents in new_leads:
            leads.append(
                # A row's own source wins over the request's.
                Lead(
                    **{"source": source, **fields},
                    id=lead_id,
                    workspace=workspace,
                    created_at=now,
                    updated_at=now,
                )
            )
            identifiers.extend(
                LeadIdentifier(workspace=workspace, value=value, lead_id=lead_id, field=name)
                for name, value in idents
            )
        Lead.objects.bulk_create(leads)
        LeadIdentifier.objects.bulk_create(identifiers)
        ListMembership.objects.bulk_create(
            [
                ListMembership(lead_list=lead_list, lead_id=lead_id, created_at=now)
                for lead_id in [lead_id for lead_id, _, _ in new_leads] + link_ids
            ],
            ignore_conflicts=True,
        )


def lead_get_or_create(
    *,
    workspace,
    data: dict,
    lead_list: LeadList | None = None,
    source: str = "",
    default_country_code: str | None = None,
    check_availability: bool = True,
    field: str = "",
    contact_owners: ContactOwners | None = None,
) -> tuple[Lead, bool]:
    """The lead matching any identifier in `data` (fields untouched, added to the
    list), or a new one. Returns (lead, created). Raises ValidationFailed naming the
    bad field of `data` as `<field>.<name>` ("lead.phone"), or by its name alone.

    check_availability=False: a new lead is not queued for the automatic
    availability check, because the caller checks it at once (a send does).
    With `contact_owners` a new lead gets its owner from `data`'s contactOwnerEmail."""
    token = _check_created.set(check_availability)
    try:
        with transaction.atomic():
            return _lead_get_or_create(
                workspace, data, lead_list, source, default_country_code, contact_owners
            )
    except ValidationFailed as exc:
        if "row" not in exc.extra:
            raise
        # The import names a row of many ("leads[0].phone"); here there is one lead.
        where = ".".join(part for part in (field, exc.extra.get("field", "")) if part)
        raise ValidationFailed(exc.message, field=where) from None
    finally:
        _check_created.reset(token)


def _lead_get_or_create(workspace, data, lead_list, source, default_country_code, contact_owners):
    # Only this lead's identifiers are locked, so sends to different new recipients
    # create their leads side by side. A row that does not clean is left to the
    # import, which reports it in its own words.
    values = []
    try:
        normalizer = Normalizer(
            default_country_code or getattr(settings, "LEADS_DEFAULT_COUNTRY_CODE", "+1")
        )
        values = [value for _, value in _identifiers(clean_lead_fields(data, normalizer))]
    except (InvalidIdentifier, RowError):
        pass
    if values:
        _lock_identifiers(workspace, values)
    result = lead_import(
        workspace=workspace,
        rows=[data],
        lead_list=lead_list,
        source=source,
        default_country_code=default_country_code,
        identifiers_locked=bool(values),
        contact_owners=contact_owners,
    )
    if result.lead_ids:
        return Lead.objects.get(pk=result.lead_ids[0]), True
    return _first_owner(workspace, values), False


def _first_owner(workspace, values: list[str]) -> Lead | None:
    if not values:
        return None
    owners = dict(
        LeadIdentifier.objects.filter(workspace=workspace, value__in=values).values_list(
            "value", "lead_id"
        )
    )
    for value in values:
        if value in owners:
            return Lead.objects.filter(pk=owners[value]).first()
    return None


# --------------------------------------------------------------------------- single leads


def _sync_identifiers(workspace, lead: Lead) -> None:
    """Make the lead's LeadIdentifier rows match its fields; Conflict on a taken value."""
    wanted = dict((value, name) for name, value in reversed(lead.identifiers()))
    taken = (
        LeadIdentifier.objects.filter(workspace=workspace, value__in=list(wanted))
        .exclude(lead=lead)
        .values_list("value", flat=True)
        .first()
    )
    if taken:
        field_name = MODEL_TO_API[wanted[taken]]
        raise Conflict(f"Another lead already has this {field_name}: {taken}")
    current = {row.value: row for row in LeadIdentifier.objects.filter(lead=lead)}
    stale = [row.pk for value, row in current.items() if value not in wanted]
    if stale:
        LeadIdentifier.objects.filter(pk__in=stale).delete()
    for value, name in wanted.items():
        row = current.get(value)
        if row is None:
            LeadIdentifier.objects.create(workspace=workspace, value=value, lead=lead, field=name)
        elif row.field != name:
            LeadIdentifier.objects.filter(pk=row.pk).update(field=name)


class LeadFields(TypedDict, total=False):
    """A lead's writable fields; None is the empty value (for customFields `{}`)."""

    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    alt_phone1: str | None
    alt_phone2: str | None
    alt_phone3: str | None
    alt_email1: str | None
    alt_email2: str | None
    alt_email3: str | None
    company_name: str | None
    job_title: str | None
    notes: str | None
    custom_fields: dict | None
    source: str | None
    opted_out: bool


def lead_update(
    *,
    workspace,
    lead: Lead,
    default_country_code: str | None = None,
    tags: list[str] | None = None,
    **data: Unpack[LeadFields],
):
    """Change the given fields, and with `tags` make the lead's tags exactly those.
    409 when a new phone or email belongs to another lead of the workspace; 400 for
    invalid values (a phone or email that does not normalize, a text too long, no
    phone or email left, a tag name too long)."""
    if lead.workspace_id != workspace.pk:
        raise NotFoundExact(LEAD_NOT_FOUND)
    try:
        normalizer = Normalizer(
            default_country_code or getattr(settings, "LEADS_DEFAULT_COUNTRY_CODE", "+1")
        )
    except InvalidIdentifier as exc:
        raise ValidationFailed(str(exc), field="defaultCountryCode") from None
    try:
        fields = clean_lead_fields(data, normalizer, partial=True)
        tag_names = None if tags is None else clean_tag_names(tags)
    except RowError as exc:
        raise ValidationFailed(exc.message, field=exc.field) from None
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="tags") from None
    with transaction.atomic():
        _lock_workspace(workspace)
        # Re-read under a row lock: the caller's copy may predate an opt-out (STOP
        # reply) or an availability result committed since, which a save of the
        # whole stale row would undo.
        lead = Lead.objects.select_for_update(no_key=True).filter(pk=lead.pk).first()
        if lead is None:
            raise NotFoundExact(LEAD_NOT_FOUND)
        before = {name: getattr(lead, name) for name in IDENTIFIER_FIELDS}
        for name, value in fields.items():
            setattr(lead, name, value)
        changed = set(fields)
        if "opted_out" in fields:
            lead.opted_out_at = timezone.now() if lead.opted_out else None
            changed.add("opted_out_at")
        current = {name: getattr(lead, name) for name in IDENTIFIER_FIELDS}
        _drop_repeated_identifiers(current)
        for name, value in current.items():
            setattr(lead, name, value)
        if not any(current.values()):
            raise ValidationFailed("A lead needs at least one phone or email", field="phone")
        if current != before:
            # The last check answered for addresses the lead may no longer have.
            changed.update(IDENTIFIER_FIELDS)
            changed.update(_reset_availability(lead))
        lead.updated_at = timezone.now()
        changed.add("updated_at")
        try:
            with transaction.atomic():
                _sync_identifiers(workspace, lead)
                lead.save(update_fields=sorted(changed))
        except IntegrityError:
            raise Conflict("Another lead already has one of these phones or emails") from None
        if tag_names is not None:
            lead_tags_set(workspace=workspace, lead=lead, names=tag_names, source="api")
    return lead


def _reset_availability(lead: Lead) -> list[str]:
    lead.availability_status = ""
    lead.availability_checked_at = None
    lead.availability_address = ""
    return ["availability_status", "availability_checked_at", "availability_address"]


def _delete_leads(workspace, queryset) -> int:
    """Delete the leads, and (through leads_deleting, in this transaction) what other
    apps keep about them."""
    leads_deleting.send(sender=Lead, workspace=workspace, leads=queryset)
    _, per_model = queryset.delete()
    return per_model.get(Lead._meta.label, 0)


@transaction.atomic
def lead_delete(*, workspace, lead_ids: Iterable[str]) -> int:
    """Delete the workspace's leads with these ids, with their messages, replies and
    conversations (lead-deletion truth table); unknown or foreign ids are ignored."""
    ids = [i for i in lead_ids if isinstance(i, str)]
    if not ids:
        return 0
    # Imports link existing leads under this lock; deleting outside it could pull a
    # lead out from under an import that has just matched it.
    _lock_workspace(workspace)
    return _delete_leads(workspace, Lead.objects.filter(workspace=workspace, id__in=ids))


def lead_find_by_identifiers(
    *,
    workspace,
    phones: Iterable[str] = (),
    emails: Iterable[str] = (),
    default_country_code: str | None = None,
) -> Lead | None:
    """The lead owning the first of these phones, then emails, that belongs to one.

    Values are normalized first; values that cannot be normalized are ignored.
    """
    normalizer = Normalizer(
        default_country_code or getattr(settings, "LEADS_DEFAULT_COUNTRY_CODE", "+1")
    )
    values = []
    for raw, normalize in [(p, normalizer.phone) for p in phones if p] + [
        (e, normalizer.email) for e in emails if e
    ]:
        try:
            values.append(normalize(raw))
        except InvalidIdentifier:
            continue
    return _first_owner(workspace, values)


def lead_merge_identifiers(
    *, workspace, lead: Lead, fields: dict, default_country_code: str | None = None
) -> list[str]:
    """Put given phones/emails into the lead's empty identifier fields of the same name.

    Never erases or overwrites; skips invalid values, values the lead already
    has and values that belong to another lead. Returns the model fields set.
    """
    if lead.workspace_id != workspace.pk:
        raise NotFoundExact(LEAD_NOT_FOUND)
    normalizer = Normalizer(
        default_country_code or getattr(settings, "LEADS_DEFAULT_COUNTRY_CODE", "+1")
    )
    candidates = []
    for key, raw in fields.items():
        name = _INPUT_KEYS.get(key)
        if name not in IDENTIFIER_FIELDS or not raw:
            continue
        try:
            value = normalizer.phone(raw) if name in _PHONE_SET else normalizer.email(raw)
        except InvalidIdentifier:
            continue
        candidates.append((name, value))
    # Only empty fields are ever filled: with none to fill, nothing is locked.
    candidates = [(name, value) for name, value in candidates if not getattr(lead, name)]
    if not candidates:
        return []
    changed = []
    target = lead
    with transaction.atomic():
        _lock_identifiers(workspace, [value for _, value in candidates])
        lead = Lead.objects.select_for_update(no_key=True).get(pk=lead.pk)
        owned = set(
            LeadIdentifier.objects.filter(
                workspace=workspace, value__in=[v for _, v in candidates]
            ).values_list("value", flat=True)
        )
        now = timezone.now()
        for name, value in candidates:
            if getattr(lead, name) or value in owned:
                continue
            setattr(lead, name, value)
            owned.add(value)
            LeadIdentifier.objects.create(workspace=workspace, value=value, lead=lead, field=name)
            changed.append(name)
        if changed:
            lead.updated_at = now
            lead.save(update_fields=[*changed, "updated_at"])
    for name in changed:
        setattr(target, name, getattr(lead, name))
    if changed:
        target.updated_at = lead.updated_at
    return changed


__all__ = [
    "API_FIELDS",
    "EMAIL_FIELDS",
    "ContactOwners",
    "ImportResult",
    "RowError",
    "clean_lead_fields",
    "lead_delete",
    "lead_find_by_identifiers",
    "lead_get_or_create",
    "lead_import",
    "lead_list_create",
    "lead_list_delete",
    "lead_list_get_or_create",
    "lead_list_get_or_create_default",
    "lead_list_quick_sends",
    "lead_list_update",
    "lead_merge_identifiers",
    "lead_update",
]

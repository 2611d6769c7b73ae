"""The send task's logic: one `sending` row -> one channel call -> one outcome.

Guarantees:
- Only one run of the task sends a row: it first sets `send_claimed_at` with a
  conditional UPDATE; a second delivery of the same task finds it set and stops.
- No channel call happens inside a database transaction.
- The run holds its rows under a lease it renews while it lives (messaging.leases);
  it calls the channel only while the row still carries its claim.
- Right before the channel is called `channel_called_at` is set. A row whose lease
  ran out while still `sending` (the worker died, or the relay's answer left the
  outcome unknown: no answer, a gateway / transaction timeout, "tempGuid already
  in flight") is taken back by the sweeper and reconciled against the relay's
  history (by our tempGuid, else by address and content), never resent blindly.
- Outcomes are recorded with `UPDATE ... WHERE status = 'sending'` together with
  their webhook outbox row, so a late duplicate cannot overwrite them.
- Line usage taken by the dispatcher is given back (exactly once, guarded by
  `usage_taken_at`) when no message reached the relay.

Errors: a permanent error fails the row at once; a transient one sends it back
to `scheduled` with a backoff (and `scheduledDate` says when), and after
MAX_ATTEMPTS it fails; one that leaves the outcome unknown keeps the row
`sending` for the sweeper, which settles it by tempGuid. A failed row
gets a fallback SMS when it asked for one (message or workspace default); a
row with no iMessage address ends as `fallback` and gets one whenever Twilio is
configured.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from lines import safety as line_safety
from lines import services as line_services
from lines.relay import NOT_SIGNED_IN, RelayError, address_from_chat_guid, chat_guid_for, get_client
from messaging import attachments as attachment_fetch
from messaging import templating
from messaging.addresses import direct_chat_guid, normalize_address
from messaging.channels.email import EmailError, send_email
from messaging.channels.sms import SmsError, send_sms
from messaging.dnc import dnc_blocked_address, dnc_blocked_pairs
from messaging.leases import LEASE, QUEUED_LEASE, LeaseKeeper
from messaging.models import Conversation, FallbackConfig, Message
from messaging.services import (
    UNKNOWN_OUTCOME,
    event_for_message,
    fallback_sms_on_commit,
    status_changed_on_commit,
)
from messaging.signals import api_values_requested
from tuco.errors import ValidationFailed

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Statuses that mean the relay has the message: a webhook may set them before the
# send's own HTTP answer comes back.
SENT_STATUSES = (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ)
# Delay before attempt n+1 after n transient failures.
BACKOFF = (30, 120, 600, 1800)


class _Retry(Exception):
    """A transient failure: try again later (nothing was sent)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Fail(Exception):
    """A permanent failure: nothing was sent and retrying cannot help."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _Wait(Exception):
    """Not an error: come back at `until` (e.g. every line is busy checking)."""

    def __init__(self, until: datetime, reason: str):
        super().__init__(reason)
        self.until = until
        self.reason = reason


class _Unknown(Exception):
    """The channel may or may not have sent: leave the row for reconciliation."""


# Entry point


def message_send(*, message_id: str, now: datetime | None = None) -> str:
    """Send one claimed (`sending`) message. Returns the resulting status, or
    "skipped" when another run owns the row. Not for use inside a transaction."""
    return messages_send(message_ids=[message_id], now=now)[message_id]


def messages_send(*, message_ids: list[str], now: datetime | None = None) -> dict[str, str]:
    """Send claimed (`sending`) messages one after the other; returns each one's
    status, or "skipped" for a row another run owns. The rows are claimed and read
    together, and so is what every send looks up first (_Lookups). Not for use
    inside a transaction."""
    now = now or timezone.now()
    claimed = _claim_rows(message_ids, now)
    messages = {
        m.pk: m
        for m in Message.objects.select_related("workspace", "lead", "line").filter(pk__in=claimed)
    }
    lookups = _Lookups(list(messages.values()), now)
    outcomes = {}
    with LeaseKeeper(claimed, claimed_at=now):
        for message_id in message_ids:
            message = messages.get(message_id)
            if message is None or not _still_claimed(message, now):
                outcomes[message_id] = "skipped"
                continue
            outcomes[message_id] = _send_claimed(message, now, lookups)
    return outcomes


def _still_claimed(message: Message, claimed_at: datetime) -> bool:
    """False when the row is no longer this run's: its lease ran out (the renewals
    did not get through) and the sweeper took it back. Only asked once the run is
    old enough for that to have happened."""
    if timezone.now() - claimed_at < LEASE:
        return True
    return Message.objects.filter(
        pk=message.pk, status=Message.Status.SENDING, send_claimed_at=claimed_at
    ).exists()


def _claim_rows(message_ids: list[str], now: datetime) -> list[str]:
    """Mark these `sending` rows as taken by this run (send_claimed_at, its lease);
    the ids it got. A second delivery of the same task gets none of them."""
    ids = list(dict.fromkeys(str(i) for i in message_ids))
    # The rows still unclaimed, locked until the claim commits: a second run waits
    # for the lock and then finds them claimed.
    with transaction.atomic():
        claimed = set(
            Message.objects.select_for_update(no_key=True)
            .filter(pk__in=ids, status=Message.Status.SENDING, send_claimed_at__isnull=True)
            .values_list("pk", flat=True)
        )
        Message.objects.filter(pk__in=claimed).update(
            send_claimed_at=now, lease_expires_at=timezone.now() + LEASE
        )
    return [message_id for message_id in ids if message_id in claimed]


class _Lookups:
    """What the sends of one run look up before they call a channel, read once for
    all of them: do-not-contact entries of their addresses, fresh availability
    answers, and the threads with those addresses. A send keeps them current: an
    answer it gets is added, a thread it writes is read again the next time."""

    def __init__(self, messages: list[Message], now: datetime):
        from leads.availability import cache_lookup_many, normalize_address

        self.blocked: set[tuple[str, str]] = set()
        self.answers: dict[tuple[str, str], bool] = {}
        self.threads: dict[tuple[str, str], Conversation | None] = {}
        # One query of each kind for every workspace of the run (a run's messages
        # often belong to as many workspaces). A row of another workspace that
        # shares an address is read too, and never consulted: all is kept by
        # (workspace, address).
        recipients: set[str] = set()
        asked: dict[str, set[str]] = {}
        for message in messages:
            recipients.update(a for a in (message.recipient_phone, message.recipient_email) if a)
            if message.message_type != Message.Type.IMESSAGE:
                continue
            candidates = asked.setdefault(message.workspace_id, set())
            for address in imessage_addresses(message):
                candidates.add(address)
                try:
                    candidates.add(normalize_address(address))
                except ValidationFailed:
                    continue
        workspaces = sorted({m.workspace_id for m in messages})
        values = recipients.union(*asked.values())
        if workspaces and values:
            self.blocked.update(dnc_blocked_pairs(workspace_ids=workspaces, values=values))
        if not asked:
            return
        self.answers.update(cache_lookup_many(addresses=asked, now=now))
        for workspace_id, addresses in asked.items():
            self.threads.update(((workspace_id, a), None) for a in addresses)
        for conversation in Conversation.objects.filter(
            workspace_id__in=sorted(asked), address__in=sorted(set().union(*asked.values()))
        ):
            self.threads[(conversation.workspace_id, conversation.address)] = conversation

    def blocked_address(self, message: Message, addresses) -> str | None:
        return next((a for a in addresses if a and (message.workspace_id, a) in self.blocked), None)

    def thread(self, message: Message, address: str) -> Conversation | None:
        key = (message.workspace_id, address)
        if key not in self.threads:
            self.threads[key] = _conversation_for(message, address)
        return self.threads[key]

    def thread_written(self, message: Message, address: str) -> None:
        self.threads.pop((message.workspace_id, address), None)


def _send_claimed(message: Message, now: datetime, lookups: _Lookups) -> str:
    try:
        _check_recipient_allowed(message, lookups=lookups)
        _render_api_variables(message, now)
        if message.message_type == Message.Type.IMESSAGE:
            return _send_imessage(message, now, lookups)
        if message.message_type == Message.Type.SMS:
            return _send_sms(message, now)
        return _send_email(message, now)
    except _Cancel as exc:
        _release_usage(message)
        _record_cancelled(message, exc.reason)
        return Message.Status.CANCELLED
    except _Wait as exc:
        _release_usage(message)
        _record_waiting(message, exc.until)
        return Message.Status.SCHEDULED
    except _Retry as exc:
        _release_usage(message)
        return _record_transient(message, exc.message, now)
    except _Fail as exc:
        _release_usage(message)
        _record_failed(message, exc.message)
        return Message.Status.FAILED
    except _Unknown as exc:
        logger.warning("Message %s: outcome unknown (%s); left for reconciliation", message.pk, exc)
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            error_message=f"{UNKNOWN_OUTCOME}{exc}"[:2000],
            updated_at=timezone.now(),
        )
        return Message.Status.SENDING
    except Exception as exc:
        # A bug or a broken input must not leave the row `sending`. Before the
        # channel was called nothing went out; after, it may have, so the row fails
        # without a fallback SMS and is never resent.
        logger.exception("Message %s: the send failed unexpectedly", message.pk)
        reason = f"The send failed unexpectedly: {type(exc).__name__}: {exc}"
        if message.channel_called_at is None:
            _release_usage(message)
            _record_failed(message, reason)
        else:
            _record_failed(
                message, f"{reason}; not resent to avoid a duplicate", fallback_sms=False
            )
        return Message.objects.values_list("status", flat=True).get(pk=message.pk)


def _api_answers(message: Message, text: str) -> dict:
    """The answers of the API tools `text` uses ({name: ApiValue}), asked of the app
    that owns the tools. Makes network calls: not inside a transaction."""
    names = templating.api_names(text)
    answers = {}
    if not names:
        return answers
    for _receiver, answer in api_values_requested.send(
        sender=Message,
        workspace_id=message.workspace_id,
        lead=message.lead,
        names=names,
        campaign_id=message.campaign_id,
        step_index=message.step_index,
    ):
        answers.update(answer or {})
    return answers


def _render_api_variables(message: Message, now: datetime) -> None:
    """Fill the text's `{api_<tool>}` variables with the tools' answers, rendering it
    again with the sending line. A tool that failed gives its fallback; one over its
    rate limit makes the send wait."""
    if not templating.api_names(message.body):
        return
    answers = _api_answers(message, message.body)
    waits = [value.retry_after for value in answers.values() if value.retry_after]
    if waits:
        raise _Wait(now + timedelta(seconds=max(waits)), "API tool rate limit")
    text = templating.render_message(
        message, message.line, {name: value.text for name, value in answers.items()}
    )
    if text != message.rendered_body:
        message.rendered_body = text
        Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            rendered_body=text
        )


def fallback_sms_text(message: Message) -> str:
    """The fallback SMS's text: the step's own SMS text rendered like the message
    (an API tool that cannot answer now gives its fallback), else what was sent."""
    if not message.sms_fallback_text:
        return message.rendered_body or message.body
    answers = _api_answers(message, message.sms_fallback_text)
    values = templating.context_for(
        lead=message.lead,
        line=message.line,
        recipient_name=message.recipient_name,
        api_values={name: value.text for name, value in answers.items()},
    )
    return templating.render(message.sms_fallback_text, values)


class _Cancel(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _check_recipient_allowed(
    message: Message, *, reload_lead: bool = False, lookups: _Lookups | None = None
) -> None:
    """Cancel the send when the lead opted out, replied (stop-on-reply) or an address
    is on the do-not-contact list. A cancel or a reply that came while the dispatcher
    held the row could not stop it, so this runs after the claim (the lead was loaded
    with the row, the list read with the run's `lookups`) and again, from the
    database, right before the relay is called (`reload_lead`)."""
    if reload_lead and message.lead_id:
        message.lead.refresh_from_db(fields=["opted_out", "replied_at"])
    stop = message.lead_stop_reason()
    if stop:
        raise _Cancel(stop)
    addresses = [message.recipient_phone, message.recipient_email]
    if lookups is not None:
        blocked = lookups.blocked_address(message, addresses)
    else:
        blocked = dnc_blocked_address(workspace=message.workspace, addresses=addresses)
    if blocked:
        raise _Cancel(f"{blocked} is on the do-not-contact list")


# iMessage


def imessage_addresses(message: Message) -> list[str]:
    """Addresses to try, in order: phone, alt phones, email, alt emails; the body's
    recipient replaces the lead's primary phone / email for this send."""
    lead = message.lead
    phones = [message.recipient_phone or (lead.phone if lead else "")]
    emails = [message.recipient_email or (lead.email if lead else "")]
    if lead is not None:
        phones += [lead.alt_phone1, lead.alt_phone2, lead.alt_phone3]
        emails += [lead.alt_email1, lead.alt_email2, lead.alt_email3]
    seen: list[str] = []
    for value in phones + emails:
        value = (value or "").strip()
        if value and value not in seen:
            seen.append(value)
    return seen


def _choose_imessage_address(
    message: Message, line, now: datetime, lookups: _Lookups
) -> tuple[str | None, list]:
    from leads.availability import (
        AvailabilityQuotaExhausted,
        LinesBusy,
        NoActiveLine,
        availability_check_address,
        cached_answer,
        lead_addresses,
        normalize_address,
    )

    checked = []
    errors = []
    candidates = imessage_addresses(message)
    # The answer speaks for the lead when every one of its addresses was asked in
    # the lead check's order: then it is written to the lead as well.
    whole_lead = message.lead is not None and candidates == lead_addresses(message.lead)
    for address in candidates:
        if lookups.blocked_address(message, [address]):
            whole_lead = False
            continue
        try:
            normalized = normalize_address(address)
            known = lookups.answers.get((message.workspace_id, normalized))
            if known is not None:
                result = cached_answer(normalized, known)
            else:
                # No fresh answer when the run started (the run's own answers are in
                # `lookups` as they come): ask a relay.
                result = availability_check_address(
                    workspace=message.workspace, address=normalized, line=line, wait=False,
                    force=True,
                )  # fmt: skip
                if result.available is not None:
                    lookups.answers[(message.workspace_id, normalized)] = result.available
        except LinesBusy as exc:
            raise _Wait(now + timedelta(seconds=max(1.0, exc.retry_after)), "lines busy") from None
        except AvailabilityQuotaExhausted:
            raise _Wait(line_services.next_utc_midnight(now), "check quota") from None
        except NoActiveLine:
            raise _Wait(now + timedelta(minutes=1), "no active line") from None
        except ValidationFailed:
            whole_lead = False
            continue  # a stored address that is not a phone or email: nothing to try
        checked.append({"address": result.address, "status": result.status})
        if result.status == "available":
            if whole_lead:
                _record_lead_answer(message, result.address, True, checked)
            return result.address, checked
        if result.status == "error":
            errors.append(result.detail or "availability check failed")
    if errors:
        if any(NOT_SIGNED_IN in error for error in errors):
            line_safety.line_probe_soon(line_id=line.pk)
        raise _Retry(f"Availability check failed: {errors[0]}")
    if whole_lead and checked:
        _record_lead_answer(message, checked[-1]["address"], False, checked)
    return None, checked


def _record_lead_answer(message: Message, address: str, available: bool, checked: list) -> None:
    from leads.availability import availability_record_for_lead

    availability_record_for_lead(
        workspace=message.workspace,
        lead=message.lead,
        address=address,
        available=available,
        checked=[item["address"] for item in checked],
    )


def _conversation_for(message: Message, address: str) -> Conversation | None:
    return Conversation.objects.filter(workspace_id=message.workspace_id, address=address).first()


def _send_imessage(message: Message, now: datetime, lookups: _Lookups) -> str:
    line = message.line
    if line is None:
        raise _Retry("No line was assigned")
    if not line_safety.line_confirm_signed_in(line=line, now=now):
        raise _Wait(now + timedelta(seconds=30), "line quarantined")
    address, checked = _choose_imessage_address(message, line, now, lookups)
    if address is None:
        _release_usage(message)
        return _record_fallback(message, checked)

    conversation = lookups.thread(message, address)
    chat_guid = None
    if conversation and conversation.line_id == line.pk:
        chat_guid = direct_chat_guid(conversation.chat_guid, address) or None
    files = []
    urls = message.attachment_urls or []
    names = attachment_fetch.display_names(urls, message.attachment_names or [])
    for url, name in zip(urls, names, strict=True):
        try:
            files.append(replace(attachment_fetch.fetch(url), filename=name))
        except attachment_fetch.AttachmentError as exc:
            raise (_Fail if exc.permanent else _Retry)(exc.message) from None

    # Availability checks and downloads take time: look again right before sending.
    _check_recipient_allowed(message, reload_lead=True)
    if not _mark_channel_called(message, address, checked):
        return "skipped"
    client = get_client(line)
    temp_guid = str(message.temp_guid)
    sent = None
    try:
        if message.rendered_body.strip():
            sent = client.send_text(
                chat_guid=chat_guid, address=None if chat_guid else address,
                text=message.rendered_body, temp_guid=temp_guid,
            )  # fmt: skip
            chat_guid = sent.chat_guid or chat_guid
        for index, item in enumerate(files):
            attachment = client.send_attachment(
                chat_guid=chat_guid or chat_guid_for(address),
                filename=item.filename,
                content=item.content,
                temp_guid=attachment_temp_guid(message, index),
            )
            sent = sent or attachment
            chat_guid = chat_guid or attachment.chat_guid
    except RelayError as exc:
        if line_services.relay_failure_is_line_fault(exc):
            line_services.line_record_failure(line=line, detail=exc.message, now=now)
        if sent is None and not exc.send_outcome_unknown:
            # An attempt the relay refused counts as sent and failed: the failure rate
            # is over attempts. Probe the line now rather than at the next round.
            line_safety.line_evidence_record(line_id=line.pk, kind="sent", at=now)
            line_safety.line_evidence_record(line_id=line.pk, kind="failed", at=now)
            line_safety.line_probe_soon(line_id=line.pk)
        if sent is not None:
            # The text went out, an attachment did not: the message was sent.
            logger.warning("Message %s: attachment failed after the text: %s", message.pk, exc)
        elif exc.send_outcome_unknown:
            raise _Unknown(exc.message) from None
        elif exc.permanent:
            raise _Fail(exc.message) from None
        else:
            raise _Retry(exc.message) from None
    line_services.line_record_success(line=line, now=now, detail="Sent a message")
    line_safety.line_evidence_record(line_id=line.pk, kind="sent", at=now)
    lookups.thread_written(message, address)
    return _record_sent(
        message,
        external_id=sent.guid or "",
        address=address,
        chat_guid=chat_guid,
        line=line,
        at=timezone.now(),
    )


def attachment_temp_guid(message: Message, index: int) -> str:
    """The tempGuid of the message's `index`-th attachment: derived from the
    message's, so the same attachment keeps it across retries."""
    return str(uuid.uuid5(message.temp_guid, f"attachment-{index}"))


def _mark_channel_called(message: Message, address: str, checked: list) -> bool:
    now = timezone.now()
    # The error of an earlier attempt is cleared: what this attempt leaves there is
    # what the sweeper reports if the row gets stuck. Only under this run's claim: a
    # row the sweeper took back is not this run's to send.
    updated = Message.objects.filter(
        pk=message.pk,
        status=Message.Status.SENDING,
        channel_called_at__isnull=True,
        send_claimed_at=message.send_claimed_at,
    ).update(channel_called_at=now, sent_address=address, checked_addresses=checked,
             error_message="")  # fmt: skip
    message.channel_called_at = now
    message.error_message = ""
    message.sent_address = address
    message.checked_addresses = checked
    return bool(updated)


# SMS and email


def _send_sms(message: Message, now: datetime) -> str:
    to = message.recipient_phone or (message.lead.phone if message.lead else "")
    if not to:
        raise _Fail("SMS needs a phone number")
    config = FallbackConfig.objects.filter(workspace_id=message.workspace_id).first()
    if config is None or not config.is_configured:
        raise _Fail("Twilio is not configured for this workspace")
    if not _mark_channel_called(message, to, []):
        return "skipped"
    try:
        result = send_sms(config=config, to=to, body=message.rendered_body)
    except SmsError as exc:
        raise (_Fail if exc.permanent else _Retry)(exc.message) from None
    return _record_sent(message, external_id=result.sid, address=to, at=timezone.now())


def _send_email(message: Message, now: datetime) -> str:
    to = message.recipient_email or (message.lead.email if message.lead else "")
    if not to:
        raise _Fail("Email needs an email address")
    if not _mark_channel_called(message, to, []):
        return "skipped"
    try:
        header_id = send_email(
            to=to, subject=message.subject, body=message.rendered_body, message_id=message.pk
        )
    except EmailError as exc:
        raise (_Fail if exc.permanent else _Retry)(exc.message) from None
    return _record_sent(message, external_id=header_id, address=to, at=timezone.now())


# Outcomes


def _release_usage(message: Message) -> None:
    """Give back the line usage the dispatcher took, once."""
    taken_at = message.usage_taken_at
    if taken_at is None or message.line_id is None:
        return
    released = Message.objects.filter(pk=message.pk, usage_taken_at=taken_at).update(
        usage_taken_at=None
    )
    message.usage_taken_at = None
    if released:
        _usage_give_back(message.line, taken_at, message.is_new_conversation)


def _usage_give_back(line, taken_at: datetime, new_conversation: bool) -> None:
    line_services.usage_release(line=line, kind="total_messages", now=taken_at)
    if new_conversation:
        line_services.usage_release(line=line, kind="new_conversations", now=taken_at)


def _record_sent(message, *, external_id, address, at, chat_guid=None, line=None) -> str:
    with transaction.atomic():
        moved = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.SENT,
            sent_at=at,
            external_message_id=external_id,
            sent_address=address,
            error_message="",
            updated_at=timezone.now(),
        )
        if not moved:
            # The relay's webhook (sent, delivered or read) overtook our own answer: keep
            # its status, fill in what only we know, and still remember the thread, or the
            # next send would open a new chat (and count as a new conversation).
            Message.objects.filter(pk=message.pk, external_message_id="").update(
                external_message_id=external_id, sent_address=address
            )
            Message.objects.filter(pk=message.pk, sent_at__isnull=True).update(sent_at=at)
            message.refresh_from_db()
            if message.status in SENT_STATUSES:
                if line is not None:
                    conversation_record_send(message=message, address=address, line=line,
                                             chat_guid=chat_guid, at=at)  # fmt: skip
                # Receivers are idempotent; this covers a receipt that skipped `sent`.
                status_changed_on_commit(
                    message_id=message.pk, status=Message.Status.SENT,
                    campaign_id=message.campaign_id,
                )  # fmt: skip
            return message.status
        message.status = Message.Status.SENT
        message.sent_at = at
        message.external_message_id = external_id
        message.sent_address = address
        if line is not None:
            conversation_record_send(message=message, address=address, line=line,
                                     chat_guid=chat_guid, at=at)  # fmt: skip
        event_for_message(message, Message.Status.SENT)
        status_changed_on_commit(
            message_id=message.pk, status=Message.Status.SENT, campaign_id=message.campaign_id
        )
    return Message.Status.SENT


def conversation_record_send(*, message, address: str, line, chat_guid: str | None, at) -> None:
    """Remember the thread with `address`: its line, its chat guid, the last text."""
    guid = direct_chat_guid(chat_guid, address)
    changes = {"line": line, "last_message_at": at, "last_message_text": message.rendered_body}
    if guid:
        changes["chat_guid"] = guid
    if message.lead_id:
        changes["lead_id"] = message.lead_id
    # One statement, new thread or not: INSERT ... ON CONFLICT (workspace, address)
    # DO UPDATE of just these fields.
    Conversation.objects.bulk_create(
        [Conversation(workspace_id=message.workspace_id, address=address, **changes)],
        update_conflicts=True,
        unique_fields=["workspace", "address"],
        update_fields=[name.removesuffix("_id") for name in changes],
    )


def _record_cancelled(message: Message, reason: str) -> None:
    with transaction.atomic():
        moved = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.CANCELLED, cancel_reason=reason[:200], updated_at=timezone.now()
        )
        if moved:
            status_changed_on_commit(
                message_id=message.pk,
                status=Message.Status.CANCELLED,
                campaign_id=message.campaign_id,
            )


def _record_waiting(message: Message, until: datetime) -> None:
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.SCHEDULED,
        due_at=until,
        scheduled_date=until,
        send_claimed_at=None,
        channel_called_at=None,
        updated_at=timezone.now(),
    )


def _record_transient(message: Message, error: str, now: datetime) -> str:
    attempts = message.attempts + 1
    if attempts >= MAX_ATTEMPTS:
        _record_failed(message, error, attempts=attempts)
        return Message.Status.FAILED
    delay = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
    until = now + timedelta(seconds=delay)
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.SCHEDULED,
        attempts=attempts,
        error_message=error[:2000],
        due_at=until,
        # `scheduled` always says when: the API shows when the retry will happen.
        scheduled_date=until,
        send_claimed_at=None,
        channel_called_at=None,
        updated_at=timezone.now(),
    )
    logger.info(
        "Message %s: attempt %s failed (%s); retry at %s", message.pk, attempts, error, until
    )
    return Message.Status.SCHEDULED


def _record_failed(
    message: Message, error: str, *, attempts: int | None = None, fallback_sms: bool = True
) -> None:
    now = timezone.now()
    with transaction.atomic():
        moved = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.FAILED,
            error_message=error[:2000],
            failed_at=now,
            attempts=attempts if attempts is not None else message.attempts + 1,
            updated_at=now,
        )
        if not moved:
            return
        message.status = Message.Status.FAILED
        message.error_message = error[:2000]
        event_for_message(message, Message.Status.FAILED, {"error": error})
        status_changed_on_commit(
            message_id=message.pk, status=Message.Status.FAILED, campaign_id=message.campaign_id
        )
        if fallback_sms:
            fallback_sms_on_commit(message, reason="failed")


def _record_fallback(message: Message, checked: list) -> str:
    now = timezone.now()
    addresses = [c["address"] for c in checked]
    # The published wording (message-webhooks.mdx), naming every address tried.
    reason = (
        f"Prospect's iMessage not available on {', '.join(addresses)}"
        if addresses
        else "No address to try"
    )
    with transaction.atomic():
        moved = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.FALLBACK,
            checked_addresses=checked,
            error_message=reason,
            updated_at=now,
        )
        if not moved:
            return "skipped"
        message.status = Message.Status.FALLBACK
        message.checked_addresses = checked
        event_for_message(
            message,
            Message.Status.FALLBACK,
            {"reason": reason, "checkedAddresses": addresses},
        )
        status_changed_on_commit(
            message_id=message.pk, status=Message.Status.FALLBACK, campaign_id=message.campaign_id
        )
        fallback_sms_on_commit(message, reason="fallback")
    return Message.Status.FALLBACK


# Fallback SMS


def fallback_sms_send(*, message_id: str) -> str:
    """Send the fallback SMS of a failed / fallback message, at most once."""
    claimed = Message.objects.filter(
        pk=message_id,
        status__in=(Message.Status.FAILED, Message.Status.FALLBACK),
        fallback_sms_status="",
    ).update(fallback_sms_status="sending")
    if not claimed:
        return "skipped"
    message = Message.objects.select_related("lead", "workspace").get(pk=message_id)
    config = FallbackConfig.objects.filter(workspace_id=message.workspace_id).first()
    to = message.recipient_phone or (message.lead.phone if message.lead else "")
    if config is None or not config.is_configured or not to:
        Message.objects.filter(pk=message_id).update(fallback_sms_status="skipped")
        return "skipped"
    # The lead may have opted out (or been put on the list under another of its
    # addresses) since the message was sent: a fallback SMS is a message too.
    lead = message.lead
    addresses = [to, message.recipient_email]
    if lead is not None:
        addresses += [lead.phone, lead.alt_phone1, lead.alt_phone2, lead.alt_phone3,
                      lead.email, lead.alt_email1, lead.alt_email2, lead.alt_email3]  # fmt: skip
    blocked = dnc_blocked_address(workspace=message.workspace, addresses=addresses)
    if (lead is not None and lead.opted_out) or blocked:
        logger.info(
            "Fallback SMS for message %s not sent: %s", message_id,
            f"{blocked} is on the do-not-contact list" if blocked else "the lead opted out",
        )  # fmt: skip
        Message.objects.filter(pk=message_id).update(fallback_sms_status="skipped")
        return "skipped"
    text = fallback_sms_text(message)
    try:
        result = send_sms(config=config, to=to, body=text)
    except SmsError as exc:
        logger.warning("Fallback SMS for message %s failed: %s", message_id, exc.message)
        Message.objects.filter(pk=message_id).update(fallback_sms_status="failed")
        return "failed"
    Message.objects.filter(pk=message_id).update(
        fallback_sms_status="sent", fallback_sms_sid=result.sid
    )
    return "sent"


# Handing rows to send tasks


# Rows handed to one send task: a few tasks per dispatched batch, so every worker
# process gets some, without paying a task's overhead for each message.
SEND_CHUNK = 10


def messages_queue_send(*, message_ids: list[str]) -> list[str]:
    """Hand these `sending` rows to send tasks, SEND_CHUNK rows a task; the ids queued.

    No row stays `sending` for a task the broker never took: when a task cannot be
    queued (the broker is unreachable; the publish already retried), its rows and
    those of the chunks after it go back to `pending` at once (messages_unqueue), and
    the dispatcher hands them out again once the broker answers. Run it after the
    commit that moved the rows. A task that was queued and then lost (a worker killed
    with it reserved, a broker that lost its data) is the sweeper's: its rows are
    queued again once their QUEUED_LEASE runs out."""
    from messaging.tasks import send_messages

    ids = [str(i) for i in message_ids]
    queued: list[str] = []
    for start in range(0, len(ids), SEND_CHUNK):
        chunk = ids[start : start + SEND_CHUNK]
        try:
            send_messages.delay(chunk)
        except Exception:
            logger.warning(
                "Could not queue the send of %s messages; back to pending",
                len(ids) - start,
                exc_info=True,
            )
            messages_unqueue(message_ids=ids[start:])
            break
        queued.extend(chunk)
    return queued


def messages_unqueue(*, message_ids: list[str]) -> int:
    """Put the rows of a send task that was never queued back to `pending`, as the
    dispatcher found them: only `sending` rows no run has claimed, and the line usage
    the dispatcher took for them is given back. Returns how many went back."""
    now = timezone.now()
    with transaction.atomic():
        # Locked, so a run that claims one of them meanwhile waits and then skips it.
        rows = list(
            Message.objects.select_for_update(no_key=True, of=("self",))
            .select_related("line")
            .filter(
                pk__in=list(message_ids),
                status=Message.Status.SENDING,
                send_claimed_at__isnull=True,
                channel_called_at__isnull=True,
            )
        )
        Message.objects.filter(pk__in=[m.pk for m in rows]).update(
            status=Message.Status.PENDING,
            sending_started_at=None,
            lease_expires_at=None,
            usage_taken_at=None,
            updated_at=now,
        )
    # After the commit, one counter update at a time, as a send gives its usage back:
    # counters updated in the rows' order inside the transaction deadlocked with the
    # dispatcher and the sends. Nulling usage_taken_at above made it this call's alone.
    for message in rows:
        if message.usage_taken_at is not None and message.line is not None:
            _usage_give_back(message.line, message.usage_taken_at, message.is_new_conversation)
    return len(rows)


# Sweeper


# A row in `sending` without a lease (written before leases existed) is taken back
# this long after the dispatcher moved it.
STUCK_AFTER = timedelta(minutes=5)
# A send can still land on the relay this long after its call started: the relay
# client's read timeout (lines.relay, 130 s) plus a margin. Until then, a send the
# relay has no record of may yet be written, so it is not retried.
SEND_SETTLE = timedelta(seconds=150)
# How far before `channel_called_at` to look in the relay's history (clock skew).
RECONCILE_SLACK = timedelta(seconds=30)
RECONCILE_PAGE = 1000
# A busy line writes far fewer messages than this between a send and its sweep.
RECONCILE_MAX_PAGES = 20
# A row the relay cannot settle either way (unreachable, or its history does not
# tell) is looked at again on each sweep, and failed, not resent, after this long.
RECONCILE_GIVE_UP = timedelta(hours=1)
INTERRUPTED = "The send was interrupted before the relay had the message"


class _Undetermined(Exception):
    """The relay's history cannot tell whether this send went out."""


def messages_reconcile_stuck(*, now: datetime | None = None) -> dict:
    """Take back the rows in `sending` whose lease ran out (a worker that died, a
    send whose outcome was unknown, a send task that was lost) and settle them.

    A row no run ever claimed (its send task was lost, or still waits behind others)
    gets a new send task under a new QUEUED_LEASE, keeping its line and usage
    (_queue_again). Every other row is first taken with a conditional update that
    gives it a claim and a lease of the sweeper's, so two sweeps never settle one row
    and the run that lost it can no longer call the channel. Then:

    - the channel was never called: nothing went out, so back to `pending`;
    - already has a relay guid (a webhook saw the send): `sent`;
    - iMessage: look the send up in the relay's history since the call, by our
      tempGuid (the message's, or its attachments'), else by address and content
      (text, or attachment file names) among messages no other row claims:
      found -> `sent`; not there -> once SEND_SETTLE has passed since the call,
      nothing went out, so a retry with backoff (one attempt), and before that it
      is looked at again on a later sweep; cannot tell -> left alone, and after
      RECONCILE_GIVE_UP `failed` without a fallback SMS, since the text may have
      arrived;
    - SMS / email: the provider cannot be asked cheaply, so the row fails with
      an explanation instead of risking a duplicate.

    Makes network calls: not to be used inside a transaction.
    """
    now = now or timezone.now()
    outcome = {"requeued": 0, "sent": 0, "failed": 0}
    expired = Q(lease_expires_at__lt=now) | Q(
        lease_expires_at__isnull=True, sending_started_at__lt=now - STUCK_AFTER
    )
    stuck = list(
        Message.objects.filter(expired, status=Message.Status.SENDING).select_related(
            "workspace", "lead", "line"
        )[:500]
    )
    unclaimed = [m for m in stuck if m.send_claimed_at is None]
    outcome["requeued"] += _queue_again(unclaimed, now)
    for message in stuck:
        if message.send_claimed_at is None:
            continue
        if not _take_back(message, now):
            continue  # renewed, settled or taken by another sweep meanwhile
        if message.channel_called_at is None:
            _release_usage(message)
            _requeue(message, now)
            outcome["requeued"] += 1
            continue
        if message.external_message_id:
            _record_sent(message, external_id=message.external_message_id,
                         address=message.sent_address, at=message.channel_called_at,
                         line=message.line)  # fmt: skip
            outcome["sent"] += 1
            continue
        if message.message_type != Message.Type.IMESSAGE or message.line is None:
            _release_usage(message)
            _record_failed(message, "The send was interrupted; not retried to avoid a duplicate")
            outcome["failed"] += 1
            continue
        try:
            found = _find_on_relay(message)
        except (RelayError, _Undetermined) as exc:
            detail = exc.message if isinstance(exc, RelayError) else str(exc)
            if message.channel_called_at > now - RECONCILE_GIVE_UP:
                logger.warning("Cannot reconcile message %s yet: %s", message.pk, detail)
                continue
            _record_failed(
                message,
                f"Could not confirm with the relay whether this message was sent ({detail}); "
                "not resent to avoid a duplicate",
                fallback_sms=False,
            )
            outcome["failed"] += 1
            continue
        if found is not None:
            chats = found.get("chats") or []
            chat_guid = chats[0].get("guid") if chats and isinstance(chats[0], dict) else None
            _record_sent(message, external_id=found.get("guid") or "",
                         address=message.sent_address, at=message.channel_called_at,
                         chat_guid=chat_guid, line=message.line)  # fmt: skip
            outcome["sent"] += 1
        elif message.channel_called_at > now - SEND_SETTLE:
            continue  # the relay may still be writing it: look again on a later sweep
        else:
            _release_usage(message)
            error = INTERRUPTED
            if message.error_message.startswith(UNKNOWN_OUTCOME):
                detail = message.error_message.removeprefix(UNKNOWN_OUTCOME)
                error = f"Not sent, the relay has no record of it ({detail})"
            status = _record_transient(message, error, now)
            outcome["failed" if status == Message.Status.FAILED else "requeued"] += 1
    return outcome


def _queue_again(messages: list[Message], now: datetime) -> int:
    """Rows whose send task never claimed them within QUEUED_LEASE: the task was lost
    (or still waits behind others). Nothing was sent, and the row keeps its line and
    the usage taken for it: a new task is queued for it under a new QUEUED_LEASE.
    Should both tasks run, the first claims the row and the other skips it."""
    taken = [
        message.pk
        for message in messages
        if Message.objects.filter(
            pk=message.pk,
            status=Message.Status.SENDING,
            send_claimed_at__isnull=True,
            lease_expires_at=message.lease_expires_at,
        ).update(lease_expires_at=now + QUEUED_LEASE)
    ]
    if taken:
        logger.info("Queued %s messages again: their send task never claimed them", len(taken))
        messages_queue_send(message_ids=taken)
    return len(taken)


def _take_back(message: Message, now: datetime) -> bool:
    """Give the row a claim and a lease of this sweep's, if nobody renewed, settled
    or took it since it was read."""
    taken = Message.objects.filter(
        pk=message.pk,
        status=Message.Status.SENDING,
        send_claimed_at=message.send_claimed_at,
        lease_expires_at=message.lease_expires_at,
    ).update(send_claimed_at=now, lease_expires_at=now + LEASE)
    message.send_claimed_at, message.lease_expires_at = now, now + LEASE
    return bool(taken)


def _temp_guids(message: Message) -> set[str]:
    count = len(message.attachment_urls or [])
    guids = {str(message.temp_guid), *(attachment_temp_guid(message, i) for i in range(count))}
    return {g.lower() for g in guids}


def _relay_address(item: dict) -> str:
    handle = item.get("handle")
    address = handle.get("address") if isinstance(handle, dict) else None
    if not isinstance(address, str):
        chats = item.get("chats") or []
        if chats and isinstance(chats[0], dict):
            address = address_from_chat_guid(chats[0].get("guid") or "")
    return normalize_address(address) if isinstance(address, str) else ""


def _same_content(message: Message, item: dict) -> bool:
    """Is `item` (one of our relay messages) this message, judged by what it says?"""
    if _relay_address(item) != normalize_address(message.sent_address):
        return False
    if message.rendered_body.strip():
        # The text goes first; its attachments are sent only after it.
        return (item.get("text") or "") == message.rendered_body
    names = set(
        attachment_fetch.display_names(message.attachment_urls or [], message.attachment_names)
    )
    attachments = item.get("attachments") if isinstance(item.get("attachments"), list) else []
    return any(isinstance(a, dict) and a.get("transferName") in names for a in attachments)


def _find_on_relay(message: Message) -> dict | None:
    """The relay's record of this send, or None when the relay certainly has none.

    Pages through everything the relay wrote since the call (the query only has
    `after`, so each page starts at the newest timestamp of the one before). Raises
    _Undetermined when that history cannot be read to the end, or when matching by
    content finds more than one candidate; RelayError when the relay cannot be asked.
    Makes network calls: not to be used inside a transaction.
    """
    wanted = _temp_guids(message)
    after = int((message.channel_called_at - RECONCILE_SLACK).timestamp() * 1000)
    client = get_client(message.line)
    seen: set[str] = set()
    by_content: dict[str, dict] = {}
    for _ in range(RECONCILE_MAX_PAGES):
        page = client.query_messages(after, RECONCILE_PAGE)
        newest = after
        for item in page:
            if not isinstance(item, dict):
                continue
            created = item.get("dateCreated")
            if isinstance(created, int) and not isinstance(created, bool):
                newest = max(newest, created)
            guid = item.get("guid")
            if not item.get("isFromMe") or not isinstance(guid, str) or guid in seen:
                continue
            seen.add(guid)
            temp_guid = item.get("tempGuid")
            if isinstance(temp_guid, str) and temp_guid.lower() in wanted:
                return item
            if _same_content(message, item):
                by_content[guid] = item
        if len(page) < RECONCILE_PAGE:
            break
        if newest <= after:
            raise _Undetermined(f"more than {RECONCILE_PAGE} relay messages share one timestamp")
        after = newest
    else:
        raise _Undetermined(
            f"the relay wrote more than {RECONCILE_MAX_PAGES * RECONCILE_PAGE} messages since"
        )
    # Relays do not keep the tempGuid in their history (only the send's answer and
    # the first webhook carry it), so fall back to the content, leaving out relay
    # messages another row already owns (an identical text sent just before).
    owned = set(
        Message.objects.filter(
            workspace_id=message.workspace_id, external_message_id__in=list(by_content)
        )
        .exclude(pk=message.pk)
        .values_list("external_message_id", flat=True)
    )
    candidates = [item for guid, item in by_content.items() if guid not in owned]
    if len(candidates) > 1:
        raise _Undetermined(f"{len(candidates)} relay messages match its address and content")
    return candidates[0] if candidates else None


def _requeue(message: Message, now: datetime) -> None:
    Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
        status=Message.Status.PENDING,
        due_at=now,
        send_claimed_at=None,
        channel_called_at=None,
        sending_started_at=None,
        updated_at=now,
    )

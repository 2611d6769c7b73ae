"""Bulk data for benchmarks: leads written with COPY, and a fast clean-up.

Leads are written straight to the tables (no import side effects such as the
automatic availability check), so a benchmark measures only what it means to.
"""

from __future__ import annotations

import json
from collections.abc import Callable


def bench_workspace(label: str):
    """A fresh workspace (and owner) for one benchmark run; returns (workspace, raw_key)."""
    import time

    from tuco.services import workspace_create

    slug = label.lower().replace(" ", "-")
    return workspace_create(
        name=f"Bench {label} {time.time():.0f}",
        owner_email=f"bench-{slug}-{time.time_ns()}@example.test",
        password="bench-password",
    )


def copy_leads(workspace, lead_list, count: int, fields: Callable[[int], dict] | None = None):
    """COPY `count` leads with their phone identifier and list membership.

    `fields(i)` may add or override Lead attributes of row i (attnames, e.g.
    `availability_status`); every lead gets the phone +1202<2000000 + i>.
    """
    from django.db import connection
    from django.utils import timezone

    from leads.models import Lead
    from tuco.ids import new_id

    now = timezone.now()
    concrete = Lead._meta.concrete_fields
    base = {}
    for f in concrete:
        if f.has_default():
            value = f.get_default()
            base[f.attname] = json.dumps(value) if isinstance(value, dict | list) else value
        elif f.null:
            base[f.attname] = None
    base.update(workspace_id=workspace.pk, source="bench", created_at=now, updated_at=now)
    columns = ", ".join(f.column for f in concrete)
    attnames = [f.attname for f in concrete]
    ids = [new_id() for _ in range(count)]
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        with cursor.copy(f"COPY {Lead._meta.db_table} ({columns}) FROM STDIN") as copy:
            for i, lead_id in enumerate(ids):
                row = dict(base, id=lead_id, first_name=f"Lead{i}", phone=f"+1202{2000000 + i:07d}")
                if fields is not None:
                    row.update(fields(i))
                copy.write_row([row[a] for a in attnames])
        with cursor.copy(
            "COPY leads_leadidentifier (workspace_id, value, lead_id, field) FROM STDIN"
        ) as copy:
            for i, lead_id in enumerate(ids):
                copy.write_row((workspace.pk, f"+1202{2000000 + i:07d}", lead_id, "phone"))
        with cursor.copy(
            "COPY leads_listmembership (lead_list_id, lead_id, created_at) FROM STDIN"
        ) as copy:
            for lead_id in ids:
                copy.write_row((lead_list.pk, lead_id, now))
    return ids


def delete_workspace_rows(workspace) -> None:
    """Delete a benchmark workspace. Plain deletes first: the ORM's cascade would
    walk 100,000 leads in Python."""
    from django.db import connection

    from tuco.models import Workspace

    with connection.cursor() as cursor:
        for table in ("messaging_message", "campaigns_enrollment", "leads_leadidentifier"):
            cursor.execute(f"DELETE FROM {table} WHERE workspace_id = %s", [workspace.pk])  # noqa: S608
        cursor.execute(
            "DELETE FROM leads_listmembership WHERE lead_id IN"
            " (SELECT id FROM leads_lead WHERE workspace_id = %s)",
            [workspace.pk],
        )
        cursor.execute("DELETE FROM leads_lead WHERE workspace_id = %s", [workspace.pk])
    Workspace.objects.filter(pk=workspace.pk).delete()


def default_lines(workspace, relay_urls, password: str, **fields) -> None:
    """One line per relay URL with the product's default gaps and daily caps (unless
    `fields` say otherwise), healthy and past its warm-up: established lines, paced as
    a user's would be."""
    from lines.models import Line
    from lines.services import line_create

    for index, url in enumerate(relay_urls):
        line_create(
            workspace=workspace,
            server_url=url,
            relay_password=password,
            first_name=f"Line {index}",
            **fields,
        )
    Line.objects.filter(workspace=workspace).update(
        health_status=Line.Health.HEALTHY, warmup_started_at=None
    )


def unlimited_lines(workspace, relay_urls, password: str) -> None:
    """One line per relay URL, with no gaps and limits far above what a bench sends,
    healthy and past any warm-up: the benches measure throughput, not pacing."""
    default_lines(
        workspace,
        relay_urls,
        password,
        device_gap_seconds=0,
        contact_gap_seconds=0,
        check_gap_seconds=0,
        daily_total_messages_limit=1_000_000,
        daily_new_conversations_limit=1_000_000,
        daily_availability_checks_limit=1_000_000,
    )

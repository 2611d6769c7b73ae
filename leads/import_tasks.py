"""CSV imports from the dashboard: upload, preview and mapping, then a background import.

The uploaded text and the job's state are one `ImportJob` row: the web process
writes it at upload, the Celery worker (on any machine) reads the text and
updates the state after every batch, and the progress page reads it.

Each batch of rows commits on its own (large files do not hold one long
transaction); invalid rows are skipped and reported with their line number. A
file that cannot be read as CSV is rejected at upload, before anything is saved.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from leads import services
from leads.models import ImportJob, LeadList
from tuco.errors import ServiceError
from tuco.ids import looks_like_id

logger = logging.getLogger(__name__)

PREVIEW_ROWS = 5
MAX_COLUMNS = 100
MAX_ROWS = 200_000
MAX_SHOWN_ERRORS = 200
BATCH_SIZE = 1000
KEEP_DAYS = 7
# A running import rewrites its state after every batch; one that has not done so
# for this long lost its worker.
STALLED_AFTER_SECONDS = 600

# Columns this long are not data anyone means to import.
csv.field_size_limit(1024 * 1024)


class ImportRejected(ServiceError):
    pass


def import_job_get(*, workspace, job_id: str) -> ImportJob | None:
    """The workspace's import job, or None for an unknown, malformed or foreign id."""
    if not looks_like_id(job_id):
        return None
    job = ImportJob.objects.filter(workspace=workspace, pk=job_id).first()
    if job is None:
        return None
    idle = (timezone.now() - job.updated_at).total_seconds()
    if job.status == "queued" and idle > STALLED_AFTER_SECONDS:
        job.state["status"] = "failed"
        job.state["error"] = (
            "The import has not started: no worker picked it up. Check that the Celery "
            "worker is running, then upload the file again."
        )
    elif job.status == "running" and idle > STALLED_AFTER_SECONDS:
        job.state["status"] = "failed"
        job.state["error"] = (
            "The import stopped before the end. Rows counted below were saved; "
            "import the file again to add the rest (saved rows count as duplicates)."
        )
    return job


def _save(job: ImportJob, *fields: str) -> None:
    job.updated_at = timezone.now()
    job.save(update_fields=["state", "updated_at", *fields])


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRejected(
            "The file is not UTF-8 text. Export it from your spreadsheet as “CSV UTF-8”."
        ) from None


def _rows(text: str):
    """Rows of the CSV, the delimiter sniffed from the first line (comma, semicolon or tab)."""
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def import_job_create(
    *,
    workspace,
    user,
    upload,
    lead_list: LeadList | None,
    new_list_name: str = "",
    default_country_code: str = "",
) -> ImportJob:
    """Store an uploaded CSV and read its header and first rows; ImportRejected if
    it is not a usable CSV. Nothing is written to the database."""
    text = _decode(upload.read())
    try:
        reader = _rows(text)
        headers = next(reader, None)
        preview = []
        count = 0
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            count += 1
            if len(preview) < PREVIEW_ROWS:
                preview.append(row)
    except csv.Error as exc:
        raise ImportRejected(f"The file is not valid CSV: {exc}.") from None
    if not headers or not any(h.strip() for h in headers):
        raise ImportRejected("The file is empty: the first line must name the columns.")
    if len(headers) > MAX_COLUMNS:
        raise ImportRejected(f"The file has {len(headers)} columns; at most {MAX_COLUMNS}.")
    if count == 0:
        raise ImportRejected("The file has a header but no rows.")
    if count > MAX_ROWS:
        raise ImportRejected(f"The file has {count:,} rows; split it into files of {MAX_ROWS:,}.")
    _purge_old()
    return ImportJob.objects.create(
        workspace=workspace,
        content=text,
        state={
            "user_id": user.pk,
            "created_at": timezone.now().isoformat(),
            "filename": os.path.basename(upload.name or "upload.csv")[:200],
            "list_id": lead_list.pk if lead_list else None,
            "list_name": lead_list.name if lead_list else new_list_name,
            "default_country_code": default_country_code,
            "headers": [h.strip() for h in headers],
            "preview": [(row + [""] * len(headers))[: len(headers)] for row in preview],
            "total": count,
            "status": "uploaded",
            "mapping": {},
            "processed": 0,
            "saved": 0,
            "duplicates": 0,
            "linked": 0,
            "invalid": 0,
            "errors": [],
            "error": "",
        },
    )


def import_job_start(*, job: ImportJob, mapping: dict[int, str]) -> None:
    """Record the column mapping and queue the import."""
    if job.status != "uploaded":
        raise ImportRejected("This import has already started.")
    job.state["mapping"] = {str(index): target for index, target in mapping.items()}
    job.state["status"] = "queued"
    _save(job)
    lead_import_run.delay(job.id)


def _mapped_rows(job: ImportJob):
    headers = job.state["headers"]
    mapping = {int(index): target for index, target in job.state["mapping"].items()}
    reader = _rows(job.content)
    next(reader, None)
    line = 1
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        fields: dict = {"_line": line}
        custom = {}
        for index, target in mapping.items():
            value = row[index].strip() if index < len(row) else ""
            if target == "custom":
                if value:
                    custom[headers[index] or f"column{index + 1}"] = value
            else:
                fields[target] = value
        if custom:
            fields["custom_fields"] = custom
        yield fields


def import_job_run(job_id: str) -> None:
    """Import the rows of a queued job, batch by batch, recording progress."""
    # Claim the job: a duplicate delivery of the task finds it no longer queued.
    with transaction.atomic():
        job = (
            ImportJob.objects.select_for_update(no_key=True)
            .select_related("workspace")
            .filter(pk=job_id)
        ).first()
        if job is None or job.status != "queued":
            logger.info("Import job %s is not queued; nothing to do", job_id)
            return
        job.state["status"] = "running"
        _save(job)
    state = job.state
    try:
        workspace = job.workspace
        lead_list = _import_list(workspace, state)

        def progress(result):
            job.state.update(
                processed=result.total_processed + result.invalid_count,
                saved=result.saved_count,
                duplicates=result.duplicate_count,
                linked=result.linked_count,
                invalid=result.invalid_count,
            )
            _save(job)

        result = services.lead_import(
            workspace=workspace,
            rows=_mapped_rows(job),
            lead_list=lead_list,
            source="csv",
            default_country_code=state["default_country_code"] or None,
            batch_size=BATCH_SIZE,
            atomic=False,
            skip_invalid=True,
            collect_ids=False,
            progress=progress,
            tag_source="import",
        )
    except ServiceError as exc:
        job.state.update(status="failed", error=str(exc))
        _save(job)
        return
    except Exception:
        logger.exception("Import job %s failed", job_id)
        job.state.update(status="failed", error="The import failed because of a server error.")
        _save(job)
        raise
    progress(result)
    job.state.update(
        status="done",
        list_id=lead_list.pk,
        errors=[
            {"line": getattr(e, "line", None), "field": e.field, "message": e.message}
            for e in result.errors[:MAX_SHOWN_ERRORS]
        ],
    )
    job.content = ""
    _save(job, "content")


def _import_list(workspace, state) -> LeadList:
    if state["list_id"]:
        lead_list = LeadList.objects.filter(workspace=workspace, pk=state["list_id"]).first()
        if lead_list is None:
            raise ImportRejected("The chosen list was deleted meanwhile.")
        return lead_list
    return services.lead_list_get_or_create(workspace=workspace, name=state["list_name"])


def _purge_old() -> None:
    ImportJob.objects.filter(created_at__lt=timezone.now() - timedelta(days=KEEP_DAYS)).delete()


@shared_task(name="leads.import_tasks.lead_import_run")
def lead_import_run(job_id: str):
    import_job_run(job_id)

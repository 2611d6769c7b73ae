import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from leads.csv_import import read_csv_leads
from leads.services import lead_import, lead_list_get_or_create
from tuco.errors import ServiceError
from tuco.models import Workspace


def _count_rows(path: Path) -> int:
    """Data lines in the file (a quick estimate for the progress bar)."""
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return max(count - 1, 0)


class Progress:
    def __init__(self, total: int, stream):
        self.total = total
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, result) -> None:
        done = result.total_processed + result.invalid_count
        elapsed = max(time.monotonic() - self.started, 1e-9)
        total = max(self.total, done)
        width = 30
        filled = int(width * done / total) if total else width
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} rows"
            f"  {done / elapsed:,.0f} rows/s"
        )
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    help = "Import leads from a CSV file into a list (created if missing)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--workspace", required=True, help="workspace id or name")
        parser.add_argument("--list", required=True, dest="list_name", help="list name")
        parser.add_argument("--default-country-code", default="+1")
        parser.add_argument("--source", default="csv")
        parser.add_argument(
            "--strict",
            action="store_true",
            help="abort on the first invalid row and save nothing",
        )
        parser.add_argument("--batch-size", type=int, default=5000)

    def handle(self, *args, file: Path, workspace: str, list_name: str, **options):
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        ws = self._workspace(workspace)
        strict = options["strict"]
        progress = Progress(_count_rows(file), sys.stderr)
        try:
            with file.open(encoding="utf-8-sig", newline="") as handle:
                try:
                    _, rows = read_csv_leads(handle)
                except ValueError as exc:
                    raise CommandError(f"{file}: {exc}") from None
                lead_list = lead_list_get_or_create(workspace=ws, name=list_name)
                result = lead_import(
                    workspace=ws,
                    rows=rows,
                    lead_list=lead_list,
                    source=options["source"],
                    default_country_code=options["default_country_code"],
                    batch_size=options["batch_size"],
                    atomic=strict,
                    skip_invalid=not strict,
                    tag_source="import",
                    collect_ids=False,
                    progress=progress,
                )
        except ServiceError as exc:
            progress.finish()
            line = getattr(exc, "extra", {}).get("line")
            where = f"line {line}: " if line else ""
            raise CommandError(f"{where}{exc}; nothing was imported") from None
        except UnicodeDecodeError:
            raise CommandError(f"{file} is not UTF-8 text") from None
        progress.finish()
        elapsed = time.monotonic() - progress.started
        self.stdout.write(
            f"List {lead_list.name!r} ({lead_list.pk}): {result.saved_count:,} saved, "
            f"{result.duplicate_count:,} duplicates ({result.linked_count:,} existing leads "
            f"added to the list), {result.invalid_count:,} invalid, "
            f"{result.total_processed + result.invalid_count:,} rows in {elapsed:.1f}s"
        )
        if result.errors:
            self.stdout.write("Invalid rows (skipped):")
            for error in result.errors:
                where = f"line {error.line}" if error.line else f"row {error.index + 1}"
                field = f"{error.field}: " if error.field else ""
                self.stdout.write(f"  {where}: {field}{error.message}")
            if result.invalid_count > len(result.errors):
                self.stdout.write(f"  ... and {result.invalid_count - len(result.errors):,} more")

    def _workspace(self, value: str) -> Workspace:
        found = Workspace.objects.filter(pk=value).first()
        if found:
            return found
        matches = list(Workspace.objects.filter(name=value)[:2])
        if not matches:
            raise CommandError(f"No workspace with id or name {value!r}")
        if len(matches) > 1:
            raise CommandError(f"Several workspaces are named {value!r}; use the id")
        return matches[0]

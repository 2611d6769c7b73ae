from django.core.management.base import BaseCommand, CommandError

from lines.services import line_create
from tuco.errors import ServiceError
from tuco.models import Workspace


class Command(BaseCommand):
    help = "Add a line (a Mac running a relay server) to a workspace; prints the line id."

    def add_arguments(self, parser):
        parser.add_argument("--workspace", required=True, help="Workspace id or exact name")
        parser.add_argument("--server-url", required=True)
        parser.add_argument("--password", required=True, help="The relay server password")
        parser.add_argument("--phone", default="")
        parser.add_argument("--email", default="")
        parser.add_argument("--name", default="", help="First and last name of the account")
        parser.add_argument("--checks-per-day", type=int, default=None)
        parser.add_argument("--check-gap", type=int, default=None, help="Seconds between checks")

    def handle(self, *args, **options):
        ref = options["workspace"]
        workspace = (
            Workspace.objects.filter(pk=ref).first() or Workspace.objects.filter(name=ref).first()
        )
        if workspace is None:
            raise CommandError(f"No workspace with id or name {ref!r}")
        first, _, last = options["name"].strip().partition(" ")
        extra = {}
        if options["checks_per_day"] is not None:
            extra["daily_availability_checks_limit"] = options["checks_per_day"]
        if options["check_gap"] is not None:
            extra["check_gap_seconds"] = options["check_gap"]
        try:
            line = line_create(
                workspace=workspace,
                server_url=options["server_url"],
                relay_password=options["password"],
                phone=options["phone"],
                email=options["email"],
                first_name=first,
                last_name=last.strip(),
                **extra,
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(line.pk)

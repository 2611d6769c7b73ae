from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from tuco.errors import ServiceError
from tuco.services import workspace_create


class Command(BaseCommand):
    help = "Create a workspace with an owner and print a new API key."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--password", help="Set (or reset) the owner's dashboard password")
        parser.add_argument("--timezone", default="UTC")

    def handle(self, *args, name, owner_email, password, timezone, **options):
        try:
            validate_email(owner_email)
        except ValidationError:
            raise CommandError(f"Not a valid email address: {owner_email}") from None
        from zoneinfo import available_timezones

        if timezone not in available_timezones():
            raise CommandError(f"Unknown timezone: {timezone}")
        try:
            workspace, raw_key = workspace_create(
                name=name, owner_email=owner_email, password=password, timezone_name=timezone
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Workspace: {workspace.name} ({workspace.pk})")
        self.stdout.write(f"Owner: {owner_email}")
        self.stdout.write(f"API key: {raw_key}")

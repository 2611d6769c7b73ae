from django.core.management.base import BaseCommand, CommandError

from lines import simulator


class Command(BaseCommand):
    help = (
        "Run the relay simulator (a BlueBubbles-compatible line) in the foreground until "
        "Ctrl-C. See lines/simulator.py for its registry and switches."
    )
    # The simulator stands in for a Mac; it needs nothing from the project to be healthy.
    requires_system_checks = []

    def add_arguments(self, parser):
        simulator.add_arguments(parser)

    def handle(self, *args, **options):
        try:
            sim = simulator.from_options(options, verbose=options["verbosity"] > 1)
        except (OSError, ValueError) as exc:
            raise CommandError(f"Bad simulator options: {exc}") from exc
        try:
            simulator.serve(sim, write=self.stdout.write)
        except OSError as exc:
            address = f"{options['host']}:{options['port']}"
            raise CommandError(f"Could not listen on {address}: {exc}") from exc

"""`make demo`: prepare the embedded database and run every process in the foreground.

It seeds a workspace, a line and leads, so it lives in leads, the highest app it
needs (leads may use lines and tuco).
"""

import json
import os
import shutil
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

DEMO_EMAIL = "demo@tuco.local"
DEMO_PASSWORD = "tuco-demo"  # noqa: S105 - a documented demo login
RELAY_PASSWORD = "demo-relay"  # noqa: S105
DEMO_LEADS = [
    {"firstName": "Ada", "lastName": "Lovelace", "phone": "(415) 555-0102",
     "companyName": "Analytical Engines", "jobTitle": "CTO"},
    {"firstName": "Grace", "lastName": "Hopper", "phone": "+1 212 555 0147",
     "companyName": "COBOL Inc", "jobTitle": "Rear Admiral"},
    {"firstName": "Alan", "lastName": "Turing", "email": "alan@icloud.com",
     "companyName": "Bletchley", "jobTitle": "Researcher"},
    {"firstName": "Katherine", "lastName": "Johnson", "phone": "757-555-0164",
     "email": "katherine@example.com", "companyName": "NASA"},
    {"firstName": "Linus", "lastName": "Torvalds", "phone": "+358 40 555 0188",
     "companyName": "Kernel", "jobTitle": "Maintainer"},
    {"firstName": "Margaret", "lastName": "Hamilton", "phone": "617-555-0131",
     "altEmail1": "margaret@me.com", "companyName": "Apollo"},
    {"firstName": "Tim", "lastName": "Berners-Lee", "email": "tim@example.org",
     "companyName": "W3C"},
    {"firstName": "Barbara", "lastName": "Liskov", "phone": "+1 617 555 0126",
     "companyName": "MIT", "jobTitle": "Professor"},
]  # fmt: skip


class Command(BaseCommand):
    help = "Set up the demo workspace on the embedded database and run web, worker, beat and relay."

    def add_arguments(self, parser):
        parser.add_argument("--setup-only", action="store_true", help="Prepare data, run nothing")
        parser.add_argument("--port", type=int, default=int(os.environ.get("TUCO_PORT", 8000)))
        parser.add_argument(
            "--relay-port", type=int, default=int(os.environ.get("TUCO_RELAY_PORT", 1234))
        )

    def handle(self, *args, setup_only, port, relay_port, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("setup_periodic_tasks", verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
        workspace, raw_key = self._workspace()
        self._line(workspace, relay_port)
        self._leads(workspace)

        url = f"http://127.0.0.1:{port}/"
        self.stdout.write(self.style.SUCCESS("\nTuco demo is ready"))
        self.stdout.write(f"  Dashboard:  {url}")
        self.stdout.write(f"  Login:      {DEMO_EMAIL} / {DEMO_PASSWORD}")
        self.stdout.write(f"  Admin:      {url}admin/")
        self.stdout.write(f"  API docs:   {url}api/docs/")
        relay = f"http://127.0.0.1:{relay_port}"
        self.stdout.write(f"  Relay sim:  {relay} (password {RELAY_PASSWORD})")
        self.stdout.write(f"  API key:    {raw_key}")
        self.stdout.write(f'\n  curl -H "Authorization: Bearer {raw_key}" {url}api/lines/by-user\n')
        if setup_only:
            return
        self._run(port, relay_port)

    def _workspace(self):
        from tuco.models import ApiKey, Membership, Workspace
        from tuco.services import api_key_create, workspace_create

        state_file = Path(settings.DATA_DIR) / "demo.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        workspace = (
            Workspace.objects.filter(pk=state.get("workspace_id")).first()
            or Workspace.objects.filter(memberships__user__email=DEMO_EMAIL, name="Demo").first()
        )
        if workspace is None:
            workspace, raw_key = workspace_create(
                name="Demo", owner_email=DEMO_EMAIL, password=DEMO_PASSWORD
            )
        else:
            raw_key = state.get("api_key", "")
            key_ok = ApiKey.objects.filter(
                workspace=workspace, prefix=raw_key[:12], revoked_at__isnull=True
            ).exists()
            if not key_ok:
                _, raw_key = api_key_create(workspace=workspace, name="Demo key")
        user = get_user_model().objects.get(email=DEMO_EMAIL)
        user.is_staff = user.is_superuser = True
        user.set_password(DEMO_PASSWORD)
        user.save()
        Membership.objects.get_or_create(
            workspace=workspace, user=user, defaults={"role": Membership.Role.OWNER}
        )
        state_file.write_text(json.dumps({"workspace_id": workspace.pk, "api_key": raw_key}))
        return workspace, raw_key

    def _line(self, workspace, relay_port):
        from lines.models import Line
        from lines.services import line_create, line_update

        server_url = f"http://127.0.0.1:{relay_port}"
        line = Line.objects.filter(workspace=workspace).first()
        if line is None:
            line_create(
                workspace=workspace,
                server_url=server_url,
                relay_password=RELAY_PASSWORD,
                phone="+14155550100",
                first_name="Demo",
                last_name="Line",
            )
        elif line.server_url.rstrip("/") != server_url:
            line_update(workspace=workspace, line_id=line.pk, server_url=server_url)

    def _leads(self, workspace):
        from leads.models import Lead
        from leads.services import lead_import, lead_list_get_or_create

        if Lead.objects.filter(workspace=workspace).exists():
            return
        lead_list = lead_list_get_or_create(workspace=workspace, name="Demo leads")
        lead_import(
            workspace=workspace,
            rows=DEMO_LEADS,
            lead_list=lead_list,
            source="demo",
            default_country_code="+1",
        )

    def _run(self, port, relay_port):
        honcho = shutil.which("honcho", path=str(Path(sys.executable).parent))
        if honcho is None:
            raise CommandError("honcho is not installed; run `make install` first")
        env = dict(os.environ)
        env.setdefault("DEBUG", "true")
        env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
        env.setdefault("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
        env.setdefault("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
        env.setdefault("ATTACHMENTS_ALLOW_PRIVATE_URLS", "true")
        env["TUCO_PORT"] = str(port)
        env["TUCO_RELAY_PORT"] = str(relay_port)
        env["TUCO_RELAY_PASSWORD"] = RELAY_PASSWORD
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        procfile = Path(settings.BASE_DIR) / "Procfile.demo"
        self.stdout.write("Starting web, worker, beat and relay simulator (Ctrl-C stops them)\n")
        self.stdout.flush()
        os.execve(honcho, [honcho, "start", "-f", str(procfile), "-d", str(settings.BASE_DIR)], env)

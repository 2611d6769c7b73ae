"""Lead import throughput on Postgres, through lead_import as the `import_leads`
command runs it (a CSV file streamed in batches, each batch committed):

- 100,000 rows whose phones are already E.164, into an empty list;
- 100,000 rows with phones as people type them (national formats such as
  "(415) 555-0102", "415.555.0102", "1-415-555-0102", about 15% international
  numbers such as "+44 20 7946 0123"), with a default country code of +1;
- the E.164 rows again, into the list that holds them (all duplicates);
- 100,000 more messy rows in one transaction;
- POST /api/leads with 10,000 leads;
- a plain COPY of normalized rows, as the ceiling.

Each case reports leads/s and the peak RSS during the case (the high-water mark
is reset before each), so memory that grows with the input shows.
BENCH_LEADS and BENCH_API_LEADS change the two sizes (smaller runs while developing)."""

import csv
import json
import os
import random
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

TOTAL = int(os.environ.get("BENCH_LEADS", 100_000))
API_ROWS = int(os.environ.get("BENCH_API_LEADS", 10_000))
SEED = 20261123

FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
         "David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "José", "Zoë",
         "Wei", "Aisha", "Olumide", "Siobhán"]  # fmt: skip
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
        "Rodriguez", "Martinez", "Hernandez", "Lopez", "O'Brien", "Nguyen", "Kowalski"]  # fmt: skip
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", ""]
TITLES = ["CEO", "CTO", "VP Sales", "Founder", "Head of Growth", "Engineer", ""]
DOMAINS = ["gmail.com", "Yahoo.com", "outlook.com", "example.org", "company.io"]
AREA_CODES = [201, 202, 212, 213, 305, 312, 404, 415, 503, 512, 617, 646, 702, 713, 718,
              801, 917, 919]  # fmt: skip

E164, MESSY = "e164", "messy"
# (share of international numbers, US formats, international formats) per style.
US_E164 = ["+1{a}{e}{n}"]
US_NATIONAL = [
    "({a}) {e}-{n}",
    "{a}.{e}.{n}",
    "1-{a}-{e}-{n}",
    "{a}-{e}-{n}",
    "{a} {e} {n}",
    "{a}{e}{n}",
]
INTERNATIONAL_E164 = [
    lambda r: f"+44207946{r.randint(0, 9999):04d}",
    lambda r: f"+447911{r.randint(100000, 199999)}",
    lambda r: f"+3361{r.randint(1000000, 9999999)}",
    lambda r: f"+4930{r.randint(1000000, 9999999)}",
]
INTERNATIONAL_NATIONAL = [
    lambda r: f"+44 20 7946 {r.randint(0, 9999):04d}",
    lambda r: f"+44 (0)7911 {r.randint(100000, 199999)}",
    lambda r: f"0044 7911 {r.randint(100000, 199999)}",
    lambda r: (
        f"+33 6 1{r.randint(0, 9)} {r.randint(10, 99)} {r.randint(10, 99)} {r.randint(10, 99)}"
    ),
    lambda r: f"+49 (0)30 {r.randint(1000000, 9999999)}",
    lambda r: f"+49 30 {r.randint(1000, 9999)} {r.randint(100, 999)}",
]
STYLES = {
    E164: (0.10, US_E164, INTERNATIONAL_E164),
    MESSY: (0.15, US_NATIONAL, INTERNATIONAL_NATIONAL),
}


def generate(count: int, seed: int = SEED, style: str = MESSY) -> Iterator[dict]:
    """Deterministic rows: US numbers and a share of international ones, written as
    `style` says, 70% with an email, and 10% repeating an earlier person."""
    rng = random.Random(seed)
    international, us_formats, foreign = STYLES[style]
    recent: list[tuple[str, str]] = []
    for n in range(count):
        if recent and rng.random() < 0.10:
            phone, email = rng.choice(recent)
            repeat = {"firstName": rng.choice(FIRST), "phone": phone}
            if email:
                repeat["email"] = email.upper()
            yield repeat
            continue
        if rng.random() < international:
            phone = rng.choice(foreign)(rng)
        else:
            phone = rng.choice(us_formats).format(
                a=rng.choice(AREA_CODES),
                e=rng.randint(200, 999),
                n=f"{rng.randint(0, 9999):04d}",
            )
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = ""
        if rng.random() < 0.7:
            local = f"{first}.{last}{n}".replace("'", "")
            local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode()
            email = f" {local}@{rng.choice(DOMAINS)}"
        row = {
            "firstName": first,
            "lastName": last,
            "phone": phone,
            "companyName": rng.choice(COMPANIES),
            "jobTitle": rng.choice(TITLES),
        }
        if email:
            row["email"] = email
        if n % 7 == 0:
            row["customFields"] = {"segment": rng.choice(["smb", "mid", "enterprise"])}
        recent.append((phone, email.strip()))
        if len(recent) > 5000:
            recent = recent[-2500:]
        yield row


CSV_COLUMNS = [
    ("First Name", "firstName"),
    ("Last Name", "lastName"),
    ("Phone Number", "phone"),
    ("E-mail", "email"),
    ("Company", "companyName"),
    ("Title", "jobTitle"),
]


def write_csv(path, count: int, seed: int = SEED, style: str = MESSY) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([header for header, _ in CSV_COLUMNS] + ["Segment"])
        for row in generate(count, seed, style):
            cells = [row.get(key, "") for _, key in CSV_COLUMNS]
            writer.writerow([*cells, row.get("customFields", {}).get("segment", "")])


def import_csv(path, atomic=False, **kwargs):
    """The `import_leads` command's path: stream the file through lead_import."""
    from leads.csv_import import read_csv_leads
    from leads.services import lead_import

    with open(path, encoding="utf-8-sig", newline="") as handle:
        _, rows = read_csv_leads(handle)
        return lead_import(rows=rows, atomic=atomic, collect_ids=False, **kwargs)


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Start a new high-water mark of this process's RSS (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_rss_mb() -> float:
    """The highest RSS since reset_peak_rss()."""
    return _status_mb("VmHWM")


@contextmanager
def without_receivers(signal):
    """Measure the import itself; hooks on leads_created (automatic availability
    checks) are queued work of their own."""
    saved = signal.receivers
    signal.receivers = []
    signal.sender_receivers_cache.clear()
    try:
        yield
    finally:
        signal.receivers = saved
        signal.sender_receivers_cache.clear()


class _Clock:
    """Wall time of one case, and the CPU time it took in this process (all
    threads) and in its Postgres backend: on a shared machine the wall time
    depends on the neighbours, the CPU seconds much less. The backend's are read
    from /proc, so only when Postgres runs on this machine and is readable."""

    def __init__(self):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.stat = f"/proc/{cursor.fetchone()[0]}/stat"
        self.db_started = self._db_cpu()
        reset_peak_rss()
        self.rss_started = _status_mb("VmRSS")
        times = os.times()
        self.cpu_started = times.user + times.system
        self.started = time.perf_counter()

    def _db_cpu(self) -> float | None:
        try:
            with open(self.stat) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict:
        seconds = time.perf_counter() - self.started
        times = os.times()
        db = self._db_cpu()
        return {
            "seconds": seconds,
            "python CPU s": round(times.user + times.system - self.cpu_started, 2),
            "db CPU s": None if db is None else round(db - self.db_started, 2),
            "RSS before MB": round(self.rss_started),
            "peak RSS MB": round(peak_rss_mb()),
        }


def _row(case, count, seconds, **extra):
    return {
        "case": case,
        "leads": count,
        "seconds": round(seconds, 2),
        "leads/s": round(count / seconds) if seconds else None,
        **extra,
    }


def _cleanup(workspace) -> None:
    from django.db import connection

    from leads.models import Lead, LeadIdentifier, LeadList, ListMembership

    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {ListMembership._meta.db_table} WHERE lead_list_id IN "  # noqa: S608
            f"(SELECT id FROM {LeadList._meta.db_table} WHERE workspace_id = %s)",
            [workspace.pk],
        )
        for model in (LeadIdentifier, Lead):
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE workspace_id = %s",  # noqa: S608
                [workspace.pk],
            )
    workspace.delete()


def run() -> list[dict]:
    from django.db import connection
    from django.test import Client

    from leads.normalize import Normalizer
    from leads.services import lead_list_create
    from leads.signals import leads_created
    from tuco.services import workspace_create

    if connection.vendor != "postgresql":
        return [{"case": "skipped: needs Postgres (DATABASE_URL)"}]
    workspace, raw_key = workspace_create(
        name=f"bench-{time.time_ns()}", owner_email="bench@tuco.test"
    )
    rows = []
    tmp = tempfile.NamedTemporaryFile(suffix=".csv", delete=False)  # noqa: SIM115
    tmp.close()

    def import_case(case, count, *, atomic=False, **kwargs):
        clock = _Clock()
        result = import_csv(
            tmp.name, atomic=atomic, workspace=workspace, default_country_code="+1", **kwargs
        )
        rows.append(
            _row(
                case,
                count,
                **clock.stop(),
                saved=result.saved_count,
                duplicates=result.duplicate_count,
                invalid=result.invalid_count,
            )
        )

    try:
        with without_receivers(leads_created):
            e164_list = lead_list_create(workspace=workspace, name="Bench E.164")
            write_csv(tmp.name, TOTAL, style=E164)
            import_case(f"E.164 CSV import {TOTAL:,} into empty list", TOTAL, lead_list=e164_list)
            write_csv(tmp.name, TOTAL, seed=SEED + 1, style=MESSY)
            import_case(
                f"messy formats CSV import {TOTAL:,} into empty list",
                TOTAL,
                lead_list=lead_list_create(workspace=workspace, name="Bench messy"),
            )
            write_csv(tmp.name, TOTAL, style=E164)
            import_case(f"E.164 {TOTAL:,} again (all duplicates)", TOTAL, lead_list=e164_list)
            write_csv(tmp.name, TOTAL, seed=SEED + 2, style=MESSY)
            import_case(
                f"another {TOTAL:,} messy, one transaction",
                TOTAL,
                atomic=True,
                lead_list=lead_list_create(workspace=workspace, name="Bench atomic"),
            )

            client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
            api_rows = list(generate(API_ROWS, seed=SEED + 3))
            body = json.dumps({"leads": api_rows, "defaultCountryCode": "+1"})
            clock = _Clock()
            response = client.post("/api/leads", body, content_type="application/json")
            measured = clock.stop()
            result = response.json()
            rows.append(
                _row(
                    f"POST /api/leads, {API_ROWS:,} leads (HTTP {response.status_code})",
                    API_ROWS,
                    **measured,
                    saved=result.get("savedCount"),
                    duplicates=result.get("duplicateCount"),
                )
            )

        # The ceiling: COPY of the same rows, already normalized, into a scratch table.
        normalizer = Normalizer("+1")
        prepared = []
        for row in generate(TOTAL, style=E164):
            phone = normalizer.phone(row["phone"])
            email = normalizer.email(row["email"]) if row.get("email") else ""
            prepared.append(
                (
                    phone,
                    email,
                    row.get("firstName", ""),
                    row.get("lastName", ""),
                    row.get("companyName", ""),
                    row.get("jobTitle", ""),
                    json.dumps(row.get("customFields", {})),
                )  # fmt: skip
            )
        with connection.cursor() as wrapper:
            cursor = wrapper.cursor
            cursor.execute("CREATE TEMP TABLE bench_lead_copy (LIKE leads_lead INCLUDING DEFAULTS)")
            now = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
            clock = _Clock()
            with cursor.copy(
                "COPY bench_lead_copy (id, workspace_id, phone, email, first_name, last_name,"
                " company_name, job_title, custom_fields, created_at, updated_at, source,"
                " alt_phone1, alt_phone2, alt_phone3, alt_email1, alt_email2, alt_email3,"
                " notes, availability_status, availability_address, opted_out,"
                " contact_owner_email) FROM STDIN"
            ) as copy:
                for n, values in enumerate(prepared):
                    copy.write_row(
                        (
                            f"{n:024x}",
                            workspace.pk,
                            *values,
                            now,
                            now,
                            "",
                            "",
                            "",
                            "",
                            "",
                            "",
                            "",
                            "",
                            "",
                            "",
                            False,
                            "",
                        )  # fmt: skip
                    )
            measured = clock.stop()
            cursor.execute("DROP TABLE bench_lead_copy")
        rows.append(_row("ceiling: COPY normalized rows (leads only)", TOTAL, **measured))
    finally:
        os.unlink(tmp.name)
        _cleanup(workspace)
    return rows

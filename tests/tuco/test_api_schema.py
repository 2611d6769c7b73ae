"""Property-based fuzzing of the whole API against its own OpenAPI schema:
no 5xx, and every response matches what the schema says."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
# Receivers for relay and Twilio callbacks are not part of the customer API.
EXCLUDED_PREFIXES = ("/api/relay/", "/api/webhooks/twilio/")


def test_schema_is_served(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/leads" in response.content
    assert b"/api/messages" in response.content


def test_schema_generates_without_warnings(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert (tmp_path / "schema.yml").stat().st_size > 0


def test_docs_ui_is_served(client):
    assert client.get("/api/docs/").status_code == 200


@pytest.fixture
def wsgi_keeps_test_connection():
    # Like Django's test client: the WSGI handler must not close the connection
    # that holds the test's transaction at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.slow
def test_api_matches_its_schema(acme, settings, wsgi_keeps_test_connection):
    settings.RATE_LIMITS_ENABLED = False
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    headers = {"Authorization": f"Bearer {acme.raw_key}"}
    failures = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith(EXCLUDED_PREFIXES):
            continue
        tested += 1

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert tested > 20
    assert not failures, "\n\n".join(failures)

"""Helpers shared by the line service tests."""

from datetime import UTC, datetime

from lines import services

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def offline_line(workspace, **fields):
    """A line whose relay is never reached (nothing listens on port 9)."""
    fields.setdefault("check_gap_seconds", 0)
    return services.line_create(
        workspace=workspace, server_url="http://127.0.0.1:9", relay_password="pw", **fields
    )

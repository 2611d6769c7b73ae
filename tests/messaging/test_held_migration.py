"""The migration to Message.held: rows that waited with the far due date become
held (due at their creation), the others stay as they were, and back again."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("messaging", "0002_message_indexes_narrowed")]
AFTER = [("messaging", "0003_message_held")]
FAR = datetime(9000, 1, 1, tzinfo=UTC)
CREATED = datetime(2026, 3, 4, 15, 0, tzinfo=UTC)


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_rows_due_at_the_far_date_become_held_and_back(acme):
    old = migrate(BEFORE)
    try:
        Message = old.get_model("messaging", "Message")
        common = {"workspace_id": acme.pk, "status": "scheduled", "created_at": CREATED}
        parked = Message.objects.create(due_at=FAR, **common).pk
        due = CREATED + timedelta(hours=1)
        waiting = Message.objects.create(due_at=due, **common).pk

        new = migrate(AFTER)
        Message = new.get_model("messaging", "Message")
        rows = dict(Message.objects.values_list("pk", "held"))
        assert rows == {parked: True, waiting: False}
        assert Message.objects.get(pk=parked).due_at == CREATED
        assert Message.objects.get(pk=waiting).due_at == due

        old = migrate(BEFORE)
        Message = old.get_model("messaging", "Message")
        assert dict(Message.objects.values_list("pk", "due_at")) == {parked: FAR, waiting: due}
    finally:
        # Back to the latest migrations, later ones included, for the tests after this.
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

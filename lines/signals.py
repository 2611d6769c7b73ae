"""Seams other apps connect to, so lines never imports them."""

from django.dispatch import Signal

# Sent on commit after a line is created or updated: kwargs line_id, created (bool),
# workspace_id. Messaging registers the relay webhook from here.
line_saved = Signal()

# Sent on commit when a line may offer more capacity than before: it was created
# active, activated, became healthy, or its daily availability checks limit was
# raised. Kwargs: line_id, workspace_id, reason. The availability engine re-queues
# jobs that wait for tomorrow's quota from here.
line_capacity_changed = Signal()

# Sent inside the transaction that changed a line's safety state, so receivers write
# their outbox rows with it. Kwargs: line_id, workspace_id, event ("line.down",
# "line.recovered", "line.quarantined", "line.spam_risk"), reason (text), data (dict).
# Messaging turns it into webhook events and emails to the workspace's owners.
line_safety_changed = Signal()

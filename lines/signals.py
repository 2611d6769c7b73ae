"""Seams other apps connect to, so lines never imports them."""

from django.dispatch import Signal

# Sent on commit after a line is created or updated: kwargs line_id, created (bool),
# workspace_id, left_relay. Messaging registers the relay webhook from here.
# left_relay: (server_url, relay password encrypted with tuco.crypto) of the relay the
# line no longer uses as it did (its URL or password changed), else None.
line_saved = Signal()

# Sent on commit after a line is deleted: kwargs line_id, workspace_id, left_relay
# (as above: the relay it was on). Messaging removes its webhook from that relay.
line_deleted = Signal()

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

from django.dispatch import Signal

# Sent after the transaction that created leads commits.
# Arguments: workspace (Workspace), lead_ids (list[str]).
leads_created = Signal()

# Sent after availability results were written to leads.
# Arguments: workspace (Workspace), results (list of per-lead results).
lead_availability_updated = Signal()

# Sent inside the transaction that deletes leads, before they are deleted, so the
# apps that keep data about them delete it with them (the published lead deletion
# removes a lead's messages, replies and conversations). Arguments: workspace
# (Workspace), leads (a Lead queryset: the leads about to be deleted).
leads_deleting = Signal()

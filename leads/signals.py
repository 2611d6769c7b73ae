from django.dispatch import Signal

# Sent after the transaction that created leads commits.
# Arguments: workspace (Workspace), lead_ids (list[str]).
leads_created = Signal()

# Sent after availability results were written to leads.
# Arguments: workspace (Workspace), results (list of per-lead results).
lead_availability_updated = Signal()

"""Seams other apps connect to, so messaging never imports them."""

from django.dispatch import Signal

# Sent after the commit that moved a message to sent, fallback, failed or
# cancelled (one send per message): kwargs message_id (str), status (str),
# campaign_id (str, "" when the message belongs to no campaign). Receivers must
# be idempotent: a status change may be reported more than once, and a reader
# that must not miss one also sweeps (campaigns does).
message_status_changed = Signal()

# Sent to ask for the names of campaigns (webhook payloads and replies carry them):
# kwargs workspace_id (str), campaign_ids (list[str]). A receiver returns
# {campaign_id: name} for those of the ids that are campaigns of that workspace.
campaign_names_requested = Signal()

# Sent by the send task, outside any transaction, to ask for the answers of the API
# tools a message's text uses (`{api_<name>}`): kwargs workspace_id (str), lead (the
# message's lead or None), names (list[str], without `api_`), campaign_id (str, ""
# outside campaigns), step_index (int or None). A receiver returns {name:
# messaging.templating.ApiValue} for the names it knows; it may make network calls.
api_values_requested = Signal()

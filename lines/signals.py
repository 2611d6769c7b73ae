"""Seams other apps connect to, so lines never imports them."""

from django.dispatch import Signal

# Sent on commit after a line is created or updated: kwargs line_id, created (bool),
# workspace_id. Messaging registers the relay webhook from here.
line_saved = Signal()

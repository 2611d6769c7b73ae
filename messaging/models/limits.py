from django.db import models

from tuco.models import Workspace


class FrequencyCap(models.Model):
    """A workspace's cap on messages per lead, across every campaign and send
    (messaging.frequency). A workspace without a row uses the global defaults
    (settings.FREQUENCY_CAP_PER_DAY and FREQUENCY_CAP_PER_WEEK); 0 means no cap."""

    workspace = models.OneToOneField(
        Workspace, on_delete=models.CASCADE, primary_key=True, related_name="frequency_cap"
    )
    per_day = models.PositiveSmallIntegerField(help_text="Messages per lead per 24 hours")
    per_week = models.PositiveSmallIntegerField(help_text="Messages per lead per 7 days")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Frequency cap of {self.workspace}"

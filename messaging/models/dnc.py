from django.db import models
from django.utils import timezone as dj_timezone

from tuco.fields import BytewiseCharField
from tuco.ids import new_id
from tuco.models import Workspace


class DoNotContact(models.Model):
    """An address (E.164 phone or lowercased email) that must never be messaged."""

    class Source(models.TextChoices):
        MANUAL = "manual", "Added by hand"
        API = "api", "Added through the API"
        REPLY = "reply", "Opt-out reply"

    id = BytewiseCharField(primary_key=True, max_length=24, default=new_id, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    value = models.CharField(max_length=254)
    kind = models.CharField(max_length=5, choices=[("phone", "Phone"), ("email", "Email")])
    reason = models.CharField(max_length=300, blank=True, default="")
    source = models.CharField(max_length=8, choices=Source, default=Source.API)
    created_at = models.DateTimeField(default=dj_timezone.now)

    class Meta:
        verbose_name = "do-not-contact entry"
        verbose_name_plural = "do-not-contact list"
        constraints = [models.UniqueConstraint(fields=["workspace", "value"], name="dnc_unique")]

    def __str__(self):
        return self.value

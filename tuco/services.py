from datetime import timedelta

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tuco.errors import ServiceError
from tuco.models import ApiKey, IdempotencyRecord, Membership, Workspace, hash_api_key

# last_used_at is informational; writing it on every request would turn every
# read into a write, so it is refreshed at most once a minute per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@transaction.atomic
def workspace_create(
    *, name: str, owner_email: str, password: str | None = None, timezone_name: str = "UTC"
) -> tuple[Workspace, str]:
    """Create a workspace owned by the user with that email; return it and a new API key."""
    User = get_user_model()
    owner_email = owner_email.strip().lower()
    user = User.objects.filter(email__iexact=owner_email).first()
    is_new = user is None
    if is_new:
        user = User(username=owner_email, email=owner_email)
    if password:
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise ServiceError(" ".join(exc.messages), field="password") from None
        user.set_password(password)
    elif is_new:
        user.set_unusable_password()
    if is_new:
        user.save()
    elif password:
        user.save(update_fields=["password"])
    workspace = Workspace.objects.create(name=name, timezone=timezone_name)
    Membership.objects.create(workspace=workspace, user=user, role=Membership.Role.OWNER)
    _, raw_key = api_key_create(workspace=workspace, name="Default key", created_by=user)
    return workspace, raw_key


def api_key_create(*, workspace: Workspace, name: str, created_by=None) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned once and never stored."""
    raw = ApiKey.generate()
    key = ApiKey.objects.create(
        workspace=workspace,
        name=name or "API key",
        prefix=raw[:12],
        key_hash=hash_api_key(raw),
        created_by=created_by,
    )
    return key, raw


def api_key_revoke(*, workspace: Workspace, key_id: str) -> None:
    ApiKey.objects.filter(workspace=workspace, id=key_id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    if not raw_key:
        return None
    try:
        key = ApiKey.objects.select_related("workspace").get(
            key_hash=hash_api_key(raw_key), revoked_at__isnull=True
        )
    except ApiKey.DoesNotExist:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def idempotency_purge_expired(*, ttl_seconds: int) -> int:
    cutoff = timezone.now() - timedelta(seconds=ttl_seconds)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted

from rest_framework import authentication, permissions

from tuco.models import Membership
from tuco.services import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer tuco_sk_...` or `X-API-Key: tuco_sk_...`."""

    def authenticate(self, request):
        raw = request.headers.get("X-API-Key", "").strip()
        header = request.headers.get("Authorization", "")
        if not raw and header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            raw = value.strip()
        if not raw:
            return None
        key = api_key_authenticate(raw)
        if key is None:
            from rest_framework.exceptions import AuthenticationFailed

            raise AuthenticationFailed()
        request._request.workspace = key.workspace
        request._request.membership = None
        return (None, key)

    def authenticate_header(self, request):
        return "Bearer"


SESSION_WORKSPACE_KEY = "workspace_id"


def membership_for_session(request) -> Membership | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("workspace").filter(user=user)
    chosen = request.session.get(SESSION_WORKSPACE_KEY)
    membership = None
    if chosen:
        membership = memberships.filter(workspace_id=chosen).first()
    if membership is None:
        membership = memberships.order_by("created_at").first()
    return membership


class WorkspaceSessionAuthentication(authentication.SessionAuthentication):
    """The dashboard's session, scoped to the workspace chosen in the switcher."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        membership = membership_for_session(request._request)
        if membership is None:
            return None
        request._request.workspace = membership.workspace
        request._request.membership = membership
        return (result[0], membership)


class HasWorkspace(permissions.BasePermission):
    def has_permission(self, request, view):
        return getattr(request._request, "workspace", None) is not None


class CanManageWorkspace(HasWorkspace):
    """Owners and admins in the dashboard; API keys act for the workspace as a whole."""

    message = "Only workspace owners and admins can do this"

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        membership = getattr(request._request, "membership", None)
        return membership is None or membership.can_manage

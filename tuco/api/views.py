import functools

from django.db import transaction
from rest_framework.response import Response
from rest_framework.views import APIView

from tuco import ratelimit
from tuco.api.errors import RateLimited, ReadOnlyWorkspace
from tuco.idempotency import (
    Replay,
    idempotency_begin,
    idempotency_complete,
    idempotency_settle,
    is_replayable,
    request_fingerprint,
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _idempotent(handler):
    """Run a POST handler under its Idempotency-Key, when the request carries one.

    The key is claimed first, in a transaction of its own, so a repeat arriving
    meanwhile is told the first is still running. The handler then runs in one
    transaction together with the storing of its answer (tuco.idempotency): its
    rows and its answer commit together or not at all. An exception from the
    handler, or from on-commit work after the commit, is answered here as DRF
    would, and the key is then settled by what actually committed."""

    @functools.wraps(handler)
    def run(view, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if not key:
            return handler(view, request, *args, **kwargs)
        fingerprint = request_fingerprint(request.method, request.path, request.data)
        outcome = idempotency_begin(workspace=view.workspace, key=key, fingerprint=fingerprint)
        if isinstance(outcome, Replay):
            response = Response(outcome.body, status=outcome.status)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            with transaction.atomic():
                response = handler(view, request, *args, **kwargs)
                if is_replayable(response.status_code):
                    idempotency_complete(
                        record=outcome, status=response.status_code, body=response.data
                    )
                    return response
                transaction.set_rollback(True)
        except Exception as exc:  # noqa: BLE001 - answered as DRF answers it, below
            response = view.handle_exception(exc)
        idempotency_settle(record=outcome, status=response.status_code, body=response.data)
        return response

    return run


class WorkspaceAPIView(APIView):
    """Base for every API view: workspace auth, read-only billing, rate limit, idempotency.

    Order matters: a request that is rate limited or read-only changes nothing, and
    a rate-limited request does not consume its idempotency key. A view with
    `idempotent_post = True` has its `post` run under the request's Idempotency-Key
    (see _idempotent).
    """

    rate_limit_group = "default"
    idempotent_post = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.idempotent_post and "post" in cls.__dict__:
            cls.post = _idempotent(cls.__dict__["post"])

    @property
    def workspace(self):
        return self.request._request.workspace

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        workspace = request._request.workspace
        if request.method in WRITE_METHODS and workspace.is_read_only:
            raise ReadOnlyWorkspace()
        decision = ratelimit.take(workspace.pk, self.get_rate_limit_group(request))
        if not decision.allowed:
            raise RateLimited(decision.retry_after)

    def get_rate_limit_group(self, request) -> str:
        return self.rate_limit_group

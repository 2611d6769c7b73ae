from rest_framework.response import Response
from rest_framework.views import APIView

from tuco import ratelimit
from tuco.api.errors import RateLimited, ReadOnlyWorkspace
from tuco.idempotency import Replay, idempotency_begin, idempotency_finish, request_fingerprint

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _ReplayResponse(Exception):
    def __init__(self, response):
        self.response = response


class WorkspaceAPIView(APIView):
    """Base for every API view: workspace auth, read-only billing, rate limit, idempotency.

    Order matters: a request that is rate limited or read-only changes nothing, and
    a rate-limited request does not consume its idempotency key.
    """

    rate_limit_group = "default"
    idempotent_post = False

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
        self._idempotency_record = None
        key = request.headers.get("Idempotency-Key")
        if self.idempotent_post and request.method == "POST" and key:
            fingerprint = request_fingerprint(request.method, request.path, request.data)
            outcome = idempotency_begin(workspace=workspace, key=key, fingerprint=fingerprint)
            if isinstance(outcome, Replay):
                response = Response(outcome.body, status=outcome.status)
                response["Idempotent-Replayed"] = "true"
                raise _ReplayResponse(response)
            self._idempotency_record = outcome

    def get_rate_limit_group(self, request) -> str:
        return self.rate_limit_group

    def handle_exception(self, exc):
        if isinstance(exc, _ReplayResponse):
            return exc.response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        record = getattr(self, "_idempotency_record", None)
        if record is not None:
            self._idempotency_record = None
            idempotency_finish(record=record, status=response.status_code, body=response.data)
        return response

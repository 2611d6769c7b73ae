"""Workspace API tools: saved HTTP requests called for a lead during a campaign.

`run_tool(tool, lead, step=...)` is the one way to call a tool. It never raises: an
unreachable API, a timeout, an error status, an answer that is not JSON or has no
value at the response mapping all give `ToolResult(ok=False, error=...)`, and the
caller uses its fallback (a message variable) or takes the condition as not met.
With a step the outcome is kept per tool, lead and step (ApiToolRun): a step's
stop conditions, branch and message variables see one answer, from one call.

Requests: the URL and body take the lead's variables (messaging.templating, URL-
quoted in the URL, JSON-escaped in the body); headers are stored encrypted and only
ever shown masked. Calls go out through the webhooks' SSRF guard
(messaging.delivery): private, loopback and link-local targets are refused unless
API_TOOLS_ALLOW_PRIVATE_TARGETS is set; no redirects, no environment proxy, a short
timeout (API_TOOLS_TIMEOUT_SECONDS), at most 1 MB read, and at most
API_TOOLS_CALLS_PER_MINUTE calls per tool (a call over it is not made: `retry_after`
says when to ask again).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import ApiTool, ApiToolRun, Step
from leads.models import Lead
from messaging import templating
from messaging.delivery import BlockedTarget, guarded_session, target_check
from tuco import ratelimit
from tuco.errors import Conflict, NotFound, ValidationFailed

logger = logging.getLogger(__name__)

TOOL_NOT_FOUND = "Tool not found"
LEAD_NOT_FOUND = "Lead not found or access denied"
MAX_RESPONSE_BYTES = 1024 * 1024
RAW_EXCERPT = 2000
MAX_HEADERS = 30
MASK = "••••"
USER_AGENT = "Tuco-ApiTools/1.0"
# Headers the HTTP client sets itself from the request.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# One segment of a response mapping: a key, then any [index]es ("items[0]").
_SEGMENT = re.compile(r"^(?P<key>[^\[\]]*)(?P<indexes>(?:\[\d+\])*)$")


@dataclass(frozen=True)
class ToolResult:
    """What one call of a tool gave: `value` is the JSON value at the response mapping
    (str, number, bool, None, list or dict) when `ok`; `error` says why not otherwise."""

    ok: bool
    value: object = None
    error: str = ""
    status_code: int | None = None
    raw: str = ""
    duration_ms: int = 0
    # > 0: the tool's rate limit refused the call (nothing was sent); seconds to wait.
    retry_after: int = 0
    cached: bool = False

    @property
    def text(self) -> str | None:
        """The value as message text; None when there is none (use the fallback)."""
        if not self.ok or self.value is None:
            return None
        if isinstance(self.value, dict | list):
            return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False)
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return str(self.value)


# --------------------------------------------------------------------- input rules


def variable_name_for(name: str) -> str:
    """ "Check DNC Status" -> "check_dnc_status" (the tool's `{api_...}` variable)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def mapping_path(mapping: str) -> list[str | int]:
    """`data.items[0].id` -> ["data", "items", 0, "id"]; ValueError when malformed."""
    path: list[str | int] = []
    for segment in mapping.strip().split("."):
        match = _SEGMENT.match(segment)
        if match is None or (not match.group("key") and not match.group("indexes")):
            raise ValueError(mapping)
        if match.group("key"):
            key = match.group("key")
            path.append(int(key) if key.isdigit() else key)
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group("indexes")))
    return path


# What `extract` gives for a path with no value (None is JSON's null).
MISSING = object()


def extract(data, mapping: str):
    """The value at `mapping` in decoded JSON, or MISSING. A number segment indexes
    a list ("items.0" as "items[0]") and is a key of an object."""
    value = data
    for part in mapping_path(mapping):
        if isinstance(value, list) and isinstance(part, int):
            if part >= len(value):
                return MISSING
            value = value[part]
        elif isinstance(value, dict) and str(part) in value:
            value = value[str(part)]
        else:
            return MISSING
    return value


def _check_template(text: str, field: str) -> None:
    unknown = templating.unknown_placeholders(text, line=False, tools=False)
    if unknown:
        raise ValidationFailed(
            f"Unknown variable {{{unknown[0]}}}: use a lead field (phone, email, firstName, "
            "lastName, companyName, jobTitle) or custom.<key>",
            field=field,
        )


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise ValidationFailed("A tool needs a URL", field="url")
    if len(url) > 2000:
        raise ValidationFailed("Must be at most 2000 characters", field="url")
    parts = urlsplit(url)
    if "{" in parts.scheme or "{" in parts.netloc:
        raise ValidationFailed("Variables can only be used in the path and query", field="url")
    _check_template(url, "url")
    target_check(
        templating.render(url, {}),
        allow_private=settings.API_TOOLS_ALLOW_PRIVATE_TARGETS,
        purpose="API tools",
        code="API_TOOL_TARGET_NOT_ALLOWED",
    )
    return url


def _clean_body(body: str) -> str:
    body = (body or "").strip()
    if not body:
        return ""
    _check_template(body, "body")
    try:
        json.loads(body)
    except ValueError as exc:
        raise ValidationFailed(
            f"Must be valid JSON (line {exc.lineno}, column {exc.colno}); put variables "
            'inside strings, e.g. {"phone": "{phone}"}',
            field="body",
        ) from None
    return body


def _clean_headers(headers: dict, stored: dict[str, str]) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise ValidationFailed("Must be an object of header names and values", field="headers")
    if len(headers) > MAX_HEADERS:
        raise ValidationFailed(f"At most {MAX_HEADERS} headers are allowed", field="headers")
    clean = {}
    for name, value in headers.items():
        field = f"headers.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.match(name) or len(name) > 100:
            raise ValidationFailed("Not a valid header name", field=field)
        if name.lower() in RESERVED_HEADERS:
            raise ValidationFailed("This header is set by Tuco", field=field)
        if not isinstance(value, str):
            raise ValidationFailed("Must be a string", field=field)
        if "\r" in value or "\n" in value or len(value) > 4000:
            raise ValidationFailed("Must be one line of at most 4000 characters", field=field)
        # A value shown masked and sent back unchanged keeps the stored secret.
        if name in stored and value == masked(stored[name]):
            value = stored[name]
        clean[name] = value
    return clean


def masked(value: str) -> str:
    """A header value as the API and the dashboard show it: never in full."""
    return MASK + value[-4:] if len(value) >= 12 else MASK


def tool_headers(tool: ApiTool) -> dict[str, str]:
    """The tool's headers, decrypted (for the request only)."""
    try:
        headers = json.loads(tool.headers or "{}")
    except ValueError:
        return {}
    return headers if isinstance(headers, dict) else {}


def masked_headers(tool: ApiTool) -> dict[str, str]:
    return {name: masked(value) for name, value in tool_headers(tool).items()}


# ------------------------------------------------------------------------- writes


def tool_get(*, workspace, tool_id: str) -> ApiTool:
    tool = ApiTool.objects.filter(workspace=workspace, pk=tool_id).first() if tool_id else None
    if tool is None:
        raise NotFound(TOOL_NOT_FOUND)
    return tool


def tool_save(
    *,
    workspace,
    tool_id: str | None = None,
    name: str,
    method: str,
    url: str,
    response_mapping: str,
    headers: dict | None = None,
    body: str = "",
    description: str = "",
) -> ApiTool:
    """Create a tool, or with `tool_id` replace one's fields. `headers` None keeps a
    tool's headers; a header sent back masked keeps its stored value."""
    if tool_id:
        tool = tool_get(workspace=workspace, tool_id=tool_id)
    else:
        tool = ApiTool(workspace=workspace)
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("A tool needs a name", field="name")
    variable_name = variable_name_for(name)
    if not variable_name:
        raise ValidationFailed("Must contain a letter or a digit", field="name")
    if method not in ApiTool.Method.values:
        raise ValidationFailed("Must be GET, POST, PUT, PATCH or DELETE", field="method")
    mapping = (response_mapping or "").strip()
    try:
        mapping_path(mapping)
    except ValueError:
        raise ValidationFailed(
            "Must be a dot path such as data.status or items[0].id", field="responseMapping"
        ) from None
    tool.url = _clean_url(url)
    tool.body = _clean_body(body)
    if headers is not None or tool._state.adding:
        cleaned = _clean_headers(headers or {}, tool_headers(tool))
        tool.headers = json.dumps(cleaned) if cleaned else ""
    tool.name = name
    tool.variable_name = variable_name
    tool.method = method
    tool.response_mapping = mapping
    tool.description = (description or "").strip()
    tool.updated_at = timezone.now()
    try:
        with transaction.atomic():
            tool.save()
    except IntegrityError:
        raise Conflict(
            f"A tool whose variable is {{api_{variable_name}}} already exists", field="name"
        ) from None
    return tool


def tool_delete(*, workspace, tool_id: str) -> None:
    tool_get(workspace=workspace, tool_id=tool_id).delete()


# -------------------------------------------------------------------------- calls


def tool_request(tool: ApiTool, lead: Lead | None) -> tuple[str, str]:
    """(url, body) of the tool's request for `lead`."""
    values = templating.context_for(lead=lead)
    url = templating.render(tool.url, values, escape=lambda v: quote(v, safe=""))
    body = templating.render(tool.body, values, escape=lambda v: json.dumps(v)[1:-1])
    return url, body


def tool_call(tool: ApiTool, lead: Lead | None) -> ToolResult:
    """Call the tool once for `lead`, uncached. Never raises.

    Makes a network call: not to be used while holding a database transaction open.
    """
    return run_tools([(tool, lead, None)])[0]


def run_tool(
    tool: ApiTool, lead: Lead | None, *, step: Step | int | None = None, keep: bool = True
) -> ToolResult:
    """The tool's answer for `lead` at `step` (a Step or its id): the kept outcome of
    the first call for that tool, lead and step, else a new call whose outcome is
    kept (unless `keep` is False: a dry run reads what is kept and writes nothing).
    Without a step (or a lead) the tool is called and nothing is kept. A call the
    rate limit refused is not kept. Never raises.

    Makes a network call: not to be used while holding a database transaction open.
    """
    return run_tools([(tool, lead, getattr(step, "pk", step))], keep=keep)[0]


# Calls of one batch in flight at once. Each runs in a thread of its own that
# does HTTP and nothing else (no database), with its own connections.
CALL_THREADS = 4
_REFUSED = "Rate limit exceeded: the tool was not called"


def run_tools(
    calls: list[tuple[ApiTool, Lead | None, object]], *, keep: bool = True
) -> list[ToolResult]:
    """`run_tool` for many (tool, lead, step id) at once, answers in the same order:
    the kept outcomes are read in one query, the rest are called (at most
    CALL_THREADS at a time, each thread reusing its connections, every new
    connection checked by the SSRF guard), their outcomes kept in one write and
    read back (another worker's outcome kept first wins). A (tool, lead, step)
    given twice is called once; without a step (or a lead) each is called and
    nothing is kept, nor with `keep` False. The rate limit is taken here, in
    order, one token per call: once it refuses a tool, the batch's other calls
    of it are refused too. Never raises.

    Makes network calls: not to be used while holding a database transaction open.
    """
    results: list[ToolResult | None] = [None] * len(calls)
    keyed: dict[tuple, list[int]] = {}
    wanted: list[tuple[tuple | None, ApiTool, Lead | None, list[int]]] = []
    for index, (tool, lead, step_id) in enumerate(calls):
        if step_id is None or lead is None:
            wanted.append((None, tool, lead, [index]))
        else:
            keyed.setdefault((tool.pk, lead.pk, step_id), []).append(index)
    kept = _kept(list(keyed))
    for key, indexes in keyed.items():
        if key in kept:
            for index in indexes:
                results[index] = kept[key]
        else:
            tool, lead, _ = calls[indexes[0]]
            wanted.append((key, tool, lead, indexes))

    allowed = []
    refused: dict[str, ToolResult] = {}
    for item in wanted:
        tool = item[1]
        if tool.pk not in refused:
            decision = ratelimit.take_per_minute(
                f"tool:{tool.pk}", settings.API_TOOLS_CALLS_PER_MINUTE
            )
            if decision.allowed:
                allowed.append(item)
                continue
            refused[tool.pk] = ToolResult(
                ok=False, error=_REFUSED, retry_after=decision.retry_after
            )
        for index in item[3]:
            results[index] = refused[tool.pk]

    outcomes = _call_all([(tool, lead) for _, tool, lead, _ in allowed])
    runs = [
        ApiToolRun(
            tool_id=key[0],
            lead_id=key[1],
            step_id=key[2],
            ok=result.ok,
            value=result.value if result.ok else None,
            error=result.error[:2000],
            status_code=result.status_code,
        )
        for (key, *_), result in zip(allowed, outcomes, strict=True)
        if key is not None
    ]
    if runs and keep:
        ApiToolRun.objects.bulk_create(runs, ignore_conflicts=True, batch_size=500)
        kept = _kept([(run.tool_id, run.lead_id, run.step_id) for run in runs])
    for (key, _, _, indexes), result in zip(allowed, outcomes, strict=True):
        answer = result
        if keep and key in kept:  # else the step or the lead was deleted meanwhile
            first = kept[key]
            if first.ok != result.ok or first.value != result.value:
                answer = first
        for index in indexes:
            results[index] = answer
    return results


def _kept(keys: list[tuple]) -> dict[tuple, ToolResult]:
    """{(tool id, lead id, step id): the kept outcome} of those that have one."""
    by_tool_step: dict[tuple, list] = {}
    for tool_id, lead_id, step_id in keys:
        by_tool_step.setdefault((tool_id, step_id), []).append(lead_id)
    kept = {}
    for (tool_id, step_id), lead_ids in by_tool_step.items():
        for start in range(0, len(lead_ids), 500):
            rows = ApiToolRun.objects.filter(
                tool_id=tool_id, step_id=step_id, lead_id__in=lead_ids[start : start + 500]
            ).values_list("lead_id", "ok", "value", "error", "status_code")
            for lead_id, ok, value, error, status_code in rows:
                kept[(tool_id, lead_id, step_id)] = ToolResult(
                    ok=ok, value=value, error=error, status_code=status_code, cached=True
                )
    return kept


class _Sessions:
    """One guarded session per calling thread, for one batch: a thread reuses its
    connections (keep-alive) from one call to the next, and never keeps cookies."""

    def __init__(self):
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[requests.Session] = []

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = guarded_session(allow_private=settings.API_TOOLS_ALLOW_PRIVATE_TARGETS)
            # One lead's answer must not send cookies with the next lead's call.
            session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        for session in self._all:
            session.close()


def _call_all(calls: list[tuple[ApiTool, Lead | None]]) -> list[ToolResult]:
    """The outcome of each (tool, lead) call, in order; HTTP only, no database."""
    if not calls:
        return []
    sessions = _Sessions()

    def call(item) -> ToolResult:
        tool, lead = item
        try:
            return _call(tool, lead, sessions.get())
        except Exception as exc:  # a bug must not stop the lead's campaign
            logger.exception("API tool %s failed unexpectedly", tool.pk)
            return ToolResult(ok=False, error=f"The tool failed unexpectedly: {type(exc).__name__}")

    try:
        if len(calls) == 1:
            return [call(calls[0])]
        with ThreadPoolExecutor(max_workers=min(CALL_THREADS, len(calls))) as pool:
            return list(pool.map(call, calls))
    finally:
        sessions.close()


def _call(tool: ApiTool, lead: Lead | None, session: requests.Session) -> ToolResult:
    url, body = tool_request(tool, lead)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if body:
        headers["Content-Type"] = "application/json"
    headers.update(tool_headers(tool))
    timeout = settings.API_TOOLS_TIMEOUT_SECONDS
    started = time.monotonic()

    def result(**fields) -> ToolResult:
        return ToolResult(duration_ms=int((time.monotonic() - started) * 1000), **fields)

    try:
        response = session.request(
            tool.method,
            url,
            data=body.encode() if body else None,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
        )
        # Read to its end, the answer gives its connection back to the session for
        # the next call (keep-alive); a longer one closes it.
        with response:
            content = response.raw.read(MAX_RESPONSE_BYTES + 1, decode_content=True)
    except requests.Timeout:
        return result(ok=False, error=f"No answer within {timeout} s")
    except requests.ConnectionError as exc:
        cause = exc
        while cause is not None and not isinstance(cause, BlockedTarget):
            cause = cause.__cause__ or cause.__context__
        return result(ok=False, error=str(cause) if cause else "Could not connect to the API")
    except BlockedTarget as exc:
        return result(ok=False, error=str(exc))
    except (requests.RequestException, OSError) as exc:
        return result(ok=False, error=f"Request failed: {type(exc).__name__}")

    status = response.status_code
    raw = content[:RAW_EXCERPT].decode("utf-8", "replace")
    if not 200 <= status < 300:
        error = f"The API answered HTTP {status}"
        return result(ok=False, error=error, status_code=status, raw=raw)
    if len(content) > MAX_RESPONSE_BYTES:
        return result(ok=False, error="The answer is larger than 1 MB", status_code=status)
    try:
        data = json.loads(content)
    except ValueError:
        return result(ok=False, error="The answer is not JSON", status_code=status, raw=raw)
    value = extract(data, tool.response_mapping)
    if value is MISSING:
        return result(
            ok=False,
            error=f"The answer has no value at {tool.response_mapping}",
            status_code=status,
            raw=raw,
        )
    return result(ok=True, value=value, status_code=status, raw=raw)


def tool_test(*, workspace, tool_id: str, lead_id: str | None = None) -> dict:
    """Call a tool now for a lead of the workspace (or none: its variables empty) and
    report the request, the answer and the mapped value. Nothing is kept."""
    tool = tool_get(workspace=workspace, tool_id=tool_id)
    lead = None
    if lead_id:
        lead = Lead.objects.filter(workspace=workspace, pk=lead_id).first()
        if lead is None:
            raise NotFound(LEAD_NOT_FOUND)
    url, _body = tool_request(tool, lead)
    result = tool_call(tool, lead)
    return {
        "success": result.ok,
        "value": result.value,
        "text": result.text,
        "error": result.error or None,
        "statusCode": result.status_code,
        "rawResponse": result.raw,
        "durationMs": result.duration_ms,
        "request": {"method": tool.method, "url": url},
        "leadId": lead.pk if lead else None,
    }


# ----------------------------------------------------------- message variables


def api_values(
    sender, workspace_id: str, lead, names: list[str], campaign_id: str, step_index, **kwargs
) -> dict[str, templating.ApiValue]:
    """Receiver of messaging.signals.api_values_requested: the answers of the named
    tools for a message's lead, kept per step when the message is a campaign step."""
    tools = {
        tool.variable_name: tool
        for tool in ApiTool.objects.filter(workspace_id=workspace_id, variable_name__in=names)
    }
    step = None
    if campaign_id and step_index is not None:
        step = Step.objects.filter(
            campaign__workspace_id=workspace_id, campaign_id=campaign_id, position=step_index
        ).first()
    answers = {}
    for name in names:
        tool = tools.get(name)
        if tool is None:
            answers[name] = templating.ApiValue(None)
            continue
        result = run_tool(tool, lead, step=step)
        answers[name] = templating.ApiValue(result.text, retry_after=result.retry_after)
    return answers

"""Stop conditions and branch conditions: what they are and how each one is judged.

A condition is a rule object, stored on its step as the API shows it:
`{id, type, tag?, keyword?, toolId?, operator?, value?, hours?}`.

* Stop rules (steps 2 on) stop that step, and so the lead's sequence, when one of
  them is true when the step comes due.
* Branch conditions are tried in order when a branch step is reached; the first
  true one chooses the path, `default` (always true, and last) catches the rest.
  `no_reply_for` cannot answer before its hours have passed: it answers "not
  yet" (`Outcome.result is None`) with the time to look again, and the branch
  waits there rather than skipping to a later condition.

Everything a condition reads is the lead's, now: its replies, tags, messages,
the do-not-contact list, and an API tool's answer. A campaign judges its steps
inside a transaction that holds row locks, so there it never calls a tool
(`Context.call_tools` False): it reads the answers fetched before the locks were
taken (`ToolAnswers`) or kept earlier for the lead and step (ApiToolRun), and
without one the condition answers "not yet". A tool the rate limit refused also
answers "not yet": the lead waits and is judged again later, it is not a failure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from campaigns.models import ApiTool, ApiToolRun
from campaigns.tools import run_tool, run_tools
from leads.models import Lead, LeadTag
from messaging.models import DoNotContact, InboundMessage, Message

STOP_TYPES = (
    "replied",
    "replied_keyword",
    "tag_exists",
    "tag_not_exists",
    "api_tool",
    "contacted_before",
    "contacted_before_any",
    "dnc",
)
BRANCH_TYPES = (*STOP_TYPES, "no_reply_for", "default")
OPERATORS = (
    "eq",
    "neq",
    "contains",
    "not_contains",
    "starts_with",
    "gt",
    "gte",
    "lt",
    "lte",
    "gt_date",
    "lt_date",
    "exists",
    "not_exists",
)
# Operators that compare with nothing.
UNARY = ("exists", "not_exists")
# A step's outcome that reached the lead one way or another (campaigns.sequencing.DONE).
REACHED = ("sent", "delivered", "read", "fallback")
MAX_HOURS = 24 * 365


@dataclass(frozen=True)
class Rule:
    """One condition, validated (see campaigns.api.conditions for the input rules)."""

    type: str
    id: str = ""
    tag: str = ""
    keyword: str = ""
    tool_id: str = ""
    operator: str = ""
    value: str = ""
    hours: float | None = None

    def as_dict(self) -> dict:
        """The rule as stored and as the API shows it (only the fields it uses)."""
        data = {"id": self.id, "type": self.type}
        if self.type in ("tag_exists", "tag_not_exists"):
            data["tag"] = self.tag
        elif self.type == "replied_keyword":
            data["keyword"] = self.keyword
        elif self.type == "api_tool":
            data.update(toolId=self.tool_id, operator=self.operator)
            if self.operator not in UNARY:
                data["value"] = self.value
        elif self.type == "no_reply_for":
            data["hours"] = self.hours
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Rule:
        return cls(
            type=data["type"],
            id=data.get("id", ""),
            tag=data.get("tag", ""),
            keyword=data.get("keyword", ""),
            tool_id=data.get("toolId", ""),
            operator=data.get("operator", ""),
            value=data.get("value", ""),
            hours=data.get("hours"),
        )


@dataclass(frozen=True)
class Outcome:
    """A condition's answer: true, false, or (None) not yet, to be asked again at `retry_at`."""

    result: bool | None
    detail: str
    retry_at: datetime | None = None


@dataclass
class ToolAnswers:
    """API tool answers for one campaign round, fetched before its locks are taken.

    `answers` maps (tool id, lead id, step id) to (ok, value, error, retry after);
    `limited` maps a tool the rate limit refused in this round to its retry
    after (no more calls to it this round); `calls` counts the tools asked.
    While `gather_tool_answers` judges a page of leads, an answer that is not
    there yet is noted in `wanted` ({key: lead}) and the condition waits for it.
    """

    answers: dict = field(default_factory=dict)
    limited: dict = field(default_factory=dict)
    calls: int = 0
    wanted: dict = field(default_factory=dict)
    gathering: bool = False
    tools: dict = field(default_factory=dict)


@dataclass
class Context:
    """Whom and when a condition is judged for.

    `since` is when the lead entered the campaign (replies before it do not count;
    None: any reply), `last_sent_at` when the campaign last reached the lead (the
    start of a "no reply for" wait), `campaign_id` the campaign whose own messages
    do not make the lead "contacted before", `step` the Step being judged (API
    tools cache their answer per lead and step).
    """

    workspace: object
    lead: Lead
    now: datetime
    campaign_id: str = ""
    since: datetime | None = None
    last_sent_at: datetime | None = None
    step: object = None
    # Replies a dry run plays as the lead: (received at, text), none of them stored.
    played_replies: tuple = ()
    # False inside a locked transaction: API tools are read from `tool_answers` or
    # their kept runs, never called. `tool_answers` collects (or gives) a round's answers.
    call_tools: bool = True
    # The lead's tag names (upper case) when loaded with its page of leads
    # (`page_tags`); None: looked up when a condition needs them.
    tags: frozenset | None = None
    # False for a dry run: a tool's answer is read if kept for the lead and step,
    # else asked live, and not kept.
    keep_tool_answers: bool = True
    tool_answers: ToolAnswers | None = None
    _tools: dict = field(default_factory=dict)

    def last_reply_at(self) -> datetime | None:
        """When the lead last replied, up to now (played replies included)."""
        times = [at for at, _ in self.played_replies if at <= self.now]
        if self.lead.replied_at is not None:
            times.append(self.lead.replied_at)
        return max(times, default=None)


def evaluate(rule: Rule, context: Context) -> Outcome:
    judge = _JUDGES.get(rule.type)
    if judge is None:
        return Outcome(False, f"Unknown condition type {rule.type!r}")
    return judge(rule, context)


def first_true(rules: list[Rule], context: Context) -> tuple[Rule | None, Outcome | None]:
    """The first stop rule that is true, with its outcome; (None, None) when none is."""
    for rule in rules:
        outcome = evaluate(rule, context)
        if outcome.result:
            return rule, outcome
    return None, None


def stop_verdict(
    rules: list[Rule], context: Context
) -> tuple[bool | None, Rule | None, Outcome | None]:
    """(True, rule, outcome) for the first true stop rule; else (None, rule,
    outcome) when a rule cannot answer yet (the step waits); else (False, None, None)."""
    waiting = (None, None)
    for rule in rules:
        outcome = evaluate(rule, context)
        if outcome.result:
            return True, rule, outcome
        if outcome.result is None and waiting[0] is None:
            waiting = (rule, outcome)
    if waiting[0] is not None:
        return None, *waiting
    return False, None, None


def choose_branch(conditions: list[Rule], context: Context) -> tuple[int | None, Outcome]:
    """The index of the branch a lead takes, with the deciding outcome, or (None,
    outcome) when a condition cannot answer yet (the branch waits until
    `outcome.retry_at`). Conditions are tried in order; `default` always answers."""
    last = Outcome(False, "No condition matched and there is no default")
    for index, rule in enumerate(conditions):
        outcome = evaluate(rule, context)
        if outcome.result is None:
            return None, outcome
        if outcome.result:
            return index, outcome
        last = outcome
    return None, last


# --------------------------------------------------------------------------- the conditions


def _replies(context: Context):
    replies = InboundMessage.objects.filter(lead_id=context.lead.pk)
    if context.since is not None:
        replies = replies.filter(received_at__gte=context.since)
    return replies


def _replied(rule: Rule, context: Context) -> Outcome:
    replied_at = context.last_reply_at()
    if replied_at is not None and (context.since is None or replied_at >= context.since):
        return Outcome(True, f"Lead replied at {_iso(replied_at)}")
    return Outcome(False, "Lead has not replied")


def _replied_keyword(rule: Rule, context: Context) -> Outcome:
    keyword = rule.keyword.strip().casefold()
    texts = list(_replies(context).order_by("received_at").values_list("text", flat=True))
    texts += [
        text
        for at, text in context.played_replies
        if at <= context.now and (context.since is None or at >= context.since)
    ]
    for text in texts:
        if keyword and keyword in text.casefold():
            return Outcome(True, f"Lead replied with “{rule.keyword}”")
    return Outcome(False, f"No reply contains “{rule.keyword}”")


def _has_tag(context: Context, name: str) -> bool:
    if context.tags is not None:
        return name.strip().upper() in context.tags
    return LeadTag.objects.filter(lead_id=context.lead.pk, tag__name__iexact=name.strip()).exists()


def page_tags(rules: list[Rule], lead_ids: list[str]) -> dict[str, frozenset] | None:
    """{lead id: its tag names, upper case} for a page of leads, in one query, when
    one of `rules` looks at tags (None otherwise): for `Context.tags`."""
    if not any(rule.type in ("tag_exists", "tag_not_exists") for rule in rules):
        return None
    names: dict[str, set] = {lead_id: set() for lead_id in lead_ids}
    rows = LeadTag.objects.filter(lead_id__in=lead_ids).values_list("lead_id", "tag__name")
    for lead_id, name in rows:
        names[lead_id].add(name.strip().upper())
    return {lead_id: frozenset(found) for lead_id, found in names.items()}


def _tag_exists(rule: Rule, context: Context) -> Outcome:
    if _has_tag(context, rule.tag):
        return Outcome(True, f"Lead has tag “{rule.tag}”")
    return Outcome(False, f"Lead does not have tag “{rule.tag}”")


def _tag_not_exists(rule: Rule, context: Context) -> Outcome:
    if _has_tag(context, rule.tag):
        return Outcome(False, f"Lead has tag “{rule.tag}”")
    return Outcome(True, f"Lead does not have tag “{rule.tag}”")


def _reached(context: Context):
    return Message.objects.filter(lead_id=context.lead.pk, status__in=REACHED)


def _contacted_before(rule: Rule, context: Context) -> Outcome:
    reached = _reached(context)
    where = "before"
    if context.campaign_id:
        reached = reached.exclude(campaign_id=context.campaign_id)
        where = "outside this campaign"
    found = reached.exists()
    if found:
        return Outcome(True, f"Lead was contacted {where}")
    return Outcome(False, f"Lead was not contacted {where}")


def _contacted_before_any(rule: Rule, context: Context) -> Outcome:
    found = (
        _reached(context).exclude(campaign_id="").exclude(campaign_id=context.campaign_id).exists()
    )
    where = "another campaign" if context.campaign_id else "a campaign"
    if found:
        return Outcome(True, f"Lead was contacted in {where}")
    return Outcome(False, f"Lead was not contacted in {where}")


def _dnc(rule: Rule, context: Context) -> Outcome:
    lead = context.lead
    if lead.opted_out:
        return Outcome(True, "Lead opted out")
    values = [value for _, value in lead.identifiers()]
    if DoNotContact.objects.filter(workspace_id=lead.workspace_id, value__in=values).exists():
        return Outcome(True, "Lead is on the do-not-contact list")
    return Outcome(False, "Lead is not on the do-not-contact list")


def _no_reply_for(rule: Rule, context: Context) -> Outcome:
    hours = rule.hours or 0
    start = context.last_sent_at or _last_reached(context)
    replied_at = context.last_reply_at()
    if start is None:
        return Outcome(False, "Nothing was sent to the lead yet")
    if replied_at is not None and replied_at >= start:
        return Outcome(False, f"Lead replied at {_iso(replied_at)}")
    ends = start + timedelta(hours=hours)
    if context.now >= ends:
        return Outcome(True, f"No reply for {_hours(hours)}")
    return Outcome(None, f"Waiting for a reply until {_iso(ends)}", retry_at=ends)


def _last_reached(context: Context) -> datetime | None:
    return (
        _reached(context)
        .filter(sent_at__isnull=False)
        .order_by("-sent_at")
        .values_list("sent_at", flat=True)
        .first()
    )


def _default(rule: Rule, context: Context) -> Outcome:
    return Outcome(True, "Default path")


def _api_tool(rule: Rule, context: Context) -> Outcome:
    tools = context._tools
    if rule.tool_id not in tools:
        tools[rule.tool_id] = _tool_answer(rule.tool_id, context)
    answer = tools[rule.tool_id]
    if answer is None:
        return Outcome(None, "Waiting for the API tool's answer")
    ok, value, error, retry_after = answer
    if retry_after:
        return Outcome(
            None,
            f"API tool rate limited: asking again in {retry_after} s",
            retry_at=context.now + timedelta(seconds=retry_after),
        )
    if not ok:
        return Outcome(False, f"API tool failed: {error}")
    result, detail = compare(rule.operator, value, rule.value)
    return Outcome(result, f"API tool returned {_show(value)}: {detail}")


_JUDGES = {
    "replied": _replied,
    "replied_keyword": _replied_keyword,
    "tag_exists": _tag_exists,
    "tag_not_exists": _tag_not_exists,
    "api_tool": _api_tool,
    "contacted_before": _contacted_before,
    "contacted_before_any": _contacted_before_any,
    "dnc": _dnc,
    "no_reply_for": _no_reply_for,
    "default": _default,
}


# --------------------------------------------------------------------------- API tools
#
# The one place that knows the workspace API tools (campaigns.tools). Without them
# an api_tool condition is never met, and saying so is its detail.


def _tool_answer(tool_id: str, context: Context) -> tuple | None:
    """(ok, value, error, retry after) of the tool for the context's lead and step,
    or None when it cannot be known without calling the tool and calling is not
    allowed (`context.call_tools` False), or is left to `gather_tool_answers`."""
    lead, step = context.lead, context.step
    step_id = getattr(step, "pk", step)
    key = (tool_id, lead.pk, step_id)
    round_ = context.tool_answers
    if round_ is not None and key in round_.answers:
        return round_.answers[key]
    if round_ is not None and round_.gathering and step_id is not None:
        if tool_id in round_.limited:
            answer = (False, None, _REFUSED, round_.limited[tool_id])
            round_.answers[key] = answer
            return answer
        round_.wanted[key] = lead
        return None
    if not context.call_tools:
        if step_id is None:
            return None
        kept = ApiToolRun.objects.filter(tool_id=tool_id, lead_id=lead.pk, step_id=step_id)
        kept = kept.values_list("ok", "value", "error").first()
        if kept is None:
            return None
        return bool(kept[0]), kept[1], kept[2] or "", 0
    ok, value, error, *rest = _tool_value(
        context.workspace, tool_id, lead, step, keep=context.keep_tool_answers
    )
    answer = (ok, value, error, rest[0] if rest else 0)
    if round_ is not None:
        round_.calls += 1
        round_.answers[key] = answer
    return answer


_REFUSED = "Rate limit exceeded: the tool was not called"


def gather_tool_answers(judge, answers: ToolAnswers, workspace) -> ToolAnswers:
    """Judge a page of leads until every API tool answer it needs is in `answers`.

    `judge()` evaluates the page's conditions against `answers` (their contexts
    carry it); an answer that is missing is noted, and the condition waits. Then
    the missing ones are run together (campaigns.tools.run_tools: the kept answers
    read in one query, the others called at once and kept in one write) and the
    page is judged again, as long as it needs answers it does not have: a lead
    whose first condition decides asks for no later tool.
    Makes network calls: never inside a transaction."""
    answers.gathering = True
    try:
        while True:
            answers.wanted = {}
            judge()
            if not answers.wanted:
                return answers
            _run_wanted(answers, workspace)
    finally:
        answers.gathering = False
        answers.wanted = {}


def _run_wanted(answers: ToolAnswers, workspace) -> None:
    missing = {tool_id for tool_id, _, _ in answers.wanted if tool_id not in answers.tools}
    if missing:
        found = ApiTool.objects.filter(workspace=workspace, pk__in=missing).in_bulk()
        answers.tools.update({tool_id: found.get(tool_id) for tool_id in missing})
    calls, keys = [], []
    for key, lead in answers.wanted.items():
        tool = answers.tools[key[0]]
        if tool is None:
            answers.answers[key] = (False, None, "API tool not found", 0)
            continue
        calls.append((tool, lead, key[2]))
        keys.append(key)
    for key, result in zip(keys, run_tools(calls), strict=True):
        answers.calls += 1
        answers.answers[key] = (
            bool(result.ok),
            result.value,
            result.error or "",
            result.retry_after,
        )
        if result.retry_after:
            answers.limited[key[0]] = result.retry_after


def _tool_value(
    workspace, tool_id: str, lead: Lead, step, *, keep: bool = True
) -> tuple[bool, object, str, int]:
    """(ok, value, error, retry after) of the workspace's tool `tool_id` run for
    this lead at this step (its answer is cached per lead and step by the tools
    themselves; a call the rate limit refused has a retry after, in seconds).
    Makes a network call: never inside a transaction."""
    tool = ApiTool.objects.filter(workspace=workspace, pk=tool_id).first()
    if tool is None:
        return False, None, "API tool not found", 0
    result = run_tool(tool, lead, step=step, keep=keep)
    return bool(result.ok), result.value, result.error or "", result.retry_after


def unknown_tool(workspace, tool_id: str) -> str:
    """Why `tool_id` cannot be used in a condition ("" when it can)."""
    if not ApiTool.objects.filter(workspace=workspace, pk=tool_id).exists():
        return "API tool not found"
    return ""


# --------------------------------------------------------------------------- operators


def compare(operator: str, actual, expected) -> tuple[bool, str]:
    """(result, why) of `actual <operator> expected`.

    Text comparisons ignore case and surrounding spaces; eq / neq compare numbers
    as numbers when both sides are numbers ("10" eq "10.0"); gt, gte, lt, lte need
    two numbers and gt_date / lt_date two ISO 8601 dates (else false, saying why);
    exists is false for a missing value, null, "" and an empty list or object.
    """
    if operator == "exists":
        return (True, "has a value") if _present(actual) else (False, "has no value")
    if operator == "not_exists":
        return (False, "has a value") if _present(actual) else (True, "has no value")
    label = f"{_LABELS.get(operator, operator)} {_show(expected)}"
    if operator in ("gt", "gte", "lt", "lte"):
        a, b = _number(actual), _number(expected)
        if a is None or b is None:
            return False, f"not a number, so not {label}"
        result = {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[operator]
        return result, label if result else f"not {label}"
    if operator in ("gt_date", "lt_date"):
        a, b = _moment(actual), _moment(expected)
        if a is None or b is None:
            return False, f"not a date, so not {label}"
        result = a > b if operator == "gt_date" else a < b
        return result, label if result else f"not {label}"
    if not _present(actual) and operator != "neq":
        return False, f"has no value, so not {label}"
    a, b = _text(actual), _text(expected)
    if operator in ("eq", "neq"):
        x, y = _number(actual), _number(expected)
        same = x == y if x is not None and y is not None else a == b
        result = same if operator == "eq" else not same
    elif operator == "contains":
        result = b in a
    elif operator == "not_contains":
        result = b not in a
    elif operator == "starts_with":
        result = a.startswith(b)
    else:
        return False, f"unknown operator {operator!r}"
    return result, label if result else f"not {label}"


_LABELS = {
    "eq": "equals",
    "neq": "not equals",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "gt": "greater than",
    "gte": "greater than or equal to",
    "lt": "less than",
    "lte": "less than or equal to",
    "gt_date": "after",
    "lt_date": "before",
}


def _present(value) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True).casefold()
    return str(value).strip().casefold()


def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _moment(value) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _show(value) -> str:
    if isinstance(value, str):
        return f"“{value}”"
    return json.dumps(value) if not isinstance(value, datetime) else _iso(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hours(hours: float) -> str:
    if hours and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} day{'s' if days != 1 else ''}"
    shown = int(hours) if float(hours).is_integer() else hours
    return f"{shown} hour{'s' if shown != 1 else ''}"

"""Dashboard plumbing (sign-in, workspace scoping, navigation) and the settings pages."""

import math
from functools import wraps
from urllib.parse import quote

from axes.helpers import get_cool_off
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from tuco import services
from tuco.api.auth import SESSION_WORKSPACE_KEY
from tuco.errors import ServiceError
from tuco.forms import (
    ApiKeyForm,
    LoginForm,
    MemberAddForm,
    WorkspaceTimezoneForm,
    add_service_error,
)
from tuco.models import ApiKey, Membership
from tuco.settings_sections import settings_sections

# (label, URL name, section). A section appears in the navigation as soon as its URL
# name resolves, so pages added later show up without touching this list's users.
NAV = [
    ("Leads", "leads:list", "leads"),
    ("Import", "leads:import", "import"),
    ("Quick Send", "messaging:quick_send", "quick_send"),
    ("Lines", "lines:index", "lines"),
    ("Campaigns", "campaigns:index", "campaigns"),
    ("API Tools", "campaigns:tools", "tools"),
    ("Unibox", "unibox:index", "unibox"),
    ("Settings", "settings", "settings"),
]


def nav_items() -> list[tuple[str, str, str]]:
    items = []
    for label, name, section in NAV:
        try:
            items.append((label, reverse(name), section))
        except NoReverseMatch:
            continue
    return items


def _login_redirect(request):
    login = f"{reverse('login')}?next={quote(request.get_full_path())}"
    if getattr(request, "htmx", False):
        # An htmx swap would put the sign-in page inside a table row; send the
        # whole page there instead.
        next_url = request.htmx.current_url_abs_path or "/"
        response = HttpResponse(status=204)
        response["HX-Redirect"] = f"{reverse('login')}?next={quote(next_url)}"
        return response
    return HttpResponseRedirect(login)


def workspace_required(view=None, *, manage=False, allow_read_only=False):
    """Sign-in plus workspace scoping for dashboard views.

    Sets `request.workspace`, `request.membership` (the one chosen in the switcher,
    else the oldest, as the API's session auth does) and `request.memberships` for
    the switcher, in one query. POSTs are refused while the workspace is read-only
    (past due), except for views marked `allow_read_only=True`: POSTs that change
    nothing of the workspace's (switching workspace, a live availability hint), so
    that a past-due workspace never locks its users in. `manage=True` limits the
    view to owners and admins.
    """

    def decorate(func):
        @wraps(func)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return _login_redirect(request)
            memberships = list(
                Membership.objects.select_related("workspace")
                .filter(user=request.user)
                .order_by("created_at", "pk")
            )
            if not memberships:
                return render(request, "tuco/no_workspace.html", status=403)
            chosen = request.session.get(SESSION_WORKSPACE_KEY)
            membership = next((m for m in memberships if m.workspace_id == chosen), memberships[0])
            request.membership = membership
            request.workspace = membership.workspace
            request.memberships = memberships
            request.nav = nav_items()
            if request.method == "POST" and request.workspace.is_read_only and not allow_read_only:
                messages.error(
                    request, "This workspace is read-only until its billing is brought up to date."
                )
                return _back(request)
            if manage and not membership.can_manage:
                return render(request, "tuco/forbidden.html", status=403)
            return func(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def _back(request, fallback: str = "/"):
    target = request.POST.get("next") or request.headers.get("Referer") or fallback
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = fallback
    if getattr(request, "htmx", False):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return HttpResponseRedirect(target)


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


def login_locked_out(request, original_response=None, credentials=None):
    """What django-axes answers a locked-out sign-in, on the dashboard and the admin:
    the sign-in form again, saying why and for how long, with status 429."""
    cool_off = get_cool_off(request)
    minutes = max(1, math.ceil(cool_off.total_seconds() / 60))
    message = (
        f"Too many failed sign-in attempts; try again in {minutes} minute{pluralize(minutes)}."
    )
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    next_url = request.POST.get("next") or request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    context = {
        "form": LoginForm(request, initial={"username": username}),
        "lockout": message,
        "next": next_url,
    }
    return render(request, LoginView.template_name, context, status=429)


class LogoutView(auth_views.LogoutView):
    pass


def home(request):
    if not request.user.is_authenticated:
        return redirect("login")
    for _label, url, _section in nav_items():
        return redirect(url)
    return redirect("settings")


@require_POST
@workspace_required(allow_read_only=True)
def workspace_switch(request):
    workspace_id = request.POST.get("workspace", "")
    if any(m.workspace_id == workspace_id for m in request.memberships):
        request.session[SESSION_WORKSPACE_KEY] = workspace_id
    else:
        messages.error(request, "You are not a member of that workspace.")
    return redirect("home")


def csrf_failure(request, reason=""):
    """A form posted with a stale or missing CSRF token, usually after signing out in
    another tab or leaving a page open overnight."""
    response = render(request, "403_csrf.html", {"reason": reason}, status=403)
    if request.headers.get("HX-Request"):
        # Reloading the page gives the browser a fresh token.
        response["HX-Refresh"] = "true"
    return response


# Settings


def _settings_context(request, **forms):
    workspace = request.workspace
    context = {
        "section": "settings",
        "api_keys": list(
            ApiKey.objects.filter(workspace=workspace)
            .select_related("created_by")
            .order_by("-created_at")
        ),
        "members": list(
            Membership.objects.filter(workspace=workspace)
            .select_related("user")
            .order_by("created_at", "pk")
        ),
        "key_form": forms.get("key_form") or ApiKeyForm(),
        "timezone_form": forms.get("timezone_form")
        or WorkspaceTimezoneForm(initial={"timezone": workspace.timezone}),
        "member_form": forms.get("member_form") or MemberAddForm(),
        "new_key": forms.get("new_key"),
    }
    sections = settings_sections()
    context["settings_sections"] = [section.template for section in sections]
    for section in sections:
        context.update(section.context(request, **forms))
    return context


# A secret made by a POST is shown by the GET it redirects to (post/redirect/get, so
# a reload creates nothing), and only there: the page pops it from the session.
NEW_KEY_SESSION = "tuco.new_api_key"


def _pop_new_secrets(request) -> dict:
    shown = {}
    key = request.session.pop(NEW_KEY_SESSION, None)
    if key:
        found = ApiKey.objects.filter(workspace=request.workspace, pk=key["id"]).first()
        if found is not None:
            shown["new_key"] = {"key": found, "raw": key["raw"]}
    for section in settings_sections():
        if section.shown_once is not None:
            shown.update(section.shown_once(request))
    return shown


@never_cache
@workspace_required
def settings_page(request):
    return render(
        request, "tuco/settings.html", _settings_context(request, **_pop_new_secrets(request))
    )


@require_POST
@workspace_required(manage=True)
def api_key_create(request):
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return render(
            request, "tuco/settings.html", _settings_context(request, key_form=form), status=400
        )
    key, raw = services.api_key_create(
        workspace=request.workspace, name=form.cleaned_data["name"], created_by=request.user
    )
    # The key is stored hashed: the settings page shows this copy once, then drops it.
    request.session[NEW_KEY_SESSION] = {"id": key.pk, "raw": raw}
    return redirect("settings")


@require_POST
@workspace_required(manage=True)
def api_key_revoke(request, key_id):
    services.api_key_revoke(workspace=request.workspace, key_id=key_id)
    messages.success(request, "API key revoked.")
    return redirect("settings")


@require_POST
@workspace_required(manage=True)
def workspace_timezone(request):
    form = WorkspaceTimezoneForm(request.POST)
    if not form.is_valid():
        return render(
            request,
            "tuco/settings.html",
            _settings_context(request, timezone_form=form),
            status=400,
        )
    workspace = request.workspace
    workspace.timezone = form.cleaned_data["timezone"]
    workspace.save(update_fields=["timezone"])
    messages.success(request, f"Time zone set to {workspace.timezone}.")
    return redirect("settings")


@require_POST
@workspace_required(manage=True)
def member_add(request):
    form = MemberAddForm(request.POST)
    if form.is_valid():
        membership = form.save(workspace=request.workspace, added_by=request.membership)
        if membership is not None:
            messages.success(
                request, f"{membership.user.email} added as {membership.get_role_display()}."
            )
            return redirect("settings")
    return render(
        request, "tuco/settings.html", _settings_context(request, member_form=form), status=400
    )


def settings_page_error(request, **forms):
    """The Settings page again with the form a POST failed to validate (keyed by the
    name its section's template uses), as a 400."""
    return render(request, "tuco/settings.html", _settings_context(request, **forms), status=400)


def settings_form_save(request, form_class, save, *, saved: str, form_name: str):
    """A Settings section's POST: validate `form_class`, hand its data to the service
    `save(workspace=..., **cleaned_data)`, and go back to Settings saying `saved`;
    else the page again with the errors in place (a service's refusal on its field)."""
    form = form_class(request.POST)
    if form.is_valid():
        try:
            save(workspace=request.workspace, **form.cleaned_data)
        except ServiceError as exc:
            add_service_error(form, exc, form_class.SERVICE_FIELDS)
        else:
            messages.success(request, saved)
            return redirect("settings")
    return settings_page_error(request, **{form_name: form})

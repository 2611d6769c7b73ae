import zoneinfo

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.db import IntegrityError, transaction

from tuco.errors import ServiceError
from tuco.models import Membership, Workspace


def add_service_error(
    form: forms.Form, exc: ServiceError, fields: dict[str, str] | None = None
) -> None:
    """Show a service's error on the form field its `field` names (through `fields`,
    API name → form field, when the two differ), or above the form otherwise."""
    name = fields.get(exc.field) if fields is not None else exc.field
    if name and name in form.fields:
        form.add_error(name, exc.message)
    else:
        form.add_error(None, str(exc))


class LoginForm(AuthenticationForm):
    """Accounts are named by their email address."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Please enter a correct email and password.",
    }

    username = forms.CharField(
        label="Email",
        max_length=254,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )

    def clean_username(self):
        return self.cleaned_data["username"].strip().lower()


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Key name",
        max_length=100,
        help_text="For example the system that will use it.",
        widget=forms.TextInput(attrs={"placeholder": "Zapier"}),
    )


def _timezone_choices():
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class WorkspaceTimezoneForm(forms.Form):
    timezone = forms.ChoiceField(
        label="Time zone",
        choices=_timezone_choices,
        help_text="Default for send windows and schedules.",
    )


class MemberAddForm(forms.Form):
    email = forms.EmailField(label="Email")
    role = forms.ChoiceField(label="Role", choices=Membership.Role.choices, initial="member")
    password = forms.CharField(
        label="Password for a new account",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Only needed when this email has no Tuco account yet.",
    )

    def clean_email(self):
        return self.cleaned_data["email"].strip().lower()

    @transaction.atomic
    def save(self, *, workspace: Workspace, added_by: Membership) -> Membership:
        """Add the account with this email (creating it with the given password if
        needed) to the workspace. Errors are attached to the form; returns None then."""
        data = self.cleaned_data
        if data["role"] == Membership.Role.OWNER and added_by.role != Membership.Role.OWNER:
            self.add_error("role", "Only an owner can add another owner.")
            return None
        User = get_user_model()
        user = User.objects.filter(email__iexact=data["email"]).first()
        if user is None:
            if not data["password"]:
                self.add_error("password", "This email has no account yet: choose a password.")
                return None
            user = User(username=data["email"], email=data["email"])
            try:
                password_validation.validate_password(data["password"], user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
                return None
            user.set_password(data["password"])
            user.save()
        elif Membership.objects.filter(workspace=workspace, user=user).exists():
            self.add_error("email", "This person is already a member of this workspace.")
            return None
        try:
            with transaction.atomic():
                return Membership.objects.create(workspace=workspace, user=user, role=data["role"])
        except IntegrityError:
            self.add_error("email", "This person is already a member of this workspace.")
            return None

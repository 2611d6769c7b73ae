from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from tuco import services
from tuco.models import ApiKey, Membership, Workspace


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "timezone", "billing_status", "created_at"]
    list_filter = ["billing_status"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "workspace", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "user__username", "workspace__name"]
    list_select_related = ["user", "workspace"]
    autocomplete_fields = ["user", "workspace"]


class ApiKeyCreationForm(forms.ModelForm):
    """Creating a key only names it: the key itself is generated, shown once, stored hashed."""

    class Meta:
        model = ApiKey
        fields = ["workspace", "name"]


@admin.action(description="Revoke selected keys")
def revoke_keys(modeladmin, request, queryset):
    count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    modeladmin.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "workspace", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "workspace__name"]
    list_select_related = ["workspace"]
    autocomplete_fields = ["workspace"]
    actions = [revoke_keys]
    readonly_fields = [
        "id", "prefix", "key_hash", "created_by", "created_at", "last_used_at",
    ]  # fmt: skip

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["workspace", "name"]
        return ["id", "workspace", "name", "prefix", "key_hash", "created_by", "created_at",
                "last_used_at", "revoked_at"]  # fmt: skip

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [*self.readonly_fields, "workspace"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = services.api_key_create(
            workspace=form.cleaned_data["workspace"],
            name=form.cleaned_data["name"],
            created_by=request.user,
        )
        # The admin's "added" message and redirect need the saved object.
        obj.pk = key.pk
        obj.__dict__.update({f.attname: getattr(key, f.attname) for f in ApiKey._meta.fields})
        obj._state.adding = False
        messages.warning(
            request,
            f"New API key for {key.workspace}: {raw} (copy it now: it is stored hashed "
            "and will not be shown again).",
        )

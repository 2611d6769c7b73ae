from django.contrib import admin
from django.db.models import Count

from leads.models import ImportJob, Lead, LeadIdentifier, LeadList, ListMembership


class ListMembershipInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    autocomplete_fields = ["lead_list"]
    fields = ["lead_list", "created_at"]
    readonly_fields = ["created_at"]


class LeadIdentifierInline(admin.TabularInline):
    """Read-only: identifiers follow the lead's fields (see leads.services)."""

    model = LeadIdentifier
    extra = 0
    can_delete = False
    fields = ["field", "value"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "phone",
        "email",
        "company_name",
        "availability_status",
        "opted_out",
        "workspace",
        "created_at",
    ]
    list_filter = ["availability_status", "opted_out", "lists", "workspace"]
    search_fields = ["first_name", "last_name", "email", "phone", "company_name"]
    list_select_related = ["workspace"]
    ordering = ["-created_at"]
    date_hierarchy = "created_at"
    # Edits to identifiers go through the API / dashboard, which keep the
    # identity index in sync; here they are shown, not changed.
    readonly_fields = [
        "id",
        "workspace",
        "phone",
        "alt_phone1",
        "alt_phone2",
        "alt_phone3",
        "email",
        "alt_email1",
        "alt_email2",
        "alt_email3",
        "availability_status",
        "availability_checked_at",
        "availability_address",
        "created_at",
        "updated_at",
    ]
    inlines = [ListMembershipInline, LeadIdentifierInline]
    show_full_result_count = False  # counting a huge table on every page is slow

    def has_add_permission(self, request):
        return False


@admin.register(LeadList)
class LeadListAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "lead_count", "is_default", "created_at"]
    list_filter = ["is_default", "workspace"]
    search_fields = ["name"]
    list_select_related = ["workspace"]
    readonly_fields = ["id", "created_at", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(lead_count=Count("memberships"))

    @admin.display(ordering="lead_count", description="Leads")
    def lead_count(self, obj):
        return obj.lead_count


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Dashboard CSV imports, for looking into one that failed; they are not edited here."""

    list_display = ["id", "workspace", "filename", "import_status", "created_at", "updated_at"]
    list_select_related = ["workspace"]
    list_filter = ["workspace"]
    ordering = ["-created_at"]
    fields = ["id", "workspace", "state", "created_at", "updated_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="file")
    def filename(self, obj):
        return obj.state.get("filename", "")

    @admin.display(description="status")
    def import_status(self, obj):
        return obj.state.get("status", "")

from django.contrib import admin

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the trail is evidence, so the admin can look but never touch."""

    list_display = ("at", "actor_name", "action", "object_type", "object_repr", "source")
    list_filter = ("source", "action", "object_type")
    search_fields = ("actor_name", "action", "object_repr")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

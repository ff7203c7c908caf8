"""The campaign page's progress panel and the changelist's progress column."""

from django.contrib import admin


class DashboardMixin(admin.ModelAdmin):
    list_display = ["name", "status", "provider", "scheduled_at", "created_at"]
    list_filter = ["status", "provider"]

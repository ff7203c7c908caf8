"""The campaign page's progress panel and the changelist's progress column."""

from django.contrib import admin


class DashboardMixin(admin.ModelAdmin):
    pass

"""Campaign actions in the admin, each behind a confirmation page."""

from django.contrib import admin


class CampaignActionsMixin(admin.ModelAdmin):
    pass

"""The campaign composer in the admin: form, live counter, placeholders."""

from django.contrib import admin


class ComposerMixin(admin.ModelAdmin):
    pass

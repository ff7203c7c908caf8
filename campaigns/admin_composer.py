"""The campaign composer in the admin: form, live counter, placeholders."""

from django.contrib import admin


class ComposerMixin(admin.ModelAdmin):
    search_fields = ["name", "body"]
    filter_horizontal = ["lists"]
    readonly_fields = [
        "status",
        "created_by",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
    ]

    def save_model(self, request, obj, form, change) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

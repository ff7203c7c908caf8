"""Who may see contact data: the one rule the admin and the API share.

Phone numbers and message texts (sent, received, consent evidence) are contact
data. Staff see them only with ``contacts.view_contact``, whatever other model
permissions they hold; ``change`` does not imply ``view`` here as it does in the
admin's own checks.
"""

from django.contrib import admin
from django.http import HttpRequest

CONTACT_DATA_PERMISSION = "contacts.view_contact"


def can_view_contact_data(user) -> bool:
    return bool(
        user and user.is_authenticated and user.has_perm(CONTACT_DATA_PERMISSION)
    )


class ContactDataAdminMixin(admin.ModelAdmin):
    """For admin pages made of contact data (contacts, the inbox, consent events,
    suppressions): nobody without ``contacts.view_contact`` opens them, lists them
    or reaches them through an action, whatever their permissions on the model."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_view_contact_data(request.user) and super().has_module_permission(
            request
        )

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_view_contact_data(request.user) and super().has_view_permission(
            request, obj
        )

    def has_add_permission(self, request: HttpRequest, *args) -> bool:
        return can_view_contact_data(request.user) and super().has_add_permission(
            request, *args
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_view_contact_data(request.user) and super().has_change_permission(
            request, obj
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return can_view_contact_data(request.user) and super().has_delete_permission(
            request, obj
        )

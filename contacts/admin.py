from django.contrib import admin

from .models import ConsentEvent, Contact, ContactList, ListMembership, Suppression


class MembershipInline(admin.TabularInline):
    model = ListMembership
    extra = 0
    autocomplete_fields = ["contact_list"]
    readonly_fields = ["added_at"]
    fields = ["contact_list", "source", "added_at"]


class ConsentEventInline(admin.TabularInline):
    model = ConsentEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "source", "text", "provider"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = [
        "phone",
        "first_name",
        "last_name",
        "country",
        "opted_out_at",
        "created_at",
    ]
    list_filter = [
        "country",
        ("opted_out_at", admin.EmptyFieldListFilter),
        "memberships__contact_list",
    ]
    search_fields = ["phone", "first_name", "last_name"]
    readonly_fields = ["country", "time_zone", "created_at", "updated_at"]
    fields = [
        "phone",
        ("first_name", "last_name"),
        "attributes",
        ("country", "time_zone"),
        ("opted_out_at", "opt_out_source"),
        ("created_at", "updated_at"),
    ]
    inlines = [MembershipInline, ConsentEventInline]
    show_full_result_count = False


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]


@admin.register(ConsentEvent)
class ConsentEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "phone", "kind", "source", "provider", "text"]
    list_filter = ["kind", "source", "provider"]
    search_fields = ["phone", "text"]
    list_select_related = ["contact"]

    # The consent trail is evidence: nobody edits or deletes it from the admin.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ["phone", "reason", "source", "note", "created_at"]
    list_filter = ["reason", "source"]
    search_fields = ["phone", "note"]

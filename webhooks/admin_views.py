"""The conversation page of the admin: a contact's messages both ways, and a reply
box. Reached through ``InboundMessageAdmin.get_urls`` (``admin_view`` has checked
the user is staff); it checks the permissions it needs itself."""

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from campaigns.models import Campaign
from contacts.models import Contact
from contacts.services import blocked_numbers

from .conversations import contact_thread
from .forms import ReplyForm
from .models import InboundMessage
from .services import ReplyRefused, conversation_mark_read, conversation_reply

PAGE_SIZE = 50

VIEW_MESSAGES = "campaigns.view_message"
#: Replying records (and sends) a message.
ADD_MESSAGE = "campaigns.add_message"


def can_open_conversations(model_admin: ModelAdmin, request: HttpRequest) -> bool:
    """The inbox's view permission (which includes contact data), and the sent
    messages': a conversation shows both."""
    return model_admin.has_view_permission(request) and request.user.has_perm(
        VIEW_MESSAGES
    )


def can_reply(model_admin: ModelAdmin, request: HttpRequest) -> bool:
    return can_open_conversations(model_admin, request) and request.user.has_perm(
        ADD_MESSAGE
    )


def conversation(
    model_admin: ModelAdmin, request: HttpRequest, contact_id: int
) -> HttpResponse:
    if not can_open_conversations(model_admin, request):
        raise PermissionDenied
    contact = get_object_or_404(Contact, pk=contact_id)
    replying = can_reply(model_admin, request)
    form = ReplyForm(request.POST or None)
    if request.method == "POST":
        if not replying:
            raise PermissionDenied
        if form.is_valid():
            try:
                message = conversation_reply(
                    contact=contact, text=form.cleaned_data["text"]
                )
            except ReplyRefused as error:
                form.add_error("text", str(error))
            else:
                messages.success(
                    request,
                    f"Reply queued: it goes to {message.to} from "
                    f"{message.sender or "the provider's default number"} "
                    "within a few seconds.",
                )
                return redirect(request.path + "#latest")

    thread = Paginator(contact_thread(contact), PAGE_SIZE)
    page = thread.get_page(request.GET.get("page") or thread.num_pages)
    entries = list(page)
    campaign_ids = {e.campaign_id for e in entries if e.campaign_id}
    campaigns = Campaign.objects.only("name").in_bulk(campaign_ids)
    last_inbound = (
        InboundMessage.objects.filter(contact=contact, from_number=contact.phone)
        .order_by("-received_at", "-id")
        .only("to_number", "provider")
        .first()
    )
    blocked = bool(blocked_numbers([contact.phone]))
    # Opened: what they sent is read now (this page still shows what was new).
    if request.method == "GET":
        conversation_mark_read(contact=contact)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": InboundMessage._meta,
        "title": f"Conversation with {contact}",
        "contact": contact,
        "page": page,
        "rows": [(entry, campaigns.get(entry.campaign_id)) for entry in entries],
        "form": form,
        "can_reply": replying,
        "blocked": blocked,
        "last_inbound": last_inbound,
    }
    return TemplateResponse(
        request, "admin/webhooks/inboundmessage/conversation.html", context
    )

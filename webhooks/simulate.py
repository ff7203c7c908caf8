"""The admin's "Simulate an inbound message": try STOP, START and HELP locally.

Only where texts are simulated (DEBUG, or the simulator as the default provider),
and only through a provider backed by the simulator. The text is signed with the
configured secret exactly as the simulator's callbacks are, then handed to the
webhook view itself (``webhooks.views.provider_callback``): the same signature
check, parsing, keyword handling, opt-out and automatic reply as a real reply.
"""

import time

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin import ModelAdmin, helpers
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.test import RequestFactory
from django.urls import reverse

from providers import get_provider
from providers.backends.simulator import SmsBackend as SimulatorBackend

from .models import InboundMessage
from .queue import queued_callbacks_apply
from .views import provider_callback


def simulator_aliases() -> list[str]:
    """The configured providers whose backend is the simulator."""
    return [
        alias
        for alias, config in settings.SMS_PROVIDERS.items()
        if config.get("BACKEND") == "providers.backends.simulator.SmsBackend"
    ]


def simulation_available() -> bool:
    """Whether the page exists: a simulator to sign with, and a site where texts
    are simulated anyway (never a production site sending through a vendor)."""
    aliases = simulator_aliases()
    return bool(aliases) and (
        settings.DEBUG or settings.SMS_DEFAULT_PROVIDER in aliases
    )


class SimulateInboundForm(forms.Form):
    from_number = forms.CharField(
        label="From",
        max_length=32,
        help_text="The number that texts you, e.g. a contact's: +14155550123.",
    )
    text = forms.CharField(
        max_length=1600,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 40}),
        help_text="Try STOP, START or HELP, or any reply.",
    )
    provider = forms.ChoiceField(
        help_text="The simulated provider the text arrives through."
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        aliases = simulator_aliases()
        self.fields["provider"].choices = [(alias, alias) for alias in aliases]
        default = settings.SMS_DEFAULT_PROVIDER
        self.fields["provider"].initial = default if default in aliases else aliases[0]


def may_simulate(model_admin: ModelAdmin, request: HttpRequest) -> bool:
    # A simulated STOP opts a contact out for real, as a real one would.
    return (
        simulation_available()
        and model_admin.has_view_permission(request)
        and request.user.has_perm("contacts.change_contact")
    )


def simulate_inbound_view(
    model_admin: ModelAdmin, request: HttpRequest
) -> HttpResponse:
    if not simulation_available():
        raise Http404("Inbound messages are simulated only in development.")
    if not may_simulate(model_admin, request):
        raise PermissionDenied
    form = SimulateInboundForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        response = simulate_inbound(
            alias=data["provider"],
            from_number=data["from_number"],
            text=data["text"],
            host=request.get_host(),
            secure=request.is_secure(),
        )
        if response.status_code >= 300:
            messages.error(
                request,
                f"The webhook refused the simulated message ({response.status_code}): "
                f"{response.content.decode(errors='replace')[:200]}",
            )
        else:
            messages.success(
                request,
                f"Received “{data['text']}” from {data['from_number']} through the "
                f"{data['provider']} webhook.",
            )
            return redirect("admin:webhooks_inboundmessage_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": InboundMessage._meta,
        "title": "Simulate an inbound message",
        "form": form,
        "adminform": helpers.AdminForm(
            form, [(None, {"fields": list(form.fields)})], {}
        ),
    }
    return TemplateResponse(
        request, "admin/webhooks/inboundmessage/simulate.html", context
    )


def simulate_inbound(
    *,
    alias: str,
    from_number: str,
    text: str,
    host: str = "localhost",
    secure: bool = False,
) -> HttpResponse:
    """Sign a text as the simulator ``alias`` would and post it to the webhook view
    (as addressed to ``host``, which must be an allowed host); return its answer."""
    backend = get_provider(alias)
    if not isinstance(backend, SimulatorBackend):
        raise ValueError(f"{alias!r} is not a simulated provider")
    callback = backend.inbound_callback(from_number=from_number, text=text)
    path = reverse("webhooks:inbound", kwargs={"alias": alias})
    request = RequestFactory().post(
        path,
        data=callback.body,
        content_type=callback.content_type,
        secure=secure,
        HTTP_HOST=host,
        headers={
            name: value
            for name, value in callback.headers.items()
            if name.lower() != "content-type"
        },
    )
    response = provider_callback(request, alias=alias, kind="inbound")
    if response.status_code < 300:
        # Queued for the worker (SMS_WEBHOOK_APPLY): apply it now, as the worker would
        # in a moment, so the page the marketer lands on shows it.
        queued_callbacks_apply(deadline=time.monotonic() + 5.0)
    return response

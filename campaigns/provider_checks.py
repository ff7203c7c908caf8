"""Whether a campaign's providers can send, for every entry point, and what a worker
does with a sending campaign whose provider cannot.

``providers.provider_problem`` is the one judge of a provider; this module applies
it to campaigns. It imports neither the dispatcher nor the actions, so both may use it.
"""

import logging

from django.core.exceptions import ImproperlyConfigured

from providers import get_provider, provider_problem

from . import lifecycle
from .lifecycle import CampaignError
from .models import Campaign

logger = logging.getLogger(__name__)

_LABELS = {"provider": "provider", "fallback_provider": "fallback provider"}


class ProviderUnusable(CampaignError):
    """A campaign write or action refused because a provider it names cannot be
    used. ``field`` is "provider" or "fallback_provider"."""

    def __init__(self, *, field: str, alias: str, problem: str) -> None:
        super().__init__(
            f"{problem}. Choose another {_LABELS[field]} or fix its configuration."
        )
        self.field = field
        self.alias = alias
        self.problem = problem


def require_usable(*, field: str, alias: str) -> None:
    """Raise :class:`ProviderUnusable` unless ``alias`` can be used (empty: none
    chosen, nothing to check)."""
    if alias and (problem := provider_problem(alias)) is not None:
        raise ProviderUnusable(field=field, alias=alias, problem=problem)


def campaign_require_usable_providers(
    campaign: Campaign, *, fallback: bool = True
) -> None:
    """Raise :class:`ProviderUnusable` unless the campaign's provider (and, with
    ``fallback``, its fallback provider) can be used."""
    require_usable(field="provider", alias=campaign.provider)
    if fallback:
        require_usable(field="fallback_provider", alias=campaign.fallback_provider)


def campaign_providers_problem(campaign: Campaign, *, fallback: bool = True) -> str:
    """Why the campaign cannot send through its providers; "" when it can."""
    try:
        campaign_require_usable_providers(campaign, fallback=fallback)
    except ProviderUnusable as error:
        return str(error)
    return ""


def campaign_pause_for_provider(*, campaign_id: int, alias: str, problem: str) -> bool:
    """Pause a sending campaign whose provider ``alias`` cannot be used, saying why
    in its ``waiting_reason``; a campaign no longer sending is left alone.

    For the worker loops and the dispatcher when creating or using a backend raises
    ``ImproperlyConfigured``: that campaign stops, the others go on. Resuming it once
    the provider is fixed (or replaced, while nothing was sent) carries on. Returns
    whether it was paused.
    """
    reason = f"Paused: {problem}. Fix the provider's configuration, then resume."
    limit = Campaign._meta.get_field("waiting_reason").max_length
    if len(reason) > limit:
        reason = reason[: limit - 1] + "…"
    paused = lifecycle.transition(campaign_id, "halt", waiting_reason=reason)
    if paused:
        logger.error(
            "campaign %s paused: provider %s cannot be used: %s",
            campaign_id,
            alias,
            problem,
        )
    return paused


def campaign_pause_if_unusable(
    campaign: Campaign, *, error: ImproperlyConfigured | None = None
) -> bool:
    """Pause a sending campaign whose provider or fallback cannot be used (see
    :func:`campaign_pause_for_provider`); the worker loops ask before dispatching,
    and again with the ``error`` a dispatch raised (then the campaign is paused
    even when the providers look fine by now). Returns whether it was paused."""
    for alias in (campaign.provider, campaign.fallback_provider):
        if alias and (problem := provider_problem(alias)) is not None:
            return campaign_pause_for_provider(
                campaign_id=campaign.pk, alias=alias, problem=problem
            )
    if error is not None:
        return campaign_pause_for_provider(
            campaign_id=campaign.pk, alias=campaign.provider, problem=str(error)
        )
    return False


def text_length_problems(
    *, body: str, footer: str, provider: str, track_links: bool = True
) -> list[str]:
    """Why the campaign's text is too long for ``provider`` (empty when it is not).

    The text's fixed part (everything but the personal details, footer included,
    tracked links as the short links recipients get, see campaigns.links) is judged by the backend's own limits (``text_problem``): if that alone is too long,
    every recipient's text is. A text that only grows too long with someone's
    details is refused for that message when it is sent.
    """
    from .links import counted_template
    from .models import Campaign
    from .templating import TemplateError

    try:
        backend = get_provider(provider)
    except (ImproperlyConfigured, KeyError, ImportError):
        # A provider that cannot be used is refused on its own field.
        return []
    source = Campaign(body=body, opt_out_footer=footer).template_source
    try:
        template = counted_template(source, track_links=track_links)
    except TemplateError:
        return []  # the body's own problem, reported by body_problems
    fixed = template.render(first_name="", last_name="", phone="", attributes={})
    problem = backend.text_problem(fixed)
    if not problem:
        return []
    personal = " (without the personal details)" if template.placeholders else ""
    return [f"Too long for provider {provider!r}{personal}: {problem}"]


def campaign_text_problems(campaign: Campaign) -> list[str]:
    return text_length_problems(
        body=campaign.body,
        footer=campaign.opt_out_footer,
        provider=campaign.provider,
        track_links=campaign.track_links,
    )

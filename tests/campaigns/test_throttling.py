"""A vendor's 429 slows the sending in proportion to what it refused (issue #11).

A few requests refused at the edge of a second cost a little of the rate, not half of
it; a vendor that keeps refusing keeps lowering it, episode after episode.
"""

import pytest

from campaigns.sending.dispatch import MIN_SLOW_DOWN, Dispatcher
from campaigns.sending.launch import campaign_launch
from campaigns.sending.pacing import RateLimiter
from campaigns.sending.pipeline import RATE_HEADROOM
from providers.backends.base import BaseSmsBackend
from providers.messages import SendError, SendErrorKind, SendResult
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

RATE = 200.0


class RefusingVendor(BaseSmsBackend):
    """Accepts everything except the first ``refuse`` messages it sees (429)."""

    max_recipients_per_request = 1
    default_rate = RATE
    refuse = 0
    seen = 0

    def send_batch(self, messages):
        results = []
        for message in messages:
            cls = type(self)
            cls.seen += 1
            if cls.seen <= cls.refuse:
                error = SendError(SendErrorKind.THROTTLED, "429", "Too many requests")
                results.append(
                    SendResult(reference=message.reference, to=message.to, error=error)
                )
            else:
                results.append(
                    SendResult(
                        reference=message.reference,
                        to=message.to,
                        provider_message_id=message.reference,
                    )
                )
        return results


def _send_through_refusing_vendor(
    settings, alias: str, *, recipients: int, refuse: int
):
    RefusingVendor.refuse, RefusingVendor.seen = refuse, 0
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        alias: {"BACKEND": f"{__name__}.RefusingVendor", "OPTIONS": {}},
    }
    contact_list = ContactListFactory()
    for _ in range(recipients):
        ContactFactory().lists.add(contact_list)
    campaign = CampaignFactory(lists=[contact_list], provider=alias)
    campaign_launch(campaign=campaign)
    Dispatcher(campaign.pk).run(deadline=None)
    return RateLimiter(f"provider:{alias}", rate=RATE * (1 - RATE_HEADROOM))


def test_a_few_refused_requests_cost_a_little_of_the_rate(settings):
    limiter = _send_through_refusing_vendor(
        settings, "refuses_a_few", recipients=40, refuse=2
    )

    assert limiter.effective_rate() == pytest.approx(limiter.rate * (1 - MIN_SLOW_DOWN))


def test_a_vendor_that_keeps_refusing_keeps_lowering_the_rate(settings):
    limiter = _send_through_refusing_vendor(
        settings, "refuses_most", recipients=250, refuse=200
    )

    assert limiter.effective_rate() < limiter.rate * (1 - 3 * MIN_SLOW_DOWN)

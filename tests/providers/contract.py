"""The contract every SMS backend keeps, as a test base class each vendor's tests
inherit (django-anymail's ``tests/webhook_cases.py`` pattern).

A subclass says how to build its backend, what its vendor's send endpoint answers,
how its vendor signs a callback (with the vendor SDK's own code where the SDK has
it) and which statuses the vendor documents; the tests here then hold for it:

- one result per message, in the order given, errors included;
- a failed request gives error results, never an exception;
- unknown OPTIONS are refused;
- unsigned, forged and stale callbacks are refused;
- the vendor's own example callbacks (fixtures naming where they were published)
  parse once signed;
- every status the vendor documents maps into ``Message.Status`` (or, only for
  documented "no news" statuses, leaves the message as it is).
"""

import time
from collections.abc import Mapping

import pytest
import responses

from django.core.exceptions import ImproperlyConfigured

from campaigns.models import Message
from providers.exceptions import CallbackAuthError
from providers.messages import Callback, DeliveryStatus, OutboundSms


class BackendContract:
    #: The dotted SMS_PROVIDERS alias the backend is built with.
    alias: str
    #: The vendor's send endpoint (stubbed with ``responses``).
    send_url: str
    #: Every status the vendor documents → what it must mean here.
    documented_statuses: Mapping[str, DeliveryStatus]
    #: Vendor statuses documented as carrying nothing new (left as they are).
    no_news_statuses: frozenset[str] = frozenset()
    #: Whether the vendor's signature carries a time (so staleness can be judged).
    signs_time: bool = True

    # --- What a subclass provides ------------------------------------------------

    def make_backend(self, **options):
        raise NotImplementedError

    def accept_send(self, mock: responses.RequestsMock, count: int) -> None:
        """Stub the vendor accepting a request for ``count`` recipients."""
        raise NotImplementedError

    def sign(self, callback: Callback, *, at: float) -> Callback:
        """``callback`` signed as the vendor signs it at time ``at``."""
        raise NotImplementedError

    def example_status_callback(self) -> Callback:
        """The vendor's own published example status callback (unsigned)."""
        raise NotImplementedError

    def status_callback_with(self, raw_status: str) -> Callback:
        """A status callback (unsigned) reporting ``raw_status``."""
        raise NotImplementedError

    # --- The contract --------------------------------------------------------------

    @staticmethod
    def messages(count: int, text: str = "Hello") -> list[OutboundSms]:
        return [
            OutboundSms(to=f"+1415555{n:04d}", text=text, reference=f"ref-{n}")
            for n in range(1, count + 1)
        ]

    def test_one_result_per_message_in_order(self):
        backend = self.make_backend()
        messages = self.messages(3)
        # A text no vendor takes sits in the middle: it is a result too.
        messages.insert(
            1, OutboundSms(to="+14155559999", text="x" * 5000, reference="long")
        )
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            self.accept_send(mock, 3)
            results = backend.send_messages(messages)
        assert [r.reference for r in results] == [m.reference for m in messages]
        assert [r.to for r in results] == [m.to for m in messages]
        assert results[1].error is not None
        assert results[1].error.code == "text_too_long"
        assert all(r.accepted for i, r in enumerate(results) if i != 1)

    def test_a_failed_request_gives_error_results_not_an_exception(self):
        backend = self.make_backend()
        messages = self.messages(2)
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.add(responses.POST, self.send_url, status=500, json={})
            results = backend.send_messages(messages)
        assert [r.reference for r in results] == ["ref-1", "ref-2"]
        assert all(r.error is not None and r.error.retryable for r in results)

    def test_unknown_options_are_refused(self):
        with pytest.raises(ImproperlyConfigured, match="Unknown OPTIONS"):
            self.make_backend(no_such_option="x")

    def test_unsigned_callbacks_are_refused(self, settings):
        settings.SMS_WEBHOOK_ALLOW_UNSIGNED = False
        with pytest.raises(CallbackAuthError):
            self.make_backend().verify_callback(self.example_status_callback())

    def test_forged_callbacks_are_refused(self):
        backend = self.make_backend()
        signed = self.sign(self.example_status_callback(), at=time.time())
        forged = Callback(
            method=signed.method,
            url=signed.url,
            headers=signed.headers,
            body=signed.body.replace(b"elivered", b"ELIVERED"),
            content_type=signed.content_type,
        )
        with pytest.raises(CallbackAuthError):
            backend.verify_callback(forged)

    def test_stale_callbacks_are_refused(self, settings):
        if not self.signs_time:
            pytest.skip("this vendor's signature carries no time")
        backend = self.make_backend()
        old = time.time() - settings.SMS_WEBHOOK_MAX_AGE - 10 * 60
        with pytest.raises(CallbackAuthError, match="stale"):
            backend.verify_callback(self.sign(self.example_status_callback(), at=old))

    def test_the_vendors_example_callback_parses_once_signed(self):
        backend = self.make_backend()
        callback = self.sign(self.example_status_callback(), at=time.time())
        backend.verify_callback(callback)
        events = backend.parse_status_callback(callback)
        assert events
        assert all(event.status == DeliveryStatus.DELIVERED for event in events)

    def test_every_documented_status_maps_into_message_status(self):
        backend = self.make_backend()
        for raw, expected in self.documented_statuses.items():
            [event] = backend.parse_status_callback(self.status_callback_with(raw))
            assert event.status == expected, raw
            if raw in self.no_news_statuses:
                assert event.status == DeliveryStatus.UNKNOWN
            else:
                assert event.status.value in Message.Status.values, raw

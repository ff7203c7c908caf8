import json
import sys
import threading
from collections import Counter
from decimal import Decimal

import pytest
import responses

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

from providers import get_provider, signals
from providers.backends import simulator
from providers.backends.simulator import SmsBackend
from providers.exceptions import CallbackAuthError, CallbackParseError
from providers.messages import Callback, DeliveryStatus, OutboundSms, SendErrorKind

T0 = 1_750_000_000.25
"""A fixed 'now' for the tests that control the clock (a quarter past a whole second)."""


def sms(n: int, text: str = "Hello", to: str = "") -> OutboundSms:
    return OutboundSms(to=to or f"+1415555{n:04d}", text=text, reference=f"ref-{n}")


def backend(**options) -> SmsBackend:
    options.setdefault("seed", 7)
    return SmsBackend(alias="sim", **options)


@pytest.fixture
def now(monkeypatch):
    """The simulator's clock, frozen at T0; set now.value to move it."""

    class Clock:
        value = T0

    monkeypatch.setattr(simulator, "clock", lambda: Clock.value)
    return Clock


@pytest.fixture
def received(monkeypatch):
    """Callbacks the simulator hands over, on a private signal so receivers the project
    connects to the real one do not interfere."""
    signal = Signal()
    monkeypatch.setattr(simulator, "callback_received", signal)
    calls: list[dict] = []

    def receiver(**kwargs):
        calls.append(kwargs)

    signal.connect(receiver, weak=False)
    return calls


def events_of(sim: SmsBackend, calls: list[dict]):
    """Verify and parse every status callback received, as the webhook view does."""
    events = []
    for call in calls:
        assert call["kind"] == "status"
        sim.verify_callback(call["callback"])
        events.extend(sim.parse_status_callback(call["callback"]))
    return events


def altered(callback: Callback, **changes) -> Callback:
    fields = {
        "method": callback.method,
        "url": callback.url,
        "headers": dict(callback.headers),
        "body": callback.body,
        "content_type": callback.content_type,
    }
    fields.update(changes)
    return Callback(**fields)


def status_callback(sim: SmsBackend, received: list[dict]) -> Callback:
    sim.send_messages([sms(1)])
    sim.flush()
    return received[-1]["callback"]


# --- Sending -------------------------------------------------------------------------


def test_send_accepts_every_message_with_a_unique_sim_id():
    sim = backend()
    results = sim.send_messages([sms(n) for n in range(50)])

    assert [r.reference for r in results] == [f"ref-{n}" for n in range(50)]
    assert all(r.accepted for r in results)
    ids = {r.provider_message_id for r in results}
    assert len(ids) == 50
    assert all(i.startswith("sim-") and len(i) == 36 for i in ids)


def test_capabilities_have_sandbox_defaults_and_are_configurable():
    sim = backend()
    assert sim.max_recipients_per_request == 1000
    assert sim.supports_per_recipient_text is True
    assert sim.supports_client_reference is True
    assert sim.supports_callback_url is True
    assert sim.rate == 100.0

    tuned = backend(max_recipients=10, rate=25)
    assert tuned.max_recipients_per_request == 10
    assert tuned.rate == 25.0


def test_send_messages_splits_into_requests_of_max_recipients():
    sim = backend(max_recipients=10)
    results = sim.send_messages([sms(n) for n in range(25)])

    assert all(r.accepted for r in results)
    assert sim.stats()["requests"] == 3


def test_oversized_request_is_refused_permanently():
    sim = backend(max_recipients=2)
    results = sim.send_batch([sms(1), sms(2), sms(3)])

    assert {(r.error.code, r.error.kind) for r in results} == {
        ("400", SendErrorKind.PERMANENT)
    }


def test_default_provider_alias_builds_a_simulator_with_empty_options():
    provider = get_provider("simulator")
    assert isinstance(provider, SmsBackend)
    assert provider.mode == "signal"


def test_unknown_and_invalid_options_are_configuration_errors(settings):
    with pytest.raises(ImproperlyConfigured, match=r"Unknown OPTIONS.*'sim'.*colour"):
        SmsBackend(alias="sim", colour="blue")
    with pytest.raises(ImproperlyConfigured, match="delivered_rate"):
        SmsBackend(alias="sim", delivered_rate=1.5)
    with pytest.raises(ImproperlyConfigured, match="exceeds 1"):
        SmsBackend(alias="sim", throttle_rate=0.9, timeout_rate=0.2)
    with pytest.raises(ImproperlyConfigured, match="mode"):
        SmsBackend(alias="sim", mode="carrier-pigeon")
    with pytest.raises(ImproperlyConfigured, match="report_delay"):
        SmsBackend(alias="sim", report_delay=(3, 1))
    settings.PUBLIC_BASE_URL = ""
    with pytest.raises(ImproperlyConfigured, match="PUBLIC_BASE_URL"):
        SmsBackend(alias="sim", mode="http")


def test_options_accept_environment_strings():
    sim = SmsBackend(
        alias="sim",
        report_delay="1,4",
        invalid_prefixes="+999, +888",
        price_per_segment="0.01",
        seed="",
    )
    assert sim.report_delay == (1.0, 4.0)
    assert sim.invalid_prefixes == ("+999", "+888")
    assert sim.price_per_segment == Decimal("0.01")


# --- Delivery reports ------------------------------------------------------------------


def test_outcomes_follow_the_configured_rates(received):
    sim = backend(report_delay=0)
    sim.send_messages([sms(n) for n in range(2000)])
    assert sim.flush() == 4000

    events = events_of(sim, received)
    assert Counter(e.status for e in events[0::2]) == {DeliveryStatus.SENT: 2000}
    finals = Counter(e.status for e in events[1::2])
    assert 1870 <= finals[DeliveryStatus.DELIVERED] <= 1930
    assert 40 <= finals[DeliveryStatus.UNDELIVERED] <= 80
    assert 15 <= finals[DeliveryStatus.FAILED] + finals[DeliveryStatus.REJECTED] <= 65
    assert finals[DeliveryStatus.FAILED] > 0
    assert finals[DeliveryStatus.REJECTED] > 0


def test_outcome_rates_are_configurable(received):
    sim = backend(report_delay=0, delivered_rate=0.5, undelivered_rate=0.3)
    sim.send_messages([sms(n) for n in range(2000)])
    sim.flush()

    finals = Counter(e.status for e in events_of(sim, received)[1::2])
    assert 930 <= finals[DeliveryStatus.DELIVERED] <= 1070
    assert 540 <= finals[DeliveryStatus.UNDELIVERED] <= 660
    assert 340 <= finals[DeliveryStatus.FAILED] + finals[DeliveryStatus.REJECTED] <= 460


def test_same_seed_gives_the_same_outcomes(received):
    outcomes = []
    for _ in range(2):
        received.clear()
        sim = backend(report_delay=0, seed=42, delivered_rate=0.6)
        sim.send_messages([sms(n) for n in range(200)])
        sim.flush()
        outcomes.append([e.status for e in events_of(sim, received)])
    assert outcomes[0] == outcomes[1]


def test_reports_are_held_until_due_then_sent_before_final(now, received):
    sim = backend(report_delay=2.0)
    [result] = sim.send_messages([sms(1)])
    assert sim.pending_count() == 2

    assert sim.deliver_due(now=T0 + 0.99) == 0
    assert received == []
    assert sim.deliver_due(now=T0 + 1.0) == 1
    assert sim.deliver_due(now=T0 + 1.99) == 0
    assert sim.deliver_due(now=T0 + 2.0) == 1
    assert sim.pending_count() == 0

    sent, final = events_of(sim, received)
    assert sent.status == DeliveryStatus.SENT
    assert final.provider_message_id == result.provider_message_id


def test_deliver_due_without_now_uses_the_clock(now, received):
    sim = backend(report_delay=(0.5, 3.0))
    sim.send_messages([sms(n) for n in range(20)])

    assert sim.deliver_due() == 0
    now.value = T0 + 3.0
    assert sim.deliver_due() == 40


def test_report_delays_fall_inside_the_configured_range(now, received):
    sim = backend(report_delay=(0.5, 3.0))
    sim.send_messages([sms(n) for n in range(100)])

    # "sent" comes half-way to the final report: within 0.25-1.5 s.
    assert sim.deliver_due(now=T0 + 0.249) == 0
    early = sim.deliver_due(now=T0 + 1.5)
    statuses = Counter(e.status for e in events_of(sim, received))
    assert statuses[DeliveryStatus.SENT] == 100
    assert 100 < early < 200
    assert sim.deliver_due(now=T0 + 3.0) == 200 - early
    assert sim.pending_count() == 0


def test_flush_delivers_everything_regardless_of_due_time(received):
    sim = backend(report_delay=3600)
    sim.send_messages([sms(1), sms(2)])

    assert sim.deliver_due() == 0
    assert sim.flush() == 4
    assert sim.pending_count() == 0
    assert len(received) == 4


def test_status_callback_goes_through_the_providers_signal():
    calls = []

    def receiver(sender, **kwargs):
        calls.append((sender, kwargs))

    signals.callback_received.connect(receiver, sender=SmsBackend)
    try:
        sim = backend(report_delay=0)
        sim.send_messages([sms(1)])
        sim.flush()
    finally:
        signals.callback_received.disconnect(receiver, sender=SmsBackend)

    assert [(s, k["alias"], k["kind"]) for s, k in calls] == [
        (SmsBackend, "sim", "status"),
        (SmsBackend, "sim", "status"),
    ]


def test_status_callbacks_verify_and_parse_into_status_events(received):
    sim = backend(report_delay=0, delivered_rate=1)
    [result] = sim.send_messages(
        [OutboundSms(to="+14155550123", text="Hi", reference="ref-42")]
    )
    sim.flush()

    assert {c["alias"] for c in received} == {"sim"}
    assert {c["sender"] for c in received} == {SmsBackend}
    callback = received[1]["callback"]
    assert callback.method == "POST"
    assert callback.url == "https://sms.example.com/webhooks/sim/status/"
    assert callback.content_type == "application/json"
    assert callback.header("x-simulator-signature").startswith("v1=")

    sent, delivered = events_of(sim, received)
    assert sent.status == DeliveryStatus.SENT
    assert sent.raw_status == "sent"
    assert sent.price is None
    assert delivered.status == DeliveryStatus.DELIVERED
    assert delivered.raw_status == "delivered"
    assert delivered.provider_message_id == result.provider_message_id
    assert delivered.reference == "ref-42"
    assert delivered.recipient == "+14155550123"
    assert delivered.price == Decimal("0.0075")
    assert delivered.currency == "USD"
    assert delivered.segments == 1
    assert delivered.error_code == ""
    assert delivered.occurred_at is not None
    assert delivered.occurred_at.tzinfo is not None
    assert delivered.payload["from"] == sim.number


def test_undelivered_report_carries_a_carrier_error_and_is_charged(received):
    sim = backend(report_delay=0, delivered_rate=0, undelivered_rate=1)
    sim.send_messages([sms(1)])
    sim.flush()

    final = events_of(sim, received)[1]
    assert final.status == DeliveryStatus.UNDELIVERED
    assert final.error_code in {code for code, _ in simulator.UNDELIVERED_ERRORS}
    assert final.error_reason
    assert final.price == Decimal("0.0075")


def test_delivered_rate_of_one_delivers_everything(received):
    sim = backend(report_delay=0, delivered_rate=1)
    sim.send_messages([sms(n) for n in range(300)])
    sim.flush()

    finals = {e.status for e in events_of(sim, received)[1::2]}
    assert finals == {DeliveryStatus.DELIVERED}


def test_failed_and_rejected_reports_carry_errors_and_cost_nothing(received):
    sim = backend(report_delay=0, delivered_rate=0, undelivered_rate=0)
    sim.send_messages([sms(n) for n in range(200)])
    sim.flush()

    finals = events_of(sim, received)[1::2]
    assert {e.status for e in finals} == {
        DeliveryStatus.FAILED,
        DeliveryStatus.REJECTED,
    }
    assert all(e.error_code and e.error_reason for e in finals)
    assert all(e.price == 0 for e in finals)
    opt_outs = [e for e in finals if e.opt_out_signal]
    assert opt_outs
    assert {e.error_code for e in opt_outs} == {"opt_out"}


def test_price_multiplies_segments(monkeypatch, received):
    monkeypatch.setattr(simulator, "_segment_counter", lambda: lambda text: 3)
    sim = backend(report_delay=0, delivered_rate=1, price_per_segment="0.01")
    sim.send_messages([sms(1, text="x" * 400)])
    sim.flush()

    final = events_of(sim, received)[1]
    assert final.segments == 3
    assert final.price == Decimal("0.03")


def test_segments_come_from_the_encoding_module(received):
    from providers.encoding import segment_count

    text = "x" * 200
    sim = backend(report_delay=0, delivered_rate=1)
    sim.send_messages([sms(1, text=text)])
    sim.flush()

    final = events_of(sim, received)[1]
    assert final.segments == segment_count(text) == 2
    assert final.price == Decimal("0.0150")


@pytest.fixture
def without_encoding_module(monkeypatch):
    simulator._segment_counter.cache_clear()
    # None in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "providers.encoding", None)
    yield
    simulator._segment_counter.cache_clear()


@pytest.mark.usefixtures("without_encoding_module")
def test_without_the_encoding_module_every_text_is_one_segment(received):
    sim = backend(report_delay=0)
    sim.send_messages([sms(1, text="x" * 400)])
    sim.flush()

    assert events_of(sim, received)[1].segments == 1


def test_sender_is_the_message_sender_when_given(received):
    sim = backend(report_delay=0)
    sim.send_messages(
        [OutboundSms(to="+14155550123", text="Hi", reference="r", sender="ACME")]
    )
    sim.flush()
    assert json.loads(received[0]["callback"].body)["from"] == "ACME"


def test_reports_without_a_receiver_are_dropped_and_counted(monkeypatch):
    monkeypatch.setattr(simulator, "callback_received", Signal())
    sim = backend(report_delay=0)
    sim.send_messages([sms(1)])

    assert sim.flush() == 2
    assert sim.stats()["reports_failed"] == 2
    assert sim.pending_count() == 0


def test_a_failing_receiver_does_not_stop_the_other_reports(monkeypatch, received):
    def broken(**kwargs):
        raise RuntimeError("database is down")

    simulator.callback_received.connect(broken, weak=False)
    sim = backend(report_delay=0)
    sim.send_messages([sms(1), sms(2)])

    assert sim.flush() == 4
    assert len(received) == 4
    assert sim.stats()["reports_failed"] == 4


# --- Callback verification and parsing ---------------------------------------------


def test_tampered_body_is_rejected(received):
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)
    body = callback.body.replace(b'"delivered"', b'"failed"').replace(
        b'"sent"', b'"failed"'
    )
    assert body != callback.body

    with pytest.raises(CallbackAuthError, match="signature mismatch"):
        sim.verify_callback(altered(callback, body=body))


def test_altered_timestamp_or_nonce_is_rejected(received):
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)
    headers = dict(callback.headers)
    for name in ("X-Simulator-Timestamp", "X-Simulator-Nonce"):
        changed = {**headers, name: headers[name][:-1] + "9"}
        if changed == headers:
            changed = {**headers, name: headers[name][:-1] + "8"}
        with pytest.raises(CallbackAuthError, match="signature mismatch"):
            sim.verify_callback(altered(callback, headers=changed))


def test_signature_for_another_alias_or_secret_is_rejected(settings, received):
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)

    with pytest.raises(CallbackAuthError, match="signature mismatch"):
        SmsBackend(alias="other").verify_callback(callback)

    settings.SECRET_KEY = "a-new-secret-key"
    with pytest.raises(CallbackAuthError, match="signature mismatch"):
        sim.verify_callback(callback)


def test_signature_from_a_fallback_secret_is_accepted(settings, received):
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)
    old_secret = settings.SECRET_KEY

    settings.SECRET_KEY = "a-new-secret-key"
    settings.SECRET_KEY_FALLBACKS = [old_secret]
    sim.verify_callback(callback)


def test_malformed_signature_headers_are_rejected(received):
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)
    headers = dict(callback.headers)
    digest = headers["X-Simulator-Signature"].removeprefix("v1=")

    with pytest.raises(CallbackAuthError, match="unsupported signature format"):
        sim.verify_callback(
            altered(callback, headers={**headers, "X-Simulator-Signature": digest})
        )
    del headers["X-Simulator-Nonce"]
    with pytest.raises(CallbackAuthError, match="incomplete"):
        sim.verify_callback(altered(callback, headers=headers))


def test_stale_and_future_signatures_are_rejected(now, received):
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)
    signed_at = int(T0)

    now.value = signed_at + 330
    sim.verify_callback(callback)
    now.value = signed_at + 331
    with pytest.raises(CallbackAuthError, match="stale"):
        sim.verify_callback(callback)
    now.value = signed_at - 330
    sim.verify_callback(callback)
    now.value = signed_at - 331
    with pytest.raises(CallbackAuthError, match="stale"):
        sim.verify_callback(callback)


def test_staleness_follows_the_webhook_settings(settings, now, received):
    settings.SMS_WEBHOOK_MAX_AGE = 10
    settings.SMS_WEBHOOK_CLOCK_SKEW = 0
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)

    now.value = int(T0) + 11
    with pytest.raises(CallbackAuthError, match="stale"):
        sim.verify_callback(callback)


def test_callback_is_signed_when_delivered_not_when_scheduled(now, received):
    sim = backend(report_delay=3600)
    sim.send_messages([sms(1)])
    now.value = T0 + 3600
    sim.deliver_due()

    sim.verify_callback(received[-1]["callback"])


def test_unsigned_callback_is_refused_unless_allowed(settings, received):
    sim = backend(report_delay=0)
    callback = status_callback(sim, received)
    unsigned = altered(callback, headers={"Content-Type": "application/json"})

    with pytest.raises(CallbackAuthError, match="missing signature"):
        sim.verify_callback(unsigned)

    settings.SMS_WEBHOOK_ALLOW_UNSIGNED = True
    sim.verify_callback(unsigned)
    forged = altered(
        callback,
        headers={**callback.headers, "X-Simulator-Signature": "v1=" + "0" * 64},
    )
    with pytest.raises(CallbackAuthError, match="signature mismatch"):
        sim.verify_callback(forged)


def status_body(**fields) -> Callback:
    data = {"type": "status", "message_id": "sim-1", "status": "delivered", **fields}
    return Callback(method="POST", url="", headers={}, body=json.dumps(data).encode())


def test_unknown_status_is_kept_raw_as_unknown():
    [event] = backend().parse_status_callback(status_body(status="buffered"))
    assert event.status == DeliveryStatus.UNKNOWN
    assert event.raw_status == "buffered"


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        (Callback(method="POST", url="", headers={}, body=b"{oops"), "not valid JSON"),
        (Callback(method="POST", url="", headers={}, body=b"[]"), "not a JSON object"),
        (status_body(type="inbound"), "expected a 'status' callback"),
        (status_body(message_id=None), "lacks 'message_id'"),
        (status_body(status=""), "lacks 'status'"),
        (status_body(price="cheap"), "price 'cheap'"),
        (status_body(segments="2"), "segments '2'"),
        (status_body(timestamp="yesterday"), "timestamp 'yesterday'"),
    ],
)
def test_malformed_status_callback_is_a_parse_error(callback, message):
    with pytest.raises(CallbackParseError, match=message):
        backend().parse_status_callback(callback)


# --- Inbound ---------------------------------------------------------------------------


def test_simulate_inbound_delivers_a_signed_inbound_callback(received):
    sim = backend()
    callback = sim.simulate_inbound("+14155550123", "+12025550199", "stop please")

    [call] = received
    assert call["kind"] == "inbound"
    assert call["alias"] == "sim"
    assert call["callback"] is callback
    assert callback.url == "https://sms.example.com/webhooks/sim/inbound/"
    sim.verify_callback(callback)
    [inbound] = sim.parse_inbound_callback(callback)
    assert inbound.from_number == "+14155550123"
    assert inbound.to_number == "+12025550199"
    assert inbound.text == "stop please"
    assert inbound.keyword_hint == "stop"
    assert inbound.provider_message_id.startswith("sim-in-")
    assert inbound.received_at is not None


def test_simulate_inbound_defaults_to_our_number(received):
    sim = backend(number="+12025550111")
    sim.simulate_inbound("+14155550123", text="HELP")

    [inbound] = sim.parse_inbound_callback(received[0]["callback"])
    assert inbound.to_number == "+12025550111"
    assert inbound.keyword_hint == "help"


def test_status_callback_is_not_parsed_as_inbound(received):
    sim = backend(report_delay=0)
    with pytest.raises(CallbackParseError, match="expected a 'inbound' callback"):
        sim.parse_inbound_callback(status_callback(sim, received))


# --- HTTP mode -------------------------------------------------------------------------


@responses.activate
def test_http_mode_posts_signed_reports_to_our_webhook_url():
    url = "https://sms.example.com/webhooks/sim/status/"
    responses.post(url, status=200)
    sim = backend(report_delay=0, mode="http")
    sim.send_messages([sms(1)])

    assert sim.flush() == 2
    assert len(responses.calls) == 2
    request = responses.calls[1].request
    assert request.headers["Content-Type"] == "application/json"
    callback = Callback(
        method=request.method,
        url=request.url,
        headers=dict(request.headers),
        body=request.body,
        content_type=request.headers["Content-Type"],
    )
    sim.verify_callback(callback)
    [event] = sim.parse_status_callback(callback)
    assert event.reference == "ref-1"
    assert sim.stats()["reports_delivered"] == 2


@responses.activate
def test_http_mode_retries_a_refused_report_then_gives_up(now):
    url = "https://sms.example.com/webhooks/sim/inbound/"
    responses.post(url, status=500)
    sim = backend(mode="http")

    sim.simulate_inbound("+14155550123", text="STOP")
    assert sim.pending_count() == 1
    assert sim.deliver_due(now=T0 + 4.9) == 0
    assert sim.deliver_due(now=T0 + 5) == 1
    assert sim.deliver_due(now=T0 + 14.9) == 0
    assert sim.deliver_due(now=T0 + 15) == 1
    assert sim.pending_count() == 0
    assert len(responses.calls) == 3
    assert sim.stats()["reports_failed"] == 3


# --- Fault injection -----------------------------------------------------------------


def test_throttle_rate_answers_429_with_retry_after():
    sim = backend(throttle_rate=1)
    results = sim.send_messages([sms(1), sms(2)])

    assert all(not r.accepted for r in results)
    assert {r.error.code for r in results} == {"429"}
    assert all(
        r.error.kind == SendErrorKind.THROTTLED and r.error.retry_after == 1.0
        for r in results
    )
    assert sim.pending_count() == 0
    assert sim.stats()["throttled"] == 2


def test_server_error_rate_answers_retryable_5xx():
    sim = backend(server_error_rate=1)
    results = sim.send_messages([sms(1)])

    [error] = {r.error for r in results}
    assert error.code in {"500", "502", "503"}
    assert error.kind == SendErrorKind.NOT_SENT
    assert error.retryable
    assert sim.stats()["errors"] == 1


def test_timeout_rate_answers_maybe_sent_timeouts():
    sim = backend(timeout_rate=1)
    [result] = sim.send_messages([sms(1)])

    assert result.error.code == "timeout"
    # Like a read timeout: the sender cannot know, so it must not send it again.
    assert result.error.kind == SendErrorKind.MAYBE_SENT
    assert not result.error.retryable


def test_fault_rates_apply_per_request_at_roughly_the_configured_share():
    sim = backend(throttle_rate=0.2, server_error_rate=0.1, timeout_rate=0.05)
    codes = Counter()
    for n in range(2000):
        [result] = sim.send_batch([sms(n)])
        codes[result.error.code if result.error else "ok"] += 1

    assert 340 <= codes["429"] <= 460
    assert 150 <= codes["500"] + codes["502"] + codes["503"] <= 250
    assert 60 <= codes["timeout"] <= 140
    assert 1200 <= codes["ok"] <= 1400


def test_latency_sleeps_once_per_request(monkeypatch):
    slept = []
    monkeypatch.setattr(simulator, "sleep", slept.append)
    sim = backend(latency=0.25, max_recipients=2)
    sim.send_messages([sms(1), sms(2), sms(3)])

    assert slept == [0.25, 0.25]


def test_invalid_prefixes_fail_permanently_and_spare_the_others():
    sim = backend(invalid_prefixes=["+1999", "+4470"])
    results = sim.send_batch(
        [sms(1, to="+19995550100"), sms(2), sms(3, to="+447000000000")]
    )

    assert [r.accepted for r in results] == [False, True, False]
    for result in (results[0], results[2]):
        assert result.error.code == "invalid_number"
        assert not result.error.retryable
        assert result.provider_message_id == ""
    assert sim.pending_count() == 2
    assert sim.stats()["invalid"] == 2


@pytest.mark.parametrize("to", ["14155550123", "+0123456789", "+1415abc0123", "+1"])
def test_numbers_that_are_not_e164_are_invalid(to):
    [result] = backend().send_batch([sms(1, to=to)])
    assert result.error.code == "invalid_number"
    assert not result.error.retryable


def test_empty_text_is_rejected_permanently():
    [result] = backend().send_batch([sms(1, text="")])
    assert result.error.code == "empty_text"
    assert not result.error.retryable


# --- Throughput limit ------------------------------------------------------------------


def test_max_rate_throttles_requests_beyond_the_second_budget(now):
    sim = backend(max_rate=100)
    results = [sim.send_batch([sms(n)])[0] for n in range(150)]

    assert sum(r.accepted for r in results) == 100
    assert all(r.accepted for r in results[:100])
    refused = results[100:]
    assert {r.error.code for r in refused} == {"429"}
    assert all(r.error.kind == SendErrorKind.THROTTLED for r in refused)
    assert refused[0].error.retry_after == pytest.approx(0.75)

    now.value = T0 + 0.75
    assert sim.send_batch([sms(1)])[0].accepted


def test_max_rate_refuses_a_request_that_does_not_fit_as_a_whole(now):
    sim = backend(max_rate=100)
    assert all(r.accepted for r in sim.send_batch([sms(n) for n in range(60)]))

    refused = sim.send_batch([sms(n) for n in range(60)])
    assert all(r.error and r.error.code == "429" for r in refused)
    assert sim.pending_count() == 120
    # The refused request used none of the budget.
    assert all(r.accepted for r in sim.send_batch([sms(n) for n in range(40)]))
    assert sim.stats()["throttled_requests"] == 1


def test_request_larger_than_max_rate_gets_an_empty_second(now):
    sim = backend(max_rate=10)
    assert all(r.accepted for r in sim.send_batch([sms(n) for n in range(50)]))
    assert not sim.send_batch([sms(1)])[0].accepted


@pytest.fixture
def eager_thread_switching():
    """Switch threads as often as possible, so an unguarded window would overshoot."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("eager_thread_switching")
def test_max_rate_holds_across_threads(now):
    sim = backend(max_rate=100)
    accepted = Counter()

    def worker(name: int) -> None:
        for n in range(40):
            accepted[name] += sim.send_batch([sms(n)])[0].accepted

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(accepted.values()) == 100
    assert sim.stats()["throttled"] == 220


@pytest.fixture
def clean_cache():
    cache.clear()
    yield cache
    cache.clear()


def test_shared_limit_budgets_all_instances_together(now, clean_cache):
    # Two instances stand for two worker processes sharing one cache.
    first = backend(max_rate=100, shared_limit=True)
    second = backend(max_rate=100, shared_limit=True)

    results = [(first if n % 2 else second).send_batch([sms(n)])[0] for n in range(150)]
    assert sum(r.accepted for r in results) == 100
    assert first.stats()["throttled"] + second.stats()["throttled"] == 50
    assert clean_cache.get(f"providers:simulator:sim:rate:{int(T0)}") == 100

    now.value = T0 + 1
    assert first.send_batch([sms(1)])[0].accepted
    assert second.send_batch([sms(2)])[0].accepted


def test_shared_limit_returns_the_budget_of_a_refused_request(now, clean_cache):
    sim = backend(max_rate=100, shared_limit=True)
    assert all(r.accepted for r in sim.send_batch([sms(n) for n in range(60)]))
    assert not any(r.accepted for r in sim.send_batch([sms(n) for n in range(60)]))
    assert all(r.accepted for r in sim.send_batch([sms(n) for n in range(40)]))


def test_shared_limit_is_per_alias(now, clean_cache):
    sim = backend(max_rate=1, shared_limit=True)
    other = SmsBackend(alias="other", max_rate=1, shared_limit=True)

    assert sim.send_batch([sms(1)])[0].accepted
    assert other.send_batch([sms(1)])[0].accepted
    assert not sim.send_batch([sms(2)])[0].accepted


# --- Counters and the reporter thread --------------------------------------------------


def test_stats_count_requests_and_outcomes(now, received):
    sim = backend(max_rate=3, invalid_prefixes=["+1999"], report_delay=0)
    sim.send_batch([sms(1), sms(2, to="+19995550100")])
    sim.send_batch([sms(3), sms(4)])
    sim.flush()

    assert sim.stats() == {
        "requests": 2,
        "messages": 4,
        "accepted": 1,
        "throttled": 2,
        "throttled_requests": 1,
        "errors": 0,
        "invalid": 1,
        "reports_delivered": 2,
        "reports_failed": 0,
        "reports_pending": 0,
    }
    sim.reset_stats()
    assert set(sim.stats().values()) == {0}


def test_reporter_thread_delivers_due_reports(monkeypatch):
    signal = Signal()
    monkeypatch.setattr(simulator, "callback_received", signal)
    done = threading.Event()
    calls = []

    def receiver(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            done.set()

    signal.connect(receiver, weak=False)
    sim = backend(report_delay=0)
    sim.start_reporter(interval=0.01)
    try:
        sim.send_messages([sms(1)])
        assert done.wait(timeout=5)
    finally:
        sim.stop_reporter()

    assert sim.pending_count() == 0
    assert [c["kind"] for c in calls] == ["status", "status"]

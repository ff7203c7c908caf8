import pytest

from django.core.exceptions import ImproperlyConfigured

from providers import create_provider, get_provider
from providers.backends.base import BaseSmsBackend
from providers.messages import Callback, OutboundSms, SendResult


class RecordingBackend(BaseSmsBackend):
    """Records the batches it is asked to send."""

    max_recipients_per_request = 3

    def __init__(self, *, alias: str, greeting: str = "", **options) -> None:
        super().__init__(alias=alias, **options)
        self.greeting = greeting
        self.batches: list[list[OutboundSms]] = []

    def send_batch(self, messages):
        self.batches.append(list(messages))
        return [
            SendResult(
                reference=m.reference, to=m.to, provider_message_id=f"id-{m.reference}"
            )
            for m in messages
        ]


class PerRecipientBackend(RecordingBackend):
    supports_per_recipient_text = True


def sms(n: int, text: str = "Hello") -> OutboundSms:
    return OutboundSms(to=f"+1415555{n:04d}", text=text, reference=f"ref-{n}")


@pytest.fixture
def recording_provider(settings):
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "recording": {
            "BACKEND": f"{__name__}.RecordingBackend",
            "OPTIONS": {"greeting": "hi", "rate": 12},
        },
    }
    return get_provider("recording")


def test_get_provider_builds_the_configured_backend_with_its_options(
    recording_provider,
):
    assert isinstance(recording_provider, RecordingBackend)
    assert recording_provider.alias == "recording"
    assert recording_provider.greeting == "hi"
    assert recording_provider.rate == 12.0


def test_get_provider_reuses_one_instance_per_alias(recording_provider):
    assert get_provider("recording") is recording_provider
    assert create_provider("recording") is not recording_provider


def test_get_provider_without_alias_uses_the_default(settings, recording_provider):
    settings.SMS_DEFAULT_PROVIDER = "recording"
    assert isinstance(get_provider(), RecordingBackend)


def test_changed_settings_give_a_fresh_instance(settings, recording_provider):
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "recording": {
            "BACKEND": f"{__name__}.RecordingBackend",
            "OPTIONS": {"greeting": "bye"},
        },
    }
    assert get_provider("recording").greeting == "bye"


def test_unknown_alias_names_the_configured_ones():
    with pytest.raises(
        ImproperlyConfigured, match=r"'pigeon' is not configured.*simulator"
    ):
        get_provider("pigeon")


def test_unimportable_backend_is_a_configuration_error(settings):
    settings.SMS_PROVIDERS = {
        "broken": {"BACKEND": "providers.backends.nowhere.SmsBackend"}
    }
    with pytest.raises(
        ImproperlyConfigured,
        match=r"Could not import 'providers\.backends\.nowhere\.SmsBackend'",
    ):
        get_provider("broken")


def test_unknown_options_are_refused_naming_the_alias(settings):
    settings.SMS_PROVIDERS = {
        "typo": {"BACKEND": f"{__name__}.RecordingBackend", "OPTIONS": {"greting": "x"}}
    }
    with pytest.raises(
        ImproperlyConfigured,
        match=r"Unknown OPTIONS for SMS_PROVIDERS\['typo'\]: greting",
    ):
        get_provider("typo")


def test_send_messages_splits_into_requests_of_the_vendor_size():
    backend = PerRecipientBackend(alias="r")
    results = backend.send_messages([sms(n, text=f"text {n}") for n in range(7)])
    assert [len(b) for b in backend.batches] == [3, 3, 1]
    assert [r.reference for r in results] == [f"ref-{n}" for n in range(7)]
    assert all(r.accepted for r in results)


def test_send_messages_groups_by_text_when_one_request_carries_one_text():
    backend = RecordingBackend(alias="r")
    messages = [sms(0, "A"), sms(1, "B"), sms(2, "A"), sms(3, "A"), sms(4, "A")]
    backend.send_messages(messages)
    assert [[m.reference for m in b] for b in backend.batches] == [
        ["ref-0", "ref-2", "ref-3"],
        ["ref-4"],
        ["ref-1"],
    ]


def test_callback_urls_come_from_the_public_base_url(settings):
    settings.PUBLIC_BASE_URL = "https://sms.example.com"
    backend = RecordingBackend(alias="plivo")
    assert (
        backend.status_callback_url()
        == "https://sms.example.com/webhooks/plivo/status/"
    )
    assert (
        backend.status_callback_url("abc")
        == "https://sms.example.com/webhooks/plivo/status/?ref=abc"
    )
    assert (
        backend.inbound_callback_url()
        == "https://sms.example.com/webhooks/plivo/inbound/"
    )
    settings.PUBLIC_BASE_URL = ""
    assert backend.status_callback_url() == ""


def test_missing_credentials_name_the_variables():
    with pytest.raises(
        ImproperlyConfigured, match="needs PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN"
    ):
        BaseSmsBackend.require(
            "plivo", PLIVO_AUTH_ID="", PLIVO_AUTH_TOKEN=None, PLIVO_SENDER_ID="x"
        )


def test_callback_reads_headers_in_any_case_and_query_and_form():
    callback = Callback(
        method="POST",
        url="https://sms.example.com/webhooks/plivo/status/?ref=abc&x=",
        headers={"X-Plivo-Signature-V3": "sig"},
        body=b"To=14155550123&ErrorCode=&Status=delivered",
    )
    assert callback.header("x-plivo-signature-v3") == "sig"
    assert callback.header("missing") == ""
    assert callback.query == {"ref": "abc", "x": ""}
    assert callback.form == {
        "To": "14155550123",
        "ErrorCode": "",
        "Status": "delivered",
    }


def test_system_check_reports_a_default_provider_without_credentials(settings):
    from providers.checks import check_default_provider

    settings.SMS_PROVIDERS = {
        "typo": {"BACKEND": f"{__name__}.RecordingBackend", "OPTIONS": {"greting": "x"}}
    }
    settings.SMS_DEFAULT_PROVIDER = "typo"
    [error] = check_default_provider()
    assert error.id == "providers.E001"
    assert "greting" in error.msg

    settings.SMS_DEFAULT_PROVIDER = "locmem"
    settings.SMS_PROVIDERS = {"locmem": {"BACKEND": f"{__name__}.RecordingBackend"}}
    assert check_default_provider() == []

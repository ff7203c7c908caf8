"""providers.provider_problem: the one judge of whether a provider can send."""

import pytest

from providers import get_provider, provider_problem, usable_providers

SINCH_NEEDS = "SMS provider 'sinch' needs SINCH_SERVICE_PLAN_ID, SINCH_API_TOKEN"


def test_a_configured_working_provider_has_no_problem():
    assert provider_problem("locmem") is None


def test_an_alias_that_is_not_configured_is_named_with_the_configured_ones():
    problem = provider_problem("twilio")
    assert problem.startswith("SMS provider 'twilio' is not configured")
    assert "locmem" in problem


def test_missing_credentials_name_the_variables():
    assert provider_problem("sinch").startswith(SINCH_NEEDS)


def test_an_unreadable_key_file_says_so(settings, tmp_path):
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "vonage": {
            "BACKEND": "providers.backends.vonage.SmsBackend",
            "OPTIONS": {
                "application_id": "app-id",
                "private_key_path": str(tmp_path / "missing.key"),
                "number": "+14155550100",
            },
        },
    }
    problem = provider_problem("vonage")
    assert "VONAGE_PRIVATE_KEY_PATH for SMS provider 'vonage' cannot be read" in problem


@pytest.mark.parametrize("alias", ["simulator", "console", "locmem"])
def test_development_backends_are_refused_unless_allowed(settings, alias):
    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = False
    problem = provider_problem(alias)
    assert f"SMS provider {alias!r} is a development backend" in problem
    assert "SMS_ALLOW_DEVELOPMENT_PROVIDERS=true" in problem

    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = True
    assert provider_problem(alias) is None


def test_usable_providers_follow_the_settings(settings):
    assert usable_providers() == ["simulator", "console", "locmem"]
    settings.SMS_ALLOW_DEVELOPMENT_PROVIDERS = False
    assert usable_providers() == []
    settings.SMS_PROVIDERS = {
        **settings.SMS_PROVIDERS,
        "sinch": {
            "BACKEND": "providers.backends.sinch.SmsBackend",
            "OPTIONS": {
                "service_plan_id": "plan",
                "api_token": "token",
                "number": "+14155550100",
            },
        },
    }
    assert usable_providers() == ["sinch"]


def test_a_working_backend_is_created_once(settings):
    backend = get_provider("locmem")
    assert provider_problem("locmem") is None
    assert get_provider("locmem") is backend

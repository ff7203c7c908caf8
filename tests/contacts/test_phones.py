import pytest

from contacts.phones import InvalidPhoneNumber, mask_phone, normalize_phone, parse_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550123", None, "+14155550123"),
        ("(415) 555-0123", None, "+14155550123"),
        ("415.555.0123", None, "+14155550123"),
        ("1 415 555 0123", None, "+14155550123"),
        ("14155550123", None, "+14155550123"),
        ("447911123456", None, "+447911123456"),  # international without "+"
        ("0044 7911 123456", None, "+447911123456"),  # international with 00
        ("+44 20 7946 0123", None, "+442079460123"),
        ("020 7946 0123", "GB", "+442079460123"),  # national for another region
        ("06 12 34 56 78", "fr", "+33612345678"),
        ("  +33 6 12 34 56 78 ", None, "+33612345678"),
    ],
)
def test_common_formats_normalize_to_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    "raw", ["", "   ", "hello", "123", "+1 555", "+999 1234567", "415-555-01234567"]
)
def test_invalid_numbers_raise_a_clear_error(raw):
    with pytest.raises(InvalidPhoneNumber) as exc_info:
        normalize_phone(raw)
    assert "is not a valid phone number" in str(exc_info.value)
    assert exc_info.value.raw == raw


def test_default_region_comes_from_settings(settings):
    settings.PHONE_DEFAULT_REGION = "GB"
    assert normalize_phone("020 7946 0123") == "+442079460123"


def test_country_and_time_zone_follow_the_number():
    parsed = parse_phone("+14155550123")
    assert (parsed.country, parsed.time_zone) == ("US", "America/Los_Angeles")
    parsed = parse_phone("+12125550123")
    assert (parsed.country, parsed.time_zone) == ("US", "America/New_York")
    parsed = parse_phone("+33612345678")
    assert (parsed.country, parsed.time_zone) == ("FR", "Europe/Paris")


def test_masked_number_hides_all_but_country_code_and_last_digits():
    assert mask_phone("+14155550123") == "+14*******23"
    assert "5550" not in mask_phone("+14155550123")

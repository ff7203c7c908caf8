"""Sign-up keywords set up on a list's admin page, and what the API shows of them."""

import pytest
from rest_framework.test import APIClient

from django.core.exceptions import ValidationError
from django.urls import reverse

from contacts.models import (
    DEFAULT_SIGNUP_QUESTION,
    DEFAULT_SIGNUP_WELCOME,
    SignupKeyword,
)
from smscampaigns.models import ApiKey, Scope
from tests.factories import ContactListFactory, SignupKeywordFactory

pytestmark = pytest.mark.django_db


def keyword_errors(**fields) -> dict[str, list[str]]:
    keyword = SignupKeyword(contact_list=ContactListFactory(), **fields)
    try:
        keyword.full_clean()
    except ValidationError as exc:
        return exc.message_dict
    return {}


@pytest.mark.parametrize(
    "word", ["STOP", "stop", "Unsubscribe", "START", "yes", "HELP", "info", "OPTOUT"]
)
def test_a_keyword_cannot_be_a_stop_start_help_or_yes_word(word):
    [error] = keyword_errors(keyword=word)["keyword"]
    assert "is already a keyword for everyone who texts us" in error
    assert error.startswith(word.upper())


def test_the_reserved_words_are_those_the_inbound_code_reads(settings):
    settings.SMS_KEYWORDS_OPT_OUT = ["BASTA"]
    settings.SMS_KEYWORDS_CONFIRM = ["SI"]
    assert "Opt-out (STOP)" in keyword_errors(keyword="basta")["keyword"][0]
    assert "Sign-up confirmation" in keyword_errors(keyword="Si")["keyword"][0]
    assert keyword_errors(keyword="STOP") == {}  # no longer an opt-out word here


def test_keywords_are_unique_whatever_their_case():
    SignupKeywordFactory(keyword="JOIN")
    assert keyword_errors(keyword="join")["keyword"] == [
        "Sign-up keyword with this Keyword already exists."
    ]


@pytest.mark.parametrize("word", ["J", "JOIN NOW", "JOIN!", "a" * 21, ""])
def test_a_keyword_is_one_word_of_letters_or_digits(word):
    assert "keyword" in keyword_errors(keyword=word)


def test_the_texts_must_ask_for_yes_and_say_how_to_stop():
    errors = keyword_errors(
        keyword="JOIN", question="Want deals? Reply YES.", welcome="Welcome!"
    )
    assert errors["question"] == ["Say how to opt out (Reply STOP to opt out)."]
    assert errors["welcome"] == ["Say how to opt out (Reply STOP to opt out)."]
    errors = keyword_errors(keyword="JOIN", question="Deals! Reply STOP to opt out.")
    assert errors["question"] == ["Ask for YES (Reply YES to …)."]


def test_the_default_texts_are_valid_and_name_the_rates():
    assert keyword_errors(keyword="VIP2") == {}
    for text in (DEFAULT_SIGNUP_QUESTION, DEFAULT_SIGNUP_WELCOME):
        assert "Msg&data rates may apply" in text
        assert "STOP to opt out" in text


def test_the_confirmation_window_is_bounded():
    assert "confirm_within_hours" in keyword_errors(
        keyword="JOIN", confirm_within_hours=0
    )


# --- Admin -------------------------------------------------------------------------


def inline_data(*rows: dict) -> dict[str, str]:
    data = {
        "name": "Deals",
        "description": "",
        "signup_keywords-TOTAL_FORMS": str(len(rows)),
        "signup_keywords-INITIAL_FORMS": "0",
        "signup_keywords-MIN_NUM_FORMS": "0",
        "signup_keywords-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        values = {
            "keyword": "",
            "confirm_within_hours": "24",
            "question": DEFAULT_SIGNUP_QUESTION,
            "welcome": DEFAULT_SIGNUP_WELCOME,
            **row,
        }
        for name, value in values.items():
            data[f"signup_keywords-{index}-{name}"] = value
    return data


def test_a_marketer_adds_keywords_on_the_list_page(admin_client):
    page = admin_client.get(reverse("admin:contacts_contactlist_add"))
    assert "Sign-up keywords" in page.content.decode()
    response = admin_client.post(
        reverse("admin:contacts_contactlist_add"),
        inline_data(
            {"keyword": "join"}, {"keyword": "Vip", "confirm_within_hours": "2"}
        ),
    )
    assert response.status_code == 302, response.context["inline_admin_formsets"]
    assert list(
        SignupKeyword.objects.values_list("keyword", "confirm_within_hours")
    ) == [("JOIN", 24), ("VIP", 2)]
    changelist = admin_client.get(reverse("admin:contacts_contactlist_changelist"))
    assert "JOIN, VIP" in changelist.content.decode()


def test_the_list_page_refuses_a_reserved_or_repeated_keyword(admin_client):
    response = admin_client.post(
        reverse("admin:contacts_contactlist_add"),
        inline_data({"keyword": "stop"}, {"keyword": "JOIN"}, {"keyword": "join"}),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "STOP is already a keyword for everyone who texts us" in page
    assert "Please correct the duplicate data for keyword" in page
    assert not SignupKeyword.objects.exists()


def test_pending_sign_ups_are_listed_read_only(admin_client):
    page = admin_client.get(reverse("admin:contacts_pendingsignup_changelist"))
    assert page.status_code == 200
    assert (
        admin_client.get(reverse("admin:contacts_pendingsignup_add")).status_code == 403
    )


# --- API ---------------------------------------------------------------------------


def test_the_lists_endpoint_shows_each_lists_keywords():
    keyword = SignupKeywordFactory(keyword="JOIN", confirm_within_hours=12)
    _, raw = ApiKey.generate(name="tests", scopes=[Scope.READ])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    response = client.get(f"/api/v1/lists/{keyword.contact_list_id}/")
    assert response.json()["signup_keywords"] == [
        {
            "keyword": "JOIN",
            "question": DEFAULT_SIGNUP_QUESTION,
            "welcome": DEFAULT_SIGNUP_WELCOME,
            "confirm_within_hours": 12,
        }
    ]

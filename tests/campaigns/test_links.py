"""Tracked links: short links per recipient, the redirect, click recording."""

import re
from io import StringIO

import pytest

from django.core.management import call_command
from django.test import Client

from campaigns.clicks import agent_classify, link_click_record
from campaigns.links import (
    CODE_LENGTH,
    counted_template,
    link_code,
    link_decode,
    sample_short_url,
    template_links,
)
from campaigns.models import Campaign, LinkClick, Message, TrackedLink
from campaigns.provider_checks import text_length_problems
from campaigns.redirects import ShortLinkApp
from campaigns.sending.launch import campaign_launch
from campaigns.templating import parse
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("smscampaigns.urls")]

BASE = "https://sms.example.com"
SHORT = re.compile(re.escape(BASE) + r"/l/([0-9A-Za-z]{8})")
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(autouse=True)
def _public_base_url(settings):
    settings.PUBLIC_BASE_URL = BASE


@pytest.fixture
def audience():
    contact_list = ContactListFactory()
    for name in ["Ada", "Alan", "Grace"]:
        ContactFactory(first_name=name).lists.add(contact_list)
    return contact_list


@pytest.fixture
def campaign(audience):
    return CampaignFactory(
        lists=[audience],
        provider="locmem",
        body="Hi {first_name}, sale at https://shop.example.com/spring?utm=sms.",
    )


def send(campaign: Campaign) -> None:
    call_command("send_campaign", str(campaign.pk), stdout=StringIO())


def codes_in(text: str) -> list[str]:
    return SHORT.findall(text)


def sent_code(campaign: Campaign, first_name: str) -> str:
    message = Message.objects.get(campaign=campaign, contact__first_name=first_name)
    [code] = codes_in(message.body)
    return code


# --- Codes ------------------------------------------------------------------------------


def test_codes_are_eight_characters_and_decode_to_their_message_and_link():
    for message_id, position in [(0, 0), (1, 0), (1, 3), (987_654_321, 15)]:
        code = link_code(message_id, position)
        assert len(code) == CODE_LENGTH
        assert re.fullmatch(r"[0-9A-Za-z]{8}", code)
        assert link_decode(code)[0] == (message_id, position)


def test_neighbouring_messages_get_unrelated_codes():
    codes = [link_code(message_id, 0) for message_id in range(1, 50)]
    assert len(set(codes)) == len(codes)
    # No shared prefix run as a counter would give.
    assert len({code[:4] for code in codes}) > 40


def test_codes_depend_on_the_secret_key(settings):
    before = link_code(42, 0)
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789abcdefghij"
    assert link_code(42, 0) != before


def test_malformed_codes_decode_to_nothing():
    assert link_decode("short") == []
    assert link_decode("abc-efgh") == []
    assert link_decode("zzzzzzzzz") == []
    # Beyond the permutation's range.
    assert link_decode("zzzzzzzz") == []


# --- Finding links ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "links"),
    [
        ("See https://a.example/x.", ["https://a.example/x"]),
        ("See www.a.example/deals!", ["www.a.example/deals"]),
        (
            "(https://en.wikipedia.org/wiki/Foo_(bar))",
            ["https://en.wikipedia.org/wiki/Foo_(bar)"],
        ),
        ("Two: http://a.example and http://a.example again", ["http://a.example"]),
        ("Hi {first_name}, https://a.example/{code} is yours", []),
        ("{link|https://a.example/default}", []),
        ("No link here, just www. and https://", []),
    ],
)
def test_links_found_in_the_text(body, links):
    assert template_links(parse(body)) == links


def test_counts_use_a_short_link_of_the_real_length():
    template = counted_template(
        "Go https://a.example/a/very/long/path/indeed", track_links=True
    )
    text = template.render(first_name="", last_name="", phone="", attributes={})
    assert text == f"Go {sample_short_url()}"
    assert len(sample_short_url()) == len(BASE) + 3 + CODE_LENGTH


def test_without_tracking_or_a_public_address_links_are_counted_as_written(settings):
    body = "Go https://a.example/path"
    plain = counted_template(body, track_links=False)
    assert plain.render(first_name="", last_name="", phone="", attributes={}) == body
    settings.PUBLIC_BASE_URL = ""
    unset = counted_template(body, track_links=True)
    assert unset.render(first_name="", last_name="", phone="", attributes={}) == body


def test_length_checks_judge_the_text_with_its_short_links():
    long_url = "https://a.example/" + "x" * 700
    body = f"Deal {long_url}"
    # Too long as written for a provider that takes one concatenated message of
    # few segments, fine once shortened.
    assert (
        text_length_problems(body=body, footer="", provider="locmem", track_links=True)
        == []
    )


# --- Sending ----------------------------------------------------------------------------


def test_each_recipient_gets_their_own_short_link_in_place_of_the_url(
    campaign, sms_outbox
):
    send(campaign)
    texts = {sms.text for sms in sms_outbox}
    assert len(texts) == 3
    codes = set()
    for text in texts:
        assert "shop.example.com" not in text
        [code] = codes_in(text)
        codes.add(code)
        # The sentence's full stop stays after the link.
        assert text.endswith(f"/l/{code}.")
    assert len(codes) == 3
    link = TrackedLink.objects.get(campaign=campaign)
    assert link.url == "https://shop.example.com/spring?utm=sms"
    # The stored text is what was sent.
    for message in Message.objects.filter(campaign=campaign):
        assert codes_in(message.body)


def test_a_campaign_that_does_not_track_sends_links_as_written(audience, sms_outbox):
    campaign = CampaignFactory(
        lists=[audience],
        provider="locmem",
        body="Hi https://a.example/x",
        track_links=False,
    )
    send(campaign)
    assert {sms.text for sms in sms_outbox} == {"Hi https://a.example/x"}
    assert not TrackedLink.objects.filter(campaign=campaign).exists()


def test_relaunching_keeps_the_links_positions(campaign):
    campaign_launch(campaign=campaign)
    first = list(TrackedLink.objects.filter(campaign=campaign).values("pk", "position"))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SCHEDULED)
    campaign_launch(campaign=campaign)
    assert (
        list(TrackedLink.objects.filter(campaign=campaign).values("pk", "position"))
        == first
    )


def test_several_links_each_get_their_code(audience, sms_outbox):
    campaign = CampaignFactory(
        lists=[audience],
        provider="locmem",
        body="A https://a.example B www.b.example/x C https://a.example",
    )
    send(campaign)
    text = sms_outbox[0].text
    first, second, third = codes_in(text)
    assert first == third != second
    assert link_decode(first)[0][1] == 0
    assert link_decode(second)[0][1] == 1


# --- Clicks -----------------------------------------------------------------------------


def test_a_click_redirects_at_once_and_counts(campaign, client):
    send(campaign)
    code = sent_code(campaign, "Ada")
    response = client.get(f"/l/{code}", HTTP_USER_AGENT=PHONE)
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.com/spring?utm=sms"
    assert "no-store" in response["Cache-Control"]
    message = Message.objects.get(campaign=campaign, contact__first_name="Ada")
    assert message.clicks == 1
    first = message.first_clicked_at
    assert first is not None
    click = LinkClick.objects.get()
    assert (click.message, click.is_bot, click.agent) == (message, False, "mobile")

    client.get(f"/l/{code}", HTTP_USER_AGENT=PHONE)
    message.refresh_from_db()
    assert message.clicks == 2
    assert message.first_clicked_at == first
    assert LinkClick.objects.count() == 2


@pytest.mark.parametrize(
    "agent",
    [
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 "
        "(KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 "
        "Facebot Twitterbot/1.0",
        "WhatsApp/2.23.20.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "",
    ],
)
def test_link_previews_are_stored_as_bots_and_do_not_count(campaign, client, agent):
    send(campaign)
    code = sent_code(campaign, "Ada")
    response = client.get(f"/l/{code}", HTTP_USER_AGENT=agent)
    assert response.status_code == 302
    message = Message.objects.get(campaign=campaign, contact__first_name="Ada")
    assert (message.clicks, message.first_clicked_at) == (0, None)
    assert LinkClick.objects.get().is_bot is True


def test_a_head_request_redirects_but_is_not_a_click(campaign, client):
    send(campaign)
    code = sent_code(campaign, "Ada")
    response = client.head(f"/l/{code}", HTTP_USER_AGENT=PHONE)
    assert response.status_code == 302
    assert Message.objects.get(campaign=campaign, contact__first_name="Ada").clicks == 0
    click = LinkClick.objects.get()
    assert (click.is_bot, click.agent) == (True, "head")


def test_phones_named_like_bots_are_people():
    assert agent_classify(
        "Mozilla/5.0 (Linux; Android 10; CUBOT X19) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"
    ) == ("mobile", False)
    assert agent_classify(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    ) == ("desktop", False)


def test_an_unknown_code_is_a_plain_404(campaign, client):
    send(campaign)
    for code in ["zzzzzzzz", "nope", link_code(999_999, 0), link_code(1, 9)]:
        response = client.get(f"/l/{code}", HTTP_USER_AGENT=PHONE)
        assert response.status_code == 404
        assert "text/html" in response["Content-Type"]
    assert not LinkClick.objects.exists()


def test_other_methods_are_refused(campaign, client):
    send(campaign)
    code = sent_code(campaign, "Ada")
    assert Client(enforce_csrf_checks=True).post(f"/l/{code}").status_code in (403, 405)
    assert not LinkClick.objects.exists()


def test_links_keep_working_after_the_campaign_ended(campaign, client):
    send(campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED
    code = sent_code(campaign, "Grace")
    assert client.get(f"/l/{code}", HTTP_USER_AGENT=PHONE).status_code == 302


def test_links_sent_before_a_secret_key_rotation_keep_working(
    campaign, settings, client
):
    send(campaign)
    code = sent_code(campaign, "Ada")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "the-new-secret-key-after-rotation-0123456789abcdefghij"
    assert client.get(f"/l/{code}", HTTP_USER_AGENT=PHONE).status_code == 302


def test_link_click_record_returns_the_destination(audience):
    campaign = CampaignFactory(
        lists=[audience], provider="locmem", body="www.a.example/x"
    )
    send(campaign)
    code = sent_code(campaign, "Alan")
    assert link_click_record(code=code, user_agent=PHONE) == "https://www.a.example/x"
    assert link_click_record(code="00000000", user_agent=PHONE) is None


# --- The WSGI front -----------------------------------------------------------------------


class _Django:
    """Stands in for Django's WSGI application: says it was asked."""

    def __init__(self):
        self.paths = []

    def __call__(self, environ, start_response):
        self.paths.append(environ["PATH_INFO"])
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"django"]


def _call(app, path, method="GET", agent=PHONE):
    answer = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(
        app(
            {"PATH_INFO": path, "REQUEST_METHOD": method, "HTTP_USER_AGENT": agent},
            start_response,
        )
    )
    return answer["status"], answer["headers"], body


def test_the_wsgi_front_redirects_known_codes_and_leaves_the_rest_to_django(campaign):
    send(campaign)
    code = sent_code(campaign, "Ada")
    django = _Django()
    app = ShortLinkApp(django)

    status, headers, body = _call(app, f"/l/{code}")
    assert status == "302 Found"
    assert headers["Location"] == "https://shop.example.com/spring?utm=sms"
    assert body == b""
    assert django.paths == []
    assert Message.objects.get(campaign=campaign, contact__first_name="Ada").clicks == 1

    assert _call(app, "/l/zzzzzzzz")[0] == "404 Not Found"
    assert _call(app, "/admin/")[0] == "404 Not Found"
    assert _call(app, f"/l/{code}", method="POST")[0] == "404 Not Found"
    assert django.paths == ["/l/zzzzzzzz", "/admin/", f"/l/{code}"]
    assert LinkClick.objects.count() == 1


def test_the_project_wsgi_application_answers_short_links():
    from smscampaigns import wsgi

    app = wsgi.application
    while not isinstance(app, ShortLinkApp):  # inside other fronts (webhooks.wsgi)
        app = app.app
    assert isinstance(app, ShortLinkApp)


@pytest.mark.django_db(transaction=True)
def test_a_click_outside_any_transaction_is_stored(audience):
    """As the WSGI front records it: autocommit, on PostgreSQL without waiting for
    the WAL flush (set_config inside the one statement)."""
    campaign = CampaignFactory(
        lists=[audience], provider="locmem", body="Go https://a.example/x"
    )
    send(campaign)
    code = sent_code(campaign, "Ada")
    assert link_click_record(code=code, user_agent=PHONE) == "https://a.example/x"
    message = Message.objects.get(campaign=campaign, contact__first_name="Ada")
    assert (message.clicks, LinkClick.objects.count()) == (1, 1)
    # The setting held for that one transaction, not for the connection.
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('synchronous_commit')")
            assert cursor.fetchone() == ("on",)


def test_a_click_is_one_statement_on_postgresql(campaign, django_assert_num_queries):
    """Nobody subscribes to link.clicked: no transaction, no endpoint lookup."""
    from django.db import connection

    from campaigns.clicks import clicks_subscribed

    if connection.vendor != "postgresql":
        pytest.skip("SQLite records a click in three statements")
    send(campaign)
    code = sent_code(campaign, "Ada")
    clicks_subscribed()  # read once per few seconds, not per click
    with django_assert_num_queries(1):
        assert link_click_record(code=code, user_agent=PHONE)


@pytest.mark.django_db(transaction=True)
def test_the_click_statement_is_prepared_once_per_connection(campaign):
    """PostgreSQL parses and plans the click once per connection, not per click."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no prepared statements")
    send(campaign)
    code = sent_code(campaign, "Ada")
    for _ in range(8):
        assert link_click_record(code=code, user_agent=PHONE)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%INSERT INTO%linkclick%"],
        )
        assert cursor.fetchone() == (1,)
        # set_config(..., true) held for each click's own transaction only.
        cursor.execute("SELECT current_setting('synchronous_commit')")
        assert cursor.fetchone() == ("on",)
    assert Message.objects.get(campaign=campaign, contact__first_name="Ada").clicks == 8


def test_no_other_query_is_kept_for_preparing(campaign):
    """psycopg counts every query towards preparing when the connection allows it,
    keeping the last hundred with their literal values (bulk inserts: megabytes)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no prepared statements")
    send(campaign)
    link_click_record(code=sent_code(campaign, "Ada"), user_agent=PHONE)
    for n in range(20):
        Message.objects.filter(pk=n).exists()
    manager = connection.connection._prepared
    assert manager.prepare_threshold is None
    assert len(manager._counts) == 0


def test_a_database_error_leaves_the_request_to_django(campaign, monkeypatch):
    from django.db import DatabaseError

    send(campaign)
    code = sent_code(campaign, "Ada")

    def fail(**kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr("campaigns.redirects.link_click_record", fail)
    monkeypatch.setattr("campaigns.redirects.connection.close", lambda: None)
    django = _Django()
    assert _call(ShortLinkApp(django), f"/l/{code}")[0] == "404 Not Found"
    assert django.paths == [f"/l/{code}"]


@pytest.mark.django_db(transaction=True)
def test_a_lost_prepared_statement_falls_back_to_django_then_recovers(campaign):
    """A statement the server no longer knows (a pooler's reset, say) is a database
    error like any other: Django answers that request, the next one reconnects."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no prepared statements")
    send(campaign)
    code = sent_code(campaign, "Ada")
    django = _Django()
    app = ShortLinkApp(django)
    for _ in range(6):
        assert _call(app, f"/l/{code}")[0] == "302 Found"
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        for (name,) in cursor.fetchall():
            cursor.execute(f"DEALLOCATE {connection.ops.quote_name(name)}")

    assert _call(app, f"/l/{code}")[0] == "404 Not Found"
    assert django.paths == [f"/l/{code}"]
    assert _call(app, f"/l/{code}")[0] == "302 Found"
    assert Message.objects.get(campaign=campaign, contact__first_name="Ada").clicks == 7

"""The campaign composer in the admin: the form, its save through the services, the
content lock and the live panel's compose endpoint."""

from decimal import Decimal

import pytest

from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from campaigns import preview
from campaigns.admin import composer
from campaigns.models import Campaign
from campaigns.sending.launch import CampaignError
from campaigns.writes import content_locked
from contacts.models import Suppression
from tests.factories import CampaignFactory, ContactFactory, ContactListFactory

pytestmark = pytest.mark.django_db

ADD = reverse("admin:campaigns_campaign_add")
COMPOSE = reverse("admin:campaigns_campaign_compose")
FOOTER = "Reply STOP to opt out"
# Pasted word-processor text: each forces UCS-2.
RIGHT_QUOTE, EM_DASH, ELLIPSIS, NO_BREAK_SPACE = "\u2019", "\u2014", "\u2026", "\u00a0"
LEFT_DOUBLE, RIGHT_DOUBLE = "\u201c", "\u201d"
MINUS = "\u2212"
EN_DASH = "\u2013"


@pytest.fixture(autouse=True)
def _no_cached_audiences():
    cache.clear()


def change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def form_data(**fields) -> dict:
    return {
        "name": "Spring sale",
        "body": "Hi {first_name|there}, 20% off today!",
        "opt_out_footer": FOOTER,
        "provider": "locmem",
        "sender": "",
        "fallback_provider": "",
        **fields,
    }


def compose(client, **fields):
    data = {"body": "", "opt_out_footer": "", "provider": "locmem", **fields}
    return client.post(COMPOSE, data)


@pytest.fixture
def spring():
    """A list of two contacts, one opted out and one suppressed; Ann is also in
    a second list."""
    spring, vip = ContactListFactory(name="Spring"), ContactListFactory(name="VIP")
    ann = ContactFactory(
        phone="+14155550101",
        first_name="Ann",
        last_name="Lee",
        attributes={"city": "Austin"},
    )
    bob = ContactFactory(phone="+14155550102", first_name="Bob", last_name="Ray")
    gone = ContactFactory(phone="+14155550103", opted_out_at=timezone.now())
    blocked = ContactFactory(phone="+14155550104")
    Suppression.objects.create(phone=blocked.phone)
    for contact in (ann, bob, gone, blocked):
        contact.lists.add(spring)
    ann.lists.add(vip)
    return {"lists": [spring, vip], "ann": ann, "bob": bob}


# --- The form ----------------------------------------------------------------------


def test_add_page_shows_the_composer_with_the_default_footer(admin_client, spring):
    response = admin_client.get(ADD)

    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="composer"' in html
    assert f'value="{FOOTER}"' in html
    assert "Marketing messages must tell people how to opt out" in html
    assert 'src="/static/campaigns/composer.js"' in html
    # Lists are offered with their sizes; providers by alias.
    assert "Spring (4 contacts)" in html
    assert '<option value="locmem" selected>locmem</option>' in html
    # The panel is right before any typing: the footer alone, 21 GSM characters.
    panel = response.context["composer"]
    assert panel["message"]["text"] == f"\n{FOOTER}"
    assert (panel["message"]["characters"], panel["message"]["segments"]) == (22, 1)
    assert '<span id="composer-characters">22</span>' in html
    assert 'id="composer-data"' in html


def test_creating_a_campaign_goes_through_the_service(admin_client, spring, admin_user):
    response = admin_client.post(
        ADD, form_data(lists=[item.pk for item in spring["lists"]])
    )

    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert campaign.name == "Spring sale"
    assert campaign.opt_out_footer == FOOTER
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.created_by == admin_user
    assert set(campaign.lists.all()) == set(spring["lists"])


def test_a_cleared_footer_means_no_footer(admin_client):
    admin_client.post(ADD, form_data(opt_out_footer=""))

    assert Campaign.objects.get().opt_out_footer == ""


def test_an_unknown_placeholder_is_refused_on_save(admin_client, spring):
    response = admin_client.post(
        ADD, form_data(body="Hi {frist_name}!", lists=[spring["lists"][0].pk])
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert "Unknown placeholder {frist_name}" in html
    assert "Did you mean {first_name}?" in html
    assert not Campaign.objects.exists()


def test_an_attribute_of_the_chosen_lists_is_a_known_placeholder(admin_client, spring):
    response = admin_client.post(
        ADD, form_data(body="See you in {city}!", lists=[spring["lists"][0].pk])
    )

    assert response.status_code == 302
    assert Campaign.objects.get().body == "See you in {city}!"


def test_the_fallback_must_differ_from_the_provider(admin_client):
    response = admin_client.post(ADD, form_data(fallback_provider="locmem"))

    assert response.status_code == 200
    assert "The fallback must be another provider" in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_draft_can_be_edited(admin_client, spring):
    campaign = CampaignFactory(lists=[spring["lists"][0]])

    response = admin_client.post(
        change_url(campaign),
        form_data(body="New text {first_name|there}", lists=[spring["lists"][1].pk]),
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.body == "New text {first_name|there}"
    assert list(campaign.lists.all()) == [spring["lists"][1]]


def test_a_refusal_by_the_service_is_shown_as_an_error(
    admin_client, spring, monkeypatch
):
    # As if the campaign started sending between the page load and the save.
    def refuse(**kwargs):
        raise CampaignError("Campaign 1 is sending: its body can no longer change")

    monkeypatch.setattr(composer, "campaign_update", refuse)
    campaign = CampaignFactory(body="Old text")

    response = admin_client.post(change_url(campaign), form_data(body="New text"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "its body can no longer change" in html
    assert ">\nNew text</textarea>" in html  # what was typed is kept
    campaign.refresh_from_db()
    assert campaign.body == "Old text"


@pytest.mark.parametrize("status", Campaign.Status.values)
def test_the_page_works_in_every_status(admin_client, spring, status):
    campaign = CampaignFactory(status=status, lists=spring["lists"])

    response = admin_client.get(change_url(campaign))

    assert response.status_code == 200
    assert 'id="composer-sample-text"' in response.content.decode()


def test_a_sending_campaign_shows_its_text_read_only(admin_client, spring):
    campaign = CampaignFactory(
        status=Campaign.Status.SENDING,
        started_at=timezone.now(),
        body="Hi {first_name|there}, sale!",
        lists=spring["lists"],
    )

    response = admin_client.get(change_url(campaign))

    html = response.content.decode()
    assert 'id="id_body"' not in html
    assert 'id="id_opt_out_footer"' not in html
    assert "Hi {first_name|there}, sale!" in html
    assert "Sending has started: the text can no longer change." in html
    assert 'data-live="false"' in html
    assert 'id="composer-replace-gsm"' not in html
    # The preview still shows what contacts get.
    assert "Hi Ann, sale!" in html


def test_a_user_who_may_only_view_sees_the_preview_without_the_editor(client, spring):
    client.force_login(staff_with("view_campaign", "contacts.view_contact"))
    campaign = CampaignFactory(body="Hi {first_name|there}", lists=spring["lists"])

    html = client.get(change_url(campaign)).content.decode()

    assert 'data-live="false"' in html
    assert 'id="id_body"' not in html
    assert "Hi Ann" in html


def test_a_post_cannot_change_the_text_of_a_sending_campaign(admin_client, spring):
    campaign = CampaignFactory(
        status=Campaign.Status.SENDING, body="Original", lists=[spring["lists"][0]]
    )

    response = admin_client.post(
        change_url(campaign),
        form_data(name="Renamed", body="Changed", lists=[spring["lists"][1].pk]),
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed"  # the name may change at any time
    assert campaign.body == "Original"
    assert campaign.opt_out_footer == ""
    assert list(campaign.lists.all()) == [spring["lists"][0]]


def test_a_campaign_paused_before_it_started_can_still_be_edited(admin_client, spring):
    campaign = CampaignFactory(
        status=Campaign.Status.PAUSED, body="Old text", lists=[spring["lists"][0]]
    )

    page = admin_client.get(change_url(campaign)).content.decode()
    response = admin_client.post(
        change_url(campaign), form_data(body="New text", lists=[spring["lists"][1].pk])
    )

    assert 'id="id_body"' in page
    assert 'data-live="true"' in page
    assert "can no longer change" not in page
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.body == "New text"
    assert list(campaign.lists.all()) == [spring["lists"][1]]


def test_a_campaign_paused_while_sending_stays_locked(admin_client, spring):
    campaign = CampaignFactory(
        status=Campaign.Status.PAUSED, started_at=timezone.now(), body="Original"
    )

    page = admin_client.get(change_url(campaign)).content.decode()
    admin_client.post(change_url(campaign), form_data(body="Changed"))

    assert 'id="id_body"' not in page
    assert "Sending has started: the text can no longer change." in page
    campaign.refresh_from_db()
    assert campaign.body == "Original"


@pytest.mark.parametrize(
    ("status", "started", "locked"),
    [
        (Campaign.Status.DRAFT, False, False),
        (Campaign.Status.SCHEDULED, False, False),
        (Campaign.Status.PAUSED, False, False),
        (Campaign.Status.PAUSED, True, True),
        (Campaign.Status.SENDING, True, True),
        (Campaign.Status.COMPLETED, True, True),
        (Campaign.Status.CANCELLED, False, True),
        (Campaign.Status.FAILED, False, True),
    ],
)
def test_the_page_follows_the_content_lock(admin_client, status, started, locked):
    campaign = CampaignFactory(
        status=status, started_at=timezone.now() if started else None
    )

    html = admin_client.get(change_url(campaign)).content.decode()

    assert content_locked(campaign) is locked
    assert ('id="id_body"' not in html) is locked
    assert ('id="composer-locked"' in html) is locked


def test_the_page_reads_like_a_tool(admin_client):
    add = admin_client.get(ADD).content.decode()
    campaign = CampaignFactory(name="Spring sale", status=Campaign.Status.SCHEDULED)
    change = admin_client.get(change_url(campaign)).content.decode()

    assert "<h1>New campaign</h1>" in add
    assert "<title>New campaign |" in add
    assert "<h1>Spring sale (scheduled)</h1>" in change
    assert "<title>Spring sale (scheduled) |" in change
    for html in (add, change):
        assert "<h1>Add campaign</h1>" not in html
        assert "<h1>Change campaign</h1>" not in html
        assert 'name="_continue"' in html
        assert 'name="_save"' in html
        assert 'name="_addanother"' not in html


def _order(html: str, *markers: str) -> list[int]:
    return [html.index(marker) for marker in markers]


def test_the_fields_come_in_the_order_a_marketer_works(admin_client):
    campaign = CampaignFactory()

    for url in (ADD, change_url(campaign)):
        html = admin_client.get(url).content.decode()
        # Name, audience, message with its live panel, then delivery settings.
        positions = _order(
            html,
            'id="id_name"',
            'id="id_lists"',
            'id="id_body"',
            'id="id_opt_out_footer"',
            'id="composer"',
            'id="id_provider"',
            'id="id_fallback_provider"',
            'id="id_sender"',
        )
        assert positions == sorted(positions)


def test_saving_a_new_campaign_lands_on_its_page(admin_client, spring):
    response = admin_client.post(ADD, form_data(lists=[spring["lists"][0].pk]))

    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert response.url == change_url(campaign)
    page = admin_client.get(response.url).content.decode()
    assert "The campaign “Spring sale” was created." in page


def test_save_and_continue_still_lands_on_the_page(admin_client):
    response = admin_client.post(ADD, form_data(_continue="1"))

    assert response.url == change_url(Campaign.objects.get())


def test_the_sending_hours_are_called_so(admin_client):
    window = {"start": "09:00", "end": "20:00", "weekdays": [0, 1, 2, 3, 4]}
    campaign = CampaignFactory(send_window=window)
    anytime = CampaignFactory()

    html = admin_client.get(change_url(campaign)).content.decode()
    empty = admin_client.get(change_url(anytime)).content.decode()

    assert "Sending hours:</label>" in html
    assert f"09:00{EN_DASH}20:00 Mon{EN_DASH}Fri, recipient&#x27;s local time" in html
    assert "Any time of day (sending hours can be set when scheduling)" in empty
    for page in (html, empty):
        assert "quiet hours" not in page.lower()


# --- The compose endpoint ------------------------------------------------------------


def test_a_gsm_text_is_counted_with_its_footer(admin_client):
    plain = compose(admin_client, body="a" * 160).json()
    footed = compose(admin_client, body="a" * 160, opt_out_footer=FOOTER).json()

    assert plain["message"] == {
        "text": "a" * 160,
        "characters": 160,
        "encoding": "gsm7",
        "encoding_label": "GSM-7",
        "segments": 1,
        "per_segment": 160,
        "remaining": 0,
    }
    assert plain["ucs2_characters"] == []
    # 160 + a new line + 21: two segments of 153.
    assert footed["message"]["text"] == "a" * 160 + "\n" + FOOTER
    assert footed["message"]["characters"] == 182
    assert (footed["message"]["segments"], footed["message"]["per_segment"]) == (2, 153)
    assert footed["message"]["remaining"] == 153 * 2 - 182


def test_ucs2_characters_are_listed_with_their_gsm_stand_ins(admin_client):
    body = (
        f"Don{RIGHT_QUOTE}t miss it {EM_DASH} 20% off{ELLIPSIS} {RIGHT_QUOTE}til "
        "Sunday 🎉"
    )
    answer = compose(
        admin_client, body=body, opt_out_footer=f"Reply STOP{NO_BREAK_SPACE}to stop"
    )

    assert answer.status_code == 200
    data = answer.json()
    assert (data["message"]["encoding"], data["message"]["encoding_label"]) == (
        "ucs2",
        "UCS-2",
    )
    assert data["message"]["per_segment"] == 70
    rows = {row["character"]: row for row in data["ucs2_characters"]}
    assert rows[RIGHT_QUOTE]["count"] == 2
    assert rows[RIGHT_QUOTE]["replacement"] == "'"
    assert rows[EM_DASH]["replacement"] == "-"
    assert rows[ELLIPSIS]["replacement"] == "..."
    assert rows["🎉"]["replacement"] is None  # no equivalent
    assert rows[NO_BREAK_SPACE]["name"] == "no-break space"  # the footer counts too
    assert data["gsm"] == {
        "body": "Don't miss it - 20% off... 'til Sunday 🎉",
        "opt_out_footer": "Reply STOP to stop",
        "changes": True,
    }


def test_replacing_makes_a_gsm_text(admin_client):
    typed = f"It{RIGHT_QUOTE}s {LEFT_DOUBLE}on{RIGHT_DOUBLE} now"
    converted = compose(admin_client, body=typed).json()["gsm"]["body"]

    data = compose(admin_client, body=converted).json()

    assert converted == 'It\'s "on" now'
    assert data["message"]["encoding"] == "gsm7"
    assert data["gsm"]["changes"] is False


def test_the_sample_is_rendered_for_the_chosen_contact(admin_client, spring):
    lists = [item.pk for item in spring["lists"]]
    body = "Hi {first_name}, see you in {city|town}"

    first = compose(admin_client, body=body, opt_out_footer=FOOTER, lists=lists)
    chosen = compose(
        admin_client,
        body=body,
        opt_out_footer=FOOTER,
        lists=lists,
        sample=spring["bob"].pk,
    )

    assert first.json()["message"]["text"] == f"Hi Ann, see you in Austin\n{FOOTER}"
    assert first.json()["sample"] == spring["ann"].pk
    assert chosen.json()["message"]["text"] == f"Hi Bob, see you in town\n{FOOTER}"
    assert chosen.json()["sample"] == spring["bob"].pk
    # Only the people who would get it are offered; the admin sees their numbers.
    assert [sample["label"] for sample in chosen.json()["samples"]] == [
        "Ann Lee · +14155550101",
        "Bob Ray · +14155550102",
    ]


def test_without_an_audience_placeholders_show_their_defaults(admin_client):
    data = compose(admin_client, body="Hi {first_name|there}!").json()

    assert data["message"]["text"] == "Hi there!"
    assert (data["samples"], data["sample"], data["lists_chosen"]) == ([], None, False)


def test_no_contact_data_for_users_who_cannot_see_contacts(client, spring):
    client.force_login(staff_with("change_campaign"))
    lists = [item.pk for item in spring["lists"]]
    body = "{phone} {full_name|nobody} {city|somewhere}"

    answers = [
        compose(client, body=body, lists=lists, sample=contact.pk).json()
        for contact in (spring["ann"], spring["bob"])
    ]

    for data in answers:
        # Placeholder defaults, whichever contact the request names.
        assert data["message"]["text"] == " nobody somewhere"
        assert (data["samples"], data["sample"]) == ([], None)
        assert data["contacts_hidden"] is True
        # Attribute names may be offered, their values are not shown.
        assert "city" in data["placeholders"]
        assert "Austin" not in str(data)
        # The audience's size and cost are not contact data.
        assert data["audience"]["recipients"] == 2


def test_the_page_shows_no_contact_data_to_users_who_cannot_see_contacts(
    client, spring
):
    client.force_login(staff_with("change_campaign", "view_campaign"))
    campaign = CampaignFactory(
        body="Hi {first_name|there} in {city|town}", lists=spring["lists"]
    )

    response = client.get(change_url(campaign))

    html = response.content.decode()
    assert response.context["composer"]["message"]["text"] == "Hi there in town"
    for secret in ("Ann", "Lee", "Austin", "+14155550101", "4155550101"):
        assert secret not in html
    assert "Placeholder defaults (contacts are not shown to you)" in html
    assert 'data-placeholder="city"' in html


def test_contact_viewers_see_samples_with_their_numbers(client, spring):
    client.force_login(staff_with("change_campaign", "contacts.view_contact"))

    data = compose(client, body="Hi {city}", lists=[spring["lists"][0].pk]).json()

    assert data["samples"][0]["label"] == "Ann Lee · +14155550101"
    assert data["message"]["text"] == "Hi Austin"


def test_unknown_placeholders_and_syntax_errors_are_reported(admin_client, spring):
    lists = [spring["lists"][0].pk]

    unknown = compose(admin_client, body="Hi {First_name} in {city}", lists=lists)
    broken = compose(admin_client, body="Hi {first_name", lists=lists)

    [problem] = unknown.json()["problems"]
    assert problem.startswith("Unknown placeholder {First_name}")
    assert "Did you mean {first_name}?" in problem
    assert unknown.json()["placeholders"] == [
        "first_name",
        "last_name",
        "full_name",
        "phone",
        "city",
    ]
    assert broken.status_code == 200
    assert broken.json()["problems"][0].startswith('Unclosed "{" at character 4')
    assert broken.json()["message"]["text"] == "Hi {first_name"


def test_attribute_keys_that_are_no_placeholder_names_are_not_offered(admin_client):
    contact_list = ContactListFactory()
    ContactFactory(
        attributes={"shoe size": 42, "a|b": 1, "{x}": 1, "tier": "gold", "e.g-1_x": 2}
    ).lists.add(contact_list)

    data = compose(admin_client, body="Hi", lists=[contact_list.pk]).json()
    html = admin_client.get(
        change_url(CampaignFactory(lists=[contact_list]))
    ).content.decode()

    assert data["placeholders"][4:] == ["e.g-1_x", "tier"]
    assert 'data-placeholder="tier"' in html
    assert "shoe size" not in html


@override_settings(SMS_PRICE_PER_SEGMENT={"locmem": Decimal("0.05")})
def test_the_audience_after_exclusions_and_its_cost(admin_client, spring):
    lists = [item.pk for item in spring["lists"]]

    data = compose(
        admin_client, body="x" * 150, opt_out_footer=FOOTER, lists=lists
    ).json()

    assert data["audience"] == {
        "in_lists": 5,
        "in_segments": 0,
        "frequency_capped": 0,
        "contacts": 4,
        "duplicates": 1,
        "opted_out": 1,
        "suppressed": 1,
        "excluded": 2,
        "recipients": 2,
        "uncertain_zones": 0,
    }
    # 2 segments each, for 2 recipients, at 0.05.
    assert data["cost"]["amount"] == "0.20"
    assert data["cost"]["text"] == "$0.20"
    assert data["cost"]["exact"] is True


def test_the_cost_is_marked_as_an_estimate_when_sampled(
    admin_client, spring, monkeypatch
):
    # The composer renders the audience sample campaign_estimate renders.
    monkeypatch.setattr(preview, "ESTIMATE_SAMPLE", 1)
    lists = [spring["lists"][0].pk]

    data = compose(admin_client, body="Hi {first_name}", lists=lists).json()

    assert data["cost"]["exact"] is False
    assert data["cost"]["text"].startswith("about ")


def test_the_page_shows_the_audience_before_any_typing(admin_client, spring):
    campaign = CampaignFactory(body="Hello", lists=spring["lists"])

    html = admin_client.get(change_url(campaign)).content.decode()

    assert '<td id="composer-recipients">2</td>' in html
    assert f'<td id="composer-opted-out">{MINUS}1</td>' in html
    assert "Hello" in html


def test_the_endpoint_needs_a_staff_user_with_campaign_permissions(client):
    assert compose(client).status_code == 302  # to the login page
    client.force_login(staff_with())
    assert compose(client).status_code == 403
    client.force_login(staff_with("add_campaign"))
    assert compose(client).status_code == 200


def test_the_endpoint_only_answers_posts(admin_client):
    assert admin_client.get(COMPOSE).status_code == 405


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lists": ["999999"]}, "Contact lists: Select a valid choice."),
        ({"lists": ["abc"]}, "“abc” is not a valid value."),
        ({"lists": ["99999999999999999999"]}, "Select a valid choice."),
        ({"body": "x" * 1601}, "Body: Ensure this value has at most 1600 characters"),
        ({"provider": "nope"}, "Provider: Select a valid choice."),
        ({"sample": "x"}, "Sample: Enter a whole number."),
    ],
)
def test_bad_input_is_a_400_with_the_reason(admin_client, fields, message):
    response = compose(admin_client, **fields)

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_the_endpoint_runs_a_fixed_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    small, large = ContactListFactory(), ContactListFactory()
    for contact in ContactFactory.create_batch(3):
        contact.lists.add(small)
    for contact in ContactFactory.create_batch(40, attributes={"city": "Austin"}):
        contact.lists.add(large)
    body = "Hi {first_name}, {city|see you}"

    for contact_list in (small, large):
        # Session, user, lists, newest membership and suppression, the estimate's
        # counts and attribute keys, the audience's keys, the contacts rendered.
        with django_assert_max_num_queries(14):
            response = compose(admin_client, body=body, lists=[contact_list.pk])
        assert response.status_code == 200
        # While the marketer types, the audience is not counted again.
        with django_assert_max_num_queries(6):
            response = compose(admin_client, body=body + "!", lists=[contact_list.pk])
        assert (
            response.json()["audience"]["recipients"] == contact_list.contacts.count()
        )


def test_new_contacts_in_a_list_are_counted_at_once(admin_client, spring):
    lists = [spring["lists"][0].pk]
    before = compose(admin_client, body="Hi", lists=lists).json()["audience"]

    ContactFactory(phone="+14155550199").lists.add(spring["lists"][0])
    after = compose(admin_client, body="Hi", lists=lists).json()["audience"]

    assert (before["recipients"], after["recipients"]) == (2, 3)


def test_a_large_audience_is_counted_after_the_page_loads(
    admin_client, spring, monkeypatch
):
    monkeypatch.setattr(composer, "INLINE_AUDIENCE_LIMIT", 1)
    campaign = CampaignFactory(body="Hi {first_name}", lists=spring["lists"])

    response = admin_client.get(change_url(campaign))

    html = response.content.decode()
    assert response.context["composer"]["audience_pending"] is True
    assert '<td id="composer-recipients">…</td>' in html
    assert "Counting the audience…" in html
    assert "Hi Ann" in html  # the preview does not wait for the counts
    # The panel's first request counts it.
    data = compose(admin_client, body="Hi {first_name}", lists=[spring["lists"][0].pk])
    assert data.json()["audience"]["recipients"] == 2


def staff_with(*permissions: str) -> User:
    """A staff user with these permissions: "change_campaign" (of campaigns) or
    "app.codename"."""
    user = User.objects.create_user(
        f"staff{User.objects.count()}", password="x", is_staff=True
    )
    for permission in permissions:
        app, _, codename = permission.rpartition(".")
        user.user_permissions.add(
            Permission.objects.get(
                content_type__app_label=app or "campaigns", codename=codename
            )
        )
    return user


def test_the_composer_counts_recipients_whose_time_zone_is_uncertain(admin_client):
    contact_list = ContactListFactory()
    for phone, zone in [
        ("+61412345678", ""),  # an Australian mobile: every Australian zone
        ("+61412345679", "Australia/Perth"),  # the same, its zone set by hand
        ("+61292123456", ""),  # a Sydney landline: one zone
        ("+79161234567", ""),  # a Moscow mobile: every zone of +7
    ]:
        ContactFactory(phone=phone, time_zone_set=zone).lists.add(contact_list)

    data = compose(admin_client, body="Hi", lists=[contact_list.pk]).json()
    html = admin_client.get(
        change_url(CampaignFactory(lists=[contact_list]))
    ).content.decode()

    assert data["audience"]["uncertain_zones"] == 2
    assert "Time zone uncertain" in html

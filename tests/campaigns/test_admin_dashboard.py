import re
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from campaigns.admin.dashboard import CappedCountPaginator
from campaigns.models import Campaign, CampaignSnapshot, DeliveryEvent, Message
from campaigns.sending.liveness import campaign_beat
from campaigns.stats import campaign_snapshot_take
from contacts.models import ConsentEvent
from tests.factories import CampaignFactory, ContactFactory, MessageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeats_from_other_tests():
    cache.clear()


class _Finder(HTMLParser):
    """The attributes and text of the element with a given id."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id = element_id
        self.attrs: dict[str, str] | None = None
        self.text = ""
        self._tag = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        if self._depth:
            if tag == self._tag:
                self._depth += 1
        elif dict(attrs).get("id") == self.element_id and self.attrs is None:
            self.attrs, self._tag, self._depth = dict(attrs), tag, 1

    def handle_endtag(self, tag):
        if self._depth and tag == self._tag:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.text += data


def element(response, element_id: str) -> tuple[dict[str, str], str] | None:
    finder = _Finder(element_id)
    finder.feed(response.content.decode())
    if finder.attrs is None:
        return None
    return finder.attrs, " ".join(finder.text.split())


def count(response, key: str) -> int:
    attrs, _ = element(response, f"dashboard-count-{key}")
    return int(attrs["data-count"])


def change_url(campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def progress_url(campaign) -> str:
    return reverse("admin:campaigns_campaign_progress", args=[campaign.pk])


def staff_with(*permissions: str) -> User:
    """A staff user with these permissions ("app.codename")."""
    user = User.objects.create_user(
        f"staff{User.objects.count()}", password="x", is_staff=True
    )
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def messages(campaign, status, n=1, **fields):
    return [
        MessageFactory(campaign=campaign, status=status, **fields) for _ in range(n)
    ]


@pytest.fixture
def campaign():
    """A campaign half way through: 15 messages in every state."""
    campaign = CampaignFactory(
        name="Spring sale",
        status=Campaign.Status.SENDING,
        started_at=timezone.now() - timedelta(minutes=30),
    )
    delivered = messages(
        campaign,
        "delivered",
        4,
        price=Decimal("0.0075"),
        currency="USD",
        submitted_at=timezone.now() - timedelta(minutes=20),
    )
    messages(campaign, "sent", 2)
    messages(campaign, "submitted", 1)
    messages(campaign, "queued", 2)
    messages(campaign, "sending", 1)
    messages(campaign, "undelivered", 2, error_code="30003", error_reason="Unreachable")
    messages(campaign, "rejected", 1, error_code="30007", error_reason="Spam filter")
    messages(
        campaign, "failed", 1, error_code=Message.SkipReason.OPTED_OUT, error_reason="x"
    )
    messages(campaign, "unknown", 1)
    # Replied STOP to this campaign's message.
    ConsentEvent.objects.create(
        phone=delivered[0].to, kind=ConsentEvent.Kind.OPT_OUT, source="keyword"
    )
    return campaign


def test_the_campaign_page_shows_progress_cost_rate_and_failure_reasons(
    admin_client, campaign
):
    response = admin_client.get(change_url(campaign))

    assert response.status_code == 200
    assert count(response, "queued") == 3  # queued + being sent
    assert count(response, "sent") == 3  # awaiting a receipt
    assert count(response, "delivered") == 4
    assert count(response, "failed") == 3  # the opted-out skip is not a failure
    assert count(response, "opted-out") == 1  # skipped: had opted out before
    assert count(response, "replied-stop") == 1  # replied STOP to this message
    assert count(response, "unknown") == 1
    # 4 delivered out of 7 outcomes (the skipped message never reached a carrier).
    assert element(response, "dashboard-rate")[1] == "57.1%"
    assert element(response, "dashboard-cost")[1] == "$0.03"
    attrs, _ = element(response, "dashboard-progress")
    assert attrs["data-done-percent"] == "80.0"

    _, failures = element(response, "dashboard-failures")
    assert "30003 Unreachable 2" in failures
    assert "30007 Spam filter 1" in failures
    assert "opted_out Not sent: the recipient had opted out 1" in failures
    html = response.content.decode()
    messages_url = reverse("admin:campaigns_message_changelist")
    assert (
        f'href="{messages_url}?campaign__id__exact={campaign.pk}'
        '&amp;outcome=failed&amp;error_code=30003&amp;error_reason=Unreachable"'
    ) in html
    _, links = element(response, "dashboard-messages")
    assert links == "Messages: all · delivered · failed · queued · awaiting receipt"
    assert (
        f'href="{messages_url}?campaign__id__exact={campaign.pk}&amp;outcome=delivered"'
    ) in html


def test_the_page_counts_once_per_max_age_and_leaves_stale_figures_to_the_script(
    admin_client, campaign
):
    admin_client.get(change_url(campaign))
    admin_client.get(change_url(campaign))
    snapshots = CampaignSnapshot.objects.filter(campaign=campaign)
    assert snapshots.count() == 1

    snapshots.update(taken_at=timezone.now() - timedelta(seconds=31))
    MessageFactory(campaign=campaign, status="delivered")
    response = admin_client.get(change_url(campaign))

    # Shown at once, marked for the page's script to refresh.
    assert snapshots.count() == 1
    assert element(response, "dashboard")[0]["data-stale"] == "true"
    assert count(response, "delivered") == 4

    refreshed = admin_client.get(progress_url(campaign), {"format": "html"})
    assert snapshots.count() == 2
    assert count(refreshed, "delivered") == 5
    assert element(refreshed, "dashboard")[0]["data-stale"] == "false"
    admin_client.get(progress_url(campaign))
    assert snapshots.count() == 2


def test_the_progress_endpoint_answers_json(admin_client, campaign):
    response = admin_client.get(progress_url(campaign))

    assert response.status_code == 200
    data = response.json()
    assert data["campaign"] == campaign.pk
    assert data["status"] == "sending"
    assert data["live"] is True
    assert data["counts"] == {
        "total": 15,
        "queued": 3,
        "sent": 3,
        "delivered": 4,
        "failed": 3,
        "opted_out": 2,
        "skipped_opted_out": 1,
        "opt_outs": 1,
        "replied_stop": 1,
        "cancelled": 0,
        "frequency_capped": 0,
        "unknown": 1,
        "unique_clicks": 0,
        "clicks": 0,
    }
    assert data["delivery_rate"] == pytest.approx(4 / 7)
    assert Decimal(data["cost"]) == Decimal("0.03")
    assert data["currency"] == "USD"
    assert data["failure_reasons"][0] == {
        "code": "30003",
        "reason": "Unreachable",
        "count": 2,
        "skipped": False,
    }
    assert data["as_of"]


def test_the_progress_endpoint_needs_permission(client, django_user_model, campaign):
    response = client.get(progress_url(campaign))
    assert response.status_code == 302
    assert "/login/" in response["Location"]

    staff = django_user_model.objects.create_user("staff", password="x", is_staff=True)
    client.force_login(staff)
    assert client.get(progress_url(campaign)).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    assert client.get(progress_url(campaign)).status_code == 200


def test_the_chart_draws_the_snapshots_over_time(admin_client, campaign):
    now = timezone.now()
    for minutes_ago in (20, 10):
        snapshot = campaign_snapshot_take(campaign=campaign)
        CampaignSnapshot.objects.filter(pk=snapshot.pk).update(
            taken_at=now - timedelta(minutes=minutes_ago)
        )
    campaign_snapshot_take(campaign=campaign)

    response = admin_client.get(change_url(campaign))

    attrs, text = element(response, "dashboard-chart")
    # Three snapshots, and the start of sending where every line starts from zero.
    assert attrs["data-points"] == "4"
    assert "Delivery over time" in text
    assert "Messages" in text
    assert "Delivery rate" in text
    assert "0%" in text
    assert "100%" in text
    html = response.content.decode()
    for line in ("delivered", "failed", "sent", "rate"):
        points = re.search(
            rf'class="dashboard-line dashboard-line-{line}" points="([^"]+)"', html
        )
        assert points, line
        pairs = points.group(1).split()
        assert all(re.fullmatch(r"\d+\.\d,\d+\.\d", pair) for pair in pairs)
        # The rate is unknown at the start: its line begins at the first snapshot.
        assert len(pairs) == (3 if line == "rate" else 4)


def test_no_worker_hint_until_a_worker_reports(admin_client, campaign):
    # Past the grace period a worker has to pick a campaign up.
    Campaign.objects.filter(pk=campaign.pk).update(
        updated_at=timezone.now() - timedelta(minutes=1)
    )
    response = admin_client.get(change_url(campaign))
    _, hint = element(response, "dashboard-worker-missing")
    assert "No worker has picked this campaign up yet" in hint
    assert "python manage.py run_worker" in hint

    campaign_beat(campaign.pk)
    response = admin_client.get(change_url(campaign))
    assert element(response, "dashboard-worker-missing") is None


def test_the_waiting_reason_is_shown(admin_client, campaign):
    Campaign.objects.filter(pk=campaign.pk).update(
        waiting_reason="Outside the send window; next recipients' window opens 09:00 UTC."
    )

    response = admin_client.get(change_url(campaign))

    _, waiting = element(response, "dashboard-waiting")
    assert "Outside the send window" in waiting
    assert element(response, "dashboard-worker-missing") is None


def test_a_draft_shows_a_one_line_hint_and_the_add_page_nothing(admin_client):
    draft = CampaignFactory()

    response = admin_client.get(change_url(draft))
    assert response.status_code == 200
    _, hint = element(response, "dashboard-hint")
    assert hint == "Progress appears here once the campaign is sent."
    assert element(response, "dashboard-progress") is None
    assert not CampaignSnapshot.objects.exists()

    response = admin_client.get(reverse("admin:campaigns_campaign_add"))
    assert response.status_code == 200
    assert element(response, "dashboard") is None


def test_a_scheduled_campaign_says_when_and_whether_a_worker_is_missing(admin_client):
    later = CampaignFactory(
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now() + timedelta(days=1),
    )
    due = CampaignFactory(
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now() - timedelta(minutes=1),
    )

    response = admin_client.get(change_url(later))
    assert "Scheduled for" in element(response, "dashboard-hint")[1]
    assert element(response, "dashboard-worker-missing") is None
    response = admin_client.get(change_url(due))
    assert element(response, "dashboard-worker-missing") is not None


@pytest.mark.parametrize("status", Campaign.Status.values)
def test_the_page_renders_in_every_status(admin_client, status):
    started = None if status == Campaign.Status.DRAFT else timezone.now()
    campaign = CampaignFactory(
        status=status, started_at=started, completed_at=timezone.now()
    )
    if status != Campaign.Status.DRAFT:
        messages(campaign, "delivered", 1)

    response = admin_client.get(change_url(campaign))

    assert response.status_code == 200
    assert element(response, "dashboard")[0]["data-status"] == status
    assert admin_client.get(progress_url(campaign)).status_code == 200


def test_a_finished_campaign_with_nothing_in_flight_stops_refreshing(admin_client):
    campaign = CampaignFactory(
        status=Campaign.Status.COMPLETED,
        started_at=timezone.now() - timedelta(minutes=10),
        completed_at=timezone.now() - timedelta(minutes=5),
    )
    messages(campaign, "delivered", 2)

    response = admin_client.get(change_url(campaign))

    assert element(response, "dashboard")[0]["data-live"] == "false"
    assert count(response, "delivered") == 2


def test_the_changelist_shows_status_and_progress_in_bounded_queries(
    admin_client, django_assert_max_num_queries
):
    for n in range(30):
        campaign = CampaignFactory(status=Campaign.Status.SENDING, name=f"Promo {n}")
        messages(campaign, "delivered", n % 3)
        messages(campaign, "queued", 1)
        campaign_snapshot_take(campaign=campaign)
        MessageFactory(campaign=campaign, status="delivered")  # after the snapshot
    CampaignFactory(name="Unsent draft")

    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("admin:campaigns_campaign_changelist"))

    html = response.content.decode()
    assert html.count('class="campaign-status campaign-status-sending"') == 30
    # The figures come from the snapshots, not from counting the messages.
    assert html.count("2 / 3 delivered") == 10
    assert html.count("0 / 1 delivered") == 10
    assert "Not sent yet" in html
    assert html.count('class="dashboard-bar-delivered"') == 20


def test_message_changelist_filtered_by_campaign_and_status(admin_client, campaign):
    other = CampaignFactory(name="Other")
    messages(other, "failed", 1, error_code="30003")
    url = reverse("admin:campaigns_message_changelist")

    response = admin_client.get(
        url, {"campaign__id__exact": campaign.pk, "status__exact": "delivered"}
    )

    assert response.status_code == 200
    assert [m.status for m in response.context["cl"].result_list] == ["delivered"] * 4
    assert "Messages of campaign “Spring sale”" in response.content.decode()
    attrs, name = element(response, "messages-campaign")
    assert (attrs["href"], name) == (change_url(campaign), "Spring sale")

    response = admin_client.get(
        url,
        {
            "campaign__id__exact": campaign.pk,
            "status__in": "undelivered,failed,rejected,expired",
            "error_code": "30003",
        },
    )
    results = response.context["cl"].result_list
    assert len(results) == 2
    assert {(m.campaign_id, m.error_code) for m in results} == {(campaign.pk, "30003")}
    assert element(response, "messages-count")[1] == "2 messages"


def test_message_changelist_caps_its_count(
    admin_client, campaign, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(CappedCountPaginator, "cap", 10)
    url = reverse("admin:campaigns_message_changelist")

    with django_assert_max_num_queries(10):
        response = admin_client.get(url)

    assert response.status_code == 200
    assert element(response, "messages-count")[1] == "More than 10 messages"
    assert response.context["cl"].result_count == 10


def test_message_search_finds_exact_numbers_and_provider_ids(admin_client):
    campaign = CampaignFactory()
    contact = ContactFactory(phone="+14155550123")
    wanted = MessageFactory(campaign=campaign, contact=contact, status="delivered")
    by_id = MessageFactory(campaign=campaign, provider_message_id="SM-42")
    MessageFactory(campaign=campaign)
    url = reverse("admin:campaigns_message_changelist")

    def found(term: str) -> list[int]:
        response = admin_client.get(url, {"q": term})
        return [m.pk for m in response.context["cl"].result_list]

    assert found("(415) 555-0123") == [wanted.pk]
    assert found("+14155550123") == [wanted.pk]
    assert found("SM-42") == [by_id.pk]
    assert found(str(wanted.client_reference)) == [wanted.pk]
    assert found("4155550") == []


def test_a_cancelled_campaign_counts_its_unsent_messages_apart(admin_client):
    campaign = CampaignFactory(
        status=Campaign.Status.CANCELLED,
        started_at=timezone.now(),
        completed_at=timezone.now(),
    )
    messages(campaign, "delivered", 2)
    messages(campaign, "failed", 3, error_code="cancelled", error_reason="x")
    messages(campaign, "failed", 1, error_code="30006", error_reason="Landline")

    response = admin_client.get(change_url(campaign))

    assert count(response, "failed") == 1
    assert count(response, "cancelled") == 3
    assert element(response, "dashboard-rate")[1] == "66.7%"
    _, failures = element(response, "dashboard-failures")
    assert "cancelled Not sent: the campaign was cancelled 3" in failures


# --- Each count links to exactly what it counts ------------------------------------


def test_every_count_links_to_exactly_the_messages_it_counts(admin_client, campaign):
    # A second STOP, long after its message: not this campaign's doing.
    late = MessageFactory(
        campaign=campaign,
        status="delivered",
        submitted_at=timezone.now() - timedelta(days=30),
    )
    ConsentEvent.objects.create(
        phone=late.to, kind=ConsentEvent.Kind.OPT_OUT, source="keyword"
    )
    messages(campaign, "failed", 2, error_code="cancelled", error_reason="x")
    page = admin_client.get(change_url(campaign))
    html = page.content.decode()

    cards = re.findall(
        r'<a href="([^"]+)">[^<]+</a></span>\s*<strong id="dashboard-count-([a-z-]+)" '
        r'data-count="(\d+)"',
        html,
    )
    assert {key for _, key, _ in cards} == {
        "queued",
        "sent",
        "delivered",
        "failed",
        "opted-out",
        "replied-stop",
        "unknown",
        "cancelled",
    }
    assert count(page, "failed") == 3  # neither the opted-out nor the cancelled
    assert count(page, "opted-out") == 1
    assert count(page, "replied-stop") == 1
    for url, key, shown in cards:
        listed = admin_client.get(url.replace("&amp;", "&"))
        assert listed.status_code == 200, key
        assert len(listed.context["cl"].result_list) == int(shown), key
        assert element(listed, "messages-count")[1].startswith(f"{shown} "), key

    # Each failure reason too, skipped ones included.
    reasons = re.findall(
        r'<td><a href="([^"]+)">[^<]+</a></td>\s*<td class="dashboard-numeric" '
        r'data-count="(\d+)"',
        html,
    )
    assert len(reasons) == 4
    for url, shown in reasons:
        listed = admin_client.get(url.replace("&amp;", "&"))
        assert len(listed.context["cl"].result_list) == int(shown), url


def test_the_outcome_filter_offers_replied_stop_only_within_a_campaign(
    admin_client, campaign
):
    url = reverse("admin:campaigns_message_changelist")

    everything = admin_client.get(url).content.decode()
    one = admin_client.get(url, {"campaign__id__exact": campaign.pk}).content.decode()

    assert "Failed (sent, not delivered)" in everything
    assert "Replied STOP afterwards" not in everything
    assert "Replied STOP afterwards" in one


# --- Counting: not before the start, one at a time, not for viewers -----------------


def test_a_scheduled_campaign_is_not_counted_and_the_chart_starts_with_sending(
    admin_client,
):
    campaign = CampaignFactory(
        status=Campaign.Status.SCHEDULED,
        scheduled_at=timezone.now() + timedelta(days=7),
    )
    response = admin_client.get(change_url(campaign))
    admin_client.get(progress_url(campaign), {"fresh": 1})
    assert "Scheduled for" in element(response, "dashboard-hint")[1]
    assert not CampaignSnapshot.objects.exists()

    # Zeros an older version counted while the campaign was scheduled.
    CampaignSnapshot.objects.create(
        campaign=campaign, taken_at=timezone.now() - timedelta(days=7)
    )
    started = timezone.now() - timedelta(hours=1)
    Campaign.objects.filter(pk=campaign.pk).update(status="sending", started_at=started)
    messages(campaign, "delivered", 3)
    snapshot = campaign_snapshot_take(campaign=campaign)
    CampaignSnapshot.objects.filter(pk=snapshot.pk).update(
        taken_at=started + timedelta(minutes=30)
    )
    campaign_snapshot_take(campaign=campaign)

    response = admin_client.get(change_url(campaign))

    attrs, _ = element(response, "dashboard-chart")
    # The start of sending and the two snapshots since: not the zeros.
    assert attrs["data-points"] == "3"
    html = response.content.decode()
    delivered = re.search(r'dashboard-line-delivered" points="([^"]+)"', html)
    first, second = delivered.group(1).split()[:2]
    assert first.startswith("64.0,")  # the plot's left edge is the start
    assert 300 < float(second.split(",")[0]) < 400  # half an hour of the hour
    assert ":" in element(response, "dashboard-chart")[1]  # times, not days


def test_only_one_request_counts_at_a_time(admin_client, campaign):
    admin_client.get(change_url(campaign))
    snapshots = CampaignSnapshot.objects.filter(campaign=campaign)
    snapshots.update(taken_at=timezone.now() - timedelta(minutes=1))
    MessageFactory(campaign=campaign, status="delivered")
    # Another request is counting this campaign right now.
    assert cache.add(f"campaigns:snapshot-lock:{campaign.pk}", True, 30)

    busy = admin_client.get(progress_url(campaign), {"format": "html", "fresh": 1})

    assert snapshots.count() == 1
    assert count(busy, "delivered") == 4  # the latest figures meanwhile
    assert element(busy, "dashboard")[0]["data-live"] == "true"

    cache.delete(f"campaigns:snapshot-lock:{campaign.pk}")
    done = admin_client.get(progress_url(campaign), {"format": "html", "fresh": 1})
    assert snapshots.count() == 2
    assert count(done, "delivered") == 5
    assert cache.add(f"campaigns:snapshot-lock:{campaign.pk}", True, 30)


def test_users_who_may_only_view_never_count(client, campaign):
    client.force_login(staff_with("campaigns.view_campaign"))
    page = client.get(change_url(campaign))
    assert "Preparing the messages" in element(page, "dashboard-hint")[1]
    client.get(progress_url(campaign), {"fresh": 1})
    assert not CampaignSnapshot.objects.exists()

    campaign_snapshot_take(campaign=campaign)
    CampaignSnapshot.objects.update(taken_at=timezone.now() - timedelta(minutes=5))
    MessageFactory(campaign=campaign, status="delivered")
    for _ in range(3):
        response = client.get(progress_url(campaign), {"format": "html", "fresh": 1})

    assert CampaignSnapshot.objects.count() == 1
    assert count(response, "delivered") == 4
    assert element(response, "dashboard")[0]["data-stale"] == "false"


# --- Deleting ------------------------------------------------------------------------


def delete_url(campaign) -> str:
    return reverse("admin:campaigns_campaign_delete", args=[campaign.pk])


@pytest.mark.parametrize("status", ["sending", "paused", "completed", "cancelled"])
def test_a_campaign_that_sent_messages_cannot_be_deleted(admin_client, status):
    campaign = CampaignFactory(status=status, started_at=timezone.now())
    messages(campaign, "delivered", 5)

    page = admin_client.get(change_url(campaign))
    confirm = admin_client.get(delete_url(campaign))
    posted = admin_client.post(delete_url(campaign), {"post": "yes"})

    assert 'class="deletelink"' not in page.content.decode()
    for response in (confirm, posted):
        assert response.status_code == 302
        assert response["Location"] == change_url(campaign)
    assert "only drafts and scheduled campaigns can be deleted" in flashed(posted)[0]
    assert Campaign.objects.filter(pk=campaign.pk).exists()
    assert Message.objects.filter(campaign=campaign).count() == 5


def test_a_draft_is_deleted_through_campaign_delete_without_listing_rows(
    admin_client, django_assert_max_num_queries
):
    draft = CampaignFactory(name="Old idea")
    CampaignSnapshot.objects.create(campaign=draft)  # left from an older version
    messages(draft, "queued", 3)  # none in practice; counted, not listed

    with django_assert_max_num_queries(12):
        confirm = admin_client.get(delete_url(draft))

    html = confirm.content.decode()
    assert confirm.status_code == 200
    assert "Old idea" in html
    assert "Message:" not in html
    assert re.search(r"<li>messages: 3</li>", html, re.IGNORECASE)
    assert re.search(r"<li>campaign snapshots: 1</li>", html, re.IGNORECASE)

    response = admin_client.post(delete_url(draft), {"post": "yes"})
    assert response.status_code == 302
    assert not Campaign.objects.filter(pk=draft.pk).exists()


def test_deleting_a_campaign_that_started_meanwhile_is_refused(
    admin_client, monkeypatch
):
    scheduled = CampaignFactory(status=Campaign.Status.SCHEDULED)
    from campaigns import admin as campaign_admin
    from campaigns.sending.launch import CampaignError

    def started_meanwhile(*, campaign):
        # What campaign_delete says when the campaign left "scheduled" meanwhile.
        raise CampaignError(
            f"Campaign {campaign.pk} is sending: only drafts and scheduled campaigns "
            "can be deleted (cancel it instead)"
        )

    monkeypatch.setattr(campaign_admin, "campaign_delete", started_meanwhile)

    response = admin_client.post(delete_url(scheduled), {"post": "yes"})

    assert response.status_code == 302
    assert response["Location"] == change_url(scheduled)
    assert Campaign.objects.filter(pk=scheduled.pk).exists()
    assert "is sending" in flashed(response)[0]
    from django.contrib.admin.models import LogEntry

    assert not LogEntry.objects.exists()  # rolled back with the deletion


def test_bulk_delete_refuses_a_selection_with_sent_campaigns(admin_client):
    draft = CampaignFactory(name="Draft one")
    sending = CampaignFactory(
        name="Big send", status="sending", started_at=timezone.now()
    )
    messages(sending, "delivered", 3)
    changelist = reverse("admin:campaigns_campaign_changelist")
    selection = {
        "action": "delete_selected",
        "_selected_action": [draft.pk, sending.pk],
    }

    confirm = admin_client.post(changelist, selection)
    admin_client.post(changelist, {**selection, "post": "yes"})

    _, refused = element(confirm, "delete-refused")
    assert "Big send (sending)" in refused
    assert "Draft one" not in refused
    assert "Message:" not in confirm.content.decode()
    assert Campaign.objects.count() == 2

    admin_client.post(
        changelist,
        {"action": "delete_selected", "_selected_action": [draft.pk], "post": "yes"},
    )
    assert list(Campaign.objects.all()) == [sending]


def test_messages_and_receipts_cannot_be_added_changed_or_deleted(admin_client):
    message = MessageFactory(status="delivered", body="Hello")
    event = DeliveryEvent.objects.create(
        provider="locmem", provider_message_id="SM-1", message=message
    )
    message_change = reverse("admin:campaigns_message_change", args=[message.pk])

    page = admin_client.get(message_change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(message_change, {"body": "Changed"}).status_code == 403
    assert admin_client.get(reverse("admin:campaigns_message_add")).status_code == 403
    for name, obj in (("message", message), ("deliveryevent", event)):
        url = reverse(f"admin:campaigns_{name}_delete", args=[obj.pk])
        assert admin_client.post(url, {"post": "yes"}).status_code == 403
    changelist = admin_client.get(reverse("admin:campaigns_deliveryevent_changelist"))
    assert f"Message {message.pk}</a>" in changelist.content.decode()
    message.refresh_from_db()
    assert message.body == "Hello"
    assert DeliveryEvent.objects.filter(pk=event.pk).exists()


# --- Contact data in the message list ---------------------------------------------


def test_numbers_and_texts_are_masked_for_staff_who_may_not_view_contacts(client):
    contact = ContactFactory(phone="+14155550123", first_name="Zed")
    message = MessageFactory(contact=contact, status="delivered", body="Hi Zed")
    DeliveryEvent.objects.create(
        provider="locmem",
        recipient="+14155550123",
        message=message,
        payload={"to": "+14155550123"},
    )
    changelist = reverse("admin:campaigns_message_changelist")
    detail = reverse("admin:campaigns_message_change", args=[message.pk])
    receipts = reverse("admin:campaigns_deliveryevent_changelist")
    client.force_login(
        staff_with("campaigns.view_message", "campaigns.view_deliveryevent")
    )

    pages = [
        client.get(changelist),
        client.get(detail),
        client.get(receipts),
        client.get(reverse("admin:campaigns_message_history", args=[message.pk])),
        client.get(
            reverse(
                "admin:campaigns_deliveryevent_change",
                args=[DeliveryEvent.objects.get().pk],
            )
        ),
    ]
    for response in pages:
        html = response.content.decode()
        assert response.status_code == 200
        assert "+14155550123" not in html
        assert "Zed" not in html
    assert "+14*******23" in pages[0].content.decode()
    assert "+14*******23" in pages[1].content.decode()
    # Searching by the whole number still finds it; prefixes reveal nothing.
    found = client.get(changelist, {"q": "(415) 555-0123"})
    assert [m.pk for m in found.context["cl"].result_list] == [message.pk]
    assert client.get(changelist, {"to__startswith": "+1415"}).status_code == 400
    assert client.get(receipts, {"q": "4155550"}).context["cl"].result_count == 0

    client.force_login(
        staff_with(
            "campaigns.view_message",
            "campaigns.view_deliveryevent",
            "contacts.view_contact",
        )
    )
    assert "+14155550123" in client.get(changelist).content.decode()
    html = client.get(detail).content.decode()
    assert "Hi Zed" in html
    assert "+14155550123" in html
    assert client.get(receipts, {"q": "4155550"}).context["cl"].result_count == 1


def test_the_cost_shows_every_currency_main_one_first(admin_client, campaign):
    # A fallback provider billed some messages in euros; dollars stay the main
    # currency (the largest total, $0.03).
    Campaign.objects.filter(pk=campaign.pk).update(fallback_provider="locmem")
    messages(campaign, "delivered", 2, price=Decimal("0.01"), currency="EUR")
    messages(campaign, "delivered", 1, price=Decimal("0.005"), currency="GBP")

    response = admin_client.get(change_url(campaign))

    assert element(response, "dashboard-cost")[1] == "$0.03 + €0.02 + £0.005"
    assert element(response, "dashboard-cost-note") is None
    data = admin_client.get(progress_url(campaign)).json()
    assert data["currency"] == "USD"
    assert list(data["cost_by_currency"]) == ["USD", "EUR", "GBP"]
    assert Decimal(data["cost_by_currency"]["EUR"]) == Decimal("0.02")


def test_a_snapshot_from_before_currencies_were_kept_shows_its_one_cost(
    admin_client, campaign
):
    # Taken by an older version: cost and currency only, no cost_by_currency.
    CampaignSnapshot.objects.create(
        campaign=campaign,
        counts={"delivered": 4},
        cost=Decimal("1.25"),
        currency="EUR",
    )

    response = admin_client.get(change_url(campaign))

    assert element(response, "dashboard-cost")[1] == "€1.25"
    data = admin_client.get(progress_url(campaign)).json()
    assert data["cost_by_currency"] == {"EUR": str(data["cost"])}
    assert Decimal(data["cost"]) == Decimal("1.25")

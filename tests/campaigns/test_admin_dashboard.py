import re
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from campaigns import scheduling
from campaigns.admin_dashboard import CappedCountPaginator
from campaigns.claims import OPTED_OUT_CODE
from campaigns.models import Campaign, CampaignSnapshot
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
    messages(campaign, "failed", 1, error_code=OPTED_OUT_CODE, error_reason="x")
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
    assert count(response, "opted-out") == 2  # one skipped, one replied STOP
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
        "&amp;status__in=undelivered%2Cfailed%2Crejected%2Cexpired"
        '&amp;error_code=30003"'
    ) in html
    _, links = element(response, "dashboard-messages")
    assert links == "Messages: all · delivered · failed · queued · awaiting receipt"
    assert (
        f'href="{messages_url}?campaign__id__exact={campaign.pk}'
        '&amp;status__exact=delivered"'
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
        "cancelled": 0,
        "unknown": 1,
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
    response = admin_client.get(change_url(campaign))
    _, hint = element(response, "dashboard-worker-missing")
    assert "No worker has picked this campaign up yet" in hint
    assert "python manage.py run_worker" in hint

    scheduling.beat(campaign.pk)
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
    campaign = CampaignFactory(status=status, completed_at=timezone.now())
    if status != Campaign.Status.DRAFT:
        messages(campaign, "delivered", 1)

    response = admin_client.get(change_url(campaign))

    assert response.status_code == 200
    assert element(response, "dashboard")[0]["data-status"] == status
    assert admin_client.get(progress_url(campaign)).status_code == 200


def test_a_finished_campaign_with_nothing_in_flight_stops_refreshing(admin_client):
    campaign = CampaignFactory(
        status=Campaign.Status.COMPLETED,
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
        status=Campaign.Status.CANCELLED, completed_at=timezone.now()
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

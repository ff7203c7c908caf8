"""The campaign state machine (campaigns.lifecycle): its table, its one conditional
UPDATE, what it allows and how it shows a state."""

import ast
from datetime import timedelta
from pathlib import Path

import pytest

from django.utils import timezone

from campaigns import lifecycle
from campaigns.lifecycle import CampaignError
from campaigns.models import Campaign
from campaigns.sending.dispatch import Dispatcher, campaign_finish
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

Status = Campaign.Status
ALL = set(Status.values)

#: The table, restated: action → (from-states, the state each one leads to).
EXPECTED = {
    "send": {Status.DRAFT: Status.SCHEDULED, Status.SCHEDULED: Status.SCHEDULED},
    "schedule": {Status.DRAFT: Status.SCHEDULED, Status.SCHEDULED: Status.SCHEDULED},
    "pause": {Status.SCHEDULED: Status.PAUSED, Status.SENDING: Status.PAUSED},
    # Launched before the pause (started_at is set below): it sends again.
    "resume": {Status.PAUSED: Status.SENDING},
    "cancel": {
        Status.DRAFT: Status.CANCELLED,
        Status.SCHEDULED: Status.CANCELLED,
        Status.SENDING: Status.CANCELLED,
        Status.PAUSED: Status.CANCELLED,
    },
    "retry_failed": {
        Status.SENDING: Status.SENDING,
        Status.PAUSED: Status.PAUSED,
        Status.COMPLETED: Status.SENDING,
        Status.FAILED: Status.SENDING,
    },
    "launch": {
        Status.DRAFT: Status.SENDING,
        Status.SCHEDULED: Status.SENDING,
        Status.SENDING: Status.SENDING,
    },
    "finish": {Status.SENDING: Status.COMPLETED},
    "halt": {Status.SENDING: Status.PAUSED},
}


def campaign_in(status: str, **fields) -> Campaign:
    """A launched campaign in ``status``, scheduled for tomorrow (not starting)."""
    defaults = {
        "started_at": timezone.now(),
        "scheduled_at": timezone.now() + timedelta(days=1),
    }
    return CampaignFactory(status=status, **{**defaults, **fields})


def test_the_table_is_the_one_expected():
    assert set(lifecycle.TRANSITIONS) == set(EXPECTED)
    for action, moves in EXPECTED.items():
        rule = lifecycle.TRANSITIONS[action]
        assert rule.sources == set(moves), action
        assert set(moves.values()) <= set(rule.targets), action
    assert lifecycle.USER_ACTIONS == (
        "send",
        "schedule",
        "pause",
        "resume",
        "cancel",
        "retry_failed",
    )


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("status", sorted(ALL))
def test_transition_moves_exactly_from_the_states_of_the_table(action, status):
    campaign = campaign_in(status)
    moves = EXPECTED[action]
    extra = {"to": Status.COMPLETED} if action == "finish" else {}

    assert lifecycle.can(campaign, action) == (status in moves)
    moved = lifecycle.transition(campaign, action, **extra)

    assert moved == (status in moves)
    # The instance is refreshed either way.
    assert campaign.status == moves.get(status, status)
    assert Campaign.objects.get(pk=campaign.pk).status == campaign.status


def test_a_refusal_names_the_state_and_the_action():
    campaign = campaign_in(Status.CANCELLED)
    with pytest.raises(CampaignError) as caught:
        lifecycle.move(campaign, "retry_failed")
    assert str(caught.value) == (
        f"Campaign {campaign.pk} is cancelled: it cannot be retried"
    )


def test_transition_reads_the_state_in_the_database_not_the_instance():
    campaign = campaign_in(Status.DRAFT)
    Campaign.objects.filter(pk=campaign.pk).update(status=Status.CANCELLED)
    assert lifecycle.can(campaign, "send")  # as the stale instance knows it

    assert not lifecycle.transition(campaign, "send", scheduled_at=timezone.now())

    assert campaign.status == Status.CANCELLED
    assert campaign.scheduled_at > timezone.now()  # untouched


def test_transition_writes_its_fields_and_the_update_time():
    campaign = campaign_in(Status.SENDING)
    before = campaign.updated_at
    assert lifecycle.transition(campaign, "halt", waiting_reason="Provider down")
    assert (campaign.status, campaign.waiting_reason) == (
        Status.PAUSED,
        "Provider down",
    )
    assert campaign.updated_at > before


def test_transition_takes_an_id_too():
    campaign = campaign_in(Status.SENDING)
    assert lifecycle.transition(campaign.pk, "finish", to=Status.FAILED)
    campaign.refresh_from_db()
    assert campaign.status == Status.FAILED


def test_the_status_is_never_a_field_of_a_transition():
    campaign = campaign_in(Status.DRAFT)
    with pytest.raises(TypeError):
        lifecycle.transition(campaign, "cancel", status=Status.COMPLETED)
    with pytest.raises(ValueError, match="finish leads to"):
        lifecycle.transition(campaign, "finish", to=Status.CANCELLED)
    with pytest.raises(TypeError, match="needs to="):
        lifecycle.transition(campaign, "finish")


def test_resume_goes_back_to_the_schedule_when_never_launched():
    campaign = campaign_in(Status.PAUSED, started_at=None)
    assert lifecycle.transition(campaign, "resume")
    assert campaign.status == Status.SCHEDULED


def test_resume_reads_the_launch_in_the_database():
    # The instance was read before the launch: it must not send it back to its
    # schedule.
    campaign = campaign_in(Status.PAUSED, started_at=None)
    Campaign.objects.filter(pk=campaign.pk).update(started_at=timezone.now())
    assert lifecycle.transition(campaign, "resume")
    assert campaign.status == Status.SENDING


# --- Guards ----------------------------------------------------------------------


def test_a_campaign_not_launched_is_never_finished():
    campaign = campaign_in(Status.SENDING, started_at=None)
    assert not lifecycle.can(campaign, "finish")
    assert not lifecycle.transition(campaign, "finish", to=Status.COMPLETED)
    campaign_finish(campaign_id=campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == Status.SENDING


def test_the_dispatcher_does_not_complete_a_campaign_before_its_launch():
    campaign = campaign_in(Status.SENDING, started_at=None, provider="locmem")
    Dispatcher(campaign.pk).step()
    campaign.refresh_from_db()
    assert campaign.status == Status.SENDING
    assert campaign.completed_at is None


def test_a_starting_campaign_cannot_be_sent_again():
    campaign = campaign_in(Status.SCHEDULED, scheduled_at=timezone.now())
    assert not lifecycle.can(campaign, "send")
    assert lifecycle.can(campaign, "schedule")
    assert not lifecycle.transition(campaign, "send", scheduled_at=timezone.now())


def test_a_scheduled_campaign_without_a_time_can_be_sent():
    campaign = campaign_in(Status.SCHEDULED, scheduled_at=None)
    assert lifecycle.can(campaign, "send")
    assert lifecycle.transition(campaign, "send", scheduled_at=timezone.now())


# --- What it allows and how it shows -------------------------------------------------


@pytest.mark.parametrize(
    ("status", "scheduled_in", "allowed"),
    [
        (Status.DRAFT, None, ["send", "schedule", "cancel"]),
        (Status.SCHEDULED, timedelta(days=1), ["send", "schedule", "pause", "cancel"]),
        (Status.SCHEDULED, -timedelta(seconds=1), ["schedule", "pause", "cancel"]),
        (Status.SENDING, None, ["pause", "cancel", "retry_failed"]),
        (Status.PAUSED, None, ["resume", "cancel", "retry_failed"]),
        (Status.COMPLETED, None, ["retry_failed"]),
        (Status.CANCELLED, None, []),
        (Status.FAILED, None, ["retry_failed"]),
    ],
)
def test_allowed_actions_per_state(status, scheduled_in, allowed):
    scheduled_at = timezone.now() + scheduled_in if scheduled_in else None
    campaign = CampaignFactory(status=status, scheduled_at=scheduled_at)
    assert lifecycle.allowed_actions(campaign) == allowed


@pytest.mark.parametrize(
    ("status", "scheduled_in", "key", "shown"),
    [
        (Status.DRAFT, None, "draft", "Draft"),
        (Status.SCHEDULED, timedelta(minutes=5), "scheduled", "Scheduled"),
        (Status.SCHEDULED, timedelta(0), "starting", "Starting"),
        (Status.SCHEDULED, -timedelta(hours=1), "starting", "Starting"),
        (Status.SENDING, None, "sending", "Sending"),
        (Status.PAUSED, -timedelta(hours=1), "paused", "Paused"),
    ],
)
def test_a_campaign_sent_now_is_starting_never_scheduled(
    status, scheduled_in, key, shown
):
    scheduled_at = timezone.now() + scheduled_in if scheduled_in is not None else None
    campaign = CampaignFactory(status=status, scheduled_at=scheduled_at)
    assert lifecycle.status_key(campaign) == key
    assert lifecycle.status_display(campaign) == shown


# --- The one owner -------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _status_writes(path: Path) -> list[str]:
    """Calls in ``path`` that write a campaign's status: ``.update(status=Campaign
    .Status…)``, ``.create(status=Campaign.Status…)`` or ``….status = …`` on
    something named campaign."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"update", "create", "update_or_create"}
        ):
            found += [
                f"{path.name}:{node.lineno}"
                for keyword in node.keywords
                if keyword.arg == "status"
                and "Campaign.Status" in ast.unparse(keyword.value)
            ]
        if isinstance(node, ast.Assign):
            for target in node.targets:
                text = ast.unparse(target)
                if text.endswith(".status") and "campaign" in text.lower():
                    found.append(f"{path.name}:{node.lineno}")
    return found


def test_only_the_lifecycle_writes_a_campaigns_status():
    modules = [
        path
        for app in ("campaigns", "webhooks", "contacts", "smscampaigns")
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and path.name != "lifecycle.py"
    ]
    writes = [write for path in modules for write in _status_writes(path)]
    assert writes == []

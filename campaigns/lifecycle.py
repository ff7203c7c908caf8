"""Campaign state: the one owner of ``Campaign.status``.

Every change of a campaign's status after it was created goes through
:func:`transition`, one conditional UPDATE (``WHERE status IN <from-states>``): two
workers, a worker and a marketer, or two tabs racing on one campaign cannot both
win, and the loser learns it lost. The admin's buttons, the API's
``allowed_actions`` and the services' refusals all read :data:`TRANSITIONS`, so
they cannot disagree.

========== =========================================== ================================
action     from                                        to
========== =========================================== ================================
send       draft, scheduled (not already starting)     scheduled (at now)
schedule   draft, scheduled                            scheduled
pause      scheduled, sending                          paused
resume     paused                                      sending (launched) or scheduled
cancel     draft, scheduled, sending, paused           cancelled
retry      sending, paused, completed, failed          sending (paused stays paused)
launch*    draft, scheduled, sending                   sending
finish*    sending (launched)                          completed or failed
halt*      sending                                     paused, with a waiting reason
========== =========================================== ================================

(* system actions: the launch, the dispatcher and the worker loops; never offered
to people.)

"Send now" schedules the campaign at the current time; it stays ``scheduled`` until
a worker launches it (``scheduling.tick()`` in ``run_worker``, the Celery
``start_campaign`` task, or ``send_campaign``), and :func:`status_display` calls such
a campaign "Starting", never "Scheduled". Going straight to ``sending`` was the
alternative; it was not chosen because ``sending`` would then no longer mean
"launched": the dispatcher, the stalled-campaign restarts and ``run_worker``'s loop
all take a sending campaign with nothing queued for a finished one, and every one of
them would need to learn to launch it first (and to race on that launch). Keeping
the launch the only way into ``sending`` keeps them right; ``finish`` additionally
requires a launched campaign (``started_at`` set), so no path can complete a
campaign whose audience was never materialized.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from .models import Campaign

Status = Campaign.Status


class CampaignError(Exception):
    """A campaign action that its current state does not allow."""


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    """The states the action applies to."""
    targets: tuple[str, ...]
    """The states it may lead to (several: the caller or :attr:`resolve` picks)."""
    verb: str
    """Past participle for refusals: "it cannot be paused"."""
    system: bool = False
    """Done by the workers, never offered as a button or in ``allowed_actions``."""
    guard: Callable[[Campaign], bool] | None = None
    """An extra condition on the campaign beyond its status (in Python)..."""
    condition: Callable[[], Q] | None = None
    """...and the same condition for the UPDATE, so a race cannot slip past it."""
    resolve: Callable[[], object] | None = field(default=None, repr=False)
    """The target as a database expression, for actions whose target depends on the
    row (read at the moment of the UPDATE, never from a stale instance)."""


def _starting(campaign: Campaign) -> bool:
    return (
        campaign.status == Status.SCHEDULED
        and campaign.scheduled_at is not None
        and campaign.scheduled_at <= timezone.now()
    )


def _not_starting() -> Q:
    return ~Q(status=Status.SCHEDULED, scheduled_at__lte=timezone.now())


def _launched() -> Q:
    return Q(started_at__isnull=False)


def _resume_target():
    # Launched before it was paused: it carries on sending; otherwise it waits for
    # its schedule again (a worker launches it).
    return Case(
        When(started_at__isnull=False, then=Value(Status.SENDING)),
        default=Value(Status.SCHEDULED),
    )


def _retry_target():
    # Requeued messages of a paused campaign go out when it is resumed.
    return Case(
        When(status=Status.PAUSED, then=F("status")),
        default=Value(Status.SENDING),
    )


#: action → from-states, to-states: the whole life of a campaign.
TRANSITIONS: dict[str, Transition] = {
    # --- what people do (admin, API, commands) ---
    "send": Transition(
        frozenset({Status.DRAFT, Status.SCHEDULED}),
        (Status.SCHEDULED,),
        "sent",
        # Already due: a worker is about to launch it, sending it "now" again is moot.
        guard=lambda campaign: not _starting(campaign),
        condition=_not_starting,
    ),
    "schedule": Transition(
        frozenset({Status.DRAFT, Status.SCHEDULED}), (Status.SCHEDULED,), "scheduled"
    ),
    "pause": Transition(
        frozenset({Status.SCHEDULED, Status.SENDING}), (Status.PAUSED,), "paused"
    ),
    "resume": Transition(
        frozenset({Status.PAUSED}),
        (Status.SENDING, Status.SCHEDULED),
        "resumed",
        resolve=_resume_target,
    ),
    "cancel": Transition(
        frozenset({Status.DRAFT, Status.SCHEDULED, Status.SENDING, Status.PAUSED}),
        (Status.CANCELLED,),
        "cancelled",
    ),
    # Drafts and scheduled campaigns sent nothing; a cancelled one would strand the
    # requeued messages (nothing sends a cancelled campaign's queue).
    "retry_failed": Transition(
        frozenset({Status.SENDING, Status.PAUSED, Status.COMPLETED, Status.FAILED}),
        (Status.SENDING, Status.PAUSED),
        "retried",
        resolve=_retry_target,
    ),
    # --- what the workers do ---
    # The audience is materialized (campaigns.sending.launch): it is sending.
    "launch": Transition(
        frozenset({Status.DRAFT, Status.SCHEDULED, Status.SENDING}),
        (Status.SENDING,),
        "launched",
        system=True,
    ),
    # Nothing left to send: completed, or failed when no message was accepted.
    "finish": Transition(
        frozenset({Status.SENDING}),
        (Status.COMPLETED, Status.FAILED),
        "finished",
        system=True,
        guard=lambda campaign: campaign.started_at is not None,
        condition=_launched,
    ),
    # It cannot go on by itself (provider broken, invalid send window, credentials
    # refused): paused with the reason in waiting_reason, until someone resumes it.
    "halt": Transition(
        frozenset({Status.SENDING}), (Status.PAUSED,), "paused", system=True
    ),
}

#: What people may do, in the order the admin shows the buttons.
USER_ACTIONS = tuple(name for name, t in TRANSITIONS.items() if not t.system)


def can(campaign: Campaign, action: str) -> bool:
    """Whether ``action`` applies to the campaign as this instance knows it."""
    rule = TRANSITIONS[action]
    return campaign.status in rule.sources and (
        rule.guard is None or rule.guard(campaign)
    )


def allowed_actions(campaign: Campaign) -> list[str]:
    """The user actions the campaign's state allows now (admin buttons, API)."""
    return [action for action in USER_ACTIONS if can(campaign, action)]


def transition(
    campaign: Campaign | int, action: str, *, to: str | None = None, **fields
) -> bool:
    """Move the campaign by ``action`` in one conditional UPDATE, also writing
    ``fields``; return whether it moved. A campaign instance is refreshed either way
    (a refusal then names the state that refused it).

    ``to`` picks the target of an action with several (finish); actions whose target
    depends on the row (resume, retry_failed) resolve it in the UPDATE.
    """
    rule = TRANSITIONS[action]
    if "status" in fields:
        raise TypeError("transition() sets the status; pass the action instead")
    if to is not None:
        if to not in rule.targets:
            raise ValueError(f"{action} leads to {rule.targets}, not {to!r}")
        status = to
    elif rule.resolve is not None:
        status = rule.resolve()
    elif len(rule.targets) == 1:
        status = rule.targets[0]
    else:
        raise TypeError(f"{action} needs to= one of {rule.targets}")
    pk = campaign.pk if isinstance(campaign, Campaign) else campaign
    rows = Campaign.objects.filter(pk=pk, status__in=rule.sources)
    if rule.condition is not None:
        rows = rows.filter(rule.condition())
    moved = rows.update(status=status, updated_at=timezone.now(), **fields)
    if isinstance(campaign, Campaign):
        campaign.refresh_from_db()
    return bool(moved)


def refusal(campaign: Campaign, action: str) -> CampaignError:
    """The error for an action the campaign's state does not allow, e.g. "Campaign 5
    is cancelled: it cannot be retried"."""
    return CampaignError(
        f"Campaign {campaign.pk} is {status_display(campaign).lower()}: "
        f"it cannot be {TRANSITIONS[action].verb}"
    )


def require(campaign: Campaign, action: str) -> None:
    """Raise :func:`refusal` unless :func:`can`."""
    if not can(campaign, action):
        raise refusal(campaign, action)


def move(campaign: Campaign, action: str, **fields) -> Campaign:
    """:func:`transition`, raising :func:`refusal` when the campaign did not move."""
    if not transition(campaign, action, **fields):
        raise refusal(campaign, action)
    return campaign


# --- How a state is shown -------------------------------------------------------------

#: The key and label of a scheduled campaign whose time has come: sent now, or due,
#: and waiting for a worker to launch it.
STARTING = ("starting", "Starting")


def status_key(campaign: Campaign) -> str:
    """The state as shown (CSS classes, the page's data attributes): the status, or
    "starting"."""
    return STARTING[0] if _starting(campaign) else campaign.status


def status_display(campaign: Campaign) -> str:
    """The state in words, the same on the admin's list and page and in the API."""
    return STARTING[1] if _starting(campaign) else campaign.get_status_display()

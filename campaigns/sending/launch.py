"""Launch: turn a campaign's audience into outbox rows, in the database, in one statement."""

from django.db import connection, transaction
from django.utils import timezone

from contacts.models import Contact, Suppression
from contacts.services import message_contacts_lock

from .. import lifecycle
from ..lifecycle import CampaignError as CampaignError
from ..links import links_prepare
from ..models import Campaign, Message
from ..segments import audience_q, where_sql


@transaction.atomic
def campaign_launch(*, campaign: Campaign) -> int:
    """Queue one message per eligible recipient and mark the campaign sending.

    Eligible: in any of the campaign's lists or segments (once, however many),
    not opted out, not suppressed. Runs as one INSERT … SELECT so a million recipients never
    pass through Python; the (campaign, contact) unique constraint makes a second
    launch add only contacts that joined its audience since. Returns how many were added.
    """
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    lifecycle.require(locked, "launch")
    now = timezone.now()
    # The links first: a dispatcher that sees the messages sees their links too.
    links_prepare(
        campaign=locked,
        sources=[locked.variant_source(n) for n, _ in locked.variant_shares()[1:]],
    )
    added = _insert_audience(locked, now)
    # Held since the check (a row lock on PostgreSQL, the write lock on SQLite).
    lifecycle.move(
        locked, "launch", started_at=locked.started_at or now, completed_at=None
    )
    campaign.refresh_from_db()
    return added


def _insert_audience(campaign: Campaign, now) -> int:
    list_ids = list(campaign.lists.values_list("pk", flat=True))
    segments = list(campaign.segments.all())
    if not list_ids and not segments:
        return 0
    # Before the INSERT takes its snapshot: a deletion of contacts either finished
    # (the launch does not see them) or waits for the launch to commit (its SET NULL
    # then sees the messages); no foreign key checks the contacts (Message.contact).
    message_contacts_lock(exclusive=False)
    message, contact = Message._meta, Contact._meta
    suppression = Suppression._meta
    qn = connection.ops.quote_name
    # The contacts table goes unaliased: the audience's conditions (lists and
    # segments, campaigns.segments.audience_q) are inlined as the ORM compiles
    # them, naming it. Inline, not "id IN (subquery)": under an OR PostgreSQL
    # cannot turn that into a join, and a million ids outgrow a hashed subplan.
    c = qn(contact.db_table)
    who, who_params = where_sql(
        audience_q(list_ids=list_ids, segments=segments, now=now), connection
    )
    # Our own references: 32 hex characters is how Django stores a UUIDField on SQLite.
    if connection.vendor == "postgresql":
        # Random after a prefix that grows with the contact id, so a launch's
        # references land next to each other in the unique index instead of on a
        # million random pages (that write amplification dominated launch time).
        new_reference = (
            f"overlay(gen_random_uuid()::text placing lpad(to_hex({c}.{qn('id')}), 8, '0') "
            "from 1 for 8)::uuid"
        )
    else:
        new_reference = "lower(hex(randomblob(16)))"
    columns = [
        "kind", "campaign_id", "contact_id", "to", "body", "provider", "sender",
        "provider_message_id", "client_reference", "status", "error_code", "error_reason",
        "encoding", "segments", "currency", "attempts", "queued_at", "status_changed_at",
        "time_zone", "variant",
    ]  # fmt: skip
    sql = f"""
        INSERT INTO {qn(message.db_table)} ({", ".join(qn(c) for c in columns)})
        SELECT %s, %s, {c}.{qn("id")}, {c}.{qn("phone")}, '', %s, %s,
               '', {new_reference}, %s, '', '',
               '', 1, '', 0, %s, %s,
               {c}.{qn("time_zone")}, {_variant_column(campaign)}
        FROM {c}
        WHERE {c}.{qn("opted_out_at")} IS NULL
          AND ({who})
          AND NOT EXISTS (
              SELECT 1 FROM {qn(suppression.db_table)} s WHERE s.{qn("phone")} = {c}.{qn("phone")}
          )
        ORDER BY {c}.{qn("id")}
        ON CONFLICT DO NOTHING
    """
    params = [
        Message.Kind.CAMPAIGN,
        campaign.pk,
        campaign.provider,
        campaign.sender,
        Message.Status.QUEUED,
        connection.ops.adapt_datetimefield_value(now),
        connection.ops.adapt_datetimefield_value(now),
        *who_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


def _variant_column(campaign: Campaign) -> str:
    """The SQL giving each recipient a text variant at random, in the set shares.

    The recipients in a random order are cut into 100 equal slices; each slice is
    a character of a 100-character map of variant numbers (30 % for B: 30 "1"s).
    Shares are thus exact to a recipient, in the same statement and one window
    (a sort of the audience, only for campaigns with variants). NULL without.
    """
    shares = campaign.variant_shares()
    if not shares:
        return "NULL"
    mapping = "".join(str(number) * share for number, share in shares)
    if len(mapping) != 100:  # campaigns.writes keeps A at 1 % at least
        raise CampaignError(
            f"Campaign {campaign.pk}: the variants' shares leave nothing for A."
        )
    slice_of = (
        "CAST((row_number() OVER (ORDER BY random()) - 1) * 100 "
        "/ count(*) OVER () AS integer)"
    )
    return f"CAST(substr('{mapping}', {slice_of} + 1, 1) AS integer)"

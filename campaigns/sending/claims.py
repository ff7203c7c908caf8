"""Claiming a batch of queued messages in one statement.

One ``WITH picked AS (SELECT … FOR UPDATE SKIP LOCKED) UPDATE … RETURNING`` picks the
next queued messages in id order (a keyset cursor: dead index entries behind it are
never rescanned), marks them "sending" (or "failed" when the recipient opted out since
launch, or has reached the campaign's frequency cap, see campaigns.frequency) and
returns what the sender needs. PostgreSQL skips rows another dispatcher
holds; SQLite has no row locks, but its IMMEDIATE transactions let one writer at a time
through, which is just as safe.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F

from contacts.models import Contact, Suppression

from ..frequency import capped_sql, effective_cap
from ..models import Campaign, Message
from .arrays import int_array
from .deadline import expire_unsent

OPTED_OUT_REASON = "Recipient opted out before this message was sent"
FREQUENCY_CAP_REASON = "Recipient had reached the frequency cap ({cap})"


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    to: str
    sender: str
    reference: str
    attempts: int
    first_name: str
    last_name: str
    attributes: dict
    variant: int | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    messages: list[Claimed]
    opted_out: int
    """Messages skipped instead of claimed: opted out or at the frequency cap."""
    last_id: int | None
    send_by: datetime | None = None
    """The campaign's send-by time: what the messages' ``OutboundSms.expires_at``
    should carry, so the vendor gives up at the same moment."""


def claim_batch(
    *,
    campaign_id: int,
    provider: str,
    after_id: int,
    now: datetime,
    limit: int,
    zones: list[str] | None = None,
    session_id: int | None = None,
) -> Claim:
    send_by, cap_text = (
        Campaign.objects.filter(pk=campaign_id)
        .values_list("send_by", "frequency_cap")
        .first()
    ) or (None, "")
    # Past the campaign's send-by time nothing more is handed over.
    expire_unsent(campaign_id=campaign_id, now=now, send_by=send_by)
    cap = effective_cap(cap_text)
    qn = connection.ops.quote_name
    postgres = connection.vendor == "postgresql"
    message = qn(Message._meta.db_table)
    contact = qn(Contact._meta.db_table)
    suppression = qn(Suppression._meta.db_table)
    stamp = connection.ops.adapt_datetimefield_value(now)
    zone_filter, zone_params = "", []
    if zones is not None:
        if not zones:
            return Claim([], 0, None)
        zone_filter = f"AND m.{qn('time_zone')} IN ({', '.join(['%s'] * len(zones))})"
        zone_params = list(zones)
    lock = "FOR UPDATE OF m SKIP LOCKED" if postgres else ""
    skip = "(picked.opted_out OR picked.capped)"
    if cap is None:
        capped, cap_params = "FALSE", []
    else:
        capped = capped_sql(message_alias="m", qn=qn)
        cap_params = [
            connection.ops.adapt_datetimefield_value(now - cap.period),
            cap.count - 1,
        ]
    skip_reason = FREQUENCY_CAP_REASON.format(cap=cap)
    sql = f"""
        WITH picked AS (
            SELECT m.{qn("id")} AS picked_id,
                   (EXISTS (SELECT 1 FROM {contact} c
                            WHERE c.{qn("id")} = m.{qn("contact_id")}
                              AND c.{qn("opted_out_at")} IS NOT NULL)
                    OR EXISTS (SELECT 1 FROM {suppression} s
                               WHERE s.{qn("phone")} = m.{qn("to")})) AS opted_out,
                   {capped} AS capped
            FROM {message} m
            WHERE m.{qn("campaign_id")} = %s
              AND m.{qn("kind")} = %s
              AND m.{qn("status")} = %s
              AND m.{qn("id")} > %s
              AND (m.{qn("next_attempt_at")} IS NULL OR m.{qn("next_attempt_at")} <= %s)
              {zone_filter}
            ORDER BY m.{qn("id")}
            LIMIT %s
            {lock}
        )
        UPDATE {message} AS t
        SET {qn("status")} = CASE WHEN {skip} THEN %s ELSE %s END,
            {qn("error_code")} = CASE WHEN picked.opted_out THEN %s
                                      WHEN picked.capped THEN %s
                                      ELSE t.{qn("error_code")} END,
            {qn("error_reason")} = CASE WHEN picked.opted_out THEN %s
                                        WHEN picked.capped THEN %s
                                        ELSE t.{qn("error_reason")} END,
            {qn("provider")} = CASE WHEN {skip} THEN t.{qn("provider")} ELSE %s END,
            {qn("attempts")} = t.{qn("attempts")} + CASE WHEN {skip} THEN 0 ELSE 1 END,
            {qn("status_changed_at")} = %s,
            {qn("handed_at")} = NULL,
            {qn("claimed_by_id")} = CASE WHEN {skip} THEN NULL ELSE CAST(%s AS bigint) END
        FROM picked
        WHERE t.{qn("id")} = picked.picked_id
        RETURNING {qn("id")}, {qn("status")}, {qn("to")}, {qn("sender")},
                  {qn("client_reference")}, {qn("attempts")}, {qn("contact_id")},
                  {qn("variant")}
    """  # identifiers come from the models; every value is a parameter
    params = [
        *cap_params,
        campaign_id,
        Message.Kind.CAMPAIGN,
        Message.Status.QUEUED,
        after_id,
        stamp,
        *zone_params,
        limit,
        Message.Status.FAILED,
        Message.Status.SENDING,
        Message.SkipReason.OPTED_OUT,
        Message.SkipReason.FREQUENCY_CAP,
        OPTED_OUT_REASON,
        skip_reason,
        provider,
        stamp,
        session_id,
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return Claim([], 0, None)
    sending = [r for r in rows if r[1] == Message.Status.SENDING]
    people = _contacts([r[6] for r in sending if r[6] is not None])
    messages = []
    for pk, _status, to, sender, reference, attempts, contact_id, variant in sorted(
        sending
    ):
        first_name, last_name, attributes = people.get(contact_id, ("", "", {}))
        messages.append(
            Claimed(
                id=pk,
                to=to,
                sender=sender,
                reference=str(uuid.UUID(str(reference))),
                attempts=attempts,
                first_name=first_name or "",
                last_name=last_name or "",
                attributes=attributes or {},
                variant=variant,
            )
        )
    return Claim(
        messages, len(rows) - len(sending), max(r[0] for r in rows), send_by=send_by
    )


def _contacts(ids: list[int]) -> dict[int, tuple[str, str, dict]]:
    if not ids:
        return {}
    qn = connection.ops.quote_name
    table = qn(Contact._meta.db_table)
    columns = f"{qn('id')}, {qn('first_name')}, {qn('last_name')}, {qn('attributes')}"
    if connection.vendor == "postgresql":
        # One array parameter instead of a thousand placeholders to parse.
        sql = f"SELECT {columns} FROM {table} WHERE {qn('id')} = ANY(%s::bigint[])"
        params = [int_array(ids)]
    else:
        sql = f"SELECT {columns} FROM {table} WHERE {qn('id')} IN ({', '.join(['%s'] * len(ids))})"
        params = ids
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        result = {}
        for pk, first_name, last_name, attributes in cursor.fetchall():
            if isinstance(attributes, str):
                attributes = json.loads(attributes)
            result[pk] = (
                first_name,
                last_name,
                attributes if isinstance(attributes, dict) else {},
            )
        return result


def mark_handed(ids: list[int], *, claimed_at: datetime, now: datetime) -> set[int]:
    """Record that these claimed messages are being handed to the provider, and
    return those still ours to send: a claim that outlived its lease may have been
    given back to the queue (and to another dispatcher) meanwhile."""
    if not ids:
        return set()
    qn = connection.ops.quote_name
    table = qn(Message._meta.db_table)
    ops = connection.ops
    if connection.vendor == "postgresql":
        # One array literal: nothing for the driver to quote per id.
        where, params = f"{qn('id')} = ANY(%s::bigint[])", [int_array(ids)]
    else:
        where, params = f"{qn('id')} IN ({', '.join(['%s'] * len(ids))})", list(ids)
    sql = f"""
        UPDATE {table} SET {qn("handed_at")} = %s
        WHERE {where} AND {qn("status")} = %s AND {qn("handed_at")} IS NULL
          AND {qn("status_changed_at")} = %s
        RETURNING {qn("id")}
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                ops.adapt_datetimefield_value(now),
                *params,
                Message.Status.SENDING,
                ops.adapt_datetimefield_value(claimed_at),
            ],
        )
        return {row[0] for row in cursor.fetchall()}


def release_unsent(ids: list[int]) -> int:
    """Put claimed messages that were never handed to the provider back in the queue
    (the claim's attempt is given back too)."""
    if not ids:
        return 0
    return Message.objects.filter(pk__in=ids, status=Message.Status.SENDING).update(
        status=Message.Status.QUEUED,
        attempts=F("attempts") - 1,
        claimed_by=None,
        handed_at=None,
    )

"""Recording a short link's clicks (see campaigns.links for the codes).

A request for ``/l/<code>`` is answered with a redirect at once and stored as a
:class:`~campaigns.models.LinkClick`. Link previews are stored too but do not count:
messaging apps (iMessage, WhatsApp, Slack…) and crawlers fetch a link as soon as it
is shown, before anyone taps it, so a HEAD request or a known preview agent is kept
with ``is_bot`` set and leaves the message's click count alone.
"""

import re
from datetime import datetime
from functools import lru_cache, partial

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.events import EventType, click_data
from integrations.services import publish, subscribed

from .links import destination, link_decode
from .models import LinkClick, Message, TrackedLink

# Link-preview fetchers and crawlers, by a token of their user agent. Apple's
# previews (iMessage, Mail) name themselves facebookexternalhit and Twitterbot.
_PREVIEW_TOKENS = (
    "facebookexternalhit",
    "facebot",
    "facebookcatalog",
    "meta-externalagent",
    "slackbot",
    "slack-imgproxy",
    "twitterbot",
    "whatsapp",
    "telegrambot",
    "discordbot",
    "applebot",
    "skypeuripreview",
    "linkedinbot",
    "googlebot",
    "google-inspectiontool",
    "googleother",
    "adsbot-google",
    "bingbot",
    "bingpreview",
    "microsoftpreview",
    "pinterest",
    "redditbot",
    "embedly",
    "iframely",
    "vkshare",
    "viber",
    "snapchat",
    "kakaotalk-scrap",
    "yandex",
    "duckduckbot",
    "baiduspider",
    "petalbot",
    "mastodon",
    "bluesky",
    "preview",
    "headlesschrome",
    "python-requests",
    "curl/",
    "wget/",
    "go-http-client",
    "okhttp",
)
# Generic crawlers: "Somethingbot/1.0", "+http://…/bot.html" (a phone model such as
# "CUBOT X19" has no slash after it).
_CRAWLER = re.compile(r"(?:bot|crawler|spider|scraper)[\w.-]*/|\+https?://", re.I)
_MOBILE = re.compile(r"Mobi|Android|iPhone|iPad|iPod", re.I)
_DESKTOP = re.compile(r"Windows NT|Macintosh|X11|CrOS", re.I)


def agent_classify(user_agent: str, method: str = "GET") -> tuple[str, bool]:
    """(agent class, is a bot) of a request: HEAD requests, empty user agents (no
    browser sends none), preview fetchers and crawlers are bots."""
    if method == "HEAD":
        return LinkClick.Agent.HEAD, True
    lowered = user_agent.lower()
    if not lowered.strip() or any(token in lowered for token in _PREVIEW_TOKENS):
        return LinkClick.Agent.PREVIEW, True
    if _CRAWLER.search(user_agent):
        return LinkClick.Agent.PREVIEW, True
    if _MOBILE.search(user_agent):
        return LinkClick.Agent.MOBILE, False
    if _DESKTOP.search(user_agent):
        return LinkClick.Agent.DESKTOP, False
    return LinkClick.Agent.OTHER, False


def link_click_record(
    *,
    code: str,
    user_agent: str = "",
    method: str = "GET",
    at: datetime | None = None,
) -> str | None:
    """Store a request for the short link ``code`` and return where it leads, or None
    for a code that names no tracked link (the caller answers 404).

    A person's click adds one to the message's ``clicks`` and sets its
    ``first_clicked_at`` the first time; a bot's (see :func:`agent_classify`) is
    kept, marked, and counts for nothing. One SQL statement on PostgreSQL (the
    redirect endpoint's whole cost), three in a transaction elsewhere. Links work
    as long as the message exists, whatever its campaign's state.

    When an integrator's endpoint subscribes to link.clicked, the click and its
    event are committed together instead (a few more round trips); see
    :func:`clicks_subscribed`.
    """
    agent, is_bot = agent_classify(user_agent, method)
    at = at or timezone.now()
    record = _record_postgresql if connection.vendor == "postgresql" else _record_orm
    announce = not is_bot and clicks_subscribed()
    for message_id, position in link_decode(code):
        if not announce:
            url = record(message_id, position, agent, is_bot, at)
        else:
            # The click and its link.clicked event (for integrators' webhooks) are
            # committed together; a preview is no click and publishes nothing.
            with transaction.atomic():
                url = record(message_id, position, agent, is_bot, at)
                if url is not None:
                    publish(
                        EventType.LINK_CLICKED,
                        partial(_click_data, message_id, destination(url), agent, at),
                    )
        if url is not None:
            return destination(url)
    return None


def clicks_subscribed() -> bool:
    """Whether an active webhook endpoint wants link.clicked events (read once every
    few seconds per process, see integrations.services.subscribed): the redirect
    costs one round trip when nobody listens, not a query of the endpoints and a
    transaction per click."""
    return subscribed(EventType.LINK_CLICKED.value)


def _click_data(message_id: int, url: str, agent: str, at: datetime) -> dict:
    message = Message.objects.values("campaign_id", "contact_id", "to").get(
        pk=message_id
    )
    return click_data(
        message_id=message_id,
        campaign_id=message["campaign_id"],
        contact_id=message["contact_id"],
        to=message["to"],
        url=url,
        agent=agent,
        clicked_at=at,
    )


def _record_postgresql(
    message_id: int, position: int, agent: str, is_bot: bool, at: datetime
) -> str | None:
    # The redirect does not wait for the disk: committed without waiting for the
    # WAL flush (which costs milliseconds, more than everything else), a click
    # is on disk within a fraction of a second; a crash of the database server
    # may lose the last ones, never leave them half-written. Only outside a
    # caller's transaction: inside one the click waits like any other write.
    # The connection of this thread, looked up once rather than on every use of
    # the ``connection`` proxy (a measurable share of a redirect's Python time).
    db = connections[DEFAULT_DB_ALIAS]
    sql = _click_sql(asynchronous=not db.in_atomic_block)
    params = [position, message_id, at, agent, is_bot, at, not is_bot]
    with _server_bound_cursor(db) as cursor:
        raw = db.connection
        # Prepared for this statement only: a connection that counted every query
        # towards preparing would keep the last hundred (with their literal values:
        # Django binds on the client) in memory, megabytes for bulk inserts.
        raw.prepare_threshold = 0
        try:
            cursor.execute(sql, params)
        finally:
            raw.prepare_threshold = None
        row = cursor.fetchone()
    return row[0] if row else None


@lru_cache(maxsize=2)
def _click_sql(*, asynchronous: bool) -> str:
    qn = connection.ops.quote_name
    message = qn(Message._meta.db_table)
    link = qn(TrackedLink._meta.db_table)
    click = qn(LinkClick._meta.db_table)
    # set_config(..., true) holds until this statement's implicit transaction
    # commits, and synchronous_commit is read at the commit: it is part of the
    # one statement (SET LOCAL would be a second one, which a prepared statement
    # cannot carry), and only runs when the link exists.
    unflushed = (
        ", set_config('synchronous_commit', 'off', true)" if asynchronous else ""
    )
    # The click and the message's counters are written by the statement that
    # finds the link: one round trip per redirect.
    return f"""
        WITH hit AS (
            SELECT m.id AS message_id, l.id AS link_id, l.url AS url{unflushed}
            FROM {message} m
            JOIN {link} l ON l.campaign_id = m.campaign_id AND l.position = %s
            WHERE m.id = %s
        ), stored AS (
            INSERT INTO {click} (message_id, link_id, clicked_at, agent, is_bot)
            SELECT message_id, link_id, %s, %s, %s FROM hit
        ), counted AS (
            UPDATE {message}
            SET clicks = clicks + 1, first_clicked_at = COALESCE(first_clicked_at, %s)
            WHERE id = (SELECT message_id FROM hit) AND %s
        )
        SELECT url FROM hit
    """


def _server_bound_cursor(db):
    """A cursor like ``db.cursor()`` (Django's error wrapping, and query
    logging in tests) whose parameters are bound on the server, so that psycopg
    prepares the statement on its connection (the first time, then reuses it):
    PostgreSQL then skips parsing and planning, about half of the click's CPU
    there. Django's own cursors bind on the client and are never prepared.
    """
    import psycopg

    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        cursor = psycopg.Cursor(db.connection)
    db.validate_thread_sharing()
    if db.queries_logged:
        return db.make_debug_cursor(cursor)
    return db.make_cursor(cursor)


def _record_orm(
    message_id: int, position: int, agent: str, is_bot: bool, at: datetime
) -> str | None:
    with transaction.atomic():
        hit = (
            TrackedLink.objects.filter(
                position=position,
                campaign__messages__pk=message_id,
            )
            .values_list("pk", "url")
            .first()
        )
        if hit is None:
            return None
        link_id, url = hit
        LinkClick.objects.create(
            message_id=message_id,
            link_id=link_id,
            clicked_at=at,
            agent=agent,
            is_bot=is_bot,
        )
        if not is_bot:
            Message.objects.filter(pk=message_id).update(
                clicks=F("clicks") + 1,
                first_clicked_at=Coalesce(F("first_clicked_at"), at),
            )
    return url

"""Benchmark: the admin pages that face a 1,000,000-contact audience.

Builds 1,000,000 contacts from five countries (80 % US, 8 % Canada, 6 % UK, 4 %
Germany, 2 % France) with a city and a tier in their attributes (a tenth also a
birthday), 3 % opted out (each with its consent event) and 1 % of the others
suppressed, plus 5,000 suppressed numbers that belong to no contact. They sit in two
overlapping lists (700,000 and 500,000 members, 200,000 in both) and 20 small ones;
50,000 replies fill the inbox and 14 imports the import history. A draft campaign
targets the two big lists. Then, with the Django test client logged in as a
superuser, it times each page several times (median and max) and counts its
queries: the contact changelist (unfiltered, by list, by subscription, by country,
searched by phone), a contact's page, the lists with their member counts, the inbox,
the imports, the campaign add page, the composer's JSON (its audience counted, then
cached) and the send and schedule confirmation pages.

Target: under 500 ms each (the composer's first call after a list change and the
confirmation pages: about 1 s). ``--reuse`` keeps the data of a previous run (same
``--contacts``) instead of building it again (about a minute).

    .venv/bin/python bench/admin_contacts.py [--contacts N] [--runs R] [--reuse]
        [--database-url URL]
"""

import argparse
from collections.abc import Callable
from datetime import timedelta

from admin_common import (
    TARGET_MS,
    add_admin_arguments,
    admin_client,
    bench_user,
    delete_bench_user,
    print_header,
    report_page,
    report_service,
    start_django,
)
from common import (
    AREA_CODES,
    FIRST_NAMES,
    LAST_NAMES,
    add_to_list,
    machine_load,
    phase,
    scalar,
    settle_database,
    truncate_app_tables,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/smscampaigns_bench_contacts"
#: The composer's first call after a list change and the confirmation pages count
#: the whole audience; a marketer waits for those once, not on every page.
COUNTING_TARGET_MS = 1000.0
CAMPAIGN = "Bench: spring sale"
BODY = "Hi {first_name|there}, spring sale at our {city} store: 20% off. "
BIG_LISTS = (("Newsletter", "mod(c.id, 10) < 7"), ("VIP", "mod(c.id, 10) >= 5"))
SMALL_LISTS = 20
INBOUND = 50_000
STRAY_SUPPRESSIONS = 5_000

# Contact i's country is picked by i mod 100, so the countries interleave along the
# ids as real sign-ups would. Each country builds a unique, valid mobile number
# from i (libphonenumber accepts every number of these ranges).
COUNTRY_SHARES = (("US", 80), ("CA", 8), ("GB", 6), ("DE", 4), ("FR", 2))
CITIES = {
    "US": ("Austin", "Boston", "Chicago", "Denver", "Miami", "Seattle"),
    "CA": ("Toronto", "Montréal", "Vancouver"),
    "GB": ("London", "Manchester", "Leeds"),
    "DE": ("Berlin", "München", "Köln"),
    "FR": ("Paris", "Lyon", "Marseille"),
}
TIERS = ("bronze", "silver", "gold")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_admin_arguments(
        parser, size="contacts", default_database_url=DEFAULT_DATABASE_URL
    )
    parser.add_argument(
        "--only", help="measure only the pages whose label contains this text"
    )
    args = parser.parse_args()

    print(f"Admin pages with {args.contacts:,} contacts in {args.database_url}")
    print(f"  {machine_load()}")
    start_django(args.database_url)
    if not (args.reuse and _built(args.contacts)):
        _build(args.contacts)
    _measure(args.runs, args.only)


def _built(contacts: int) -> bool:
    from campaigns.models import Campaign

    if not Campaign.objects.filter(name=CAMPAIGN).exists():
        return False
    return scalar("SELECT count(*) FROM contacts_contact") == contacts


# --- Data --------------------------------------------------------------------------


def _build(contacts: int) -> None:
    with phase("empty the tables"):
        truncate_app_tables()
        delete_bench_user()
    with phase(f"{contacts:,} contacts in {len(COUNTRY_SHARES)} countries"):
        _contacts(contacts)
    with phase("opt-outs and suppressions"):
        _consent()
    with phase("lists"):
        lists = [add_to_list(name, where) for name, where in BIG_LISTS]
        for n in range(SMALL_LISTS):
            add_to_list(f"Store event {n + 1:02}", f"mod(c.id, 2000) = {n}")
        for contact_list, size in lists:
            print(f"    {contact_list.name}: {size:,} members")
    with phase(f"{INBOUND:,} inbound replies"):
        _inbound()
    with phase("imports and the draft campaign"):
        _imports([contact_list for contact_list, _ in lists])
        _campaign([contact_list for contact_list, _ in lists])
    with phase("VACUUM ANALYZE and CHECKPOINT"):
        # A live database's visibility map is set by autovacuum; without it every
        # index-only scan would visit the heap.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("VACUUM")
        settle_database()


def _contacts(count: int) -> None:
    """Insert ``count`` contacts in one INSERT … SELECT (bypassing save(): each row
    gets the E.164 number, country and time zone save() would give it)."""
    from django.db import connection

    from contacts.phones import parse_phone

    lines = 10_000
    us_area = f"1 + (g.i / {lines}) %% {len(AREA_CODES)}"
    numbers = {
        "US": (
            f"'+1' || (%(codes)s::text[])[{us_area}]"
            f" || (230 + g.i / {lines} / {len(AREA_CODES)})::text"
            f" || lpad((g.i %% {lines})::text, 4, '0')"
        ),
        "CA": f"'+1416' || (230 + g.i / {lines})::text || lpad((g.i %% {lines})::text, 4, '0')",
        "GB": "'+4474' || lpad(g.i::text, 8, '0')",
        "DE": "'+49151' || lpad(g.i::text, 8, '0')",
        "FR": "'+336' || lpad(g.i::text, 8, '0')",
    }
    zones = {
        "US": f"(%(us_zones)s::text[])[{us_area}]",
        **{
            country: f"'{parse_phone(example).time_zone}'"
            for country, example in (
                ("CA", "+14162301234"),
                ("GB", "+447400001234"),
                ("DE", "+4915100001234"),
                ("FR", "+33600001234"),
            )
        },
    }
    country_case, number_case, zone_case, city_case = [], [], [], []
    upper = 0
    for country, share in COUNTRY_SHARES:
        upper += share
        when = f"WHEN g.i %% 100 < {upper}"
        country_case.append(f"{when} THEN '{country}'")
        number_case.append(f"{when} THEN {numbers[country]}")
        zone_case.append(f"{when} THEN {zones[country]}")
        cities = CITIES[country]
        city_case.append(
            f"{when} THEN (ARRAY{list(cities)!r}::text[])[1 + g.i / 100 %% {len(cities)}]"
        )
    assert upper == 100

    def case(whens: list[str]) -> str:
        return "CASE " + " ".join(whens) + " END"

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO contacts_contact (
                phone, first_name, last_name, attributes, country, time_zone,
                time_zone_set, opted_out_at, opt_out_source, created_at, updated_at
            )
            SELECT {case(number_case)},
                   (%(first_names)s::text[])[1 + g.i %% %(n_first)s],
                   (%(last_names)s::text[])[1 + g.i %% %(n_last)s],
                   jsonb_build_object('city', {case(city_case)},
                                      'tier', (%(tiers)s::text[])[1 + g.i %% 3])
                   || CASE WHEN g.i %% 10 = 3
                           THEN jsonb_build_object('birthday', '05-' || lpad((1 + g.i %% 28)::text, 2, '0'))
                           ELSE '{{}}'::jsonb END,
                   {case(country_case)},
                   {case(zone_case)},
                   '',
                   NULL, '',
                   now() - (%(count)s - g.i) * interval '1 minute',
                   now() - (%(count)s - g.i) * interval '1 minute'
            FROM generate_series(0, %(count)s - 1) AS g(i)
            ORDER BY g.i
            """,
            {
                "codes": list(AREA_CODES),
                "us_zones": [
                    parse_phone(f"+1{code}2301234").time_zone for code in AREA_CODES
                ],
                "first_names": list(FIRST_NAMES),
                "last_names": list(LAST_NAMES),
                "n_first": len(FIRST_NAMES),
                "n_last": len(LAST_NAMES),
                "tiers": list(TIERS),
                "count": count,
            },
        )


def _consent() -> None:
    """3 % opted out (a scramble of the id, so they spread over the table), each with
    its consent event; 1 % of the others suppressed, and numbers of no contact."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE contacts_contact
            SET opted_out_at = created_at + interval '30 days',
                opt_out_source = (ARRAY['keyword', 'keyword', 'api', 'admin'])[1 + mod(id, 4)]
            WHERE mod(hashint4(id::int)::bigint + 2147483648, 100) < 3
            """
        )
        cursor.execute(
            """
            INSERT INTO contacts_consentevent
                (phone, contact_id, kind, source, text, provider, created_at)
            SELECT phone, id, 'opt_out', opt_out_source,
                   CASE WHEN opt_out_source = 'keyword' THEN 'STOP' ELSE '' END,
                   CASE WHEN opt_out_source = 'keyword' THEN 'vonage' ELSE '' END,
                   opted_out_at
            FROM contacts_contact WHERE opted_out_at IS NOT NULL ORDER BY id
            """
        )
        cursor.execute(
            """
            INSERT INTO contacts_suppression (phone, reason, source, note, created_at)
            SELECT phone, (ARRAY['manual', 'invalid'])[1 + mod(id, 2)], 'import', 'bench', now()
            FROM contacts_contact
            WHERE opted_out_at IS NULL AND mod(hashint4(id::int + 7)::bigint + 2147483648, 100) = 50
            """
        )
        cursor.execute(
            """
            INSERT INTO contacts_suppression (phone, reason, source, note, created_at)
            SELECT '+1646' || (230 + g.i / 10000)::text || lpad((g.i %% 10000)::text, 4, '0'),
                   'opt_out', 'keyword', 'bench', now()
            FROM generate_series(0, %s - 1) AS g(i)
            """,
            [STRAY_SUPPRESSIONS],
        )


def _inbound() -> None:
    """Replies over 90 days: 60 % plain text, 30 % STOP, 5 % START, 5 % HELP; one in
    ten from a number that is no contact."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO webhooks_inboundmessage (
                provider, provider_message_id, from_number, to_number, text, keyword,
                contact_id, received_at, payload
            )
            SELECT (ARRAY['vonage', 'twilio', 'simulator'])[1 + g.i %% 3],
                   'IN' || lpad(g.i::text, 10, '0'),
                   CASE WHEN g.i %% 10 = 9
                        THEN '+1646' || (400 + g.i / 10000)::text
                             || lpad((g.i %% 10000)::text, 4, '0')
                        ELSE c.phone END,
                   '+15005550006',
                   k.text, k.keyword,
                   CASE WHEN g.i %% 10 = 9 THEN NULL ELSE c.id END,
                   now() - (%(count)s - g.i) * interval '155 seconds',
                   '{}'::jsonb
            FROM generate_series(0, %(count)s - 1) AS g(i)
            JOIN contacts_contact c ON c.id = 1 + (g.i::bigint * 7919) %% %(contacts)s
            CROSS JOIN LATERAL (
                SELECT mod(hashint4(g.i::int)::bigint + 2147483648, 20) AS n
            ) h
            CROSS JOIN LATERAL (
                SELECT CASE WHEN h.n < 12 THEN ARRAY['', 'What time does the store open on Sunday?']
                            WHEN h.n < 18 THEN ARRAY['opt_out', 'STOP']
                            WHEN h.n = 18 THEN ARRAY['opt_in', 'START']
                            ELSE ARRAY['help', 'HELP'] END AS a
            ) x
            CROSS JOIN LATERAL (SELECT x.a[1] AS keyword, x.a[2] AS text) k
            ORDER BY g.i
            """,
            {
                "count": INBOUND,
                "contacts": scalar("SELECT count(*) FROM contacts_contact"),
            },
        )


def _imports(lists: list) -> None:
    from django.utils import timezone

    from contacts.models import ImportJob

    user = bench_user()
    now = timezone.now()
    jobs = []
    for n in range(12):
        errors = [
            {"row": 2 + k, "error": "not a valid phone number"} for k in range(n * 40)
        ]
        jobs.append(
            ImportJob(
                status=ImportJob.Status.DONE,
                contact_list=lists[n % 2],
                region="US",
                file_name=f"spring-{n + 1:02}.csv",
                result={
                    "created": 50_000 + n,
                    "updated": 1_000,
                    "skipped": 20,
                    "error_count": len(errors),
                    "errors": errors[:1000],
                },
                created_by=user,
                columns={"Mobile": "phone", "First name": "first_name"},
                finished_at=now - timedelta(days=n),
            )
        )
    jobs.append(
        ImportJob(
            status=ImportJob.Status.FAILED,
            file_name="broken.csv",
            error="The file is not UTF-8 text.",
            created_by=user,
        )
    )
    jobs.append(
        ImportJob(
            status=ImportJob.Status.PENDING, file_name="waiting.csv", created_by=user
        )
    )
    ImportJob.objects.bulk_create(jobs)


def _campaign(lists: list) -> None:
    from django.conf import settings

    from campaigns.models import Campaign

    campaign = Campaign.objects.create(
        name=CAMPAIGN,
        body=BODY,
        opt_out_footer=settings.SMS_OPT_OUT_FOOTER,
        provider="simulator",
    )
    campaign.lists.set(lists)


# --- Measurements ------------------------------------------------------------------


def _measure(runs: int, only: str | None) -> None:
    from django.core.cache import cache
    from django.urls import reverse

    from campaigns.models import Campaign
    from campaigns.preview import campaign_estimate
    from contacts.models import Contact, ContactList

    campaign = Campaign.objects.get(name=CAMPAIGN)
    lists = list(campaign.lists.order_by("pk"))
    big = lists[0]
    # A US contact in both lists, opted out, with a consent event.
    contact = (
        Contact.objects.filter(
            country="US", opted_out_at__isnull=False, memberships__contact_list=lists[1]
        )
        .filter(memberships__contact_list=big)
        .order_by("pk")
    )
    # Not the very first one (an unusually cheap lookup), but small runs have few.
    contact = contact[min(100, contact.count() - 1)]
    national = f"({contact.phone[2:5]}) {contact.phone[5:8]}-{contact.phone[8:]}"
    client = admin_client()

    print()
    print(
        f"{scalar('SELECT count(*) FROM contacts_contact'):,} contacts, "
        f"{scalar('SELECT count(*) FROM contacts_listmembership'):,} memberships in "
        f"{ContactList.objects.count()} lists, "
        f"{scalar('SELECT count(*) FROM webhooks_inboundmessage'):,} inbound replies"
    )
    changelist = reverse("admin:contacts_contact_changelist")
    compose = reverse("admin:campaigns_campaign_compose")
    compose_data = {
        "body": BODY,
        "opt_out_footer": campaign.opt_out_footer,
        "lists": [item.pk for item in lists],
        "provider": campaign.provider,
    }
    pages: list[tuple[str, str, dict | None, Callable | None, float]] = [
        ("contacts", changelist, None, None, TARGET_MS),
        (
            "contacts: in a list (700k)",
            f"{changelist}?memberships__contact_list__id__exact={big.pk}",
            None,
            None,
            TARGET_MS,
        ),
        (
            "contacts: opted out",
            f"{changelist}?subscription=opted_out",
            None,
            None,
            TARGET_MS,
        ),
        (
            "contacts: subscribed",
            f"{changelist}?subscription=subscribed",
            None,
            None,
            TARGET_MS,
        ),
        ("contacts: country GB", f"{changelist}?country=GB", None, None, TARGET_MS),
        (
            "contacts: search phone (E.164)",
            f"{changelist}?q={contact.phone.replace('+', '%2B')}",
            None,
            None,
            TARGET_MS,
        ),
        (
            "contacts: search phone (national)",
            f"{changelist}?q={national}",
            None,
            None,
            TARGET_MS,
        ),
        ("contacts: search name", f"{changelist}?q=Okafor", None, None, TARGET_MS),
        (
            "contacts: search, no match",
            f"{changelist}?q=Zebedee",
            None,
            None,
            TARGET_MS,
        ),
        (
            "contacts: search part of a number",
            f"{changelist}?q={contact.phone[2:9]}",
            None,
            None,
            TARGET_MS,
        ),
        (
            "contact page",
            reverse("admin:contacts_contact_change", args=[contact.pk]),
            None,
            None,
            TARGET_MS,
        ),
        (
            "contact lists (member counts)",
            reverse("admin:contacts_contactlist_changelist"),
            None,
            None,
            TARGET_MS,
        ),
        (
            "inbox",
            reverse("admin:webhooks_inboundmessage_changelist"),
            None,
            None,
            TARGET_MS,
        ),
        (
            "inbox: STOP replies",
            reverse("admin:webhooks_inboundmessage_changelist")
            + "?keyword__exact=opt_out",
            None,
            None,
            TARGET_MS,
        ),
        (
            "contact imports",
            reverse("admin:contacts_importjob_changelist"),
            None,
            None,
            TARGET_MS,
        ),
        (
            "campaign add page",
            reverse("admin:campaigns_campaign_add"),
            None,
            None,
            TARGET_MS,
        ),
        (
            "campaign page (draft, 2 lists)",
            reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
            None,
            None,
            TARGET_MS,
        ),
        (
            "composer JSON: lists changed",
            compose,
            compose_data,
            cache.clear,
            COUNTING_TARGET_MS,
        ),
        ("composer JSON: cached", compose, compose_data, None, TARGET_MS),
        (
            "send confirmation: first",
            reverse("admin:campaigns_campaign_send", args=[campaign.pk]),
            None,
            cache.clear,
            COUNTING_TARGET_MS,
        ),
        (
            "send confirmation: again",
            reverse("admin:campaigns_campaign_send", args=[campaign.pk]),
            None,
            None,
            TARGET_MS,
        ),
        (
            "schedule confirmation: first",
            reverse("admin:campaigns_campaign_schedule", args=[campaign.pk]),
            None,
            cache.clear,
            COUNTING_TARGET_MS,
        ),
        (
            "schedule confirmation: again",
            reverse("admin:campaigns_campaign_schedule", args=[campaign.pk]),
            None,
            None,
            TARGET_MS,
        ),
    ]
    print_header("target")
    for label, url, data, before, target in pages:
        if only and only not in label:
            continue
        report_page(label, url, client, runs, data=data, before=before, target=target)

    if not only or "service" in only:
        estimate = report_service(
            "campaign_estimate (service)",
            runs,
            lambda: campaign_estimate(
                body=campaign.body,
                lists=lists,
                provider=campaign.provider,
                opt_out_footer=campaign.opt_out_footer,
            ),
            before=cache.clear,
        )
        print(
            f"  {estimate.in_lists:,} in the lists, {estimate.contacts:,} contacts, "
            f"{estimate.opted_out:,} opted out, {estimate.suppressed:,} suppressed, "
            f"{estimate.recipients:,} recipients, problems {estimate.problems}"
        )
    print()
    print(f"({machine_load()} at the end)")


if __name__ == "__main__":
    main()

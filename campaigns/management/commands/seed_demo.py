"""Sample contacts, a list and a draft campaign, so a new install has something to show."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from campaigns.models import Campaign
from contacts.models import ContactList, Source
from contacts.services import contact_upsert, list_add_contacts

# 555-0100..0199 numbers are reserved for fiction in North America, so the demo can
# never text a real person even through a real provider.
_AREA_CODES = ["415", "212", "312", "206", "512"]
_FIRST_NAMES = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Linus",
    "Guido",
    "Radia",
]
_LAST_NAMES = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Torvalds",
    "Rossum",
    "Perlman",
]
_CITIES = ["San Francisco", "New York", "Chicago", "Seattle", "Austin"]

DEMO_LIST = "Demo subscribers"
DEMO_CAMPAIGN = "Demo: spring sale"


class Command(BaseCommand):
    help = "Create sample contacts, a list and a draft campaign (safe to run again); --send sends it."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--contacts", type=int, default=100, help="How many contacts (max 500)."
        )
        parser.add_argument(
            "--send",
            action="store_true",
            help="Then send the demo campaign through its provider (the simulator by default).",
        )

    def handle(self, *args, contacts: int, send: bool, **options) -> None:
        campaign = self._seed(contacts)
        if send:
            self.stdout.write(f"Sending campaign #{campaign.pk} with send_campaign:")
            call_command(
                "send_campaign",
                campaign.pk,
                stdout=self.stdout._out,
                stderr=self.stderr._out,
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    "Demo data ready. Send it with "
                    f"`.venv/bin/python manage.py send_campaign {campaign.pk}`."
                )
            )
        self.stdout.write(
            "Admin: create a user with `.venv/bin/python manage.py createsuperuser`, "
            "then `make run` and open http://127.0.0.1:8000/admin/"
        )

    @transaction.atomic
    def _seed(self, contacts: int) -> Campaign:
        count = max(1, min(contacts, len(_AREA_CODES) * 100))
        demo_list, _ = ContactList.objects.get_or_create(
            name=DEMO_LIST,
            defaults={"description": "Fictional numbers created by seed_demo."},
        )
        people = []
        created = 0
        for i in range(count):
            area, line = _AREA_CODES[i // 100], 100 + i % 100
            contact, is_new = contact_upsert(
                phone=f"+1{area}555{line:04d}",
                first_name=_FIRST_NAMES[i % len(_FIRST_NAMES)],
                last_name=_LAST_NAMES[(i // len(_FIRST_NAMES)) % len(_LAST_NAMES)],
                attributes={"city": _CITIES[i // 100]},
            )
            people.append(contact)
            created += is_new
        added = list_add_contacts(
            contact_list=demo_list, contacts=people, source=Source.IMPORT
        )
        campaign, campaign_created = Campaign.objects.get_or_create(
            name=DEMO_CAMPAIGN,
            defaults={
                "body": "Hi {first_name|there}, spring sale: 20% off everything in {city|town} this weekend!"
            },
        )
        campaign.lists.add(demo_list)

        self.stdout.write(
            f"Contacts: {created} created, {count - created} already there; "
            f"list {demo_list.name!r}: {added} added ({demo_list.memberships.count()} members)."
        )
        self.stdout.write(
            f"Campaign #{campaign.pk} {campaign.name!r} ({campaign.get_status_display()}, "
            f"provider {campaign.provider}){' created' if campaign_created else ''}."
        )
        return campaign

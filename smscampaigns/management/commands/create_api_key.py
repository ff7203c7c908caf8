from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from smscampaigns.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who or what will use the key.")
        parser.add_argument("--user", help="Username recorded as the key's creator.")

    def handle(self, *args, name: str, user: str | None, **options) -> None:
        creator = None
        if user:
            try:
                creator = get_user_model().objects.get(username=user)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user {user!r}") from None
        key, raw = ApiKey.generate(name=name, created_by=creator)
        self.stdout.write(raw)
        self.stderr.write(
            f"API key {key.prefix}… for {name!r}: store it now, it cannot be shown again."
        )

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from smscampaigns.models import ApiKey, Scope


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who or what will use the key.")
        parser.add_argument(
            "--scope",
            dest="scopes",
            action="append",
            choices=[*Scope.values, "all"],
            required=True,
            help="What the key may do (repeat for several): "
            + ", ".join(Scope.values)
            + ", or all.",
        )
        parser.add_argument("--user", help="Username recorded as the key's creator.")

    def handle(
        self, *args, name: str, scopes: list[str], user: str | None, **options
    ) -> None:
        creator = None
        if user:
            try:
                creator = get_user_model().objects.get(username=user)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user {user!r}") from None
        if "all" in scopes:
            scopes = list(Scope.values)
        key, raw = ApiKey.generate(name=name, scopes=scopes, created_by=creator)
        self.stdout.write(raw)
        self.stderr.write(
            f"API key {key.prefix}… for {name!r} ({', '.join(key.scopes)}): "
            "store it now, it cannot be shown again."
        )

"""ASGI entry point."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smscampaigns.settings")

application = get_asgi_application()

# Production pages cannot work without collected static files: refuse to start, saying
# how to fix it, rather than serve pages that fail.
from smscampaigns.static_files import require_collected  # noqa: E402

require_collected()

"""WSGI entry point (gunicorn smscampaigns.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smscampaigns.settings")

application = get_wsgi_application()

# Production pages cannot work without collected static files: refuse to start, saying
# how to fix it, rather than serve pages that fail.
from smscampaigns.static_files import require_collected  # noqa: E402

require_collected()

# Short links (/l/<code>) are answered before Django's request handling: see
# campaigns.redirects. Other wrappers may wrap ``application`` again.
from campaigns.redirects import ShortLinkApp  # noqa: E402

application = ShortLinkApp(application)

# Vendor callbacks (/webhooks/<alias>/status/ and /inbound/) likewise: see webhooks.wsgi.
from webhooks.wsgi import CallbackApp  # noqa: E402

application = CallbackApp(application)

"""Vendor callbacks answered before Django's request handling (smscampaigns.wsgi).

During a campaign the vendors call back dozens of times a second (a receipt for every
message, every reply, a wave of STOPs), each waiting for our answer and retrying what
is slow. The webhook view does one statement (webhooks.queue); the middleware in front
of it (sessions, CSRF, authentication, messages, login throttling, security headers
for pages), the URL resolver and the per-request database health check (another round
trip) would cost more than the view itself, and serve nothing a vendor's callback uses.

:class:`CallbackApp` wraps the WSGI application and sends ``POST`` and ``GET`` to
``/webhooks/<alias>/status/`` and ``/webhooks/<alias>/inbound/`` straight to the
view, with the same request object; everything else goes to Django. The view is the
one the URL configuration routes to, so ``runserver``, the test client and any other
server give the same answers, only slower.
"""

import logging
import re

from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest, get_script_name
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import set_script_prefix

from .views import provider_callback

logger = logging.getLogger(__name__)

_PATH = re.compile(r"/webhooks/(?P<alias>[-a-zA-Z0-9_]+)/(?P<kind>status|inbound)/")


class CallbackApp:
    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") not in ("POST", "GET"):
            return self.app(environ, start_response)
        response = self._answer(environ, match["alias"], match["kind"])
        status = f"{response.status_code} {response.reason_phrase}"
        start_response(
            status, [*response.items(), ("X-Content-Type-Options", "nosniff")]
        )
        return [response.content]

    def _answer(self, environ, alias: str, kind: str) -> HttpResponse:
        request = WSGIRequest(environ)
        try:
            # What Django's CommonMiddleware would refuse (a Host not in ALLOWED_HOSTS).
            request.get_host()
        except DisallowedHost:
            return JsonResponse({"error": "host not allowed"}, status=400)
        # As Django's handler does for every request.
        set_script_prefix(get_script_name(environ))
        try:
            return provider_callback(request, alias=alias, kind=kind)
        except Exception:
            # The view answers every failure it knows (4xx, 503); anything else is a
            # bug, answered 500 so the vendor retries, and logged as Django would.
            logger.exception("%s %s callback failed", alias, kind)
            return JsonResponse({"error": "server error"}, status=500)
        finally:
            # A connection that failed (the database restarted) is closed here, so the
            # next callback opens a new one. The health check Django makes at the start
            # of every request is not made: that is a round trip per callback.
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()

"""The short link endpoint, ``/l/<code>``: redirect at once, record the click.

Two ways in, one behaviour. :class:`ShortLinkApp` wraps the WSGI application
(smscampaigns.wsgi) and answers short links before Django's request handling: a
campaign's links are clicked by thousands of people within minutes, and
middleware, URL resolving and sessions would cost more than the redirect itself
(one SQL statement). :func:`short_link` is the same as a Django view, for
``runserver``, the test client and any deployment that serves Django another way.
A code that names nothing is left to Django either way: its plain 404 page.
"""

import logging
from functools import lru_cache

from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.encoding import iri_to_uri
from django.views.decorators.http import require_safe

from .clicks import link_click_record
from .links import SHORT_PATH

logger = logging.getLogger(__name__)

#: The answer's headers besides Location: never cached (each click must reach us),
#: and no referrer passed on to the destination.
_HEADERS = [
    ("Cache-Control", "private, no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Length", "0"),
]


# A campaign has a few links clicked thousands of times: quote each once.
_location = lru_cache(maxsize=1024)(iri_to_uri)


@require_safe
def short_link(request: HttpRequest, code: str) -> HttpResponse:
    url = link_click_record(
        code=code,
        user_agent=request.headers.get("User-Agent", ""),
        method=request.method or "GET",
    )
    if url is None:
        raise Http404("No such link.")
    response = HttpResponse(status=302)
    response["Location"] = iri_to_uri(url)
    for name, value in _HEADERS[:-1]:
        response[name] = value
    return response


class ShortLinkApp:
    """WSGI middleware: answers ``GET``/``HEAD /l/<code>`` for known codes and passes
    everything else (other paths, unknown codes, a database error) to ``app``."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if not path.startswith(SHORT_PATH) or method not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        try:
            url = link_click_record(
                code=path[len(SHORT_PATH) :],
                user_agent=environ.get("HTTP_USER_AGENT", ""),
                method=method,
            )
        except DatabaseError:
            # A dropped connection is reopened by the next request; Django
            # answers this one (and logs whatever it runs into).
            logger.exception("short link %s: recording the click failed", path)
            connection.close()
            return self.app(environ, start_response)
        if url is None:
            return self.app(environ, start_response)
        start_response("302 Found", [("Location", _location(url)), *_HEADERS])
        return [b""]

"""Site-wide views that belong to no app."""

from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.views.decorators.cache import cache_control

FAVICON = "smscampaigns/favicon.svg"


@cache_control(max_age=86_400, public=True)
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """``/favicon.ico``, which every browser asks for on every site, whatever the
    pages link: a redirect to the static icon (by its hashed name in production)
    rather than a 404 in the log for each page."""
    return HttpResponseRedirect(static(FAVICON))

import functools
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from providers import get_provider
from providers.messages import Callback
from smscampaigns import metrics

from .handlers import handle_callback


def _measured(view):
    """Each callback's duration and outcome, for /metrics."""

    @functools.wraps(view)
    def measured(request: HttpRequest, alias: str, kind: str) -> HttpResponse:
        started = time.perf_counter()
        response = None
        try:
            response = view(request, alias, kind)
            return response
        finally:
            metrics.webhook_observe(
                # Only configured aliases: any path would otherwise add a series.
                vendor=alias if alias in settings.SMS_PROVIDERS else "other",
                kind=kind,
                outcome=_outcome(response),
                seconds=time.perf_counter() - started,
            )

    return measured


def _outcome(response: HttpResponse | None) -> str:
    code = response.status_code if response is not None else 500
    if code < 300:
        return "accepted"
    if code >= 500:
        return "error"
    return {
        400: "malformed",
        401: "unauthorized",
        404: "unknown_provider",
        405: "bad_method",
        411: "malformed",
    }.get(code, str(code))


@csrf_exempt
@_measured
def provider_callback(request: HttpRequest, alias: str, kind: str) -> JsonResponse:
    """A vendor's delivery receipt (kind "status") or inbound message (kind "inbound")."""
    if request.method not in ("POST", "GET"):
        return JsonResponse(
            {"error": "use POST (or GET where the vendor is set to GET)"}, status=405
        )
    try:
        body = _body(request)
    except RequestDataTooBig:
        return JsonResponse(
            {"error": f"body over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"},
            status=400,
        )
    except LengthRequired:
        return JsonResponse(
            {
                "error": "a chunked body needs a server that reads it; send Content-Length"
            },
            status=411,
        )
    callback = Callback(
        method=request.method,
        url=_public_url(request),
        headers=dict(request.headers),
        body=body,
        content_type=request.content_type or "",
    )
    if request.method == "POST" and not body:
        # Nothing to verify or keep: storing it would let anyone write rows.
        return JsonResponse({"error": "empty body"}, status=400)
    outcome = handle_callback(alias=alias, kind=kind, callback=callback)
    if outcome.status_code >= 300:
        return JsonResponse({"error": outcome.detail}, status=outcome.status_code)
    if answer := _vendor_answer(alias, kind):
        content_type, content = answer
        return HttpResponse(content, content_type=content_type)
    if outcome.queued:
        return JsonResponse({"status": "ok", "queued": outcome.queued})
    return JsonResponse({"status": "ok", "applied": outcome.applied})


class LengthRequired(Exception):
    """A chunked body the server in front of Django does not end for us."""


def _body(request: HttpRequest) -> bytes:
    """The request body, chunked ones included.

    Django reads CONTENT_LENGTH bytes, so a chunked body (no Content-Length) reads as
    empty. A server that decodes chunked bodies and marks where they end
    (``wsgi.input_terminated``: gunicorn, uWSGI) lets us read it to its end, within
    the same size cap; under any other server it is refused with 411 rather than
    mistaken for an empty body.
    """
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    if request.META.get("CONTENT_LENGTH") or not chunked:
        return request.body
    if not request.META.get("wsgi.input_terminated"):
        raise LengthRequired
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = request.META["wsgi.input"].read(limit + 1 if limit is not None else -1)
    if limit is not None and len(body) > limit:
        raise RequestDataTooBig
    return body


def _vendor_answer(alias: str, kind: str) -> tuple[str, bytes] | None:
    """The answer the vendor documents for an accepted callback, if any (the
    callback was handled, so the provider exists)."""
    try:
        return get_provider(alias).callback_answer(kind)
    except Exception:  # the form of the answer must never fail a callback
        return None


def _public_url(request: HttpRequest) -> str:
    # Signatures (Plivo) cover the exact URL the vendor called: behind a proxy that is
    # the public origin, not the address the app sees.
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + request.get_full_path()
    return request.build_absolute_uri()

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from providers import get_provider
from providers.messages import Callback

from .handlers import handle_callback


@csrf_exempt
def provider_callback(request: HttpRequest, alias: str, kind: str) -> JsonResponse:
    """A vendor's delivery receipt (kind "status") or inbound message (kind "inbound")."""
    if request.method not in ("POST", "GET"):
        return JsonResponse(
            {"error": "use POST (or GET where the vendor is set to GET)"}, status=405
        )
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse(
            {"error": f"body over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"},
            status=400,
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
    return JsonResponse({"status": "ok", "applied": outcome.applied})


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

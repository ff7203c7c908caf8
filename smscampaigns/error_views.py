"""Error pages: JSON in the API's error format under /api/, Django's pages elsewhere."""

from django.http import JsonResponse
from django.views import defaults


def _api(request) -> bool:
    return request.path.startswith("/api/")


def _json(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"status": status, "code": code, "message": message}}, status=status
    )


def bad_request(request, exception, *args, **kwargs):
    if _api(request):
        return _json(400, "bad_request", "The request could not be read.")
    return defaults.bad_request(request, exception, *args, **kwargs)


def not_found(request, exception, *args, **kwargs):
    if _api(request):
        return _json(404, "not_found", "No such resource.")
    return defaults.page_not_found(request, exception, *args, **kwargs)


def server_error(request, *args, **kwargs):
    if _api(request):
        return _json(500, "server_error", "Something went wrong on our side.")
    return defaults.server_error(request, *args, **kwargs)

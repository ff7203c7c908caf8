"""What each API operation needs: a scope for API keys, model permissions for people.

Every API view names, per operation, a :class:`Rule`: the key scope it needs and the
Django model permissions a logged-in user needs (``view`` for reads too, unlike DRF's
``DjangoModelPermissions``). Operations that show phone numbers or texts also need
``contacts.view_contact`` (:mod:`contacts.permissions`, the admin's rule). An
operation without a rule is refused: a new endpoint is closed until it says what it
needs.
"""

from dataclasses import dataclass

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from contacts.permissions import CONTACT_DATA_PERMISSION

from .models import ApiKey, Scope


@dataclass(frozen=True)
class Rule:
    scope: str
    perms: tuple[str, ...] = ()


def rule(scope: str, *perms: str) -> Rule:
    return Rule(scope, perms)


def model_rules(
    model: str, *, write_scope: str, contact_data: bool = False
) -> dict[str, Rule]:
    """The rules of a model's CRUD operations (``model`` as "app_label.modelname").

    Reads need ``view``; create, update and delete need ``add``, ``change`` and
    ``delete``, and the ``write_scope``. With ``contact_data`` every operation also
    needs ``contacts.view_contact``, since every answer shows the model's numbers.
    """
    app_label, name = model.split(".")
    extra = (CONTACT_DATA_PERMISSION,) if contact_data else ()

    def need(scope: str, action: str) -> Rule:
        return Rule(scope, (f"{app_label}.{action}_{name}", *extra))

    return {
        "list": need(Scope.READ, "view"),
        "retrieve": need(Scope.READ, "view"),
        "create": need(write_scope, "add"),
        "update": need(write_scope, "change"),
        "partial_update": need(write_scope, "change"),
        "destroy": need(write_scope, "delete"),
    }


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"


def operation(request, view) -> str:
    """The name a view's ``api_rules`` use for this request.

    A viewset's action (``list``, ``opt_out``; ``members:delete`` when one action
    takes several methods); an APIView's method (``get``, ``post``). HEAD reads like
    GET, and OPTIONS needs what reading the same URL needs.
    """
    method = request.method.lower()
    action = getattr(view, "action", None)
    if action is None:
        return "get" if method in ("head", "options") else method
    if action == "metadata":
        lookup = view.lookup_url_kwarg or view.lookup_field
        return "retrieve" if view.kwargs.get(lookup) else "list"
    rules = view.api_rules
    if method == "head":
        method = "get"
    return f"{action}:{method}" if f"{action}:{method}" in rules else action


class ApiPermission(BasePermission):
    """Keys need the operation's scope; people need its model permissions."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF answers 401 (or 403 for a session without login)
        if getattr(view, request.method.lower(), None) is None:
            return True  # no handler: DRF answers 405 and nothing runs
        rules: dict[str, Rule] = getattr(view, "api_rules", {})
        need = rules.get(operation(request, view))
        if need is None:
            raise exceptions.PermissionDenied("This operation is not open to you.")
        if isinstance(request.auth, ApiKey):
            if not request.auth.has_scope(need.scope):
                raise MissingScope(
                    f"This API key does not have the “{need.scope}” scope "
                    "that this operation needs."
                )
            return True
        missing = [perm for perm in need.perms if not user.has_perm(perm)]
        if missing:
            raise exceptions.PermissionDenied(
                f"Your account lacks the permission(s) {', '.join(missing)}."
            )
        return True

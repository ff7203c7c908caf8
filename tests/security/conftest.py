"""Actors for the security tests: staff with exactly the permissions named."""

import pytest
from rest_framework.test import APIClient

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache

from smscampaigns.models import ApiKey


@pytest.fixture(autouse=True)
def _clear_cache():
    # Rate-limit counters and login-failure records must not leak between tests.
    cache.clear()
    yield
    cache.clear()


def _permissions(names: tuple[str, ...]) -> list[Permission]:
    found = []
    for name in names:
        app_label, codename = name.split(".")
        found.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return found


@pytest.fixture
def staff_user(db):
    """``staff_user("contacts.view_contact", …)``: a staff account with those only."""
    counter = iter(range(1000))

    def make(*perms: str):
        user = get_user_model().objects.create_user(
            f"staff{next(counter)}", password="pw-for-tests-only", is_staff=True
        )
        user.user_permissions.add(*_permissions(perms))
        return user

    return make


@pytest.fixture
def staff_api(staff_user):
    """An API client logged in (by session) as staff with the permissions named."""

    def make(*perms: str) -> APIClient:
        client = APIClient()
        client.force_login(staff_user(*perms))
        return client

    return make


@pytest.fixture
def key_api(db):
    """An API client authenticating with a new key that has the scopes named."""

    def make(*scopes: str) -> APIClient:
        _, raw = ApiKey.generate(name="tests", scopes=scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
        return client

    return make

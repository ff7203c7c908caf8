"""Finding 8: the admin login had no brute-force protection (30 wrong passwords,
then the right one, worked)."""

import pytest

from django.contrib.auth import get_user_model
from django.urls import reverse

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")


@pytest.fixture
def admin_user():
    return get_user_model().objects.create_superuser("boss", password="right-pw-123")


def attempt(client, password: str, ip: str = "203.0.113.7"):
    return client.post(
        LOGIN,
        {"username": "boss", "password": password, "next": "/admin/"},
        REMOTE_ADDR=ip,
    )


def test_the_right_password_is_refused_after_five_wrong_ones(client, admin_user):
    for _ in range(4):
        assert attempt(client, "guess").status_code == 200  # the form, with an error
    assert attempt(client, "guess").status_code == 429  # the fifth locks the pair
    locked = attempt(client, "right-pw-123")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another address is not locked out of this account by the attacker.
    assert attempt(client, "right-pw-123", ip="198.51.100.9").status_code == 302


def test_a_few_mistakes_then_the_right_password_log_in(client, admin_user):
    for _ in range(4):
        attempt(client, "typo")
    assert attempt(client, "right-pw-123").status_code == 302


def test_the_limit_comes_from_settings(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 2
    attempt(client, "guess")
    attempt(client, "guess")
    assert attempt(client, "right-pw-123").status_code == 429

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# Variables the test settings set; the production settings under test must not see them,
# nor a developer's .env.
_TEST_ONLY = {
    "SECRET_KEY",
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "SMS_DEFAULT_PROVIDER",
    "DJANGO_SETTINGS_MODULE",
}


def run_manage(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}
    env.update(ENV_FILE=os.devnull, **env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_check(**env_overrides: str) -> subprocess.CompletedProcess:
    return run_manage("check", **env_overrides)


@pytest.mark.parametrize("secret", ["", None])
def test_production_without_secret_key_stops_with_a_clear_error(secret):
    overrides = {"DEBUG": "false"}
    if secret is not None:
        overrides["SECRET_KEY"] = secret
    result = run_check(**overrides)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_runs_without_secret_key():
    result = run_check(DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_unknown_default_provider_is_refused():
    result = run_check(DEBUG="true", SMS_DEFAULT_PROVIDER="pigeon")
    assert result.returncode != 0
    assert "SMS_DEFAULT_PROVIDER='pigeon'" in result.stderr


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "ALLOWED_HOSTS": "sms.example.com",
    "PUBLIC_BASE_URL": "https://sms.example.com",
}


def test_production_settings_pass_the_deploy_checks(tmp_path):
    # As a deploy does (and `make lint`): static files collected first.
    collected = run_manage(
        "collectstatic", "--no-input", "-v0", STATIC_ROOT=str(tmp_path), **PRODUCTION
    )
    assert collected.returncode == 0, collected.stderr
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        STATIC_ROOT=str(tmp_path),
        **PRODUCTION,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_the_settings_read_is_in_env_example():
    import re

    source = (ROOT / "smscampaigns" / "settings.py").read_text()
    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_0-9]+)"', source))
    read |= {
        f"{alias.upper()}_PRICE" for alias in ("vonage", "plivo", "sinch", "simulator")
    }
    read |= {"ENV_FILE"} if "ENV_FILE" in source else set()
    example = (ROOT / ".env.example").read_text()
    declared = set(re.findall(r"^#?\s*([A-Z_0-9]+)=", example, flags=re.M))
    missing = sorted(read - declared - {"ENV_FILE"})
    assert not missing, f"add to .env.example: {missing}"


def test_a_broker_without_a_shared_cache_is_refused():
    result = run_check(DEBUG="true", CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert result.returncode != 0
    assert "CACHE_URL is not" in result.stderr

"""Production refuses to run without collected static files, and says how to fix it."""

import json
import os
import socket
import subprocess
import sys
from io import StringIO

import pytest

from django.core.management import call_command
from django.core.management.base import CommandError

from smscampaigns.static_files import collection_problem
from tests.smscampaigns.test_settings import _TEST_ONLY, PRODUCTION, ROOT, run_manage

MANIFEST = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # The check holds for any hashed storage; this one skips compressing.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
    },
}


@pytest.fixture
def production_static(settings, tmp_path):
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = MANIFEST
    return tmp_path


def test_nothing_collected_is_a_problem(production_static):
    assert "No collected static files" in collection_problem()


def test_a_full_collection_is_fine(production_static):
    call_command("collectstatic", interactive=False, verbosity=0)
    assert collection_problem() is None


def test_a_collection_from_an_older_release_is_a_problem(production_static):
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest_path = production_static / "staticfiles.json"
    manifest = json.loads(manifest_path.read_text())
    # As if composer.js had been added after the last collectstatic.
    del manifest["paths"]["campaigns/composer.js"]
    manifest_path.write_text(json.dumps(manifest))
    problem = collection_problem()
    assert "1 static file(s) are missing" in problem
    assert "campaigns/composer.js" in problem


def test_development_and_plain_storages_need_no_collection(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = MANIFEST
    settings.DEBUG = True
    assert collection_problem() is None
    settings.DEBUG = False
    settings.STORAGES = {
        **MANIFEST,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
    assert collection_problem() is None


def test_check_deploy_fails_without_collected_static_files(tmp_path):
    result = run_manage("check", "--deploy", STATIC_ROOT=str(tmp_path), **PRODUCTION)
    assert result.returncode != 0
    assert "smscampaigns.E001" in result.stderr
    assert "collectstatic" in result.stderr


def _production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _TEST_ONLY}
    env.update(ENV_FILE=os.devnull, **PRODUCTION, **extra)
    return env


def test_gunicorn_refuses_to_start_without_collected_static_files(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "smscampaigns.wsgi",
         "--bind", "127.0.0.1:0", "--workers", "1", "--no-control-socket"],
        cwd=ROOT,
        env=_production_env(STATIC_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "No collected static files" in result.stderr
    assert "manage.py collectstatic" in result.stderr


def test_serve_refuses_a_debug_configuration(settings):
    settings.DEBUG = True
    with pytest.raises(CommandError, match="DEBUG is on"):
        call_command("serve", stdout=StringIO())


def test_serve_stops_the_worker_when_the_web_server_cannot_start(tmp_path):
    """Port taken: gunicorn gives up, and serve stops run_worker and says why."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env=_production_env(
                STATIC_ROOT=str(tmp_path / "static"),
                DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                SMS_DEFAULT_PROVIDER="plivo",
                PLIVO_AUTH_ID="MAPRODUCTIONSERVE001",
                PLIVO_AUTH_TOKEN="token",
                PLIVO_SENDER_ID="+14155550100",
                WEB_CONCURRENCY="1",
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert "gunicorn stopped" in result.stderr
    assert "the others were stopped too" in result.stderr
    # run_worker had started, and was stopped rather than left running.
    assert "Worker stopped." in result.stdout

"""LOG_FORMAT=json: one JSON object a line, numbers masked, secrets redacted."""

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from django.conf import settings

from smscampaigns.log_format import JsonFormatter


@pytest.fixture
def log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("smscampaigns.tests.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def lines(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_time_level_logger_message_and_extras(log):
    logger, stream = log
    logger.info(
        "campaign %s launched: %d messages queued",
        12,
        1000,
        extra={"campaign": 12, "provider": "plivo", "ratio": 0.5, "done": False},
    )
    logger.warning("second\nline")
    first, second = lines(stream)
    assert first["level"] == "INFO"
    assert first["logger"] == "smscampaigns.tests.json"
    assert first["message"] == "campaign 12 launched: 1000 messages queued"
    assert first["time"].endswith("Z")
    assert "T" in first["time"]
    assert (first["campaign"], first["provider"], first["ratio"], first["done"]) == (
        12,
        "plivo",
        0.5,
        False,
    )
    assert second["message"] == "second\nline"


def test_phone_numbers_are_masked_in_messages_extras_and_tracebacks(log):
    logger, stream = log
    try:
        raise ValueError("no route to +14155550123")
    except ValueError:
        logger.exception(
            "sending to %s failed", "+14155550123", extra={"to": "+447700900123"}
        )
    [entry] = lines(stream)
    text = json.dumps(entry)
    assert "4155550123" not in text
    assert "7700900123" not in text
    assert entry["message"] == "sending to +14*******23 failed"
    assert entry["to"] == "+44********23"
    assert "ValueError: no route to +14*******23" in entry["exception"]


def test_secrets_are_redacted(log):
    logger, stream = log
    logger.info(
        "called with Authorization: Bearer abc.def-ghi",
        extra={
            "api_token": "s3cr3t",
            "headers": {"Authorization": "Token sk_live", "Accept": "json"},
            "password": "hunter2",
        },
    )
    [entry] = lines(stream)
    assert "abc.def-ghi" not in entry["message"]
    assert entry["api_token"] == "[redacted]"
    assert entry["password"] == "[redacted]"
    assert entry["headers"] == {"Authorization": "[redacted]", "Accept": "json"}


def test_log_format_json_configures_the_root_logger():
    """The settings pick the formatter: a process started with LOG_FORMAT=json logs
    JSON (here a management command's Django logging, through the root handler)."""
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('campaigns').warning('to %s', '+14155550123')"
    )
    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "DJANGO_SETTINGS_MODULE": "smscampaigns.settings_test",
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    [entry] = [e for e in entries if e["logger"] == "campaigns"]
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING",
        "campaigns",
        "to +14*******23",
    )


def test_an_unknown_log_format_is_refused():
    env = {
        **os.environ,
        "LOG_FORMAT": "xml",
        "DJANGO_SETTINGS_MODULE": "smscampaigns.settings_test",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "LOG_FORMAT must be plain or json" in done.stderr


def _gunicorn_settings(monkeypatch, **env) -> dict:
    import runpy

    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.setenv("ENV_FILE", "/dev/null")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(settings.BASE_DIR / "gunicorn.conf.py"))


def test_gunicorn_logs_json_too_and_keeps_its_access_log_off(monkeypatch):
    config = _gunicorn_settings(monkeypatch, LOG_FORMAT="json")["logconfig_dict"]
    assert config["formatters"]["json"]["()"] == "smscampaigns.log_format.JsonFormatter"
    assert config["loggers"]["gunicorn.error"]["handlers"] == ["console"]
    assert config["handlers"]["console"]["formatter"] == "json"
    access = config["loggers"]["gunicorn.access"]
    assert access["handlers"] == ["discard"]
    assert access["propagate"] is False


def test_gunicorn_reads_log_format_from_the_env_file(monkeypatch, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=false\nLOG_FORMAT=json\n")
    assert "logconfig_dict" in _gunicorn_settings(monkeypatch, ENV_FILE=str(env_file))


def test_gunicorn_keeps_its_own_format_by_default(monkeypatch):
    assert "logconfig_dict" not in _gunicorn_settings(monkeypatch)

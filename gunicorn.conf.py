"""gunicorn's own settings, read from the directory it starts in (beside manage.py).

Command-line options and ``GUNICORN_CMD_ARGS`` still win. Only one thing is set here:
with ``LOG_FORMAT=json`` (in the environment or ``.env``) gunicorn's own lines (start,
stop, a worker timeout) are JSON too, like the application's. Its access log stays
off: webhook query strings carry phone numbers.
"""

import os
from pathlib import Path


def _log_format() -> str:
    if os.environ.get("LOG_FORMAT"):
        return os.environ["LOG_FORMAT"].strip().lower()
    env_file = Path(
        os.environ.get("ENV_FILE") or Path(__file__).resolve().parent / ".env"
    )
    try:
        lines = env_file.read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == "LOG_FORMAT":
            return value.strip().strip("'\"").lower()
    return ""


if _log_format() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "smscampaigns.log_format.JsonFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
            "discard": {"class": "logging.NullHandler"},
        },
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {
                "level": "INFO",
                "handlers": ["console"],
                "propagate": False,
            },
            # A log configuration turns gunicorn's access log on: keep it off.
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["discard"],
                "propagate": False,
            },
        },
    }

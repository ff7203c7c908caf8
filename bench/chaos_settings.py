"""Settings for bench/chaos.py's worker processes: the project's settings plus a
"chaos" provider, the simulator with a per-process log of every message it accepted.

``CHAOS_RECORD_DIR`` (required) is where each worker process writes its log.
"""

from smscampaigns.settings import *  # noqa: F403
from smscampaigns.settings import SMS_PROVIDERS, env

SMS_PROVIDERS = {
    **SMS_PROVIDERS,
    "chaos": {
        "BACKEND": "bench.chaos.RecordingBackend",
        "OPTIONS": {
            **SMS_PROVIDERS["simulator"]["OPTIONS"],
            "record_dir": env.str("CHAOS_RECORD_DIR"),
        },
    },
}

"""The README's receiver example verifies what the deliverer sends."""

import re
import time
from pathlib import Path

import pytest

from integrations.signing import signature_header

README = Path(__file__).resolve().parents[2] / "README.md"


def receiver_example() -> dict:
    section = README.read_text().split("## Event webhooks for integrators", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)
    return namespace


def test_the_readme_receiver_accepts_a_signed_event_and_refuses_a_forged_one():
    example = receiver_example()
    secret = "whsec_from_the_admin"
    example["SECRET"] = secret.encode()
    body = b'{"id":"evt_1","type":"contact.opted_out","data":{}}'

    event = example["verified_event"](body, signature_header(secret, body))
    assert event["id"] == "evt_1"

    with pytest.raises(ValueError, match="bad signature"):
        example["verified_event"](body + b" ", signature_header(secret, body))
    old = signature_header(secret, body, timestamp=int(time.time()) - 3600)
    with pytest.raises(ValueError, match="too old"):
        example["verified_event"](body, old)

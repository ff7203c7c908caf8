"""The signature on every delivery, as Stripe signs its webhooks.

Header ``Smscampaigns-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``; the HMAC key
is the endpoint's whole secret (``whsec_…``) and the signed text is
``"<t>.<raw body>"``. A receiver recomputes it over the bytes it received, compares in
constant time and refuses a timestamp too far from its clock (a replay).
"""

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Smscampaigns-Signature"
#: Seconds a receiver accepts between the timestamp and its clock, by default.
TOLERANCE = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={sign(secret, body, timestamp)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, recently enough."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), parts.get("v1", ""))

"""The signature on each delivery: HMAC-SHA256 over "timestamp.body", Stripe-style."""

import hashlib
import hmac

from integrations.signing import signature_header, verify

SECRET = "whsec_test"
BODY = b'{"id":"evt_1","type":"contact.opted_out"}'


def test_the_header_carries_the_timestamp_and_the_hmac_of_timestamp_dot_body():
    header = signature_header(SECRET, BODY, timestamp=1_765_000_000)
    expected = hmac.new(
        SECRET.encode(), b"1765000000." + BODY, hashlib.sha256
    ).hexdigest()
    assert header == f"t=1765000000,v1={expected}"


def test_a_receiver_accepts_the_signed_body_and_refuses_anything_changed():
    header = signature_header(SECRET, BODY, timestamp=1_765_000_000)
    now = 1_765_000_100
    assert verify(SECRET, BODY, header, now=now)
    assert not verify(SECRET, BODY + b" ", header, now=now)
    assert not verify("whsec_other", BODY, header, now=now)
    forged = header.replace("t=1765000000", "t=1765000001")
    assert not verify(SECRET, BODY, forged, now=now)
    assert not verify(SECRET, BODY, "v1=abc", now=now)
    assert not verify(SECRET, BODY, "", now=now)


def test_an_old_timestamp_is_refused_as_a_replay():
    header = signature_header(SECRET, BODY, timestamp=1_765_000_000)
    assert not verify(SECRET, BODY, header, now=1_765_000_000 + 301)
    assert verify(SECRET, BODY, header, now=1_765_000_000 + 301, tolerance=600)

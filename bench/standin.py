"""A local stand-in of the vendors' send APIs (Vonage Messages, Plivo Message, Sinch XMS)
with latency and faults, for driving the real backends and SDKs in benchmarks.

One asyncio event loop serves every connection (HTTP/1.1, keep-alive, optional TLS):
hundreds of idle or waiting connections cost next to nothing, and the latency of one
request is an ``asyncio.sleep`` that holds up no other.

Routes (the wire formats are in /work/shared/reference/providers.md):

- vonage ``POST /v1/messages``: ``Authorization: Bearer <JWT>`` (decoded without
  verification, or verified RS256 with ``--public-key``), JSON with ``message_type``,
  ``channel``, ``to``, ``from``, ``text``, ``client_ref``. ``202 {"message_uuid"}``.
- plivo ``POST /v1/Account/{auth_id}/Message/``: Basic auth, JSON or form with ``src``,
  ``dst`` ("<"-joined, at most 1,000), ``text``, ``url``, ``method``.
  ``202 {"message", "message_uuid": [one per dst], "api_id"}``.
- sinch ``POST /xms/v1/{service_plan_id}/batches``: Bearer token, JSON ``from``, ``to``
  (at most 1,000), ``body`` (``${name}`` placeholders filled from ``parameters``),
  ``client_reference``, ``delivery_report``, ``callback_url``. ``201`` with the batch.
- ``GET /_standin/stats``: the counters so far, as JSON.

Faults, in this order: ``--rate R`` refuses with 429 (``Retry-After: 1``, each vendor's
error body) a request that would take the recipients accepted in this calendar second
past R; ``--error5xx P`` answers 503 without taking the request; otherwise the request
is accepted and logged, then answered after ``--latency`` (+ up to ``--jitter``)
seconds, or, with probability ``--drop P``, the connection is closed without an answer
(the vendor has the messages; the sender cannot know).

The log (``--log``) has one JSON line per accepted recipient,
``{"t", "to" (+E.164), "ref", "text", "dropped"}``, and one line per refused request,
``{"t", "status", "n" (recipients), "ref"}``. It is written from memory every 0.25 s
and at exit (SIGTERM, SIGINT), so it survives the senders' deaths, not the stand-in's
own ``kill -9``. ``<log>.seconds.json`` holds the per-second counters. ``summarize()``
reads a log back.

    python bench/standin.py --vendor vonage|plivo|sinch [--port 0] [--tls]
        [--latency 0.2] [--jitter 0] [--rate 30] [--drop 0.05] [--error5xx 0]
        [--log /tmp/x.jsonl] [--seed N] [--public-key PEM] [--token T] [--auth-id ID]
        [--cert-dir DIR]

It prints one JSON line when it is listening: ``{"ready", "vendor", "port", "url",
"ca", "log"}`` (``ca``: the CA to trust, for ``REQUESTS_CA_BUNDLE`` and
``NODE_EXTRA_CA_CERTS``).

    python bench/standin.py load --vendor sinch --url http://127.0.0.1:PORT
        [--connections 200] [--seconds 10] [--processes 1] [--ca PATH]

is a keep-alive load client (raw asyncio streams, one recipient a request) that
measures what the stand-in sustains from other processes.
"""

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

VENDORS = ("vonage", "plivo", "sinch")
FLUSH_SECONDS = 0.25
COUNTERS_SECONDS = 1.0
MAX_RECIPIENTS = 1000
_DIGITS = re.compile(r"\D")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


# --- Options and the log ----------------------------------------------------------------


@dataclass
class Faults:
    latency: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0
    """Recipients a calendar second; 0: no limit."""
    drop: float = 0.0
    error5xx: float = 0.0


@dataclass
class Reply:
    status: int
    body: dict | list
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, keep_alive: bool) -> bytes:
        payload = json.dumps(self.body, separators=(",", ":")).encode()
        lines = [
            f"HTTP/1.1 {self.status} {STATUS_TEXT.get(self.status, 'Status')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(payload)}",
            "Connection: keep-alive" if keep_alive else "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


@dataclass
class Accepted:
    """What a vendor handler found in a valid request: the recipients (E.164) and
    their texts, the reference, and the reply to give if it is answered."""

    recipients: list[str]
    texts: list[str]
    ref: str
    reply: Reply


class Recorder:
    """The log and the per-second counters, kept in memory and written by the loop
    every FLUSH_SECONDS and at exit."""

    COLUMNS = ("recipients", "requests", "dropped", "refused_429", "refused_5xx")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.lines: list[str] = []
        self.seconds: dict[int, list[int]] = {}
        self.totals = Counter()
        self._file = path.open("a", encoding="utf-8") if path else None
        self._lock = threading.Lock()

    def _second(self, t: float) -> list[int]:
        second = int(t)
        row = self.seconds.get(second)
        if row is None:
            row = self.seconds[second] = [0] * len(self.COLUMNS)
        return row

    def accepted(self, t: float, accepted: Accepted, dropped: bool) -> None:
        row = self._second(t)
        row[0] += len(accepted.recipients)
        row[1] += 1
        row[2] += dropped
        self.totals["recipients"] += len(accepted.recipients)
        self.totals["requests"] += 1
        self.totals["dropped_requests"] += dropped
        self.totals["dropped_recipients"] += len(accepted.recipients) * dropped
        if self._file is None:
            return
        head = f'{{"t":{t:.3f},"to":"'
        tail = f'","ref":{json.dumps(accepted.ref)},"text":'
        end = f',"dropped":{"true" if dropped else "false"}}}\n'
        encoded: dict[str, str] = {}
        for to, text in zip(accepted.recipients, accepted.texts, strict=True):
            text_json = encoded.get(text)
            if text_json is None:
                text_json = encoded[text] = json.dumps(text, ensure_ascii=False)
            self.lines.append(head + to + tail + text_json + end)

    def refused(self, t: float, status: int, recipients: int, ref: str) -> None:
        row = self._second(t)
        if status == 429:
            row[3] += 1
            self.totals["refused_429_requests"] += 1
            self.totals["refused_429_recipients"] += recipients
        else:
            row[4] += 1
            self.totals[f"refused_{status}_requests"] += 1
        if self._file is not None:
            self.lines.append(
                json.dumps(
                    {"t": round(t, 3), "status": status, "n": recipients, "ref": ref}
                )
                + "\n"
            )

    def flush(self) -> None:
        with self._lock:
            lines, self.lines = self.lines, []
            if self._file is not None and lines:
                self._file.write("".join(lines))
                self._file.flush()

    def write_counters(self) -> None:
        if self.path is None:
            return
        target = self.path.with_name(self.path.name + ".seconds.json")
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(json.dumps(self.snapshot()))
        temporary.replace(target)

    def snapshot(self) -> dict:
        return {
            "columns": list(self.COLUMNS),
            "seconds": {str(s): row for s, row in sorted(self.seconds.items())},
            "totals": dict(self.totals),
        }

    def close(self) -> None:
        self.flush()
        self.write_counters()
        if self._file is not None:
            self._file.close()
            self._file = None


# --- Vendors ----------------------------------------------------------------------------


class Refusal(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _e164(number: object) -> str:
    digits = _DIGITS.sub("", str(number))
    return f"+{digits}" if digits else ""


def _iso(moment: float) -> str:
    return (
        dt.datetime.fromtimestamp(moment, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _batch_id() -> str:
    value = int.from_bytes(os.urandom(17), "big")
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(26))


class Vendor:
    name = ""
    path_pattern: re.Pattern[str]
    method = "POST"

    def __init__(self, options: argparse.Namespace | None = None) -> None:
        self.options = options

    def parse(self, match: re.Match, headers: dict, body: bytes) -> Accepted:
        raise NotImplementedError

    def refusal(self, status: int, detail: str) -> Reply:
        raise NotImplementedError

    def count(self, body: bytes, headers: dict) -> tuple[int, str]:
        """Recipients and reference of a request that is refused before parsing
        (429 and 5xx lines in the log): best effort."""
        return 1, ""


class Vonage(Vendor):
    name = "vonage"
    path_pattern = re.compile(r"^/v1/messages/?$")

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.public_key = None
        key_path = getattr(options, "public_key", None)
        if key_path:
            from cryptography.hazmat.primitives import serialization

            self.public_key = serialization.load_pem_public_key(
                Path(key_path).read_bytes()
            )

    def refusal(self, status: int, detail: str) -> Reply:
        kind, title = {
            400: ("invalid-json", "Malformed JSON"),
            401: ("unauthorized", "Invalid credentials supplied"),
            422: ("invalid-params", "Invalid params"),
            429: ("throttled", "Rate Limit Hit"),
            503: ("internal-error", "Service unavailable"),
        }.get(status, ("internal-error", "Internal Error"))
        return Reply(
            status,
            {
                "type": f"https://developer.vonage.com/api-errors#{kind}",
                "title": title,
                "detail": detail,
                "instance": str(uuid.uuid4()),
            },
            content_type="application/problem+json",
        )

    def _check_token(self, headers: dict) -> None:
        import jwt

        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Refusal(self.refusal(401, "You did not provide a Bearer JWT."))
        try:
            if self.public_key is not None:
                claims = jwt.decode(
                    token,
                    self.public_key,
                    algorithms=["RS256"],
                    options={"verify_iat": False},
                )
            else:
                claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise Refusal(self.refusal(401, f"Invalid JWT: {exc}")) from None
        if not claims.get("application_id"):
            raise Refusal(self.refusal(401, "The JWT has no application_id."))

    def parse(self, match, headers, body) -> Accepted:
        self._check_token(headers)
        try:
            data = json.loads(body)
        except ValueError:
            raise Refusal(self.refusal(400, "The body is not JSON.")) from None
        if not isinstance(data, dict):
            raise Refusal(self.refusal(400, "The body is not a JSON object."))
        problems = []
        if data.get("message_type") != "text":
            problems.append("message_type must be text")
        if data.get("channel") != "sms":
            problems.append("channel must be sms")
        to = str(data.get("to") or "")
        if not re.fullmatch(r"[1-9]\d{6,14}", to):
            problems.append("to must be 7-15 digits without +")
        if not data.get("from"):
            problems.append("from is missing")
        text = data.get("text")
        if not isinstance(text, str) or not text or len(text) > 1000:
            problems.append("text must be 1-1000 characters")
        if problems:
            raise Refusal(self.refusal(422, "; ".join(problems)))
        return Accepted(
            [_e164(to)],
            [text],
            str(data.get("client_ref") or ""),
            Reply(202, {"message_uuid": str(uuid.uuid4())}),
        )

    def count(self, body, headers):
        try:
            return 1, str(json.loads(body).get("client_ref") or "")
        except (ValueError, AttributeError):
            return 1, ""


class Plivo(Vendor):
    name = "plivo"
    path_pattern = re.compile(r"^/v1/Account/(?P<account>[^/]+)/Message/?$")

    def refusal(self, status: int, detail: str) -> Reply:
        return Reply(status, {"api_id": str(uuid.uuid4()), "error": detail})

    def _data(self, headers: dict, body: bytes) -> dict:
        if headers.get("content-type", "").startswith("application/x-www-form"):
            return {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise Refusal(self.refusal(400, "invalid JSON body")) from None
        if not isinstance(data, dict):
            raise Refusal(self.refusal(400, "body must be a JSON object"))
        return data

    def parse(self, match, headers, body) -> Accepted:
        account = match["account"]
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        try:
            auth_id, _, token = (
                base64.b64decode(credentials).decode().partition(":")
                if scheme.lower() == "basic"
                else ("", "", "")
            )
        except ValueError:
            auth_id = token = ""
        expected_id = getattr(self.options, "auth_id", None)
        expected_token = getattr(self.options, "token", None)
        if (
            not auth_id
            or auth_id != account
            or (expected_id and auth_id != expected_id)
            or (expected_token and token != expected_token)
        ):
            raise Refusal(self.refusal(401, "Authentication failed"))
        data = self._data(headers, body)
        for name in ("src", "dst", "text"):
            if not data.get(name):
                raise Refusal(self.refusal(400, f"{name} is a required parameter"))
        destinations = [d for d in str(data["dst"]).split("<") if d]
        if len(destinations) > MAX_RECIPIENTS:
            raise Refusal(
                self.refusal(400, "too many destination numbers: at most 1000")
            )
        if len(set(destinations)) != len(destinations):
            # Plivo drops repeats silently; the stand-in keeps the first.
            destinations = list(dict.fromkeys(destinations))
        ref = ""
        if data.get("url"):
            ref = parse_qs(urlsplit(str(data["url"])).query).get("ref", [""])[0]
        text = str(data["text"])
        return Accepted(
            [_e164(d) for d in destinations],
            [text] * len(destinations),
            ref,
            Reply(
                202,
                {
                    "api_id": str(uuid.uuid4()),
                    "message": "message(s) queued",
                    "message_uuid": [str(uuid.uuid4()) for _ in destinations],
                },
            ),
        )

    def count(self, body, headers):
        try:
            data = self._data(headers, body)
            ref = ""
            if data.get("url"):
                ref = parse_qs(urlsplit(str(data["url"])).query).get("ref", [""])[0]
            return len(str(data.get("dst") or "x").split("<")), ref
        except Refusal:
            return 1, ""


class Sinch(Vendor):
    name = "sinch"
    path_pattern = re.compile(r"^/xms/v1/(?P<plan>[^/]+)/batches/?$")

    def refusal(self, status: int, detail: str) -> Reply:
        code = {
            400: "syntax_invalid_json",
            401: "unauthorized",
            429: "too_many_requests",
            503: "service_unavailable",
        }.get(status, "syntax_constraint_violation")
        return Reply(status, {"code": code, "text": detail})

    def parse(self, match, headers, body) -> Accepted:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        expected = getattr(self.options, "token", None)
        if scheme.lower() != "bearer" or not token or (expected and token != expected):
            raise Refusal(self.refusal(401, "Unauthorized"))
        try:
            data = json.loads(body)
        except ValueError:
            raise Refusal(self.refusal(400, "The body is not valid JSON")) from None
        if not isinstance(data, dict):
            raise Refusal(self.refusal(400, "The body is not a JSON object"))
        to = data.get("to")
        if not isinstance(to, list) or not to or len(to) > MAX_RECIPIENTS:
            raise Refusal(self.refusal(400, "to must hold 1 to 1000 recipients"))
        if not data.get("from") or not isinstance(data.get("body"), str):
            raise Refusal(self.refusal(400, "from and body are required"))
        template = data["body"]
        parameters = data.get("parameters") or {}
        texts = []
        for recipient in to:
            texts.append(
                _PLACEHOLDER.sub(
                    lambda m, r=str(recipient): str(
                        (parameters.get(m[1]) or {}).get(
                            r, (parameters.get(m[1]) or {}).get("default", m[0])
                        )
                    ),
                    template,
                )
                if parameters
                else template
            )
        now = time.time()
        batch = {
            "id": _batch_id(),
            "to": [str(r) for r in to],
            "from": str(data["from"]),
            "canceled": False,
            "body": template,
            "type": data.get("type", "mt_text"),
            "created_at": _iso(now),
            "modified_at": _iso(now),
            "delivery_report": data.get("delivery_report", "none"),
            "expire_at": _iso(now + 3 * 86400),
            "flash_message": False,
        }
        for key in ("parameters", "callback_url", "client_reference"):
            if key in data:
                batch[key] = data[key]
        return Accepted(
            [_e164(r) for r in to],
            texts,
            str(data.get("client_reference") or ""),
            Reply(201, batch),
        )

    def count(self, body, headers):
        try:
            data = json.loads(body)
            return len(data.get("to") or [1]), str(data.get("client_reference") or "")
        except (ValueError, AttributeError):
            return 1, ""


VENDOR_CLASSES: dict[str, type[Vendor]] = {
    "vonage": Vonage,
    "plivo": Plivo,
    "sinch": Sinch,
}


# --- TLS --------------------------------------------------------------------------------


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a certificate for 127.0.0.1 and localhost signed by it,
    written to ``directory``: (ca.pem, cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "smscampaigns bench stand-in CA")]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


# --- Server -----------------------------------------------------------------------------

DROP = object()


class StandIn:
    """The server. ``start()`` runs it on a daemon thread of this process (tests);
    ``serve_forever()`` runs it in the calling thread (the process entry point)."""

    def __init__(
        self,
        vendor: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        faults: Faults | None = None,
        log: str | Path | None = None,
        seed: int | None = None,
        cert_dir: str | Path | None = None,
        options: argparse.Namespace | None = None,
    ) -> None:
        if vendor not in VENDOR_CLASSES:
            raise ValueError(f"vendor must be one of {', '.join(VENDORS)}")
        self.vendor = VENDOR_CLASSES[vendor](options)
        self.host = host
        self.port = port
        self.tls = tls
        self.faults = faults or Faults()
        self.recorder = Recorder(Path(log) if log else None)
        self.random = random.Random(seed)
        self.ca_path: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        if tls:
            directory = (
                Path(cert_dir)
                if cert_dir
                else Path(tempfile.mkdtemp(prefix="standin-tls-"))
            )
            self.ca_path, cert_path, key_path = make_certificates(directory)
            self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ssl.load_cert_chain(cert_path, key_path)
        self.connections = 0
        self.open_connections = 0
        self.max_open_connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    # Life cycle

    def start(self) -> "StandIn":
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), daemon=True
        )
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def serve_forever(self, on_ready: Callable[["StandIn"], None] | None = None):
        asyncio.run(self._main(on_ready, handle_signals=True))

    async def _main(self, on_ready=None, handle_signals: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._stopped.set)
        server = await asyncio.start_server(
            self._connection,
            self.host,
            self.port,
            ssl=self._ssl,
            backlog=4096,
            limit=1 << 20,
        )
        self.port = server.sockets[0].getsockname()[1]
        flusher = asyncio.create_task(self._flush_periodically())
        self._ready.set()
        if on_ready:
            on_ready(self)
        try:
            await self._stopped.wait()
        finally:
            server.close()
            flusher.cancel()
            self.recorder.close()

    async def _flush_periodically(self) -> None:
        next_counters = time.monotonic() + COUNTERS_SECONDS
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.recorder.flush()
            if time.monotonic() >= next_counters:
                self.recorder.write_counters()
                next_counters = time.monotonic() + COUNTERS_SECONDS

    # One connection

    async def _connection(self, reader, writer) -> None:
        self.connections += 1
        self.open_connections += 1
        self.max_open_connections = max(
            self.max_open_connections, self.open_connections
        )
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    ConnectionError,
                    ssl.SSLError,
                ):
                    return
                request_line, _, header_text = head.decode("latin-1").partition("\r\n")
                try:
                    method, target, version = request_line.split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in header_text.split("\r\n"):
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    if "chunked" in headers.get("transfer-encoding", "").lower():
                        body = await _read_chunked(reader)
                    else:
                        length = int(headers.get("content-length") or 0)
                        body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                connection = headers.get("connection", "").lower()
                keep_alive = (
                    connection != "close"
                    if version.strip() == "HTTP/1.1"
                    else connection == "keep-alive"
                )
                reply = await self._handle(method, target, headers, body)
                if reply is DROP:
                    return
                writer.write(reply.encode(keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            self.open_connections -= 1
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, method: str, target: str, headers: dict, body: bytes):
        path = target.split("?", 1)[0]
        if path == "/_standin/stats" and method == "GET":
            return Reply(
                200,
                {
                    **self.recorder.snapshot(),
                    "connections": self.connections,
                    "open_connections": self.open_connections,
                    "max_open_connections": self.max_open_connections,
                },
            )
        match = self.vendor.path_pattern.match(path)
        if not match:
            return self.vendor.refusal(404, f"No route for {path}")
        if method != self.vendor.method:
            return self.vendor.refusal(405, f"{method} not allowed")
        now = time.time()
        faults = self.faults
        try:
            accepted = self.vendor.parse(match, headers, body)
        except Refusal as refusal:
            return refusal.reply
        n = len(accepted.recipients)
        if faults.rate:
            row = self.recorder.seconds.get(int(now))
            used = row[0] if row else 0
            if used + n > faults.rate:
                self.recorder.refused(now, 429, n, accepted.ref)
                reply = self.vendor.refusal(
                    429, f"More than {faults.rate:g} recipients a second"
                )
                reply.headers["Retry-After"] = "1"
                return reply
        if faults.error5xx and self.random.random() < faults.error5xx:
            self.recorder.refused(now, 503, n, accepted.ref)
            return self.vendor.refusal(503, "Injected server error")
        dropped = bool(faults.drop) and self.random.random() < faults.drop
        self.recorder.accepted(now, accepted, dropped)
        delay = faults.latency
        if faults.jitter:
            delay += self.random.uniform(0, faults.jitter)
        if delay > 0:
            await asyncio.sleep(delay)
        return DROP if dropped else accepted.reply


async def _read_chunked(reader) -> bytes:
    parts = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            # Trailers end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


# --- Running it as a process from another script ------------------------------------------


@dataclass
class Running:
    process: subprocess.Popen
    info: dict

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def ca(self) -> str | None:
        return self.info.get("ca")

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stats(self) -> dict:
        import requests

        return requests.get(
            f"{self.url}/_standin/stats", timeout=5, verify=self.ca or True
        ).json()


def spawn(vendor: str, *, python: str = sys.executable, **options) -> Running:
    """Start ``standin.py`` as its own process; options are its flags (``latency=0.2``
    becomes ``--latency 0.2``, ``tls=True`` becomes ``--tls``). Waits for the ready
    line."""
    command = [python, str(Path(__file__).resolve()), "--vendor", vendor]
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        command += [flag] if value is True else [flag, str(value)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise RuntimeError(f"the {vendor} stand-in exited ({process.returncode})")
    return Running(process, json.loads(line))


# --- Reading a log back ---------------------------------------------------------------------


@dataclass
class Summary:
    recipients: int = 0
    """Recipient lines (every acceptance, dropped answers included)."""
    distinct: int = 0
    duplicates: int = 0
    """Recipients taken more than once: extra copies beyond the first."""
    duplicated_recipients: int = 0
    """Distinct recipients taken more than once."""
    dropped: int = 0
    """Recipients whose request was taken but not answered."""
    per_second: Counter = field(default_factory=Counter)
    refused_429_requests: int = 0
    refused_429_recipients: int = 0
    refused_5xx_requests: int = 0
    by_to: Counter = field(default_factory=Counter)
    refs: Counter = field(default_factory=Counter)
    dropped_to: set = field(default_factory=set)

    @property
    def max_second(self) -> tuple[int, int]:
        if not self.per_second:
            return (0, 0)
        return max(self.per_second.items(), key=lambda item: item[1])

    def window(self, first: int | None = None, last: int | None = None) -> list[int]:
        """Counts for every second from first to last (default: the log's span)."""
        if not self.per_second:
            return []
        first = min(self.per_second) if first is None else first
        last = max(self.per_second) if last is None else last
        return [self.per_second.get(s, 0) for s in range(first, last + 1)]


def summarize(log_path: str | Path) -> Summary:
    summary = Summary()
    path = Path(log_path)
    if not path.exists():
        return summary
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            entry = json.loads(line)
            second = int(entry["t"])
            status = entry.get("status")
            if status is not None:
                if status == 429:
                    summary.refused_429_requests += 1
                    summary.refused_429_recipients += entry.get("n", 0)
                else:
                    summary.refused_5xx_requests += 1
                continue
            summary.recipients += 1
            summary.per_second[second] += 1
            summary.by_to[entry["to"]] += 1
            if entry.get("ref"):
                summary.refs[entry["ref"]] += 1
            if entry.get("dropped"):
                summary.dropped += 1
                summary.dropped_to.add(entry["to"])
    summary.distinct = len(summary.by_to)
    summary.duplicates = summary.recipients - summary.distinct
    summary.duplicated_recipients = sum(1 for n in summary.by_to.values() if n > 1)
    return summary


# --- Load client ------------------------------------------------------------------------------


def _load_request(vendor: str, host: str, n: int, token: str) -> bytes:
    number = f"1415{n % 10_000_000:07d}"
    if vendor == "vonage":
        path = "/v1/messages"
        auth = f"Bearer {token}"
        body = {
            "message_type": "text",
            "channel": "sms",
            "to": number,
            "from": "15550001111",
            "text": "load",
            "client_ref": f"load-{n}",
        }
    elif vendor == "plivo":
        account = "MA" + "0" * 18
        path = f"/v1/Account/{account}/Message/"
        auth = "Basic " + base64.b64encode(f"{account}:token".encode()).decode()
        body = {"src": "15550001111", "dst": number, "text": "load"}
    else:
        path = "/xms/v1/plan/batches"
        auth = "Bearer token"
        body = {
            "from": "15550001111",
            "to": [number],
            "body": "load",
            "client_reference": f"load-{n}",
        }
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _load_connection(url, vendor, ssl_context, stop_at, counter, out):
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.open_connection(
            parts.hostname, parts.port, ssl=ssl_context
        )
    except OSError as exc:
        out["errors"][type(exc).__name__] += 1
        return
    import jwt

    token = jwt.encode(
        {"application_id": "load"},
        "load-test-key-load-test-key-0123456789",
        algorithm="HS256",
    )
    try:
        while time.monotonic() < stop_at:
            n = next(counter)
            started = time.perf_counter()
            writer.write(_load_request(vendor, parts.netloc, n, token))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - started)
            out["status"][status] += 1
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        out["errors"][type(exc).__name__] += 1
    finally:
        writer.close()


def _load_process(args_tuple) -> dict:
    url, vendor, ca, connections, seconds, offset = args_tuple
    ssl_context = None
    if url.startswith("https"):
        ssl_context = ssl.create_default_context(cafile=ca)
    out = {"latencies": [], "status": Counter(), "errors": Counter()}

    async def main():
        import itertools

        counter = itertools.count(offset)
        stop_at = time.monotonic() + seconds
        await asyncio.gather(
            *(
                _load_connection(url, vendor, ssl_context, stop_at, counter, out)
                for _ in range(connections)
            )
        )

    started = time.perf_counter()
    cpu = time.process_time()
    asyncio.run(main())
    out["wall"] = time.perf_counter() - started
    out["cpu"] = time.process_time() - cpu
    return out


def load_test(
    url: str,
    vendor: str,
    *,
    connections: int = 200,
    seconds: float = 10,
    processes: int = 1,
    ca: str | None = None,
) -> dict:
    """Drive the stand-in at ``url`` from ``processes`` client processes sharing
    ``connections`` keep-alive connections; returns requests/s, status counts and
    latency percentiles."""
    per_process = max(1, connections // processes)
    jobs = [
        (url, vendor, ca, per_process, seconds, i * 1_000_000) for i in range(processes)
    ]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_load_process, jobs)
    latencies = sorted(x for r in results for x in r["latencies"])
    status = sum((r["status"] for r in results), Counter())
    errors = sum((r["errors"] for r in results), Counter())
    wall = max(r["wall"] for r in results)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "per_second": len(latencies) / wall if wall else 0.0,
        "status": dict(status),
        "errors": dict(errors),
        "p50_ms": pct(0.5) if latencies else 0.0,
        "p99_ms": pct(0.99) if latencies else 0.0,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "client_cpu_s": sum(r["cpu"] for r in results),
        "wall_s": wall,
        "connections": per_process * processes,
    }


# --- Entry point -----------------------------------------------------------------------------


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vendor", choices=VENDORS, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--tls", action="store_true", help="HTTPS (Vonage needs it)")
    parser.add_argument(
        "--cert-dir", help="where to write ca.pem (default: a temp dir)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds")
    parser.add_argument("--jitter", type=float, default=0.0, help="extra 0..J seconds")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="recipients a calendar second; 0: none"
    )
    parser.add_argument("--drop", type=float, default=0.0, help="probability")
    parser.add_argument("--error5xx", type=float, default=0.0, help="probability")
    parser.add_argument("--log", help="JSON-lines log of every accepted recipient")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--public-key", help="Vonage: verify the JWT (RS256) with it")
    parser.add_argument("--token", help="Sinch: the Bearer token; Plivo: auth token")
    parser.add_argument("--auth-id", help="Plivo: the expected auth id")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "load":
        parser = argparse.ArgumentParser(prog="standin.py load")
        parser.add_argument("--vendor", choices=VENDORS, required=True)
        parser.add_argument("--url", required=True)
        parser.add_argument("--connections", type=int, default=200)
        parser.add_argument("--seconds", type=float, default=10)
        parser.add_argument("--processes", type=int, default=1)
        parser.add_argument("--ca")
        args = parser.parse_args(argv[1:])
        result = load_test(
            args.url,
            args.vendor,
            connections=args.connections,
            seconds=args.seconds,
            processes=args.processes,
            ca=args.ca,
        )
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    _server_arguments(parser)
    args = parser.parse_args(argv)
    standin = StandIn(
        args.vendor,
        host=args.host,
        port=args.port,
        tls=args.tls,
        faults=Faults(
            latency=args.latency,
            jitter=args.jitter,
            rate=args.rate,
            drop=args.drop,
            error5xx=args.error5xx,
        ),
        log=args.log,
        seed=args.seed,
        cert_dir=args.cert_dir,
        options=args,
    )

    def ready(server: StandIn) -> None:
        print(
            json.dumps(
                {
                    "ready": True,
                    "vendor": args.vendor,
                    "port": server.port,
                    "url": server.url,
                    "ca": str(server.ca_path) if server.ca_path else None,
                    "log": args.log,
                    "pid": os.getpid(),
                }
            ),
            flush=True,
        )

    standin.serve_forever(ready)


if __name__ == "__main__":
    main()

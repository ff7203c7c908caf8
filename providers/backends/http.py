"""The HTTP layer the vendor backends share: one pooled session each, no transport
retries, and one reading of what a failed request means for the message.

A message must never reach a recipient twice, so the only failures that count as
"not sent" are those that happen before the first byte of the request leaves us:
DNS, a refused or timed-out connect, a failed TLS handshake, a proxy that would not
connect. Anything after that (a read timeout, a connection reset or closed without
an answer, a broken chunked body) leaves the vendor possibly holding the message:
MAYBE_SENT, never sent again automatically.

Exception types alone cannot always tell the two apart (urllib3 reports a stalled
TLS handshake as a read timeout, and a TLS error while reading the answer as an
SSLError), so the connections used here note, per thread, whether the request
started going out; classify_exception() trusts that note when it has one and falls
back to the exception type otherwise (e.g. under ``responses``, which never opens a
connection).

Transport retries are off for everything: urllib3 would re-send a POST on a dropped
connection, and the send path already decides what to send again from the
SendErrorKind.
"""

import json
import math
import re
import ssl
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from django.conf import settings

from ..messages import SendError, SendErrorKind

POOL_SIZE = 64
"""Fewest connections kept alive per host. A pool follows SMS_DISPATCH_CONCURRENCY
when that is larger: every concurrent sender thread sharing one backend instance
keeps its connection instead of opening (and TLS-handshaking) one per send."""

DEFAULT_TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds."""

NO_RETRIES = Retry(total=0, read=False, redirect=False, raise_on_status=False)
"""Never retry at the transport. ``read=False`` makes urllib3 raise read errors as
they are (ReadTimeoutError, ProtocolError) rather than wrapped in MaxRetryError, so
requests maps them to ReadTimeout and ConnectionError as documented."""

PHONE_LIKE = re.compile(r"\+?\d{7,15}")
"""Runs of digits long enough to be phone numbers (vendors echo them in errors)."""

_progress = threading.local()
"""``written``: None before a send (or when no real connection was used), False once
a connection is being opened for it, True once the request started going out."""


def _now() -> float:
    """The current Unix time (its own function so tests can freeze the clock)."""
    return time.time()


# --- Connections that note when the request starts going out --------------------------


class _NotingConnection(HTTPConnection):
    def connect(self) -> None:
        # Opening a connection (DNS, TCP, proxy tunnel, TLS) writes no request.
        _progress.written = False
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if self.is_closed:
            # Plain http connects lazily inside request(); connect first so that
            # a refused connection is not mistaken for a written request.
            self.connect()
        _progress.written = True
        super().request(*args, **kwargs)


class _NotingTlsConnection(_NotingConnection, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _NotingConnection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _NotingTlsConnection


class _Adapter(HTTPAdapter):
    _pools = {"http": _Pool, "https": _TlsPool}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pools
        return manager


class SendFailed(Exception):
    """A request that got no usable answer; ``error`` says what that means."""

    def __init__(self, error: SendError) -> None:
        super().__init__(error.reason)
        self.error = error


class HttpClient:
    """One vendor's HTTP session: pooled keep-alive connections, no transport
    retries, (connect, read) timeouts. Safe to share between threads."""

    def __init__(
        self,
        *,
        vendor: str,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        pool_size: int | None = None,
    ) -> None:
        self.vendor = vendor
        self.timeout = timeout
        self.session = requests.Session()
        adapter = _Adapter(
            pool_connections=4,
            pool_maxsize=pool_size
            or max(POOL_SIZE, getattr(settings, "SMS_DISPATCH_CONCURRENCY", 0)),
            max_retries=NO_RETRIES,
        )
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"Accept": "application/json"})
        if headers:
            self.session.headers.update(headers)
        if auth:
            self.session.auth = auth

    def post_json(
        self, url: str, payload: object, *, headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        """POST ``payload`` as JSON and return the response, whatever its status.

        Raises SendFailed when no response came back.
        """
        _progress.written = None
        try:
            return self.session.post(
                url,
                data=json.dumps(payload, separators=(",", ":")).encode(),
                headers={"Content-Type": "application/json", **(headers or {})},
                timeout=self.timeout,
                # A redirect would be followed as a GET (and means a wrong API URL).
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = classify_exception(
                exc, vendor=self.vendor, written=_progress.written
            )
            raise SendFailed(error) from exc
        finally:
            _progress.written = None

    def open_connections(self, url: str, count: int) -> int:
        """Open up to ``count`` keep-alive connections to ``url``'s host ahead of
        sending, several at once; return how many opened.

        The first requests of a send would otherwise each open (and TLS-handshake)
        their own connection, all at once: they reach the vendor late and together,
        in a second that already has its share. Best effort: a connection that does
        not open here is opened by its send, as usual.
        """
        try:
            pool = self._pool_for(url)
        except Exception:  # warming up must never stop a send
            return 0

        def open_one(connection) -> bool:
            try:
                if connection.is_closed:
                    connection.connect()
                    _read_tls_tickets(connection)
                return True
            except Exception:  # the send opens its own
                connection.close()
                return False

        count = max(0, min(count, pool.pool.maxsize if pool.pool else count))
        if not count:
            return 0
        # urllib3's pool hands out a new connection when none is idle and keeps what
        # is put back: the calls a request makes, without a request. All are taken
        # first, so each is a different one.
        connections = [pool._get_conn() for _ in range(count)]
        try:
            with ThreadPoolExecutor(max_workers=min(count, 16)) as executor:
                return sum(executor.map(open_one, connections))
        finally:
            for connection in connections:
                pool._put_conn(connection)

    def _pool_for(self, url: str):
        """The urllib3 pool a POST to ``url`` would use (same TLS and proxy settings)."""
        request = self.session.prepare_request(requests.Request("POST", url))
        env = self.session.merge_environment_settings(url, {}, None, None, None)
        adapter = self.session.get_adapter(url)
        return adapter.get_connection_with_tls_context(
            request, env["verify"], env["proxies"], env["cert"]
        )

    def close(self) -> None:
        self.session.close()


def _read_tls_tickets(connection: HTTPConnection) -> None:
    """Take in what a TLS 1.3 server sends right after the handshake (session
    tickets). Left unread, they make the idle connection look readable, which urllib3
    takes for "closed by the server" and replaces it by a new one at the first send."""
    sock = connection.sock
    if not isinstance(sock, ssl.SSLSocket):
        return
    timeout = sock.gettimeout()
    sock.settimeout(0.05)
    try:
        sock.recv(1)  # no application data ever comes before a request
    except (TimeoutError, ssl.SSLWantReadError, BlockingIOError):
        pass
    finally:
        sock.settimeout(timeout)


# --- What a failure means ---------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it wraps (requests puts urllib3's in args, and
    urllib3's MaxRetryError keeps its cause in ``reason``)."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        nested = [*current.args, getattr(current, "reason", None)]
        nested += [current.__cause__, current.__context__]
        stack.extend(item for item in nested if isinstance(item, BaseException))
    return seen


def classify_exception(
    exc: requests.RequestException, *, vendor: str, written: bool | None = None
) -> SendError:
    """What a request that raised ``exc`` means for its messages.

    ``written`` is whether the request started going out (None: not known). Before
    that nothing was sent (NOT_SENT); after it the vendor may have the message
    (MAYBE_SENT); a URL that cannot be requested at all is MISCONFIGURED.
    """
    reason = f"{vendor}: {exc}"
    if isinstance(
        exc,
        requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidURL
        | requests.exceptions.InvalidHeader
        | requests.exceptions.URLRequired,
    ):
        return SendError(SendErrorKind.MISCONFIGURED, "invalid_request", reason)

    code = _transport_code(exc)
    if written is False:
        if code == "read_timeout":
            # urllib3 reports a TLS handshake that stalls as a read timeout.
            code = "connect_timeout"
        return SendError(SendErrorKind.NOT_SENT, code, reason)
    if written is True:
        return SendError(SendErrorKind.MAYBE_SENT, code, reason)
    # No note from the connection: judge by the exception alone.
    if code in ("dns_error", "connect_error", "connect_timeout", "proxy_error"):
        return SendError(SendErrorKind.NOT_SENT, code, reason)
    if code == "tls_error":
        # urllib3 does the handshake before writing; a TLS failure while reading
        # the answer would be indistinguishable here, and is rare enough to accept.
        return SendError(SendErrorKind.NOT_SENT, code, reason)
    return SendError(SendErrorKind.MAYBE_SENT, code, reason)


def _transport_code(exc: requests.RequestException) -> str:
    chain = _chain(exc)
    # ConnectTimeout is also a ConnectionError and a Timeout: test it first.
    if isinstance(exc, requests.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read_timeout"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy_error"
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls_error"
    if any(isinstance(item, NameResolutionError) for item in chain):
        return "dns_error"
    if any(isinstance(item, NewConnectionError) for item in chain):
        return "connect_error"
    if isinstance(
        exc,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    ):
        return "broken_response"
    if isinstance(exc, requests.ConnectionError):
        # ProtocolError: RemoteDisconnected, ConnectionResetError, BrokenPipe...
        return "connection_lost"
    return "request_error"


def classify_status(
    response: requests.Response, *, code: str = "", reason: str = ""
) -> SendError:
    """What an HTTP error answer means for its messages.

    ``code`` and ``reason`` are the vendor's own, from its error body, when it gave
    them. Backends adjust the result for statuses their vendor documents otherwise.
    """
    status = response.status_code
    code = code or str(status)
    reason = reason or response.reason or f"HTTP {status}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429:
        kind = SendErrorKind.THROTTLED
    elif status in (401, 402, 403):
        # Credentials refused, account not allowed or out of credit: no message
        # would go through until an operator acts, so stop rather than fail them all.
        kind = SendErrorKind.MISCONFIGURED
    elif status in (408, 500, 502, 503):
        # The server (or the gateway in front of it) says it did not process it.
        kind = SendErrorKind.NOT_SENT
    elif 300 <= status < 400:
        # The API URL is wrong (http for https, an old host): never follow a POST.
        kind = SendErrorKind.MISCONFIGURED
    elif 400 <= status < 500:
        kind = SendErrorKind.PERMANENT
    else:
        # 504 (the gateway gave up waiting for the server, which may have it) and
        # any other 5xx or odd status: the request got there, the outcome is unknown.
        kind = SendErrorKind.MAYBE_SENT
    if kind not in (SendErrorKind.THROTTLED, SendErrorKind.NOT_SENT):
        retry_after = None
    return SendError(kind, code, reason, retry_after=retry_after)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, delta-seconds or an HTTP date; None when
    absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - _now()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


# --- Bodies -----------------------------------------------------------------------------


def json_body(response: requests.Response) -> Any:
    """The response body parsed as JSON, or None when it is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def json_object(response: requests.Response) -> dict[str, Any]:
    """The response body when it is a JSON object, else an empty dict."""
    body = json_body(response)
    return body if isinstance(body, dict) else {}


def body_excerpt(response: requests.Response, limit: int = 200) -> str:
    """The start of a non-JSON error body, for people reading the error."""
    try:
        return response.text.strip()[:limit]
    except (UnicodeDecodeError, LookupError):
        return ""


def mask_numbers(text: str) -> str:
    """``text`` with phone-number-like digits masked ("+14*******23"), for logs."""
    return PHONE_LIKE.sub(lambda m: m[0][:3] + "*" * (len(m[0]) - 5) + m[0][-2:], text)

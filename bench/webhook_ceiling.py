"""Benchmark: what bounds webhook latency in a closed loop on this machine (issue #12).

``stop_replies.py`` sends STOPs from C connections, each sending its next callback as
soon as the last is answered. In such a closed loop C callbacks are always in flight,
so the mean latency is C / throughput (Little's law): p99 < 50 ms at 50 in flight needs
well over 1,000 answers a second. This script measures the two halves of that budget,
with the same client and the same request bytes as stop_replies.py:

1. **Server floor**: gunicorn (the same sync workers) serving a WSGI app that only
   reads the body and answers 200 -- what the HTTP server and the load generator cost
   on these cores before any of our code runs.
2. **Our callback**: CPU and wall time per signed Vonage inbound callback through
   ``smscampaigns.wsgi.application`` in one process (verify the JWT, parse, store the
   row on PostgreSQL), without HTTP, and the database server's CPU for the same.

    python bench/webhook_ceiling.py [--requests 5000] [--concurrency 50] [--workers 5]
        [--database-url URL]
"""

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine_load, setup_django
from receipts import Credentials, _free_port, _throwaway_rsa_key, server_environment
from stop_replies import (
    DEFAULT_DATABASE_URL,
    _load,
    _signed_stop,
    _start,
    _wait_listening,
)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

FLOOR_APP = """
def application(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", "15")])
    return [b'{"status":"ok"}']
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process:
        return _in_process(args.requests)

    # The bench database, created and migrated if missing (part 2 stores into it).
    setup_django(args.database_url)
    print(f"on this machine: {machine_load()}")
    credentials = Credentials.random()
    scratch = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    (scratch / "floor_app.py").write_text(FLOOR_APP)
    port = _free_port()
    requests = [
        _signed_stop(port, f"+1888{n:07d}", credentials.vonage_secret, "HELLO")
        for n in range(args.requests)
    ]
    server = _start(
        [str(BIN / "gunicorn"), "floor_app:application", "--chdir", str(scratch),
         "--workers", str(args.workers), "--bind", f"127.0.0.1:{port}",
         "--log-level", "warning"],
        dict(os.environ), scratch / "gunicorn.log",
    )  # fmt: skip
    try:
        _wait_listening(port, server, scratch / "gunicorn.log")
        asyncio.run(_load(port, requests[:500], args.concurrency, 0))
        started = time.monotonic()
        latencies, _ = asyncio.run(_load(port, requests, args.concurrency, 0))
        seconds = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = sorted(value * 1000 for value in latencies)
    rate = len(ms) / seconds
    print(
        f"1. server floor (gunicorn {args.workers} sync workers, a body-reading app, "
        f"{args.concurrency} concurrent closed loop): {rate:,.0f}/s, "
        f"p50 {ms[len(ms) // 2]:.1f} ms, p99 {ms[int(len(ms) * 0.99)]:.1f} ms; "
        f"{2000 / rate:.2f} ms of the 2 cores per request"
    )

    key_path = scratch / "vonage.key"
    key_path.write_bytes(_throwaway_rsa_key())
    env = server_environment(
        port=port,
        database_url=args.database_url,
        credentials=credentials,
        key_path=key_path,
    )
    env["BENCH_VONAGE_SECRET"] = credentials.vonage_secret
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"],
        cwd=REPO, env=env, check=True,
    )  # fmt: skip
    figures = subprocess.run(
        [sys.executable, __file__, "--in-process", "--requests", str(args.requests)],
        cwd=REPO, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    ours = json.loads(figures.stdout.strip().splitlines()[-1])
    print(
        f"2. our callback in one process (verify, parse, store; no HTTP): "
        f"{ours['cpu_ms']:.2f} ms CPU, {ours['wall_ms']:.2f} ms wall, "
        f"PostgreSQL {ours['db_cpu_ms']:.2f} ms CPU per callback"
    )
    per_request = 2000 / rate + ours["cpu_ms"] + ours["db_cpu_ms"]
    best = 2000 / per_request
    print(
        f"=> at best {per_request:.2f} ms of core time per callback, {best:,.0f}/s on "
        f"2 cores; with {args.concurrency} in flight the mean latency is at least "
        f"{1000 * args.concurrency / best:.0f} ms (Little's law), before the worker "
        "applying the callbacks takes its share of the same cores"
    )


def _in_process(count: int) -> None:
    """CPU per callback through the WSGI application, as JSON on the last line."""
    os.environ["ENV_FILE"] = "/dev/null"
    from django.db import connection

    from smscampaigns.wsgi import application

    secret = os.environ["BENCH_VONAGE_SECRET"]
    environs = [
        _environ(_signed_stop(8000, f"+1889{n:07d}", secret, "HELLO"))
        for n in range(count)
    ]
    status = []

    def start_response(line, headers):
        status.append(line)

    for environ in environs[:100]:
        b"".join(application(environ, start_response))
    backend_ticks = _backend_ticks(connection)
    cpu, wall = time.process_time(), time.perf_counter()
    for environ in environs[100:]:
        b"".join(application(environ, start_response))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    backend_ticks = _backend_ticks(connection) - backend_ticks
    answered = sum(1 for line in status if line.startswith("200"))
    if answered != len(status):
        sys.exit(f"only {answered} of {len(status)} callbacks were answered 200")
    done = count - 100
    print(
        json.dumps(
            {
                "cpu_ms": 1000 * cpu / done,
                "wall_ms": 1000 * wall / done,
                "db_cpu_ms": 1000 * backend_ticks / os.sysconf("SC_CLK_TCK") / done,
            }
        )
    )


def _backend_ticks(connection) -> int:
    """CPU ticks the connection's PostgreSQL backend used so far (same machine)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _environ(raw: bytes) -> dict:
    head, body = raw.split(b"\r\n\r\n", 1)
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ")
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
    }
    for line in header_lines:
        name, value = line.split(": ", 1)
        name = name.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
        else:
            environ[f"HTTP_{name}"] = value
    return environ


if __name__ == "__main__":
    main()

"""Benchmark: Vonage sends per second from one process, against an instant stand-in.

A local TLS server in a separate process (so it does not share this process's GIL)
answers every ``POST /v1/messages`` at once with 202 and a message_uuid, on
keep-alive connections. The script sends ``--messages`` messages through the real
Vonage backend (``providers.backends.vonage.SmsBackend``, one message per
``send_messages`` call, as the dispatcher's Vonage batches are) from 1 and from 32
threads sharing one backend instance, and prints messages/s. With ``--compare-main``
it does the same with ``main``'s vonage.py (sending through the SDK), loaded from
git into a throwaway module. ``--profile`` adds the share of CPU spent parsing the
private key (``load_pem_private_key``) and signing JWTs, single-threaded.

    .venv/bin/python bench/vonage_sign.py [--messages 2000] [--threads 1,32]
        [--compare-main] [--profile]

It prints figures and asserts nothing.
"""

import argparse
import cProfile
import importlib.util
import multiprocessing
import os
import pstats
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ANSWER = (
    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
    b"Content-Length: 56\r\n\r\n"
    b'{"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"}'
)


def _serve_connection(connection: socket.socket, context: ssl.SSLContext) -> None:
    try:
        tls = context.wrap_socket(connection, server_side=True)
        reader = tls.makefile("rb")
        while True:
            length = 0
            while True:
                line = reader.readline()
                if not line:
                    return
                if line == b"\r\n":
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            reader.read(length)
            tls.sendall(ANSWER)
    except (OSError, ssl.SSLError):
        return


def _stand_in(cert: str, key: str, port_queue) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    port_queue.put(listener.getsockname()[1])
    while True:
        connection, _ = listener.accept()
        threading.Thread(
            target=_serve_connection, args=(connection, context), daemon=True
        ).start()


def _backend_class(compare_main: bool):
    if not compare_main:
        from providers.backends.vonage import SmsBackend

        return SmsBackend
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", "main:providers/backends/vonage.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "vonage_main.py"
    path.write_text(source)
    # Loaded as a sibling of the real module so its relative imports resolve.
    spec = importlib.util.spec_from_file_location(
        "providers.backends.vonage_main", path
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.SmsBackend


def _run(backend, messages: int, threads: int) -> tuple[float, int]:
    from providers.messages import OutboundSms

    batch = [
        OutboundSms(to=f"+1415555{n % 10000:04d}", text="Hello", reference=f"r-{n}")
        for n in range(messages)
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda m: backend.send_messages([m])[0], batch))
    elapsed = time.perf_counter() - started
    return elapsed, sum(result.accepted for result in results)


def _profile_share(backend, messages: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    _run(backend, messages, 1)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    shares = {}
    for (_, _, name), row in stats.stats.items():
        cumulative = row[3]
        # A C builtin: its profile name carries the module path around it.
        if "load_pem_private_key" in name:
            shares["load_pem_private_key"] = max(
                shares.get("load_pem_private_key", 0), cumulative
            )
        if name == "generate_application_jwt":
            shares["JWT signing"] = max(shares.get("JWT signing", 0), cumulative)
    return (
        ", ".join(
            f"{name} {seconds / total:.0%} of CPU ({seconds * 1000 / messages:.2f} ms/msg)"
            for name, seconds in sorted(shares.items())
        )
        or "no key parsing or signing seen"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", default="1,32")
    parser.add_argument("--compare-main", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smscampaigns.settings_test")
    import django

    django.setup()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.providers.servers import write_self_signed_certificate

    workdir = Path(tempfile.mkdtemp())
    cert, key = write_self_signed_certificate(workdir, "vonage-stand-in")
    # Trust the stand-in the way requests reads it (the SDK's session too).
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["CURL_CA_BUNDLE"] = str(cert)
    app_key = workdir / "app.key"
    app_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ports = multiprocessing.Queue()
    server = multiprocessing.Process(
        target=_stand_in, args=(str(cert), str(key), ports), daemon=True
    )
    server.start()
    origin = f"https://127.0.0.1:{ports.get(timeout=10)}"

    variants = [("this branch", False)]
    if args.compare_main:
        variants.insert(0, ("main (SDK)", True))
    print(f"{args.messages} messages per run, stand-in at {origin}")
    try:
        for label, compare_main in variants:
            backend_class = _backend_class(compare_main)
            for threads in (int(t) for t in args.threads.split(",")):
                backend = backend_class(
                    alias="vonage",
                    application_id="aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
                    private_key_path=str(app_key),
                    number="447700900001",
                    api_url=origin,
                )
                _run(backend, min(64, args.messages), threads)  # warm the pool
                elapsed, accepted = _run(backend, args.messages, threads)
                print(
                    f"{label:12} threads={threads:3}: {args.messages / elapsed:8.0f} msg/s"
                    f"  ({elapsed:.2f} s, {accepted} accepted)"
                )
            if args.profile:
                profile_messages = min(args.messages, 300)
                print(
                    f"{label:12} profile (1 thread, {profile_messages} msgs): "
                    + _profile_share(backend, profile_messages)
                )
            if hasattr(backend, "token"):
                print(
                    f"{label:12} JWTs signed by the last backend: {backend.token.signed}"
                )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()

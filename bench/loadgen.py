"""A lean HTTP load generator for the benchmarks: pre-built requests sent over raw
loopback sockets from a few client processes, each recording every latency.

gunicorn's sync workers close the connection after every response (they never keep a
connection alive, whatever the client asks), so each request is one short TCP
connection: connect, send the pre-built bytes, read until the server closes. That is
also the cheapest client there is: no header parsing beyond the status line, no
per-request allocation besides the response bytes. Each client process runs one
connection at a time, so the number of processes is the number of requests in flight.

The clients compete with the server for the same cores, so the CPU they used is
measured and reported along with the figures.
"""

import multiprocessing
import os
import socket
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Request:
    """One pre-built HTTP request and the label its figures are reported under."""

    label: str
    data: bytes


@dataclass
class LoadResult:
    """Latencies (seconds) per label, the status codes that were not 2xx, and what the
    run cost: its wall time and the CPU the client processes used."""

    latencies: dict[str, list[float]]
    failures: dict[str, dict[int, int]]
    wall_seconds: float
    client_cpu_seconds: float
    clients: int
    sample_failure: bytes = b""

    @property
    def count(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    def all_latencies(self) -> list[float]:
        return [value for values in self.latencies.values() for value in values]


def http_request(
    *, port: int, method: str, path: str, body: bytes, headers: dict[str, str]
) -> bytes:
    """The bytes of an HTTP/1.1 request to 127.0.0.1:port."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Length: {len(body)}",
        # Said outright: the sync workers close after each response anyway.
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def run_load(
    port: int,
    plans: Sequence[Sequence[Request]],
    *,
    timeout: float = 30.0,
    accept: tuple[int, int] = (200, 300),
    expect: bytes = b"",
) -> LoadResult:
    """Send each plan's requests in order from its own process, all plans at once.
    Answers with a status outside ``accept`` (a half-open range), or without the bytes
    ``expect`` (a header line, say), are failures; the latter count as status 0.

    The processes are forked (so the requests are not copied through a pipe) and
    started together behind a barrier; the wall time runs from the barrier to the last
    response.
    """
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(plans) + 1)
    pipes, processes = [], []
    for plan in plans:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_client,
            args=(port, plan, barrier, sender, timeout, accept, expect),
            daemon=True,
        )
        process.start()
        sender.close()
        pipes.append(receiver)
        processes.append(process)
    barrier.wait()
    reports = [receiver.recv() for receiver in pipes]
    for process in processes:
        process.join()

    latencies: dict[str, list[float]] = {}
    failures: dict[str, dict[int, int]] = {}
    sample_failure = b""
    for plan, report in zip(plans, reports, strict=True):
        times, statuses = report["latencies"], report["statuses"]
        for request, latency, status in zip(plan, times, statuses, strict=True):
            latencies.setdefault(request.label, []).append(latency)
            if not accept[0] <= status < accept[1]:
                by_status = failures.setdefault(request.label, {})
                by_status[status] = by_status.get(status, 0) + 1
        sample_failure = sample_failure or report["sample_failure"]
    return LoadResult(
        latencies=latencies,
        failures=failures,
        wall_seconds=max(r["ended"] for r in reports)
        - min(r["started"] for r in reports),
        client_cpu_seconds=sum(r["cpu_seconds"] for r in reports),
        clients=len(plans),
        sample_failure=sample_failure,
    )


def _client(
    port: int,
    plan: Sequence[Request],
    barrier: "multiprocessing.synchronize.Barrier",
    pipe: Connection,
    timeout: float,
    accept: tuple[int, int] = (200, 300),
    expect: bytes = b"",
) -> None:
    # Preallocated, so appending costs nothing during the run.
    latencies = array("d", bytes(8 * len(plan)))
    statuses = array("H", bytes(2 * len(plan)))
    sample_failure = b""
    payloads = [request.data for request in plan]
    address = ("127.0.0.1", port)
    perf_counter = time.perf_counter
    barrier.wait()
    cpu_before = os.times()
    started = perf_counter()
    for index, data in enumerate(payloads):
        sent_at = perf_counter()
        response = _exchange(address, data, timeout)
        latencies[index] = perf_counter() - sent_at
        status = int(response[9:12]) if response.startswith(b"HTTP/1.") else 0
        if expect and expect not in response:
            status = 0
        statuses[index] = status
        if not accept[0] <= status < accept[1] and not sample_failure:
            sample_failure = response[:2000] or b"(no response)"
    ended = perf_counter()
    cpu_after = os.times()
    pipe.send(
        {
            "latencies": latencies,
            "statuses": statuses,
            "started": started,
            "ended": ended,
            "cpu_seconds": (cpu_after.user - cpu_before.user)
            + (cpu_after.system - cpu_before.system),
            "sample_failure": sample_failure,
        }
    )
    pipe.close()


def _exchange(address: tuple[str, int], data: bytes, timeout: float) -> bytes:
    """Send one request on a new connection and read until the server closes it."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return b""
    return b"".join(chunks)


# --- Figures ------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(fraction * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Summary:
    count: int
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    failures: int


def summarize(latencies: Sequence[float], failures: int, wall: float) -> Summary:
    ordered = sorted(latencies)
    return Summary(
        count=len(ordered),
        per_second=len(ordered) / wall if wall else 0.0,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p95_ms=percentile(ordered, 0.95) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] if ordered else 0.0) * 1000,
        failures=failures,
    )


# --- CPU accounting -------------------------------------------------------------------


def process_cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU seconds the processes have used so far (gone ones: 0)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces: count fields after its ")".
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent``."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(entry.name))
    return children


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot, all cores summed."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLOCK_TICKS

"""Load generators for the benchmarks: wrk when installed, else a Python keep-alive client.

Both run a closed loop (each connection sends its next request when the previous answer
has arrived) against 127.0.0.1 only, for a bounded time (and, for the Python client, a
bounded number of requests), and return a Run: requests, duration, non-200 answers,
transport errors, bytes and a latency histogram in microseconds (exact for the Python
client; rebuilt from per-run quantiles at 0.5 % resolution for wrk).

The Python client reads each status; wrk counts statuses >= 400 and run_wrk checks the
bytes per answer against the page's size, so that wrk need not copy bodies into Lua.
"""

import http.client
import json
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

HOST = "127.0.0.1"
WRK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk_report.lua")
MAX_REQUESTS = 2_000_000  # per run, whatever the duration
TIMEOUT = 30.0  # seconds a single request may take before it counts as an error


@dataclass
class Run:
    requests: int = 0  # answers received, whatever their status
    duration: float = 0.0  # seconds
    non200: int = 0
    errors: Counter = field(default_factory=Counter)  # transport errors by kind
    bytes: int = 0  # body bytes (Python client) or all bytes read (wrk)
    reconnects: int = 0  # idle keep-alive connections closed by the server, retried
    latency_us: Counter = field(default_factory=Counter)  # microseconds -> count

    def add(self, other: "Run") -> None:
        self.requests += other.requests
        self.duration += other.duration
        self.non200 += other.non200
        self.errors.update(other.errors)
        self.bytes += other.bytes
        self.reconnects += other.reconnects
        self.latency_us.update(other.latency_us)

    @property
    def rps(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def error_count(self) -> int:
        return self.non200 + sum(self.errors.values())

    def percentile_ms(self, p: float) -> float | None:
        """The p-th percentile latency in milliseconds (nearest rank)."""
        total = sum(self.latency_us.values())
        if not total:
            return None
        rank = max(1, math.ceil(p / 100 * total))
        seen = 0
        for value in sorted(self.latency_us):
            seen += self.latency_us[value]
            if seen >= rank:
                return value / 1000
        return max(self.latency_us) / 1000

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration, 3),
            "requests_per_second": round(self.rps, 1),
            "non200": self.non200,
            "transport_errors": dict(self.errors),
            "reconnects": self.reconnects,
            "latency_ms": {f"p{p}": self.percentile_ms(p) for p in (50, 95, 99)},
        }


# --- one request, for checks --------------------------------------------------------------


def fetch(port: int, path: str, timeout: float = TIMEOUT) -> tuple[int, dict, bytes]:
    """GET a path once (no cookies) and return status, headers and body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "identity"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


# --- the Python client -----------------------------------------------------------------------


class _Closed(Exception):
    """The server closed the connection; `idle` when no byte of the answer had arrived."""

    def __init__(self, idle: bool) -> None:
        super().__init__("connection closed")
        self.idle = idle


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends the same GET again and again."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.request_bytes = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: aporta-bench\r\n"
            "Accept: text/html\r\nAccept-Encoding: identity\r\n\r\n"
        ).encode("ascii")
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return sock

    def get(self) -> tuple[int, int]:
        """Send the request and read the whole answer: (status, body bytes)."""
        sock = self.sock or self._connect()
        sock.sendall(self.request_bytes)
        buffer = b""
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = sock.recv(65536)
            if not chunk:
                raise _Closed(idle=not buffer)
            buffer += chunk
        head = buffer[:end].decode("latin-1").split("\r\n")
        body = buffer[end + 4 :]
        status = int(head[0].split(" ", 2)[1])
        length = None
        chunked = close = False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                close = "close" in value.lower()
        if chunked:
            size = self._read_chunked(body)
        elif length is not None:
            size = len(body)
            while size < length:
                chunk = sock.recv(min(262144, length - size))
                if not chunk:
                    raise _Closed(idle=False)
                size += len(chunk)
        else:  # no length: the body runs until the server closes
            size = len(body)
            while chunk := sock.recv(262144):
                size += len(chunk)
            close = True
        if close:
            self.close()
        return status, size

    def _read_chunked(self, data: bytes) -> int:
        size = 0
        while True:
            while b"\r\n" not in data:
                data += self._recv()
            line, data = data.split(b"\r\n", 1)
            chunk_size = int(line.split(b";")[0], 16)
            while len(data) < chunk_size + 2:
                data += self._recv()
            size += chunk_size
            data = data[chunk_size + 2 :]
            if chunk_size == 0:
                while not (data.startswith(b"\r\n") or b"\r\n\r\n" in data):
                    data += self._recv()  # trailers (never sent by gunicorn in practice)
                return size

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed(idle=False)
        return chunk


def run_python(
    port: int, path: str, seconds: float, concurrency: int, max_requests: int = MAX_REQUESTS
) -> Run:
    """`concurrency` threads, one keep-alive connection each, for `seconds`."""
    budget = iter(range(max_requests))
    start_gate = threading.Barrier(concurrency + 1)
    results: list[Run] = []
    lock = threading.Lock()
    deadline = [0.0]

    def worker() -> None:
        run = Run()
        connection = _Connection(port, path)
        start_gate.wait()
        clock = time.perf_counter
        try:
            while clock() < deadline[0] and next(budget, None) is not None:
                began = clock()
                try:
                    status, size = connection.get()
                except _Closed as closed:
                    connection.close()
                    if closed.idle:  # a keep-alive connection the server dropped: retry once
                        run.reconnects += 1
                        try:
                            began = clock()
                            status, size = connection.get()
                        except (OSError, _Closed, ValueError, IndexError):
                            connection.close()
                            run.errors["closed"] += 1
                            continue
                    else:
                        run.errors["closed"] += 1
                        continue
                except TimeoutError:
                    connection.close()
                    run.errors["timeout"] += 1
                    continue
                except (OSError, ValueError, IndexError):
                    connection.close()
                    run.errors["transport"] += 1
                    continue
                run.latency_us[int((clock() - began) * 1_000_000)] += 1
                run.requests += 1
                run.bytes += size
                if status != 200:
                    run.non200 += 1
        finally:
            connection.close()
            with lock:
                results.append(run)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start_gate.wait()
    for thread in threads:
        thread.join()
    total = Run()
    for run in results:
        total.add(run)
    total.duration = time.perf_counter() - began
    return total


# --- wrk ---------------------------------------------------------------------------------------


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    output = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    first = output.splitlines()[0] if output else "wrk"
    return first.split(" Copyright")[0].strip()


def answer_bytes(port: int, path: str) -> int:
    """Bytes of one whole answer (status line, headers and body) to the request wrk sends."""
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode("ascii"))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else len(body)
        return len(head) + 4 + length


def run_wrk(
    port: int, path: str, seconds: float, concurrency: int, threads: int, expect_bytes: int = 0
) -> Run:
    """One wrk run, with the totals and quantiles wrk_report.lua prints as JSON.

    wrk counts answers with status >= 400; an answer of another size than `expect_bytes`
    (give 0 to skip the check) counts as non-200 too: a redirect or an error page is far
    smaller or larger than the page. The headers vary by a few bytes (dates, ids, cookies).
    """
    threads = max(1, min(threads, concurrency))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={int(TIMEOUT)}s",
        "-s",
        WRK_SCRIPT,
        f"http://{HOST}:{port}{path}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^BENCHJSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(match.group(1))
    run = Run(
        requests=data["requests"],
        duration=data["duration_us"] / 1_000_000,
        non200=data["status_errors"],
        errors=Counter({k: v for k, v in data["errors"].items() if v}),
        bytes=data["bytes"],
    )
    if expect_bytes and run.requests:
        per_answer = run.bytes / run.requests
        if abs(per_answer - expect_bytes) > max(64, 0.02 * expect_bytes):
            wrong = f"answers of {per_answer:.0f} bytes on average, not {expect_bytes}"
            run.errors[wrong] += run.requests
    # Rebuild an approximate histogram: each 0.5 % quantile stands for 0.5 % of the answers.
    quantiles = data["quantiles_us"]
    measured = run.requests - sum(run.errors.values())
    if quantiles and measured > 0:
        share = measured / len(quantiles)
        for value in quantiles:
            run.latency_us[int(value)] += share
    return run


def run(
    client: str,
    port: int,
    path: str,
    seconds: float,
    concurrency: int,
    wrk_threads: int = 2,
    expect_bytes: int = 0,
) -> Run:
    """One run with the chosen client; the Python client counts every non-200 answer."""
    if client == "wrk":
        return run_wrk(port, path, seconds, concurrency, wrk_threads, expect_bytes)
    return run_python(port, path, seconds, concurrency)


def choose_client(requested: str) -> str:
    """'auto' is wrk when it is installed, else the Python client."""
    if requested == "auto":
        return "wrk" if wrk_path() else "python"
    if requested == "wrk" and not wrk_path():
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk); use --client python")
    return requested

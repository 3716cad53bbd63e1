"""Start gunicorn for a benchmark on 127.0.0.1 and a free port; stop its whole process group."""

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU seconds of the given processes (0 for those gone)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / ticks


class Gunicorn:
    """gunicorn with the project's gunicorn.conf.py and the given overrides, as `make serve`.

    Command-line options win over the configuration file, so bind, workers, threads and
    max_requests are the ones given here; the rest (keepalive, timeout, access log to
    stdout...) is the production file's. Its output goes to `log_path`.
    """

    def __init__(
        self,
        app: str,
        env: dict,
        log_path: str,
        workers: int = 2,
        threads: int = 4,
        max_requests: int = 0,
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = env
        self.settings = {
            "config": "gunicorn.conf.py",
            "bind": f"127.0.0.1:{self.port}",
            "workers": workers,
            "worker_class": "gthread" if threads > 1 else "sync",
            "threads": threads,
            "max_requests": max_requests,
        }
        self.command = [
            GUNICORN,
            "--config",
            "gunicorn.conf.py",
            "--bind",
            self.settings["bind"],
            "--workers",
            str(workers),
            "--worker-class",
            self.settings["worker_class"],
            "--threads",
            str(threads),
            "--max-requests",
            str(max_requests),
            app,
        ]
        self.process: subprocess.Popen | None = None

    @property
    def command_line(self) -> str:
        return f"cd {shlex.quote(REPO)} && " + shlex.join(self.command)

    def start(self, wait_path: str = "/healthz", timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed when gunicorn is stopped)
        self._log = log
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{self.port}{wait_path}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"gunicorn exited with {code}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer {url} in {timeout:.0f} s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the arbiter)."""
        if self.process is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.process.pid:
                pids.append(int(entry))
        return pids

    def stop(self) -> None:
        """SIGTERM the process group (arbiter and workers), SIGKILL after 15 s."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=5)
        try:  # a worker left behind by an arbiter that died
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process = None
        self._log.close()

    def log_problems(self, limit: int = 8) -> list[str]:
        """Access-log lines with a status other than 200, and error lines, from the log."""
        access = re.compile(r'" (\d{3}) ')
        found = []
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    status = access.search(line)
                    if (status and status.group(1) != "200") or (
                        not status and re.search(r"error|exception|traceback", line, re.I)
                    ):
                        found.append(line.rstrip()[:300])
                        if len(found) >= limit:
                            break
        except OSError:
            pass
        return found

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

"""A private, throwaway PostgreSQL cluster on 127.0.0.1 for the load and fault scripts.

initdb in a temporary folder, `pg_ctl start` on a free port, one database, `restart`
(for the fault script) and `remove` (stop immediately, delete the folder). As root, every
PostgreSQL command runs as the `postgres` user, which owns the folder. Nothing here
touches the machine's shared server.
"""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time

from bench.server import free_port

BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _bin_dir() -> str:
    found = sorted(glob.glob(BIN_GLOB), key=lambda path: int(path.split("/")[-2]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found in " + BIN_GLOB)
    return found[-1]


class PgCluster:
    """One cluster: `start()`, `url`, `restart()`, `remove()` (safe to call twice)."""

    def __init__(self, database: str = "aporta_bench") -> None:
        self.bin = _bin_dir()
        self.database = database
        self.port = free_port()
        self.dir: str | None = None
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def version(self) -> str:
        return self._run("postgres", "--version").strip()

    def _run(self, program: str, *args: str, timeout: float = 120) -> str:
        command = [os.path.join(self.bin, program), *args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.dir or "/"
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        """initdb, start on 127.0.0.1:port (socket in the folder) and create the database."""
        self.dir = tempfile.mkdtemp(prefix="aporta-pg-")
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        data = os.path.join(self.dir, "data")
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.dir} -c max_connections=100"
        )
        self._run("pg_ctl", "-D", data, "-l", os.path.join(self.dir, "server.log"), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        self.running = True
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  self.database)  # fmt: skip

    def restart(self) -> float:
        """`pg_ctl restart -m fast` (drops every connection); returns the seconds it took."""
        began = time.monotonic()
        log = os.path.join(self.dir, "server.log")
        self._run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-l", log, "-m", "fast", "-w",
                  "-t", "60", "restart")  # fmt: skip
        return time.monotonic() - began

    def remove(self) -> None:
        """Stop the server at once and delete its folder."""
        if self.dir is None:
            return
        if self.running:
            try:
                self._run("pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "immediate",
                          "-w", "-t", "30", "stop")  # fmt: skip
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"could not stop the private PostgreSQL: {error}")
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

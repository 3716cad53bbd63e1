"""Real servers for the ingest tests: Dovecot (IMAP, IMAPS, STARTTLS) and aiosmtpd (SMTP).

Both listen on 127.0.0.1 on free ports, live in a temporary folder and are stopped by
the fixtures. Import the fixtures into a test module to use them.
"""

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from tests.conftest import require_service

DATA = Path(__file__).parent / "data" / "email"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "email"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "clave-de-prueba"

THEMES = {
    "salud": ("Salud", "SAL"),
    "educacion": ("Educación", "EDU"),
    "ambiente": ("Ambiente", "AMB"),
    "infraestructura": ("Infraestructura", "INF"),
    "saneamiento": ("Saneamiento", "SAN"),
    "seguridad-ciudadana": ("Seguridad ciudadana", "SEG"),
}


def make_email_consultation(state_closes_in_days: int = 3650):
    """A consultation with the six themes of the fixtures and drafts <PREFIX>-1..4."""
    from datetime import timedelta

    from forum import clock
    from forum.consultation import services as consultation

    data = {
        "consultation": {"slug": "paga-correo", "title": "Plan por correo"},
        "themes": [
            {
                "slug": slug,
                "name": name,
                "drafts": [{"code": f"{prefix}-{n}", "title": f"{name} {n}"} for n in range(1, 5)],
            }
            for slug, (name, prefix) in THEMES.items()
        ],
    }
    created = consultation.import_consultation(data, actor="test")
    opens = clock.parse_lima("2017-09-22T08:00")
    consultation.set_window(
        created, opens, clock.now() + timedelta(days=state_closes_in_days), actor="test"
    )
    return created


def ingest_config(app, **overrides) -> None:
    """The ingest settings the fixtures expect (staff domain of the forwards)."""
    app.config.update(
        {"INGEST_STAFF_DOMAINS": "sgp.example.gob.pe", "INGEST_ACK": False, **overrides}
    )


def fixture_bytes(name: str) -> bytes:
    return (DATA / name).read_bytes()


# Dovecot -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Dovecot:
    """A running test Dovecot: ports, certificate, one user and its Maildir."""

    base: Path
    imap_port: int
    imaps_port: int
    cafile: str
    user: str
    maildir: Path
    uid: int
    process: subprocess.Popen | None = None
    greeting: str = field(default_factory=lambda: f"aporta-test-{uuid.uuid4().hex[:8]}")

    def config(self, security: str = "ssl", **extra) -> dict:
        """App config that points the ingest at this server."""
        return {
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": self.imaps_port if security == "ssl" else self.imap_port,
            "IMAP_USER": self.user,
            "IMAP_PASSWORD": PASSWORD,
            "IMAP_SECURITY": security,
            "IMAP_CAFILE": self.cafile,
            "IMAP_FOLDER": "INBOX",
            **extra,
        }

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=self.cafile)
        connection = imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=context)
        connection.login(self.user, PASSWORD)
        return connection

    def append(self, messages: list[bytes], folder: str = "INBOX") -> None:
        """Deliver messages with IMAP APPEND (one session)."""
        connection = self.client()
        try:
            for raw in messages:
                status, data = connection.append(folder, None, None, raw)
                assert status == "OK", data
        finally:
            connection.logout()

    def counts(self) -> dict[str, int]:
        """Messages per folder."""
        connection = self.client()
        try:
            result = {}
            for folder in ("INBOX", "Procesados", "Errores"):
                status, data = connection.select(folder, readonly=True)
                result[folder] = int(data[0]) if status == "OK" else 0
            return result
        finally:
            connection.logout()

    def empty(self) -> None:
        """Remove every message from every folder (between tests)."""
        connection = self.client()
        try:
            for folder in ("INBOX", "Procesados", "Errores"):
                status, data = connection.select(folder)
                if status == "OK" and int(data[0]):
                    connection.store("1:*", "+FLAGS", "(\\Deleted)")
                    connection.expunge()
        finally:
            connection.logout()


def _write_config(server: Dovecot) -> Path:
    conf = server.base / "dovecot.conf"
    conf.write_text(
        f"""
protocols = imap
listen = 127.0.0.1
base_dir = {server.base}/run
state_dir = {server.base}/state
log_path = {server.base}/dovecot.log
info_log_path = {server.base}/dovecot.log
login_greeting = {server.greeting}
ssl = yes
ssl_cert = <{server.base}/cert.pem
ssl_key = <{server.base}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = {server.uid}
last_valid_uid = {server.uid}
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {server.base}/passwd
}}
userdb {{
  driver = passwd-file
  args = {server.base}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {server.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {server.imaps_port}
    ssl = yes
  }}
}}
namespace inbox {{
  inbox = yes
  mailbox Procesados {{
    auto = subscribe
  }}
  mailbox Errores {{
    auto = subscribe
  }}
}}
"""
    )
    return conf


def _wait_for_greeting(server: Dovecot) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("dovecot exited: " + _log(server))
        try:
            with socket.create_connection(("127.0.0.1", server.imap_port), timeout=1) as sock:
                if server.greeting in sock.recv(200).decode("ascii", "replace"):
                    return
        except OSError:
            pass
        time.sleep(0.05)  # waiting for a server to start, not for the clock
    raise RuntimeError("dovecot did not answer: " + _log(server))


def _log(server: Dovecot) -> str:
    path = server.base / "dovecot.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def dovecot_available() -> bool:
    return os.path.exists(DOVECOT) and shutil.which("openssl") is not None and os.geteuid() == 0


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """Start a Dovecot in a temporary folder on free ports; stop it and clean up after."""
    base = Path(tempfile.mkdtemp(prefix="apdc-", dir="/tmp"))
    os.chmod(base, 0o711)  # noqa: S103 - Dovecot's unprivileged processes traverse it
    nobody = pwd.getpwnam("nobody")
    home = base / "home"
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for path in [home, *home.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    openssl = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem"),
    ]  # fmt: skip
    subprocess.run(openssl, check=True, capture_output=True)  # noqa: S603, S607 - fixed arguments
    server = Dovecot(
        base=base,
        imap_port=_free_port(),
        imaps_port=_free_port(),
        cafile=str(base / "cert.pem"),
        user="aportes",
        maildir=maildir,
        uid=nobody.pw_uid,
    )
    (base / "passwd").write_text(
        f"aportes:{{PLAIN}}{PASSWORD}:{nobody.pw_uid}:{nobody.pw_gid}::{home}::\n"
    )
    conf = _write_config(server)
    server.process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_greeting(server)
        yield server
    finally:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Dovecot | None]:
    """A Dovecot on 127.0.0.1 for the whole session (None when it cannot run here)."""
    if not dovecot_available():
        yield None
        return
    with running_dovecot() as server:
        yield server


@pytest.fixture
def dovecot(dovecot_server, app) -> Iterator[Dovecot]:
    """The session's Dovecot, emptied, with the app pointed at it over IMAPS."""
    require_service(dovecot_server is not None, "dovecot-imapd (apt-get install dovecot-imapd)")
    dovecot_server.empty()
    app.config.update(dovecot_server.config("ssl"))
    yield dovecot_server
    dovecot_server.empty()


# A proxy that drops the connection -----------------------------------------------------


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 that cuts the connection after N bytes from the server."""

    def __init__(self, target_port: int, cut_after: int):
        self.target_port = target_port
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        sent = 0

        def to_server():
            try:
                while chunk := client.recv(65536):
                    upstream.sendall(chunk)
            except OSError:
                pass

        threading.Thread(target=to_server, daemon=True).start()
        try:
            while chunk := upstream.recv(65536):
                if sent + len(chunk) > self.cut_after:
                    client.sendall(chunk[: max(0, self.cut_after - sent)])
                    break
                client.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        self.cut.set()
        for sock in (client, upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


# SMTP ------------------------------------------------------------------------------------


class _Collector:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


@pytest.fixture
def smtp_server(app):
    """aiosmtpd on 127.0.0.1; the app sends through it; yields the received messages."""
    from aiosmtpd.controller import Controller

    collector = _Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=_free_port())
    controller.start()
    app.config.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": controller.port})
    try:
        yield collector.messages
    finally:
        controller.stop()

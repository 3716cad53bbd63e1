"""E-mail ingest from a real Dovecot: IMAPS and STARTTLS, move or flag, and the fault tests."""

import pytest
from sqlalchemy import func, select

from forum.consultation.models import Contribution
from forum.extensions import db
from forum.ingest.models import InboundMessage
from forum.ingest.pipeline import Run, stored_count
from forum.ingest.sources import SourceError
from tests.ingest_support import (
    CuttingProxy,
    dovecot,  # noqa: F401 - pytest fixture
    dovecot_server,  # noqa: F401 - pytest fixture
    fixture_bytes,
    ingest_config,
    make_email_consultation,
)

# Twelve ordinary contributions, two quarantined, one error: the fault tests' mailbox.
BATCH = [
    "001_plain-utf8.eml", "002_iso-8859-1-8bit.eml", "003_windows-1252-8bit.eml",
    "007_quoted-printable-utf8.eml", "009_multipart-alternative.eml",
    "012_folded-encoded-subject.eml",
    "018_fwd-gmail-es-mixed-labels.eml", "021_fwd-outlook-desktop-es.eml",
    "024_fwd-thunderbird-es-flowed.eml", "026_fwd-apple-iphone-es.eml",
    "028_fwd-as-attachment-rfc822.eml", "037_attachment-pdf.eml",
    "046_autoreply-auto-submitted.eml", "055_bounce-multipart-report-dsn.eml",
    "064_malformed-empty-body.eml",
]  # fmt: skip


@pytest.fixture
def mailbox(app, dovecot):  # noqa: F811
    """A consultation, the ingest configured, and the batch delivered to INBOX."""
    ingest_config(app, INGEST_BATCH_SIZE=4)
    make_email_consultation()
    db.session.commit()
    dovecot.append([fixture_bytes(name) for name in BATCH])
    return dovecot


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _reconciled(server) -> None:
    """Every delivered message is stored once and has ended somewhere; nothing doubled."""
    statuses = stored_count()
    assert sum(statuses.values()) == len(BATCH)
    assert statuses == {"contribution": 12, "quarantined": 2, "error": 1}
    assert _count(Contribution) == 12
    assert server.counts() == {"INBOX": 0, "Procesados": 14, "Errores": 1}


def test_imaps_ingest_moves_each_message_after_commit(app, mailbox, runner):
    result = runner.invoke(args=["ingest", "imap"])
    assert result.exit_code == 0, result.output
    assert "Recibidos: 15; aportes: 12; en cuarentena: 2; errores: 1; duplicados omitidos: 0." in (
        result.output
    )
    _reconciled(mailbox)
    rows = db.session.scalars(select(InboundMessage).order_by(InboundMessage.uid)).all()
    assert [row.uid for row in rows] == list(range(rows[0].uid, rows[0].uid + len(BATCH)))
    assert len({row.uidvalidity for row in rows}) == 1 and rows[0].uidvalidity > 0
    assert all(row.source == "imap" and row.source_ref == "INBOX" for row in rows)
    assert all(row.received_at is not None for row in rows)  # the server's INTERNALDATE
    folded = db.session.scalar(
        select(InboundMessage).where(InboundMessage.from_email == "fnahui@jovenes-cusco.example")
    )
    assert folded.subject.startswith("Participación ciudadana en el diseño del mapa")
    assert folded.raw == fixture_bytes("012_folded-encoded-subject.eml")

    again = runner.invoke(args=["ingest", "imap"])
    assert "Recibidos: 0; aportes: 0" in again.output
    _reconciled(mailbox)


def test_starttls_and_flag_mode(app, mailbox, runner):
    app.config.update(mailbox.config("starttls", INGEST_AFTER="flag"))
    result = runner.invoke(args=["ingest", "imap"])
    assert result.exit_code == 0, result.output
    assert "Recibidos: 15;" in result.output
    # Flag mode leaves the messages in INBOX, marked; a second run reads nothing new.
    assert mailbox.counts()["INBOX"] == len(BATCH)
    again = runner.invoke(args=["ingest", "imap"])
    assert "Recibidos: 0;" in again.output
    assert _count(Contribution) == 12
    client = mailbox.client()
    try:
        client.select("INBOX", readonly=True)
        _, done = client.uid("SEARCH", None, "KEYWORD AportaProcesado")
        _, failed = client.uid("SEARCH", None, "KEYWORD AportaError")
    finally:
        client.logout()
    assert (len(done[0].split()), len(failed[0].split())) == (14, 1)


def test_wrong_password_and_untrusted_certificate_are_reported(app, mailbox, runner):
    app.config["IMAP_PASSWORD"] = "otra"
    result = runner.invoke(args=["ingest", "imap"])
    assert result.exit_code == 1 and "No se pudo entrar al buzón IMAP" in result.output
    app.config.update(mailbox.config("ssl", IMAP_CAFILE=""))
    result = runner.invoke(args=["ingest", "imap"])
    assert result.exit_code == 1 and "CERTIFICATE_VERIFY_FAILED" in result.output
    assert _count(InboundMessage) == 0


def test_connection_dropped_mid_batch_loses_and_doubles_nothing(app, mailbox):
    """A proxy cuts the TLS stream partway through the fetches; the next run finishes."""
    half = sum(len(fixture_bytes(name)) for name in BATCH) // 2
    proxy = CuttingProxy(mailbox.imaps_port, cut_after=half)
    app.config["IMAP_PORT"] = proxy.port
    try:
        with pytest.raises(SourceError):
            Run().ingest_imap()
    finally:
        proxy.close()
    assert proxy.cut.is_set()
    first = stored_count()
    assert 0 < sum(first.values()) < len(BATCH)
    assert first.get("pending", 0) == 0

    app.config["IMAP_PORT"] = mailbox.imaps_port
    run = Run()
    run.ingest_imap()
    _reconciled(mailbox)
    assert run.totals.duplicates == 0
    assert run.totals.received + sum(first.values()) == len(BATCH) + run.totals.resumed


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even the per-message error handling."""


def test_killed_between_commit_and_move_then_run_again(app, mailbox):
    seen = []

    def die_after_sixth_commit(item):
        seen.append(item.uid)
        if len(seen) == 6:
            raise Killed

    with pytest.raises(Killed):
        Run().ingest_imap(after_commit=die_after_sixth_commit)
    db.session.rollback()
    assert sum(stored_count().values()) == 6
    # The first batch of four was moved; messages 5 and 6 are committed but still in INBOX.
    assert mailbox.counts()["INBOX"] == len(BATCH) - 4

    run = Run()
    run.ingest_imap()
    assert run.totals.resumed == 2 and run.totals.duplicates == 0
    assert run.totals.received == len(BATCH) - 6
    _reconciled(mailbox)


def test_same_messages_delivered_twice_are_stored_once(app, mailbox):
    """The secretariat copies the same export into the inbox again."""
    Run().ingest_imap()
    mailbox.append([fixture_bytes(name) for name in BATCH])
    run = Run()
    run.ingest_imap()
    assert run.totals.received == len(BATCH) and run.totals.duplicates == len(BATCH)
    assert run.totals.contributions == 0
    assert sum(stored_count().values()) == len(BATCH)
    assert _count(Contribution) == 12
    assert mailbox.counts() == {"INBOX": 0, "Procesados": 28, "Errores": 2}


def test_without_imap_host_the_command_explains(app, runner):
    ingest_config(app, IMAP_HOST="")
    result = runner.invoke(args=["ingest", "imap"])
    assert result.exit_code == 1
    assert "Falta APORTA_IMAP_HOST" in result.output

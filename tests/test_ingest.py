"""E-mail ingest from files: every fixture of the manifest, idempotency, corpus, acks."""

import mailbox
from datetime import datetime, timedelta

import pytest
import yaml
from sqlalchemy import func, select

from forum import clock
from forum.consultation import services as consultation_services
from forum.consultation.models import Contribution
from forum.extensions import db
from forum.ingest import services
from forum.ingest.forwards import parse_loose_date
from forum.ingest.models import InboundAttachment, InboundMessage
from forum.ingest.parse import parse_message, sha256
from forum.ingest.pipeline import Run, stored_count
from forum.ingest.routing import Catalogue, route
from forum.ingest.sources import RawItem
from tests.conftest import QueryCounter, require_service
from tests.ingest_support import (
    CORPUS,
    DATA,
    THEMES,
    fixture_bytes,
    ingest_config,
    make_email_consultation,
    smtp_server,  # noqa: F401 - pytest fixture
)

MANIFEST = yaml.safe_load((DATA / "expected.yaml").read_text(encoding="utf-8"))
CATALOGUE = Catalogue(
    themes={slug: name for slug, (name, _) in THEMES.items()},
    drafts={f"{prefix}-{n}": slug for slug, (_, prefix) in THEMES.items() for n in range(1, 5)},
)
STATUS = {"contribution": "contribution", "quarantine": "quarantined", "error": "error"}


@pytest.fixture
def configured(app):
    ingest_config(app)
    return app


def _instant(value: str | None):
    return datetime.fromisoformat(value) if value else None


def _ingest_fixtures(names: list[str]) -> Run:
    run = Run()
    run.ingest_items(RawItem(raw=fixture_bytes(n), source="file", source_ref=n) for n in names)
    return run


def test_manifest_lists_every_fixture_once():
    files = sorted(p.name for p in DATA.glob("*.eml"))
    assert sorted(entry["file"] for entry in MANIFEST) == files
    assert len(files) == 68


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda entry: entry["file"][:3])
def test_parser_and_routing_match_the_manifest(configured, entry):
    """Pure parsing (no database): outcome, reason, author, forwarder, subject, date, text."""
    parsed = parse_message(fixture_bytes(entry["file"]), services.parse_options())
    assert (parsed.outcome, parsed.reason) == (entry["outcome"], entry["reason"])
    assert parsed.author_name == entry["author_name"]
    assert parsed.author_email == (entry["author_email"].lower() if entry["author_email"] else None)
    assert parsed.subject == entry["subject"]
    assert parsed.sent_at == _instant(entry["sent_at"])
    if entry["outcome"] != "contribution":
        return
    assert parsed.forwarded_by == entry["forwarded_by"]
    text = parsed.text.replace("\r\n", "\n")
    for phrase in entry["text_contains"]:
        assert phrase in text
    for phrase in entry["text_excludes"]:
        assert phrase not in text
    where = route(parsed.subject, parsed.recipients, parsed.text, CATALOGUE)
    assert (where.theme, where.draft_code) == (entry["theme"], entry["draft_code"])
    assert [
        {"filename": a.filename, "content_type": a.content_type, "allowed": a.is_allowed}
        for a in parsed.attachments
    ] == entry["attachments"]


def test_ingesting_every_fixture_stores_what_the_manifest_expects(configured):
    """Through the database: status, contribution, routing, attachments, duplicates, totals."""
    make_email_consultation()
    db.session.commit()
    run = _ingest_fixtures([entry["file"] for entry in MANIFEST])
    by_file = {}
    for entry in MANIFEST:
        message = db.session.scalar(
            select(InboundMessage).where(
                InboundMessage.sha256 == sha256(fixture_bytes(entry["file"]))
            )
        )
        by_file[entry["file"]] = message
        assert message is not None, entry["file"]
        if entry["duplicate_of"]:
            original = by_file[entry["duplicate_of"]]
            assert message.status == "duplicate", entry["file"]
            assert message.contribution_id == original.contribution_id
            continue
        assert message.status == STATUS[entry["outcome"]], entry["file"]
        assert message.reason == (entry["reason"] or ""), entry["file"]
        if entry["outcome"] != "contribution":
            assert message.contribution_id is None
            continue
        contribution = message.contribution
        assert contribution.channel == "email"
        assert contribution.author_id is None
        assert contribution.author_email == entry["author_email"].lower()
        assert contribution.author_name == (entry["author_name"] or "")
        assert contribution.forwarded_by == (entry["forwarded_by"] or "")
        assert (contribution.theme.slug if contribution.theme else None) == entry["theme"]
        assert (contribution.draft.code if contribution.draft else None) == entry["draft_code"]
        assert message.subject == (entry["subject"] or "")
        assert message.sent_at == _instant(entry["sent_at"])
        for phrase in entry["text_contains"]:
            assert phrase in contribution.body, entry["file"]
        for phrase in entry["text_excludes"]:
            assert phrase not in contribution.body, entry["file"]
        stored = [
            {"filename": a.filename, "content_type": a.content_type, "allowed": a.is_allowed}
            for a in message.attachments
        ]
        assert stored == entry["attachments"], entry["file"]
        for attachment in message.attachments:
            assert (attachment.data is not None) == attachment.is_allowed

    expected = {"contribution": 0, "quarantine": 0, "error": 0, "duplicate": 0}
    for entry in MANIFEST:
        expected["duplicate" if entry["duplicate_of"] else entry["outcome"]] += 1
    totals = run.totals
    assert (totals.contributions, totals.quarantined, totals.errors, totals.duplicates) == (
        expected["contribution"],
        expected["quarantine"],
        expected["error"],
        expected["duplicate"],
    )
    assert totals.received == len(MANIFEST)
    assert totals.received == (
        totals.contributions + totals.quarantined + totals.errors + totals.duplicates
    )
    assert _count(Contribution) == expected["contribution"]


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_ingesting_the_same_files_twice_creates_nothing_new(configured, runner, tmp_path):
    make_email_consultation()
    db.session.commit()
    first = runner.invoke(args=["ingest", "files", str(DATA)])
    assert first.exit_code == 0, first.output
    assert "Recibidos: 68; aportes: 47; en cuarentena: 14; errores: 4; duplicados omitidos: 3." in (
        first.output
    )
    counts = (_count(InboundMessage), _count(Contribution), _count(InboundAttachment))
    second = runner.invoke(args=["ingest", "files", str(DATA)])
    assert second.exit_code == 0, second.output
    assert "Recibidos: 68; aportes: 0; en cuarentena: 0; errores: 0; duplicados omitidos: 68." in (
        second.output
    )
    assert (_count(InboundMessage), _count(Contribution), _count(InboundAttachment)) == counts


def test_cli_summary_line_reconciles(configured, runner):
    make_email_consultation()
    db.session.commit()
    result = runner.invoke(args=["ingest", "files", str(DATA)])
    statuses = stored_count()
    contributions = statuses.get("contribution", 0)
    summary = (
        f"Recibidos: 68; aportes: {contributions}; en cuarentena: {statuses['quarantined']}; "
        f"errores: {statuses['error']}; duplicados omitidos: {statuses['duplicate']}."
    )
    assert summary in result.output
    assert contributions + statuses["quarantined"] + statuses["error"] + statuses["duplicate"] == 68


def test_mbox_and_maildir_are_read(configured, runner, tmp_path):
    make_email_consultation()
    db.session.commit()
    box = mailbox.mbox(str(tmp_path / "export.mbox"))
    for name in (
        "001_plain-utf8.eml",
        "002_iso-8859-1-8bit.eml",
        "046_autoreply-auto-submitted.eml",
    ):
        box.add(mailbox.mboxMessage(fixture_bytes(name)))
    box.flush()
    box.close()
    maildir = mailbox.Maildir(str(tmp_path / "Maildir"))
    for name in ("018_fwd-gmail-es-mixed-labels.eml", "061_malformed-no-from.eml"):
        maildir.add(fixture_bytes(name))
    result = runner.invoke(
        args=["ingest", "files", str(tmp_path / "export.mbox"), str(tmp_path / "Maildir")]
    )
    assert result.exit_code == 0, result.output
    assert "Recibidos: 5; aportes: 3; en cuarentena: 1; errores: 1; duplicados omitidos: 0." in (
        result.output
    )
    authors = set(db.session.scalars(select(Contribution.author_email)))
    assert authors == {
        "maria.huaman@correo.example",
        "jpena@correo-sur.example",
        "rosa.quispe@correo.example",
    }


def test_unknown_path_is_refused_in_spanish(configured, runner):
    result = runner.invoke(args=["ingest", "files", "/no/existe.eml"])
    assert result.exit_code != 0
    assert "does not exist" in result.output or "No existe" in result.output


def test_received_after_closing_is_ingested_and_marked_late(configured):
    consultation = make_email_consultation()
    consultation.closes_at = clock.parse_lima("2017-10-01T00:00")
    db.session.commit()
    run = Run()
    on_time = clock.parse_lima("2017-09-30T23:00")
    late = clock.parse_lima("2017-10-01T00:05")
    run.ingest(
        RawItem(
            raw=fixture_bytes("001_plain-utf8.eml"),
            source="imap",
            source_ref="INBOX",
            received_at=late,
        )
    )
    run.ingest(
        RawItem(
            raw=fixture_bytes("002_iso-8859-1-8bit.eml"),
            source="imap",
            source_ref="INBOX",
            received_at=on_time,
        )
    )
    rows = {c.author_email: c for c in db.session.scalars(select(Contribution))}
    # 001's Date header (25 Sept) is before closing: the server's arrival time decides.
    assert rows["maria.huaman@correo.example"].is_late is True
    assert rows["maria.huaman@correo.example"].received_at == late
    assert rows["jpena@correo-sur.example"].is_late is False


def test_too_large_message_is_an_error_keeping_its_headers(configured, tmp_path):
    make_email_consultation()
    db.session.commit()
    head = (
        fixture_bytes("001_plain-utf8.eml")
        .split(b"\r\n\r\n", 1)[0]
        .replace(
            b"Message-ID: <5a1f0c2d.4e8b.11e7@correo.example>",
            b"Message-ID: <grande@correo.example>",
        )
    )
    raw = head + b"\r\n\r\n" + b"Texto grande.\r\n" * (11 * 1024 * 1024 // 15)
    run = Run()
    assert run.ingest(RawItem(raw=raw, source="file", source_ref="grande.eml")) == "error"
    message = db.session.scalar(select(InboundMessage))
    assert (message.reason, message.is_truncated, message.size) == ("too-large", True, len(raw))
    assert len(message.raw) < 4096 and message.from_email == "maria.huaman@correo.example"
    assert "límite" in message.error


def test_long_text_is_cut_with_a_note_pointing_to_the_original(configured):
    make_email_consultation()
    db.session.commit()
    raw = (
        "From: Ana <ana@correo.example>\r\nTo: aportes@aporta.example\r\nSubject: Largo\r\n"
        "Message-ID: <largo@correo.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + "Una propuesta muy larga. "
        * 400
    ).encode()
    Run().ingest(RawItem(raw=raw, source="file", source_ref="largo.eml"))
    contribution = db.session.scalar(select(Contribution))
    message = db.session.scalar(select(InboundMessage))
    assert len(contribution.body) <= 5000
    assert contribution.body.endswith(
        f"el mensaje completo está en el correo original n.º {message.id}.]"
    )


def test_without_a_consultation_the_message_is_an_error_not_lost(configured):
    run = Run()
    assert (
        run.ingest(RawItem(raw=fixture_bytes("001_plain-utf8.eml"), source="file", source_ref="x"))
        == "error"
    )
    message = db.session.scalar(select(InboundMessage))
    assert message.reason == "no-consultation" and message.raw == fixture_bytes(
        "001_plain-utf8.eml"
    )


def test_a_crash_while_processing_is_recorded_as_an_error(configured, monkeypatch):
    make_email_consultation()
    db.session.commit()

    def explode(*args, **kwargs):
        raise RuntimeError("fallo simulado")

    monkeypatch.setattr(services, "_contribute", explode)
    run = Run()
    status = run.ingest(
        RawItem(raw=fixture_bytes("001_plain-utf8.eml"), source="file", source_ref="x")
    )
    assert status == "error"
    message = db.session.scalar(select(InboundMessage))
    assert (message.status, message.reason) == ("error", "internal")
    assert "fallo simulado" in message.error
    assert _count(Contribution) == 0


def test_a_message_stored_but_not_processed_is_processed_by_the_next_run(configured):
    """The process died after the raw commit and before parsing: nothing is lost."""
    make_email_consultation()
    db.session.commit()
    raw = fixture_bytes("001_plain-utf8.eml")
    services.store_raw(raw, source="file", source_ref="x")
    db.session.commit()
    run = Run()
    assert run.ingest(RawItem(raw=raw, source="file", source_ref="x")) == "contribution"
    assert run.totals.received == 1 and run.totals.contributions == 1
    assert _count(InboundMessage) == 1


def test_acknowledgement_goes_through_smtp_once_and_never_to_automata(configured, smtp_server):  # noqa: F811, E501
    make_email_consultation()
    db.session.commit()
    names = [
        "001_plain-utf8.eml",
        "018_fwd-gmail-es-mixed-labels.eml",
        "046_autoreply-auto-submitted.eml",
        "055_bounce-multipart-report-dsn.eml",
        "058_own-system-ack.eml",
        "036_duplicate-message-id.eml",
    ]
    run = Run(ack=True)
    run.ingest_items(RawItem(raw=fixture_bytes(n), source="file", source_ref=n) for n in names)
    assert run.totals.acknowledged == 2
    recipients = sorted(rcpt[0] for rcpt, _ in smtp_server)
    assert recipients == ["maria.huaman@correo.example", "rosa.quispe@correo.example"]
    _, ack = next(m for m in smtp_server if m[0] == ["maria.huaman@correo.example"])
    contribution = db.session.scalar(
        select(Contribution).where(Contribution.author_email == "maria.huaman@correo.example")
    )
    assert ack["X-Aporta-Ack"] == "1"
    assert ack["Auto-Submitted"].startswith("auto-")
    assert ack["In-Reply-To"] == "<5a1f0c2d.4e8b.11e7@correo.example>"
    assert f"n.º {contribution.id}" in ack["Subject"]
    assert f"http://localhost/aportes/{contribution.id}" in ack.get_content()

    # Our own acknowledgement coming back is quarantined as own-system, and not answered.
    bounced = Run(ack=True)
    assert bounced.ingest(RawItem(raw=ack.as_bytes(), source="file", source_ref="ack")) == (
        "quarantined"
    )
    assert (
        db.session.scalar(
            select(InboundMessage.reason).where(InboundMessage.sha256 == sha256(ack.as_bytes()))
        )
        == "own-system"
    )
    assert len(smtp_server) == 2


def test_forwarded_twice_by_two_staff_members_is_one_contribution_flagged(configured):
    make_email_consultation()
    db.session.commit()
    _ingest_fixtures(["019_fwd-gmail-es-classic-labels.eml", "033_fwd-duplicate-second-staff.eml"])
    messages = db.session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
    assert [m.status for m in messages] == ["contribution", "duplicate"]
    assert messages[1].contribution_id == messages[0].contribution_id
    assert [m.forwarded_by for m in messages] == [
        "lramirez@sgp.example.gob.pe",
        "psalas@sgp.example.gob.pe",
    ]
    assert _count(Contribution) == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("lun., 25 sept. 2017 a las 18:40", "2017-09-25T18:40:00-05:00"),
        ("Tue, Oct 3, 2017 at 4:05 PM", "2017-10-03T16:05:00-05:00"),
        ("martes, 3 de octubre de 2017 16:20", "2017-10-03T16:20:00-05:00"),
        ("9 de octubre de 2017, 7:58:12 GMT-5", "2017-10-09T07:58:12-05:00"),
        ("October 10, 2017 at 12:30:05 PM GMT-5", "2017-10-10T12:30:05-05:00"),
        ("Thursday, October 5, 2017 12:10 AM", "2017-10-05T00:10:00-05:00"),
        ("Fri, 6 Oct 2017 18:42:10 +0100", "2017-10-06T18:42:10+01:00"),
        ("mañana temprano", None),
    ],
)
def test_forward_dates_in_spanish_and_english(text, expected):
    assert parse_loose_date(text) == _instant(expected)


def test_routing_by_code_tag_and_plus_address_and_suggestion():
    assert route("Aporte a san-2", [], "", CATALOGUE).draft_code == "SAN-2"
    assert route("Aporte a SAN-9", [], "", CATALOGUE).theme == "saneamiento"
    assert route("[Educación] algo", [], "", CATALOGUE).theme == "educacion"
    assert route("x", ["aportes+ambiente@aporta.example"], "", CATALOGUE).theme == "ambiente"
    unrouted = route(
        "Sobre el plan",
        ["aportes@aporta.example"],
        "En salud pública y en la salud de los niños...",
        CATALOGUE,
    )
    assert (unrouted.theme, unrouted.suggested_theme) == (None, "salud")
    assert route("Ley N.º 27806", [], "", CATALOGUE) == route("", [], "", CATALOGUE)


def test_real_world_corpus_never_crashes_and_every_message_ends_somewhere(configured):
    """~800 messages from mail-library test suites: each a contribution, quarantine or error."""
    require_service(CORPUS.is_dir(), f"the shared real-world corpus at {CORPUS}")
    make_email_consultation()
    db.session.commit()
    files = sorted(
        p
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in ("README.md", "LICENSE") and p.suffix != ".html"
    )
    assert len(files) > 700
    run = Run()
    run.ingest_items(RawItem(raw=p.read_bytes(), source="file", source_ref=str(p)) for p in files)
    totals = run.totals
    assert totals.received == len(files)
    assert totals.received == (
        totals.contributions + totals.quarantined + totals.errors + totals.duplicates
    )
    statuses = stored_count()
    assert set(statuses) <= {"contribution", "quarantined", "error", "duplicate"}
    assert statuses.get("pending", 0) == 0
    unexplained = db.session.scalar(
        select(func.count()).where(InboundMessage.status == "error", InboundMessage.reason == "")
    )
    assert unexplained == 0
    assert totals.quarantined > 500  # the corpus is mostly bounces and auto-replies
    internal = db.session.scalar(select(func.count()).where(InboundMessage.reason == "internal"))
    assert internal == 0


def test_recent_contribution_is_not_late(configured):
    consultation = make_email_consultation()
    consultation.closes_at = clock.now() + timedelta(days=1)
    db.session.commit()
    Run().ingest(
        RawItem(
            raw=fixture_bytes("001_plain-utf8.eml"),
            source="file",
            source_ref="x",
            received_at=clock.now(),
        )
    )
    assert db.session.scalar(select(Contribution.is_late)) is False


def _variant(n: int) -> RawItem:
    """Fixture 001 as a distinct message (its own Message-ID and bytes)."""
    raw = fixture_bytes("001_plain-utf8.eml").replace(
        b"Message-ID: <", f"Message-ID: <v{n}.".encode(), 1
    )
    return RawItem(raw=raw, source="file", source_ref=f"v{n}.eml")


def test_a_batch_reads_the_consultation_once_and_the_stored_hashes_once(configured):
    """No N+1: themes, drafts and the consultation once per run, SHA-256s once per batch."""
    make_email_consultation()
    db.session.commit()
    run = Run()
    assert run.ingest(_variant(0)) == "contribution"  # loads the consultation's themes
    items = [_variant(n) for n in range(1, 7)]
    with QueryCounter() as counter:
        assert run.ingest_batch(items) == ["contribution"] * len(items)
    selects = [s for s in counter.statements if s.lstrip().upper().startswith("SELECT")]
    assert not [s for s in selects if any(t in s for t in ("FROM themes", "FROM drafts"))]
    assert not [s for s in selects if "FROM consultations" in s]
    assert sum("FROM inbound_messages" in s for s in selects) == 1
    assert len(counter.statements) <= 1 + 6 * len(items)
    assert _count(Contribution) == 1 + len(items)


def test_the_same_bytes_twice_in_one_batch_are_stored_once(configured):
    make_email_consultation()
    db.session.commit()
    run = Run()
    assert run.ingest_batch([_variant(1), _variant(1)]) == ["contribution", "duplicate"]
    assert (run.totals.received, run.totals.duplicates) == (2, 1)
    assert _count(InboundMessage) == 1 and _count(Contribution) == 1


def test_bytes_stored_by_a_concurrent_ingest_after_the_lookup_are_not_doubled(
    configured, monkeypatch
):
    """Another ingest stores the same bytes between this run's look-up and its insert."""
    make_email_consultation()
    db.session.commit()
    Run().ingest(_variant(1))
    monkeypatch.setattr(services, "find_stored_many", lambda digests: {})
    run = Run()
    assert run.ingest(_variant(1)) == "duplicate"
    assert run.totals.duplicates == 1
    assert _count(InboundMessage) == 1 and _count(Contribution) == 1


def test_contribution_added_by_a_concurrent_ingest_makes_this_one_a_duplicate(
    configured, monkeypatch
):
    """The same citizen e-mail, forwarded twice, processed at the same moment by two runs."""
    make_email_consultation()
    db.session.commit()
    _ingest_fixtures(["019_fwd-gmail-es-classic-labels.eml"])
    real = consultation_services.find_by_idempotency_key
    calls = []

    def not_yet_visible(key):  # the first look-up runs before the other run commits
        calls.append(key)
        return None if len(calls) == 1 else real(key)

    monkeypatch.setattr(consultation_services, "find_by_idempotency_key", not_yet_visible)
    run = _ingest_fixtures(["033_fwd-duplicate-second-staff.eml"])
    assert len(calls) == 2 and run.totals.duplicates == 1
    messages = db.session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
    assert [m.status for m in messages] == ["contribution", "duplicate"]
    assert messages[1].contribution_id == messages[0].contribution_id
    assert _count(Contribution) == 1

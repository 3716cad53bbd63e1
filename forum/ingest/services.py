"""Ingest services: store the raw message, turn it into a contribution or quarantine it,
release by hand, acknowledge. They flush, never commit; the CLI, the views and
`pipeline` commit at the edge."""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr

from flask import current_app
from sqlalchemy import select

from forum import clock
from forum.accounts.models import User
from forum.consultation import services as consultation_services
from forum.consultation.models import Consultation, Contribution, Draft, Theme
from forum.errors import InvalidInput
from forum.extensions import db
from forum.ingest.models import InboundAttachment, InboundMessage
from forum.ingest.parse import ParsedMessage, ParseOptions, clean, parse_message, sha256
from forum.ingest.routing import Catalogue, route
from forum.mail import send_mail

log = logging.getLogger(__name__)

CUT_NOTE = "\n\n[Texto recortado: el mensaje completo está en el correo original n.º {id}.]"


@dataclass(frozen=True)
class Settings:
    """Every ingest setting, with its default, read in this one place."""

    imap_host: str
    imap_port: int
    imap_user: str
    imap_password: str
    imap_folder: str
    imap_security: str
    imap_cafile: str
    imap_timeout: int
    after: str  # "move" to the done/error folders, or "flag" with keywords
    done_folder: str
    error_folder: str
    batch_size: int
    ack: bool
    staff_domains: frozenset[str]
    message_max_bytes: int
    attachment_max_bytes: int
    attachment_types: frozenset[str]
    upload_max_bytes: int
    consultation: str


def _words(value) -> frozenset[str]:
    if isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        items = str(value or "").split(",")
    return frozenset(item.strip().lower().lstrip(".@") for item in items if item.strip())


def settings() -> Settings:
    """The ingest configuration (APORTA_IMAP_* and APORTA_INGEST_*), defaults filled in."""
    config = current_app.config
    return Settings(
        imap_host=config["IMAP_HOST"],
        imap_port=int(config["IMAP_PORT"]),
        imap_user=config["IMAP_USER"],
        imap_password=str(config["IMAP_PASSWORD"]),
        imap_folder=config["IMAP_FOLDER"],
        imap_security=str(config["IMAP_SECURITY"]).lower(),
        imap_cafile=config["IMAP_CAFILE"],
        imap_timeout=int(config["IMAP_TIMEOUT"]),
        after=config["INGEST_AFTER"],
        done_folder=config["INGEST_DONE_FOLDER"],
        error_folder=config["INGEST_ERROR_FOLDER"],
        batch_size=int(config["INGEST_BATCH_SIZE"]),
        ack=bool(config["INGEST_ACK"]),
        staff_domains=_words(config["INGEST_STAFF_DOMAINS"]),
        message_max_bytes=int(config["INGEST_MESSAGE_MAX_BYTES"]),
        attachment_max_bytes=int(config["INGEST_ATTACHMENT_MAX_BYTES"]),
        attachment_types=_words(config["INGEST_ATTACHMENT_TYPES"]),
        upload_max_bytes=int(config["INGEST_UPLOAD_MAX_BYTES"]),
        consultation=config["INGEST_CONSULTATION"],
    )


def parse_options(current: Settings | None = None) -> ParseOptions:
    """What the parser needs to know about this installation."""
    current = current or settings()
    own = parseaddr(current_app.config["MAIL_FROM"])[1].lower()
    return ParseOptions(
        own_addresses=frozenset({own}) if own else frozenset(),
        staff_domains=current.staff_domains,
        allowed_extensions=current.attachment_types,
        attachment_max_bytes=current.attachment_max_bytes,
        message_max_bytes=current.message_max_bytes,
    )


def target_consultation(slug: str = "") -> Consultation:
    """The consultation e-mail goes to: the one named, else the configured one, else the latest."""
    slug = slug or settings().consultation
    if slug:
        found = db.session.scalar(select(Consultation).where(Consultation.slug == slug))
    else:
        found = consultation_services.current_consultation()
    if found is None:
        raise InvalidInput(
            f"No existe la consulta «{slug}»." if slug else "No hay ninguna consulta creada."
        )
    return found


def _header_section(raw: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        if separator in raw:
            return raw.split(separator, 1)[0] + separator
    return raw[:65536]


def find_stored(digest: str) -> InboundMessage | None:
    """The stored message with this SHA-256, if any."""
    return db.session.scalar(select(InboundMessage).where(InboundMessage.sha256 == digest))


def find_stored_many(digests: list[str]) -> dict[str, InboundMessage]:
    """The stored messages among these SHA-256s, in one query (a fetched batch)."""
    if not digests:
        return {}
    found = db.session.scalars(select(InboundMessage).where(InboundMessage.sha256.in_(digests)))
    return {message.sha256: message for message in found}


def store_raw(
    raw: bytes,
    *,
    source: str,
    source_ref: str = "",
    received_at: datetime | None = None,
    uidvalidity: int | None = None,
    uid: int | None = None,
    size: int | None = None,
    digest: str = "",
    is_new: bool = False,
) -> tuple[InboundMessage, bool]:
    """Keep a message's raw bytes before anything else; (row, False) if already stored.

    `is_new` skips the look-up when the caller has just checked (`find_stored_many`); a
    concurrent ingest storing the same bytes then shows as IntegrityError at the flush,
    and the caller rolls back and looks again.
    """
    digest = digest or sha256(raw)
    if not is_new:
        existing = find_stored(digest)
        if existing is not None:
            return existing, False
    size = size if size is not None else len(raw)
    is_truncated = size > settings().message_max_bytes
    message = InboundMessage(
        sha256=digest,
        source=source,
        source_ref=source_ref[:500],
        uidvalidity=uidvalidity,
        uid=uid,
        raw=_header_section(raw) if is_truncated else raw,
        size=size,
        is_truncated=is_truncated,
        received_at=received_at,
        status="pending",
    )
    db.session.add(message)
    db.session.flush()
    return message, True


@dataclass
class Targets:
    """Where e-mail can go: a consultation, its themes and drafts, loaded once per run."""

    consultation: Consultation
    catalogue: Catalogue
    themes: dict[str, Theme]  # slug -> theme
    drafts: dict[str, Draft]  # CODE (upper case) -> draft


def load_targets(consultation: Consultation) -> Targets:
    """The consultation's themes and drafts in two queries, for routing every message."""
    themes = db.session.scalars(select(Theme).where(Theme.consultation_id == consultation.id))
    by_slug = {theme.slug: theme for theme in themes}
    slug_of = {theme.id: slug for slug, theme in by_slug.items()}
    drafts = db.session.scalars(select(Draft).where(Draft.consultation_id == consultation.id))
    by_code = {draft.code.upper(): draft for draft in drafts if draft.theme_id in slug_of}
    return Targets(
        consultation=consultation,
        catalogue=Catalogue(
            themes={slug: theme.name for slug, theme in by_slug.items()},
            drafts={code: slug_of[draft.theme_id] for code, draft in by_code.items()},
        ),
        themes=by_slug,
        drafts=by_code,
    )


def process_message(message: InboundMessage, targets: Targets | None, options: ParseOptions) -> str:
    """Parse a stored message (once) and make it a contribution, a quarantine entry or an error."""
    parsed = parse_message(message.raw, options)
    if message.is_truncated:
        parsed.outcome, parsed.reason = "error", "too-large"
        parsed.error = (
            f"El mensaje pesa {message.size} bytes; el límite es {options.message_max_bytes}. "
            "Se guardaron solo sus cabeceras; el original sigue en el servidor de correo."
        )
    _describe(message, parsed)
    if parsed.outcome == "contribution" and targets is None:
        parsed.outcome, parsed.reason = "error", "no-consultation"
        parsed.error = "No hay ninguna consulta creada a la que asignar el aporte."
    if parsed.outcome == "quarantine":
        message.status, message.reason = "quarantined", parsed.reason or ""
    elif parsed.outcome == "error":
        message.status, message.reason, message.error = "error", parsed.reason or "", parsed.error
    else:
        _contribute(message, parsed, targets)
    message.processed_at = clock.now()
    db.session.flush()
    log.info(
        "message %s from %s %s: %s %s",
        message.id,
        message.source,
        message.uid if message.uid is not None else message.source_ref,
        message.status,
        message.reason or message.contribution_id or "",
    )
    return message.status


def mark_failed(message: InboundMessage, error: Exception) -> None:
    """Record an unexpected failure while processing, so the message goes to "Errores"."""
    message.status, message.reason = "error", "internal"
    message.error = clean(f"{type(error).__name__}: {error}")[:2000]
    message.processed_at = clock.now()
    db.session.flush()
    log.error("message %s failed: %s", message.id, message.error)


def _describe(message: InboundMessage, parsed: ParsedMessage) -> None:
    message.message_id = parsed.message_id[:255]
    message.from_name = (parsed.author_name or "")[:200]
    message.from_email = (parsed.author_email or "")[:254]
    message.subject = (parsed.subject or "")[:500]
    message.sent_at = parsed.sent_at
    message.forwarded_by = (parsed.forwarded_by or "")[:254]
    if message.received_at is None:
        message.received_at = parsed.arrived_at or parsed.sent_at or clock.now()


def contribution_key(parsed: ParsedMessage, message: InboundMessage) -> str:
    """The contribution's idempotency key: same original message, same key."""
    identity = parsed.contribution_key or "sha:" + message.sha256
    return "email:" + hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:58]


def _fit(text: str, message_id: int) -> str:
    limit = current_app.config["COMMENT_MAX_LENGTH"]
    if len(text) <= limit:
        return text
    note = CUT_NOTE.format(id=message_id)
    return text[: limit - len(note)].rstrip() + note


def _contribute(
    message: InboundMessage,
    parsed: ParsedMessage,
    targets: Targets,
    key: str | None = None,
) -> Contribution:
    """The contribution, or the link to the one it duplicates. A concurrent ingest adding the
    same key first shows as IntegrityError at the flush: the caller rolls back and retries."""
    key = key or contribution_key(parsed, message)
    with db.session.no_autoflush:  # the message's new fields go with add_contribution's flush
        existing = consultation_services.find_by_idempotency_key(key)
        if existing is None:
            where = route(parsed.subject, parsed.recipients, parsed.text, targets.catalogue)
            theme = targets.themes.get(where.theme) if where.theme else None
            suggested = targets.themes.get(where.suggested_theme) if where.suggested_theme else None
            message.suggested_theme_id = suggested.id if suggested else None
            existing = consultation_services.add_contribution(
                consultation=targets.consultation,
                body=_fit(parsed.text, message.id),
                channel="email",
                received_at=message.received_at,
                draft=targets.drafts.get(where.draft_code) if where.draft_code else None,
                theme=theme,
                author_name=parsed.author_name or "",
                author_email=parsed.author_email or "",
                forwarded_by=parsed.forwarded_by or "",
                idempotency_key=key,
            )
            message.status = "contribution"
        else:
            message.status = "duplicate"
    message.contribution_id = existing.id
    for position, attachment in enumerate(parsed.attachments):
        db.session.add(
            InboundAttachment(
                message_id=message.id,
                position=position,
                filename=attachment.filename,
                content_type=attachment.content_type[:127],
                size=attachment.size,
                is_allowed=attachment.is_allowed,
                refused_reason=attachment.refused_reason,
                data=attachment.data if attachment.is_allowed else None,
            )
        )
    return existing


def release_message(
    message: InboundMessage, consultation: Consultation, actor: User
) -> Contribution:
    """Make a quarantined, failed or duplicate message a contribution, by a moderator's decision."""
    if not message.is_releasable:
        raise InvalidInput("Este mensaje ya es un aporte: no hay nada que liberar.")
    if message.is_truncated:
        raise InvalidInput(
            "Del mensaje solo se guardaron las cabeceras (superaba el tamaño máximo): "
            "recupéralo del servidor de correo y súbelo de nuevo."
        )
    parsed = parse_message(message.raw, parse_options())
    if not parsed.text.strip():
        raise InvalidInput("El mensaje no tiene texto que publicar como aporte.")
    if not parsed.author_email:
        parsed.author_email = ""
    for old in list(message.attachments):
        db.session.delete(old)
    db.session.flush()
    key = "email:" + hashlib.sha256(f"released:{message.id}".encode()).hexdigest()[:58]
    contribution = _contribute(message, parsed, load_targets(consultation), key=key)
    message.status = "released"
    message.released_at = clock.now()
    message.released_by_id = actor.id
    db.session.flush()
    log.info(
        "message %s released by user %s as contribution %s", message.id, actor.id, contribution.id
    )
    return contribution


def send_acknowledgement(message: InboundMessage) -> bool:
    """After the commit: tell the author their contribution's number and link. Never to automata."""
    contribution = message.contribution
    if message.status != "contribution" or contribution is None or message.ack_sent_at:
        return False
    address = contribution.author_email
    if not address or "@" not in address:
        return False
    base = current_app.config["BASE_URL"].rstrip("/")
    body = (
        f"Hola{(' ' + contribution.author_name) if contribution.author_name else ''}:\n\n"
        f"Recibimos su aporte por correo electrónico. Quedó registrado con el número "
        f"{contribution.id} y puede verlo en:\n{base}/aportes/{contribution.id}\n\n"
        "Los moderadores lo revisarán y lo asignarán al borrador que corresponda. "
        "Este mensaje es automático: no es necesario responderlo.\n\n"
        f"{current_app.config['SITE_NAME']}"
    )
    headers = {"X-Aporta-Ack": "1"}
    if message.message_id:
        headers["In-Reply-To"] = f"<{message.message_id}>"
        headers["References"] = f"<{message.message_id}>"
    send_mail(address, f"Hemos recibido su aporte n.º {contribution.id}", body, headers)
    message.ack_sent_at = clock.now()
    db.session.flush()
    log.info("acknowledgement for contribution %s sent", contribution.id)
    return True

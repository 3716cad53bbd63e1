"""Raw e-mail bytes to a parsed message: who wrote it, what, when, and what it is.

No app and no database here: everything the parser needs comes in `ParseOptions`.
The standard library's `email` with the modern policy reads the headers (folded and
encoded words included); bodies are decoded by hand so that a wrong or unknown charset
falls back instead of failing.
"""

import email
import email.policy
import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from forum.ingest import forwards
from forum.ingest.htmltext import html_to_text

OUTCOMES = ("contribution", "quarantine", "error")
_SUBJECT_PREFIX = re.compile(r"^\s*(?:re|rv|fw|fwd|tr)\s*:\s*", re.IGNORECASE)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:respuesta automática|automatic reply|fuera de la oficina|out of office)",
    re.IGNORECASE,
)
_BOUNCE_LOCAL_PARTS = {"mailer-daemon", "postmaster"}
_ENCODED_WORD = re.compile(r"=\?[^?]+\?[bqBQ]\?[^?]*\?=")
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")


class _RememberedHeaders(HeaderRegistry):
    """The standard header registry, remembering the headers it parsed last.

    The modern policy parses a header again on every access (Content-Type is read about
    a dozen times per message); parsed headers are immutable, so equal ones are shared.
    """

    def __init__(self, size: int = 256):
        super().__init__()
        self._parsed = functools.lru_cache(maxsize=size)(super().__call__)

    def __call__(self, name: str, value: str) -> BaseHeader:
        return self._parsed(name, value)


POLICY = email.policy.default.clone(header_factory=_RememberedHeaders())


@dataclass(frozen=True)
class ParseOptions:
    """What the parser is told by the app: our own addresses, staff domains, attachment rules."""

    own_addresses: frozenset[str] = frozenset()
    staff_domains: frozenset[str] = frozenset()  # empty: forwards are recognised from anyone
    allowed_extensions: frozenset[str] = frozenset()
    attachment_max_bytes: int = 10 * 1024 * 1024
    message_max_bytes: int = 10 * 1024 * 1024


@dataclass
class Attachment:
    filename: str
    content_type: str
    data: bytes
    size: int
    is_allowed: bool
    refused_reason: str = ""  # "tipo" (type not allowed) or "tamaño" (over the size limit)


@dataclass
class ParsedMessage:
    """What the ingest needs from one message; `outcome` says what it becomes."""

    outcome: str
    reason: str | None = None
    error: str = ""
    message_id: str = ""
    subject: str | None = None
    author_name: str | None = None
    author_email: str | None = None
    sent_at: datetime | None = None
    forwarded_by: str | None = None
    original_message_id: str = ""
    text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    arrived_at: datetime | None = None  # from the topmost Received header, when there is one

    @property
    def contribution_key(self) -> str:
        """What makes two messages the same contribution (see README of the fixtures)."""
        if self.original_message_id:
            return "mid:" + self.original_message_id
        if self.forwarded_by:
            sent = self.sent_at.astimezone(UTC).isoformat() if self.sent_at else ""
            words = " ".join(self.text.lower().split())[:2000]
            return f"fwd:{self.author_email}|{sent}|{words}"
        if self.message_id:
            return "mid:" + self.message_id
        return ""


def sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def parse_message(raw: bytes, options: ParseOptions) -> ParsedMessage:
    """Read one raw message; never raises for bad input, it reports an error outcome."""
    if len(raw) > options.message_max_bytes:
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        result = _describe(_read(head))
        result.outcome, result.reason = "error", "too-large"
        result.error = (
            f"El mensaje pesa {len(raw)} bytes; el límite es {options.message_max_bytes}."
        )
        return result
    try:
        message = _read(raw)
        return _parse(message, options)
    except Exception as error:  # noqa: BLE001 - any failure of a hostile message is an error outcome
        return ParsedMessage(
            outcome="error", reason="malformed", error=f"{type(error).__name__}: {error}"
        )


def _read(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=POLICY)


def _describe(message: EmailMessage) -> ParsedMessage:
    """The envelope facts: From, Subject, Date, Message-ID, recipients."""
    name, address = _from(message)
    return ParsedMessage(
        outcome="contribution",
        message_id=_message_id(message),
        subject=strip_prefixes(_header(message, "subject")),
        author_name=name,
        author_email=address,
        sent_at=parse_date(_header(message, "date")),
        recipients=_recipients(message),
        arrived_at=_arrival(message),
    )


def _parse(message: EmailMessage, options: ParseOptions) -> ParsedMessage:
    result = _describe(message)
    result.reason = classify(message, result.author_email, result.subject, options)
    if result.reason:
        result.outcome = "quarantine"
        result.text = clean(body_text(message)).strip()  # shown to moderators, used on release
        return result
    if not result.author_email:
        result.outcome, result.reason = "error", "malformed"
        result.error = "El mensaje no tiene remitente (From): no se puede identificar al autor."
        return result

    sender = result.author_email
    inner = _forwarded_attachment(message)
    if inner is not None and _is_staff(sender, options):
        original = _describe(inner)
        result.author_name, result.author_email = original.author_name, original.author_email
        result.subject, result.sent_at = original.subject, original.sent_at
        result.original_message_id = original.message_id
        result.forwarded_by = sender
        result.text = body_text(inner)
        result.attachments = attachments(inner, options) + attachments(message, options)
    else:
        text = body_text(message)
        found = forwards.find_original(text) if _is_staff(sender, options) else None
        if found is not None:
            result.author_name = found.author_name
            result.author_email = found.author_email or result.author_email
            result.subject = found.subject if found.subject is not None else result.subject
            result.sent_at = found.sent_at
            result.forwarded_by = sender
            text = found.text
        result.text = text
        result.attachments = attachments(message, options)

    result.subject = strip_prefixes(result.subject)
    result.text = clean(result.text).strip()
    if not result.text:
        result.outcome, result.reason = "error", "malformed"
        result.error = "No se pudo extraer texto del mensaje (cuerpo vacío o ilegible)."
    return result


def classify(
    message: Message, sender: str | None, subject: str | None, options: ParseOptions
) -> str | None:
    """'own-system', 'bounce', 'auto-reply' or None, from the top-level headers only."""
    if (sender or "") in options.own_addresses or _header(message, "x-aporta-ack") == "1":
        return "own-system"
    local = (sender or "").split("@")[0]
    is_report = message.get_content_type() == "multipart/report"
    report_type = (message.get_param("report-type") or "") if is_report else ""
    if (
        is_report and str(report_type).lower() == "delivery-status"
    ) or local in _BOUNCE_LOCAL_PARTS:
        return "bounce"
    auto_submitted = (_header(message, "auto-submitted") or "").strip().lower()
    precedence = (_header(message, "precedence") or "").strip().lower()
    if (
        (auto_submitted and auto_submitted != "no")
        or (_header(message, "x-autoreply") or "").strip().lower() == "yes"
        or precedence in ("bulk", "junk", "auto_reply")
        or _AUTO_REPLY_SUBJECT.match(subject or "")
    ):
        return "auto-reply"
    return None


def strip_prefixes(subject: str | None) -> str | None:
    """'RV: Fwd: Re: Tema' -> 'Tema'."""
    if subject is None:
        return None
    previous = None
    while previous != subject:
        previous, subject = subject, _SUBJECT_PREFIX.sub("", subject, count=1)
    return subject.strip()


def _header(message: Message, name: str) -> str | None:
    """A header decoded by the modern policy; a broken one is decoded by hand, never fatal."""
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - the policy's parser can fail on hostile headers
        value = None
        for key, raw in message.raw_items():
            if key.lower() == name:
                value = _decode_words(str(raw))
                break
    if value is None:
        return None
    return " ".join(clean(str(value)).split())


def clean(value: str) -> str:
    """Undo the surrogate escapes the parser leaves for raw 8-bit header bytes."""
    value = value.replace("\x00", "")
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("windows-1252", errors="replace")


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001
        return value


def _from(message: EmailMessage) -> tuple[str | None, str | None]:
    for name in ("from", "sender"):
        try:
            header = message.get(name)
            addresses = header.addresses if header is not None else ()
        except Exception:  # noqa: BLE001
            header, addresses = None, ()
        for address in addresses:
            if address.addr_spec and "@" in address.addr_spec:
                return (clean(address.display_name) or None), clean(address.addr_spec).lower()
        if header is not None:
            display, spec = parseaddr(clean(str(header)))
            if "@" in spec:
                return (display or None), spec.lower()
    return None, None


def _message_id(message: Message) -> str:
    value = _header(message, "message-id") or ""
    match = _ANGLE_ID.search(value)
    return (match.group(1) if match else value.strip())[:900]


def _recipients(message: Message) -> list[str]:
    values = []
    for name in ("to", "cc", "delivered-to", "x-original-to"):
        try:
            values.extend(clean(str(v)) for v in message.get_all(name) or [])
        except Exception:  # noqa: BLE001, S112 - a broken header adds no recipient
            continue
    return [spec.lower() for _, spec in getaddresses(values) if "@" in spec]


def _arrival(message: Message) -> datetime | None:
    """When the receiving server got it: the date after the ';' of the topmost Received."""
    try:
        received = message.get_all("received") or []
    except Exception:  # noqa: BLE001
        return None
    for value in received[:1]:
        return parse_date(str(value).rsplit(";", 1)[-1]) if ";" in str(value) else None
    return None


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 date as an aware instant; None when it cannot be read."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None or parsed.year < 1970:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _is_staff(sender: str | None, options: ParseOptions) -> bool:
    if not options.staff_domains:
        return True
    return (sender or "").rsplit("@", 1)[-1] in options.staff_domains


def _forwarded_attachment(message: EmailMessage) -> EmailMessage | None:
    """The message/rfc822 part of a forward-as-attachment, if there is one."""
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, EmailMessage):
                return inner
    return None


def decode_payload(part: Message) -> str:
    """A leaf part's text: declared charset, else UTF-8, else windows-1252; never raises."""
    data = part.get_payload(decode=True)
    if data is None:
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    charset = part.get_content_charset()
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("windows-1252", errors="replace")


def _unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: a line ending in a space goes on in the next one."""
    out: list[str] = []
    joining = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if joining:
            out[-1] += line
        else:
            out.append(line)
        joining = line.endswith(" ") and line != "-- "
        if joining and delsp:
            out[-1] = out[-1][:-1]
    return "\n".join(out)


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment" or bool(_filename(part))


def body_text(message: Message) -> str:
    """The readable text: text/plain of an alternative, else HTML made plain; parts joined."""
    return _text_of(message).replace("\r\n", "\n").strip()


def _text_of(part: Message) -> str:
    content_type = part.get_content_type()
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if content_type == "multipart/alternative":
            plain = [c for c in children if c.get_content_type() == "text/plain"]
            chosen = plain or [c for c in children if c.is_multipart()] or children
            for child in chosen:
                text = _text_of(child)
                if text.strip():
                    return text
            return ""
        texts = [_text_of(c) for c in children if not _is_attachment(c)]
        return "\n\n".join(t.strip("\n") for t in texts if t.strip())
    if _is_attachment(part) or content_type == "message/rfc822":
        return ""
    if content_type == "text/html":
        return html_to_text(decode_payload(part))
    if content_type == "text/plain":
        text = decode_payload(part)
        if (part.get_param("format") or "").lower() == "flowed":
            text = _unflow(text, (part.get_param("delsp") or "").lower() == "yes")
        return text
    return ""


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or ""
    except Exception:  # noqa: BLE001
        name = ""
    name = clean(name)
    if _ENCODED_WORD.search(name):
        name = _decode_words(name)
    return name.strip().replace("/", "_").replace("\\", "_")


def attachments(message: Message, options: ParseOptions) -> list[Attachment]:
    """Leaf parts with a filename or disposition attachment, in order; forwards excluded."""
    found = []
    for part in _leaves(message):
        if not _is_attachment(part):
            continue
        filename = _filename(part) or "adjunto"
        data = part.get_payload(decode=True) or b""
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        reason = ""
        if extension not in options.allowed_extensions:
            reason = "tipo"
        elif len(data) > options.attachment_max_bytes:
            reason = "tamaño"
        found.append(
            Attachment(
                filename=filename[:255],
                content_type=part.get_content_type(),
                data=data if not reason else b"",
                size=len(data),
                is_allowed=not reason,
                refused_reason=reason,
            )
        )
    return found


def _leaves(part: Message):
    if part.get_content_type() == "message/rfc822":
        return
    if part.is_multipart():
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):
                yield from _leaves(child)
        return
    yield part

"""Inline forwards: find the original author, date, subject and text inside a staff e-mail.

Gmail, Outlook (desktop and web), Thunderbird and Apple Mail, in Spanish and English.
The innermost forwarded message is the original; everything above its header block is
the staff member's note and is left out.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parseaddr, parsedate_to_datetime
from zoneinfo import ZoneInfo

LIMA = ZoneInfo("America/Lima")

_DASHED = re.compile(
    r"^\s*-{3,}\s*(?:forwarded message|mensaje reenviado|mensaje original|original message)"
    r"\s*-{3,}\s*$",
    re.IGNORECASE,
)
_INTRO = re.compile(
    r"^\s*(?:inicio del mensaje reenviado|begin forwarded message)\s*:\s*$", re.IGNORECASE
)
_RULE = re.compile(r"^\s*_{10,}\s*$")
_LABELS = {
    "de": "from",
    "from": "from",
    "fecha": "date",
    "date": "date",
    "enviado el": "date",
    "enviado": "date",
    "sent": "date",
    "asunto": "subject",
    "subject": "subject",
    "para": "to",
    "to": "to",
    "cc": "cc",
    "cco": "cc",
    "bcc": "cc",
}
_HEADER_LINE = re.compile(
    r"^\s*(" + "|".join(sorted(map(re.escape, _LABELS), key=len, reverse=True)) + r")\s*:\s*(.*)$",
    re.IGNORECASE,
)
_QUOTE = re.compile(r"^> ?")
_MAILTO = re.compile(r"\[mailto:([^\]]+)\]", re.IGNORECASE)

MONTHS = {
    "ene": 1, "jan": 1, "feb": 2, "mar": 3, "abr": 4, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "ago": 8, "aug": 8, "sep": 9, "set": 9, "oct": 10, "nov": 11, "dic": 12, "dec": 12,
}  # fmt: skip
WEEKDAYS = {
    "lunes", "martes", "miércoles", "miercoles", "jueves", "viernes", "sábado", "sabado",
    "domingo", "lun", "mar", "mié", "mie", "jue", "vie", "sáb", "sab", "dom", "monday",
    "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "mon", "tue", "wed",
    "thu", "fri", "sat", "sun",
}  # fmt: skip
_TIME = re.compile(
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([ap])?\.?\s*(?:m\.?)?(?![a-z])", re.IGNORECASE
)
_WORD = re.compile(r"[a-záéíóúñ]+|\d+")
_ZONE = re.compile(r"(?:GMT|UTC)\s*([+-])(\d{1,2})(?::?(\d{2}))?|\s([+-])(\d{2})(\d{2})\b")


@dataclass
class Original:
    author_name: str | None
    author_email: str | None
    subject: str | None
    sent_at: datetime | None
    text: str


def find_original(text: str) -> Original | None:
    """The innermost forwarded message in a text, or None when there is no forward."""
    lines = text.replace("\r\n", "\n").split("\n")
    for index in range(len(lines)):
        if not _is_marker(lines, index):
            continue
        rest = lines[index + 1 :]
        first = next((r for r in rest if r.strip()), "")
        if first.lstrip().startswith(">"):
            rest = [_QUOTE.sub("", r.lstrip()) if r.lstrip().startswith(">") else r for r in rest]
        block = _header_block(rest)
        if block is None:
            continue
        headers, body = block
        name, address = parseaddr(_MAILTO.sub(r"<\1>", headers["from"]))
        original = Original(
            author_name=name.strip().strip('"') or None,
            author_email=address.lower() if "@" in address else None,
            subject=headers.get("subject"),
            sent_at=parse_loose_date(headers.get("date", "")),
            text="\n".join(body).strip(),
        )
        return find_original(original.text) or original
    return None


def _is_marker(lines: list[str], index: int) -> bool:
    line = lines[index]
    if _DASHED.match(line) or _INTRO.match(line):
        return True
    if _RULE.match(line):
        following = next((r for r in lines[index + 1 :] if r.strip()), "")
        match = _HEADER_LINE.match(following)
        return bool(match) and _LABELS[match.group(1).lower()] == "from"
    return False


def _header_block(lines: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """'De: ...' / 'Fecha: ...' lines up to the first blank line; then the body."""
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    headers: dict[str, str] = {}
    last = None
    while index < len(lines) and lines[index].strip():
        match = _HEADER_LINE.match(lines[index])
        if match:
            last = _LABELS[match.group(1).lower()]
            headers.setdefault(last, match.group(2).strip())
        elif last in ("to", "cc"):
            pass  # a long recipient list wrapped onto the next line
        else:
            break
        index += 1
    if "from" not in headers or not ({"date", "subject"} & headers.keys()):
        return None
    while index < len(lines) and not lines[index].strip():
        index += 1
    return headers, lines[index:]


def parse_loose_date(value: str) -> datetime | None:
    """Dates as mail clients write them in forwards, in Spanish or English.

    'lun., 25 sept. 2017 a las 18:40', 'Tue, Oct 3, 2017 at 4:05 PM',
    'martes, 3 de octubre de 2017 16:20', '9 de octubre de 2017, 7:58:12 GMT-5', or RFC 5322.
    Without a zone the time is read as America/Lima.
    """
    value = value.strip()
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    except (TypeError, ValueError, IndexError):
        pass
    lowered = value.lower()
    zone = _zone(lowered)
    if zone is not None:
        lowered = _ZONE.sub(" ", lowered)
    time_match = _TIME.search(lowered)
    hour = minute = second = 0
    if time_match:
        hour, minute = int(time_match.group(1)), int(time_match.group(2))
        second = int(time_match.group(3) or 0)
        meridian = (time_match.group(4) or "").lower()
        if meridian == "p" and hour < 12:
            hour += 12
        elif meridian == "a" and hour == 12:
            hour = 0
        lowered = lowered[: time_match.start()] + " " + lowered[time_match.end() :]
    words = _WORD.findall(lowered)
    if words and words[0] in WEEKDAYS:
        words = words[1:]
    year = next((int(w) for w in words if w.isdigit() and len(w) == 4), None)
    day = next((int(w) for w in words if w.isdigit() and len(w) <= 2), None)
    month = next((MONTHS[w[:3]] for w in words if w.isalpha() and w[:3] in MONTHS), None)
    if not (year and day and month):
        return None
    try:
        local = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return local.replace(tzinfo=zone or LIMA).astimezone(UTC)


def _zone(text: str) -> timezone | None:
    match = _ZONE.search(text)
    if not match:
        return None
    sign, hours, minutes = (
        (match.group(1), match.group(2), match.group(3))
        if match.group(1)
        else (match.group(4), match.group(5), match.group(6))
    )
    offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
    return timezone(-offset if sign == "-" else offset)

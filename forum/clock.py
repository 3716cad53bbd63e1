"""The one source of "now". Tests move it with `travel_to`; nothing else reads the system clock."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LIMA = ZoneInfo("America/Lima")
_frozen: datetime | None = None


def now() -> datetime:
    """The current instant, timezone-aware in UTC."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC)


def travel_to(instant: datetime | None) -> None:
    """Freeze the clock at an aware instant (None lets it run again)."""
    global _frozen
    if instant is not None and instant.tzinfo is None:
        raise ValueError("travel_to needs an aware datetime")
    _frozen = instant.astimezone(UTC) if instant else None


def to_lima(instant: datetime) -> datetime:
    """An aware instant shown in Lima time."""
    return instant.astimezone(LIMA)


def parse_lima(text: str) -> datetime:
    """Read ISO 8601 local Lima time ("2017-09-22T08:00") and return it aware in UTC."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=LIMA)
    return parsed.astimezone(UTC)

"""Participation figures: the 2017 tables (Cuadros 1-4) and the dashboard's counts.

Each function runs a few GROUP BY queries with the same filters as the contributions
table, so the figures always describe exactly the rows a file holds.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import String, and_, case, cast, func, literal, or_, select

from forum.accounts.models import ORGANISATION_TYPES, REGIONS, User
from forum.consultation.models import CHANNELS, Consultation, Contribution, Draft, Theme
from forum.export.rows import EFFECTIVE_DISPOSITION, EFFECTIVE_RESPONSE, Filters, filtered, joined
from forum.extensions import db

NO_DATA = "Sin dato"
CHANNEL_HEADINGS = {"web": "Vía foro virtual", "email": "Vía correo"}
PUBLIC_SECTOR = "Sector público"
CIVIL_SOCIETY = "Organizaciones de la sociedad civil"
OTHERS = "Personas naturales, otros y sin dato"
CIVIL_SOCIETY_TYPES = ("academia", "cooperacion-internacional", "empresa-privada", "ong")


@dataclass
class Table:
    """A table as the files and the dashboard show it: a title, headings and rows of cells."""

    title: str
    headings: list[str]
    rows: list[list] = field(default_factory=list)
    note: str = ""


def _count_by(consultation: Consultation, filters: Filters, *keys) -> list[tuple]:
    statement = joined(select(*keys, func.count(Contribution.id)).select_from(Contribution))
    statement = filtered(statement, consultation, filters).group_by(*keys)
    return [tuple(row) for row in db.session.execute(statement)]


def theme_channel(consultation: Consultation, filters: Filters) -> Table:
    """Cuadro 4: contributions by theme (rows, in order) and channel, with totals."""
    counts = {
        (theme_id, channel): n
        for theme_id, channel, n in _count_by(
            consultation, filters, Contribution.theme_id, Contribution.channel
        )
    }
    channels = list(CHANNELS) + sorted({c for _, c in counts if c not in CHANNELS})
    statement = select(Theme.id, Theme.name).where(Theme.consultation_id == consultation.id)
    if filters.theme:
        statement = statement.where(Theme.slug == filters.theme)
    if filters.draft or filters.institution:
        drafts = select(Draft.theme_id).where(Draft.consultation_id == consultation.id)
        if filters.draft:
            drafts = drafts.where(Draft.code == filters.draft)
        if filters.institution:
            drafts = drafts.where(Draft.responsible_institution == filters.institution)
        statement = statement.where(Theme.id.in_(drafts))
    themes = [tuple(row) for row in db.session.execute(statement.order_by(Theme.position))]
    if any(theme_id is None for theme_id, _ in counts):
        themes.append((None, "Sin temática"))
    table = Table(
        "Número de aportes según vía y temática",
        ["Temática", *[CHANNEL_HEADINGS.get(c, f"Vía {c}") for c in channels], "Total aportes"],
    )
    totals = [0] * len(channels)
    for theme_id, name in themes:
        cells = [counts.get((theme_id, channel), 0) for channel in channels]
        totals = [a + b for a, b in zip(totals, cells, strict=True)]
        table.rows.append([name, *cells, sum(cells)])
    table.rows.append(["Total", *totals, sum(totals)])
    return table


def _participants(consultation: Consultation, filters: Filters) -> Counter[tuple[str, str]]:
    """How many distinct authors have each (organisation type, region): an account's profile;
    for an e-mail sender without an account (one person per address), what a moderator
    recorded. Counted in the database: a million contributions may have 300,000 authors."""
    who = case(
        (Contribution.author_id.is_not(None), literal("u") + cast(Contribution.author_id, String)),
        else_=literal("e") + func.lower(Contribution.author_email),
    )
    kind = func.max(func.coalesce(User.organisation_type, Contribution.sender_organisation_type))
    region = func.max(func.coalesce(User.region, Contribution.sender_region))
    statement = joined(
        select(who.label("who"), kind.label("kind"), region.label("region"))
        .select_from(Contribution)
        .outerjoin(User, User.id == Contribution.author_id)
    )
    authors = filtered(statement, consultation, filters).group_by(who).subquery()
    counts = select(authors.c.kind, authors.c.region, func.count()).group_by(
        authors.c.kind, authors.c.region
    )
    people: Counter[tuple[str, str]] = Counter()
    for kind_code, region_code, n in db.session.execute(counts):
        people[(kind_code or "", region_code or "")] += n
    return people


def _sector(kind: str) -> str:
    if kind == "entidad-publica":
        return PUBLIC_SECTOR
    if kind in CIVIL_SOCIETY_TYPES:
        return CIVIL_SOCIETY
    return OTHERS


def _percent(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "0.0%"


def participants_by_sector(consultation: Consultation, filters: Filters) -> Table:
    """Cuadro 1: participants by sector, number and share."""
    people = _participants(consultation, filters)
    total = people.total()
    table = Table(
        "Número y porcentaje de participantes según tipo", ["Tipo de organización", "N°", "%"]
    )
    for sector in (CIVIL_SOCIETY, PUBLIC_SECTOR, OTHERS):
        n = sum(count for (kind, _), count in people.items() if _sector(kind) == sector)
        table.rows.append([sector, n, _percent(n, total)])
    table.rows.append(["Total", total, _percent(total, total)])
    return table


def participants_by_type(consultation: Consultation, filters: Filters) -> Table:
    """Cuadro 2: participants from civil society by organisation type, number and share."""
    by_kind: Counter[str] = Counter()
    for (kind, _), count in _participants(consultation, filters).items():
        if kind in CIVIL_SOCIETY_TYPES:
            by_kind[kind] += count
    total = by_kind.total()
    table = Table(
        "Número y porcentaje de participantes de la sociedad civil según tipo",
        ["Tipo de organización de la sociedad civil", "N°", "%"],
    )
    for kind in CIVIL_SOCIETY_TYPES:
        table.rows.append([ORGANISATION_TYPES[kind], by_kind[kind], _percent(by_kind[kind], total)])
    table.rows.append(["Total", total, _percent(total, total)])
    return table


def _present(codes: Iterable[str], known: dict[str, str]) -> list[str]:
    """The known codes that occur, in their listed order, then "" if any unknown or empty."""
    found = set(codes)
    present = [code for code in known if code in found]
    if found - set(known):
        present.append("")
    return present


def participants_by_region(
    consultation: Consultation, filters: Filters, suppress_below: int = 0
) -> Table:
    """Cuadro 3: participants by region and sector, totals and shares; small counts
    suppressed when `suppress_below` is set (public)."""
    people = _participants(consultation, filters)
    sectors = (PUBLIC_SECTOR, CIVIL_SOCIETY, OTHERS)
    regions = _present((region for _, region in people), REGIONS)
    grid = [
        [
            sum(n for (k, r), n in people.items() if _region(r) == region and _sector(k) == s)
            for s in sectors
        ]
        for region in regions
    ]
    table = cross_table(
        "Número y porcentaje de participantes según región y sector",
        "Región",
        [REGIONS.get(r, NO_DATA) for r in regions],
        list(sectors),
        grid,
        suppress_below,
    )
    total = people.total()
    column_totals = [sum(row[i] for row in grid) for i in range(len(sectors))]
    if not suppress_below:
        table.rows.append(
            ["Total (%)", *[_percent(n, total) for n in column_totals], _percent(total, total)]
        )
    return table


def type_by_region(consultation: Consultation, filters: Filters, suppress_below: int = 0) -> Table:
    """Participants by region (rows) and organisation type (columns)."""
    people = _participants(consultation, filters)
    kinds = _present((kind for kind, _ in people), ORGANISATION_TYPES)
    regions = _present((region for _, region in people), REGIONS)
    grid = [
        [
            sum(n for (k, r), n in people.items() if _kind(k) == kind and _region(r) == region)
            for kind in kinds
        ]
        for region in regions
    ]
    return cross_table(
        "Participantes según región y tipo de organización",
        "Región",
        [REGIONS.get(r, NO_DATA) for r in regions],
        [ORGANISATION_TYPES.get(k, NO_DATA) for k in kinds],
        grid,
        suppress_below,
    )


def _region(code: str) -> str:
    """A region code, or "" (no data) when it is not one of REGIONS."""
    return code if code in REGIONS else ""


def _kind(code: str) -> str:
    """An organisation type code, or "" (no data) when it is not one of ORGANISATION_TYPES."""
    return code if code in ORGANISATION_TYPES else ""


def cross_table(
    title: str,
    corner: str,
    row_names: list[str],
    column_names: list[str],
    grid: list[list[int]],
    suppress_below: int,
) -> Table:
    """A count table with row and column totals; with `suppress_below`, small counts hidden."""
    row_totals = [sum(row) for row in grid]
    column_totals = [sum(row[i] for row in grid) for i in range(len(column_names))]
    full = [[*row, total] for row, total in zip(grid, row_totals, strict=True)]
    full.append([*column_totals, sum(row_totals)])
    hidden = suppressed(full, suppress_below) if suppress_below else set()
    mark = f"<{suppress_below}"
    table = Table(title, [corner, *column_names, "Total"])
    for name, (r, row) in zip([*row_names, "Total"], enumerate(full), strict=True):
        table.rows.append([name, *[mark if (r, c) in hidden else n for c, n in enumerate(row)]])
    if hidden:
        table.note = (
            f"Para proteger a las personas, las cifras entre 1 y {suppress_below - 1} se muestran "
            f"como «{mark}», y también alguna otra cifra de su fila o columna cuando permitiría "
            "deducirlas."
        )
    return table


def suppressed(full: list[list[int]], threshold: int) -> set[tuple[int, int]]:
    """Cells to hide in a table whose last row and column are totals.

    Primary: counts from 1 to threshold - 1. Secondary: while a row or column (with its
    total) has exactly one hidden cell, hide the smallest other one, so no hidden count can
    be worked out by subtraction. The grand total is always shown.
    """
    last_row, last_col = len(full) - 1, len(full[0]) - 1
    hidden = {
        (r, c)
        for r, row in enumerate(full)
        for c, n in enumerate(row)
        if 0 < n < threshold and (r, c) != (last_row, last_col)
    }
    lines = [[(r, c) for c in range(last_col + 1)] for r in range(last_row + 1)]
    lines += [[(r, c) for r in range(last_row + 1)] for c in range(last_col + 1)]
    changed = True
    while changed:
        changed = False
        for line in lines:
            if sum(1 for cell in line if cell in hidden) != 1:
                continue
            candidates = [
                cell for cell in line if cell not in hidden and cell != (last_row, last_col)
            ]
            if candidates:
                hidden.add(min(candidates, key=lambda cell: full[cell[0]][cell[1]]))
                changed = True
    return hidden


def by_day(consultation: Consultation, filters: Filters) -> list[tuple[date, dict[str, int]]]:
    """Contributions per Lima calendar day and channel, in date order."""
    day = _lima_day(Contribution.received_at)
    counts: dict[date, dict[str, int]] = {}
    for value, channel, n in _count_by(consultation, filters, day, Contribution.channel):
        key = value if isinstance(value, date) else date.fromisoformat(str(value))
        counts.setdefault(key, {})[channel] = n
    return sorted(counts.items())


def _lima_day(column):
    """The Lima calendar date of a UTC instant, in SQL (Lima is UTC-5 all year, no DST)."""
    if db.engine.dialect.name == "postgresql":
        return func.date(func.timezone("America/Lima", func.timezone("UTC", column)))
    return func.date(column, "-5 hours")


def visits(consultation: Consultation, filters: Filters) -> list[dict]:
    """Per draft: its theme, visits and contributions; drafts in theme and draft order."""
    counts = dict(_count_by(consultation, filters, Contribution.draft_id))
    statement = (
        select(Draft.id, Draft.code, Draft.title, Theme.name, Theme.visit_count, Draft.visit_count)
        .join(Theme, Theme.id == Draft.theme_id)
        .where(Draft.consultation_id == consultation.id)
        .order_by(Theme.position, Draft.position)
    )
    if filters.theme:
        statement = statement.where(Theme.slug == filters.theme)
    if filters.draft:
        statement = statement.where(Draft.code == filters.draft)
    if filters.institution:
        statement = statement.where(Draft.responsible_institution == filters.institution)
    return [
        {
            "code": code,
            "title": title,
            "theme": theme,
            "theme_visits": theme_visits,
            "visits": draft_visits,
            "contributions": counts.get(draft_id, 0),
        }
        for draft_id, code, title, theme, theme_visits, draft_visits in db.session.execute(
            statement
        )
    ]


@dataclass
class ResponseShare:
    answered: int
    total: int

    @property
    def percent(self) -> float:
        return 100 * self.answered / self.total if self.total else 0.0


def response_share(consultation: Consultation, filters: Filters) -> ResponseShare:
    """Visible contributions with a response: an effective disposition other than
    'pendiente' or a non-empty effective response (a group's when it has one)."""
    answered = or_(EFFECTIVE_DISPOSITION != "pendiente", func.trim(EFFECTIVE_RESPONSE) != "")
    statement = joined(
        select(
            func.count(Contribution.id),
            func.coalesce(func.sum(case((answered, 1), else_=0)), 0),
        ).select_from(Contribution)
    )
    statement = filtered(statement, consultation, filters).where(
        and_(Contribution.moderation_state != "hidden")
    )
    total, answered_count = db.session.execute(statement).one()
    return ResponseShare(int(answered_count), int(total))

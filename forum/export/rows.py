"""The contributions table: one query, streamed, turned into rows for one audience.

Rows are plain dicts keyed by the stable column identifiers of COLUMNS; the formats
(`formats.py`) decide how each value is written. Nothing here loads ORM objects: the
query selects columns and is read `CHUNK` rows at a time (a server-side cursor on
PostgreSQL), so a table of a million contributions is read in bounded memory.
"""

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from operator import itemgetter
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import DateTime, Select, and_, case, exists, func, select, type_coerce
from sqlalchemy.orm import aliased

from forum import clock
from forum.accounts.models import User
from forum.consultation.models import Consultation, Contribution, Draft, Theme
from forum.export.privacy import mask_emails
from forum.extensions import db
from forum.moderation.models import ContributionGroup, Tag, contribution_tags

CHUNK = 2000


class Audience(Enum):
    """Who a file is for, which decides the columns and what each row may show."""

    PUBLIC = "public"  # anyone: no e-mail, consented names only, hidden rows as stubs
    INSTITUTION = "institution"  # a ministry's pack: as public, plus unpublished responses
    SECRETARIAT = "secretariat"  # moderators and admins: every field

    @property
    def label(self) -> str:
        return {
            "public": "Pública",
            "institution": "Entidad responsable",
            "secretariat": "Secretaría (datos personales)",
        }[self.value]


@dataclass(frozen=True)
class Column:
    id: str
    heading: str  # Spanish, for people (XLSX)
    type: str = "string"  # Table Schema type
    description: str = ""
    secretariat_only: bool = False
    width: int = 18  # XLSX column width, in characters


COLUMNS = (
    Column("id", "ID", "integer", "Identificador del aporte.", width=8),
    Column("permalink", "Enlace permanente", description="Dirección pública del aporte.", width=30),
    Column("consultation", "Consulta", description="Identificador de la consulta.", width=16),
    Column("theme", "Temática", description="Eje temático.", width=18),
    Column("draft_code", "Código", description="Código del borrador de compromiso.", width=9),
    Column("draft_title", "Borrador de compromiso", description="Título del borrador.", width=32),
    Column(
        "responsible_institution",
        "Entidad responsable",
        description="Entidad responsable del compromiso.",
        width=26,
    ),
    Column("channel", "Vía", description="Canal: web (foro virtual) o email (correo).", width=16),
    Column(
        "received_at",
        "Recibido (hora de Lima)",
        "datetime",
        "Fecha y hora de recepción, hora de Lima, ISO 8601.",
        width=25,
    ),
    Column("is_late", "Fuera de plazo", "boolean", "Recibido después del cierre.", width=8),
    Column(
        "author_name",
        "Autor o autora",
        description="Nombre, solo si la persona aceptó mostrarlo; si no, un seudónimo.",
        width=22,
    ),
    Column(
        "author_email",
        "Correo del autor",
        description="Correo electrónico del autor (solo secretaría).",
        secretariat_only=True,
        width=26,
    ),
    Column(
        "forwarded_by",
        "Reenviado por",
        description="Correo de quien reenvió el aporte (solo secretaría).",
        secretariat_only=True,
        width=22,
    ),
    Column("organisation", "Organización", description="Organización declarada.", width=24),
    Column("organisation_type", "Tipo de organización", description="Código del tipo.", width=18),
    Column("region", "Región", description="Código de la región.", width=16),
    Column("parent_id", "En respuesta a (ID)", "integer", "Aporte al que responde.", width=10),
    Column("text", "Texto del aporte", description="Texto plano del aporte.", width=60),
    Column("tags", "Etiquetas", description="Etiquetas, separadas por «; ».", width=20),
    Column("synthesis", "Síntesis", description="Síntesis (la del grupo si la tiene).", width=40),
    Column("group_id", "Grupo (ID)", "integer", "Aporte sistematizado al que pertenece.", width=9),
    Column("group_size", "Aportes en el grupo", "integer", "Aportes en ese grupo.", width=9),
    Column("disposition", "Disposición", description="Código de la disposición.", width=20),
    Column("response", "Respuesta razonada", description="Respuesta razonada publicada.", width=50),
    Column("moderation_state", "Estado", description="visible u hidden.", width=10),
    Column(
        "hidden_reason",
        "Motivo de ocultamiento",
        description="Categoría publicada del motivo, si está oculto.",
        width=20,
    ),
)

# What a hidden contribution shows outside the secretariat: where and when, and why hidden.
STUB_COLUMNS = frozenset(
    {
        "id",
        "permalink",
        "consultation",
        "theme",
        "draft_code",
        "draft_title",
        "responsible_institution",
        "channel",
        "received_at",
        "is_late",
        "parent_id",
        "moderation_state",
        "hidden_reason",
    }
)


def columns_for(audience: Audience) -> list[Column]:
    """The columns a file for this audience has, in order."""
    if audience is Audience.SECRETARIAT:
        return list(COLUMNS)
    return [column for column in COLUMNS if not column.secretariat_only]


@dataclass(frozen=True)
class Filters:
    """What a file is restricted to; every field optional. Values are already checked."""

    theme: str | None = None  # Theme.slug
    draft: str | None = None  # Draft.code
    channel: str | None = None
    date_from: date | None = None  # Lima dates, both inclusive
    date_to: date | None = None
    disposition: str | None = None  # the effective disposition (the group's when set)
    tag: str | None = None  # Tag.slug
    institution: str | None = None  # Draft.responsible_institution

    def describe(self) -> dict[str, str]:
        """The filters that are set, as text, for the file's metadata."""
        described = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value:
                described[item.name] = value.isoformat() if isinstance(value, date) else value
        return described


Group = aliased(ContributionGroup)

EFFECTIVE_DISPOSITION = case(
    (and_(Group.id.is_not(None), Group.disposition != "pendiente"), Group.disposition),
    else_=Contribution.disposition,
)
EFFECTIVE_SYNTHESIS = case(
    (func.coalesce(Group.synthesis, "") != "", Group.synthesis), else_=Contribution.synthesis
)
EFFECTIVE_RESPONSE = case(
    (func.coalesce(Group.response, "") != "", Group.response), else_=Contribution.response
)


def start_of_lima_day(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=clock.LIMA)


def filtered(statement: Select, consultation: Consultation, filters: Filters) -> Select:
    """Restrict a select over contributions (joined to drafts, themes, groups) to the filters."""
    statement = statement.where(Contribution.consultation_id == consultation.id)
    if filters.theme:
        statement = statement.where(Theme.slug == filters.theme)
    if filters.draft:
        statement = statement.where(Draft.code == filters.draft)
    if filters.institution:
        statement = statement.where(Draft.responsible_institution == filters.institution)
    if filters.channel:
        statement = statement.where(Contribution.channel == filters.channel)
    if filters.date_from:
        statement = statement.where(
            Contribution.received_at >= start_of_lima_day(filters.date_from)
        )
    if filters.date_to:
        end = start_of_lima_day(filters.date_to + timedelta(days=1))
        statement = statement.where(Contribution.received_at < end)
    if filters.disposition:
        statement = statement.where(EFFECTIVE_DISPOSITION == filters.disposition)
    if filters.tag:
        statement = statement.where(
            exists(
                select(contribution_tags.c.contribution_id)
                .join(Tag, Tag.id == contribution_tags.c.tag_id)
                .where(
                    contribution_tags.c.contribution_id == Contribution.id,
                    Tag.slug == filters.tag,
                )
            )
        )
    return statement


def joined(statement: Select) -> Select:
    """Join what the filters and the rows read: theme, draft, group (all optional)."""
    return (
        statement.outerjoin(Theme, Theme.id == Contribution.theme_id)
        .outerjoin(Draft, Draft.id == Contribution.draft_id)
        .outerjoin(Group, Group.id == Contribution.group_id)
    )


def count_rows(consultation: Consultation, filters: Filters) -> int:
    """How many rows a file with these filters has."""
    statement = joined(select(func.count(Contribution.id)).select_from(Contribution))
    return db.session.scalar(filtered(statement, consultation, filters))


def _table_query(consultation: Consultation, filters: Filters) -> Select:
    statement = select(
        Contribution.id,
        Theme.name,
        Draft.code,
        Draft.title,
        Draft.responsible_institution,
        Contribution.channel,
        # Plain DateTime (naive UTC as stored): UTCDateTime's per-row Python hook is skipped.
        type_coerce(Contribution.received_at, DateTime()),
        Contribution.is_late,
        Contribution.author_id,
        Contribution.author_name,
        Contribution.author_email,
        Contribution.forwarded_by,
        User.name,
        User.email,
        User.is_name_public,
        # An account's profile, else what a moderator recorded of an e-mail sender.
        func.coalesce(User.organisation, Contribution.sender_organisation),
        func.coalesce(User.organisation_type, Contribution.sender_organisation_type),
        func.coalesce(User.region, Contribution.sender_region),
        Contribution.parent_id,
        Contribution.body,
        Contribution.group_id,
        EFFECTIVE_SYNTHESIS,
        EFFECTIVE_DISPOSITION,
        EFFECTIVE_RESPONSE,
        Contribution.moderation_state,
        Contribution.hidden_reason,
    ).select_from(Contribution)
    statement = joined(statement).outerjoin(User, User.id == Contribution.author_id)
    return filtered(statement, consultation, filters).order_by(Contribution.id)


def permalink_prefix(base_url: str) -> str:
    """What a contribution's public address under BASE_URL is before its id (no request)."""
    parts = urlsplit(base_url.rstrip("/"))
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme or "https"
    )
    sample = adapter.build("consultation.permalink", {"contribution_id": 1}, force_external=True)
    return sample[: -len("1")]


def _tags_for(ids: list[int]) -> dict[int, list[str]]:
    """The tag names of these contributions (ids ascending), by contribution id.

    One query over the id range, not an IN list of CHUNK parameters (costly to render every
    time); consecutive chunks have disjoint ranges, so no tag is read twice overall.
    """
    wanted = set(ids)
    rows = db.session.connection().execute(
        select(contribution_tags.c.contribution_id, Tag.name)
        .join(Tag, Tag.id == contribution_tags.c.tag_id)
        .where(contribution_tags.c.contribution_id.between(ids[0], ids[-1]))
        .order_by(contribution_tags.c.contribution_id, Tag.name)
    )
    tags: dict[int, list[str]] = {}
    for contribution_id, name in rows:
        if contribution_id in wanted:
            tags.setdefault(contribution_id, []).append(name)
    return tags


def _group_sizes(consultation: Consultation) -> dict[int, int]:
    rows = db.session.execute(
        select(Contribution.group_id, func.count())
        .where(Contribution.consultation_id == consultation.id, Contribution.group_id.is_not(None))
        .group_by(Contribution.group_id)
    )
    return dict(rows.all())


def responses_are_public(consultation: Consultation) -> bool:
    """Dispositions and responses are public once an admin published them."""
    published = consultation.responses_published_at
    return published is not None and published <= clock.now()


class LimaTime:
    """Naive UTC instants as ISO 8601 Lima time, the offset looked up once per UTC hour.

    Peru has kept UTC-05:00 since 1994, but the offset comes from the tz database
    (clock.LIMA), so a change of rule is followed. An hour whose start and end have the
    same offset has it throughout; the rare hour with a change is converted instant by
    instant. (A full `astimezone(...).isoformat()` costs about six times as much.)
    """

    def __init__(self):
        self.hours: dict[datetime, tuple[timedelta, str] | None] = {}

    def __call__(self, instant: datetime) -> str:
        hour = instant.replace(minute=0, second=0, microsecond=0)
        if hour not in self.hours:
            start, end = self._offset(hour), self._offset(hour + timedelta(hours=1))
            self.hours[hour] = start if start == end else None
        known = self.hours[hour]
        if known is None:
            return instant.replace(tzinfo=UTC).astimezone(clock.LIMA).isoformat()
        shift, suffix = known
        return (instant + shift).isoformat() + suffix

    @staticmethod
    def _offset(instant: datetime) -> tuple[timedelta, str]:
        local = instant.replace(tzinfo=UTC).astimezone(clock.LIMA)
        naive = local.replace(tzinfo=None)
        return local.utcoffset(), local.isoformat()[len(naive.isoformat()) :]


def iter_chunks(
    consultation: Consultation, filters: Filters, audience: Audience
) -> Iterator[list[tuple]]:
    """Every contribution matching the filters, in id order, CHUNK rows at a time; a row is
    a tuple of values in the order of `columns_for(audience)`: ints or None for ids and
    counts, a bool for is_late, a list of names for tags, text (never None) otherwise."""
    prefix = permalink_prefix(current_app.config["BASE_URL"])
    slug = consultation.slug
    group_sizes = _group_sizes(consultation)
    show_responses = audience is not Audience.PUBLIC or responses_are_public(consultation)
    lima_time = LimaTime()
    outsiders = audience is not Audience.SECRETARIAT
    result = db.session.connection().execute(
        _table_query(consultation, filters).execution_options(yield_per=CHUNK)
    )
    for records in result.partitions():
        tags = _tags_for([record[0] for record in records])
        chunk = []
        for (
            id_,
            theme,
            draft_code,
            draft_title,
            institution,
            channel,
            received_at,
            is_late,
            author_id,
            author_name,
            author_email,
            forwarded_by,
            user_name,
            user_email,
            is_name_public,
            organisation,
            organisation_type,
            region,
            parent_id,
            body,
            group_id,
            synthesis,
            disposition,
            response,
            moderation_state,
            hidden_reason,
        ) in records:
            hidden = moderation_state == "hidden"
            row = (
                id_,
                f"{prefix}{id_}",
                slug,
                theme or "",
                draft_code or "",
                draft_title or "",
                institution or "",
                channel,
                lima_time(received_at),
                is_late,
                user_name or author_name,
                author_email or user_email or "",
                forwarded_by,
                organisation or "",
                organisation_type or "",
                region or "",
                parent_id,
                body,
                tags.get(id_, []),
                synthesis if show_responses else "",
                group_id,
                group_sizes.get(group_id),
                disposition if show_responses else "",
                response if show_responses else "",
                moderation_state,
                hidden_reason if hidden else "",
            )
            if outsiders:
                row = _for_outsiders(row, author_id, is_name_public, hidden)
            chunk.append(row)
        yield chunk


# Positions in a secretariat row (COLUMNS order) and in an outsiders' row (no e-mails).
_AT = {column.id: index for index, column in enumerate(COLUMNS)}
_OUTSIDERS_AT = {column.id: index for index, column in enumerate(columns_for(Audience.PUBLIC))}
_STUB = tuple(column.id in STUB_COLUMNS for column in COLUMNS if not column.secretariat_only)
_BLANK = tuple(
    [] if column.id == "tags" else None if column.type == "integer" else ""
    for column in COLUMNS
    if not column.secretariat_only
)
_TEXT_AT = tuple(
    index
    for index, column in enumerate(columns_for(Audience.PUBLIC))
    if column.type == "string" and column.id != "tags"
)
_texts = itemgetter(*_TEXT_AT)


def _for_outsiders(row: tuple, author_id: int | None, is_name_public, hidden: bool) -> tuple:
    """No e-mail anywhere, names only with consent, hidden contributions as stubs."""
    id_ = row[0]
    values = list(row[: _AT["author_email"]] + row[_AT["organisation"] :])
    if author_id is None:
        values[_OUTSIDERS_AT["author_name"]] = f"Participante (aporte {id_})"  # public_author
        values[_OUTSIDERS_AT["organisation"]] = ""  # the sender gave no consent to show it
    elif not is_name_public:
        values[_OUTSIDERS_AT["author_name"]] = f"Participante {author_id}"  # User.public_name
        values[_OUTSIDERS_AT["organisation"]] = ""  # shown only with the name
    if hidden:
        values = [
            v if stub else blank for v, stub, blank in zip(values, _STUB, _BLANK, strict=True)
        ]
    if "@" in "".join(_texts(values)):
        for index in _TEXT_AT:
            values[index] = mask_emails(values[index])
    tags = values[_OUTSIDERS_AT["tags"]]
    if tags:
        values[_OUTSIDERS_AT["tags"]] = [mask_emails(tag) for tag in tags]
    return tuple(values)

"""Moderation services: the queue, hiding, reports, tags, systematisation, groups, publication.

Every action writes an `AuditEntry` in the same transaction (`record_audit`); nothing here
edits or deletes an audit entry.
"""

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import NamedTuple

import numpy as np
from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    cast,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.exc import StaleDataError

from forum import clock
from forum.accounts.models import ORGANISATION_TYPES, REGIONS, User
from forum.consultation.models import Consultation, Contribution, Draft
from forum.consultation.services import touch_thread
from forum.errors import ForumError, InvalidInput, NotAllowed
from forum.extensions import db
from forum.moderation.duplicates import Similar, SimilarityIndex, fingerprints
from forum.moderation.models import (
    DISPOSITIONS,
    HIDE_REASONS,
    TAG_KINDS,
    AuditEntry,
    ContributionGroup,
    ContributionSignature,
    DuplicateDecision,
    Report,
    Tag,
    contribution_tags,
)
from forum.text import fold, normalise, slugify

log = logging.getLogger(__name__)

COUNT_CAP = 1_000  # the queue counts matches up to here, so a count never reads a million rows
MIN_INDEXED_WORD = 3  # characters: a trigram index cannot find a shorter word
# Above this many matches a free-text search walks the queue's order instead of reading the
# index (1% of a million rows: 50 matches come within about 5,000 rows).
INDEX_PROBE = 10_000
# The FTS5 trigram index of contributions.search_text (SQLite only; migration 0008).
search_index = table("contributions_search", column("rowid"), column("search_text"))

# The seeded vocabulary: OGP values, the SMART criteria, and "fuera de alcance".
SEED_TAGS = (
    ("transparencia", "Transparencia", "ogp"),
    ("participacion-ciudadana", "Participación ciudadana", "ogp"),
    ("rendicion-de-cuentas", "Rendición de cuentas", "ogp"),
    ("tecnologia-e-innovacion", "Tecnología e innovación", "ogp"),
    ("especifico", "Específico", "smart"),
    ("medible", "Medible", "smart"),
    ("alcanzable", "Alcanzable", "smart"),
    ("relevante", "Relevante", "smart"),
    ("temporal", "Temporal", "smart"),
    ("fuera-de-alcance", "Fuera de alcance", "otro"),
)


class StaleEdit(ForumError):
    """Someone else saved the same record after this form was loaded."""

    status = 409
    message = (
        "Otra persona guardó cambios en este registro mientras lo editabas. No se guardó "
        "nada de lo tuyo: tu texto sigue en el formulario. Revisa la versión actual (abajo) "
        "y vuelve a guardar si todavía corresponde."
    )


# --------------------------------------------------------------------------- audit


def _json(value: dict | None) -> str:
    return json.dumps(value or {}, ensure_ascii=False, sort_keys=True, default=str)


def record_audit(
    actor: User | None, action: str, target: object, before: dict | None, after: dict | None
) -> AuditEntry:
    """Append one entry to the audit log (same transaction as the action; never edited)."""
    entry = AuditEntry(
        at=clock.now(),
        actor_id=actor.id if actor is not None else None,
        action=action,
        target_type=getattr(target, "__tablename__", type(target).__name__.lower()),
        target_id=getattr(target, "id", None),
        before=_json(before),
        after=_json(after),
    )
    db.session.add(entry)
    log.info(
        "%s on %s %s by user %s",
        action,
        entry.target_type,
        entry.target_id,
        actor.id if actor is not None else "-",
    )
    return entry


def snapshot(contribution: Contribution) -> dict:
    """The moderation fields of a contribution, as the audit log keeps them."""
    return {
        "moderation_state": contribution.moderation_state,
        "hidden_reason": contribution.hidden_reason,
        "moderator_note": contribution.moderator_note,
        "synthesis": contribution.synthesis,
        "disposition": contribution.disposition,
        "response": contribution.response,
        "group_id": contribution.group_id,
    }


def _group_snapshot(group: ContributionGroup) -> dict:
    return {
        "title": group.title,
        "synthesis": group.synthesis,
        "disposition": group.disposition,
        "response": group.response,
    }


def _flush() -> None:
    """Flush; a row changed by someone else since it was read becomes a StaleEdit."""
    try:
        db.session.flush()
    except StaleDataError as error:
        raise StaleEdit() from error


def check_version(record: Contribution | ContributionGroup, expected: int | None) -> None:
    """Refuse an edit made on a form loaded from an older version of the record."""
    if expected is None or expected != record.version:
        raise StaleEdit()


# --------------------------------------------------------------------------- tags


def seed_tags(actor: User | None = None) -> int:
    """Create the seeded vocabulary's missing tags; returns how many were created."""
    existing = set(db.session.scalars(select(Tag.slug)))
    created = 0
    for slug, name, kind in SEED_TAGS:
        if slug in existing:
            continue
        tag = Tag(slug=slug, name=name, kind=kind, is_active=True)
        db.session.add(tag)
        db.session.flush()
        record_audit(actor, "tag.create", tag, None, {"slug": slug, "name": name, "kind": kind})
        created += 1
    return created


def active_tags() -> list[Tag]:
    """The tags moderators can apply, by kind then name."""
    return list(db.session.scalars(select(Tag).where(Tag.is_active).order_by(Tag.kind, Tag.name)))


def all_tags() -> list[Tag]:
    """Every tag, active or not, for the admins' vocabulary page."""
    return list(db.session.scalars(select(Tag).order_by(Tag.is_active.desc(), Tag.kind, Tag.name)))


def _check_tag_fields(name: str, kind: str) -> str:
    name = normalise(name)
    if not name:
        raise InvalidInput("Escribe el nombre de la etiqueta.")
    if kind not in TAG_KINDS:
        raise InvalidInput("Elige un tipo de etiqueta de la lista.")
    return name


def create_tag(actor: User, name: str, kind: str) -> Tag:
    """Add a term to the controlled vocabulary."""
    name = _check_tag_fields(name, kind)
    slug = slugify(name)
    if db.session.scalar(select(Tag.id).where(Tag.slug == slug)) is not None:
        raise InvalidInput(f"Ya existe una etiqueta «{name}».")
    tag = Tag(slug=slug, name=name, kind=kind, is_active=True)
    db.session.add(tag)
    db.session.flush()
    record_audit(actor, "tag.create", tag, None, {"slug": slug, "name": name, "kind": kind})
    return tag


def update_tag(actor: User, tag: Tag, name: str, kind: str, is_active: bool) -> None:
    """Rename, reclassify, retire or bring back a tag (retired tags stay on contributions)."""
    name = _check_tag_fields(name, kind)
    before = {"name": tag.name, "kind": tag.kind, "is_active": tag.is_active}
    tag.name, tag.kind, tag.is_active = name, kind, is_active
    db.session.flush()
    record_audit(
        actor, "tag.update", tag, before, {"name": name, "kind": kind, "is_active": is_active}
    )


def tags_by_contribution(ids: Sequence[int]) -> dict[int, list[Tag]]:
    """The tags of each listed contribution, in one query."""
    found: dict[int, list[Tag]] = {cid: [] for cid in ids}
    if not ids:
        return found
    rows = db.session.execute(
        select(contribution_tags.c.contribution_id, Tag)
        .join(Tag, Tag.id == contribution_tags.c.tag_id)
        .where(contribution_tags.c.contribution_id.in_(ids))
        .order_by(Tag.name)
    )
    for contribution_id, tag in rows:
        found[contribution_id].append(tag)
    return found


def tag_contributions(contributions: Sequence[Contribution], tag: Tag, actor: User) -> int:
    """Put a tag on contributions that lack it; returns how many got it."""
    if not tag.is_active:
        raise InvalidInput(f"La etiqueta «{tag.name}» está retirada: no se puede aplicar.")
    ids = [c.id for c in contributions]
    having = set(
        db.session.scalars(
            select(contribution_tags.c.contribution_id).where(
                contribution_tags.c.tag_id == tag.id, contribution_tags.c.contribution_id.in_(ids)
            )
        )
    )
    added = [c for c in contributions if c.id not in having]
    if added:
        db.session.execute(
            insert(contribution_tags), [{"contribution_id": c.id, "tag_id": tag.id} for c in added]
        )
    for contribution in added:
        record_audit(actor, "contribution.tag", contribution, None, {"tag": tag.slug})
    db.session.flush()
    return len(added)


def untag_contributions(contributions: Sequence[Contribution], tag: Tag, actor: User) -> int:
    """Take a tag off contributions; returns how many had it."""
    ids = [c.id for c in contributions]
    having = set(
        db.session.scalars(
            select(contribution_tags.c.contribution_id).where(
                contribution_tags.c.tag_id == tag.id, contribution_tags.c.contribution_id.in_(ids)
            )
        )
    )
    if having:
        db.session.execute(
            delete(contribution_tags).where(
                contribution_tags.c.tag_id == tag.id,
                contribution_tags.c.contribution_id.in_(having),
            )
        )
    for contribution in contributions:
        if contribution.id in having:
            record_audit(actor, "contribution.untag", contribution, {"tag": tag.slug}, None)
    db.session.flush()
    return len(having)


# --------------------------------------------------------------------------- the queue


@dataclass
class QueueFilter:
    """What the queue shows; every field is optional and they combine (AND)."""

    text: str = ""
    theme_id: int | None = None
    draft_id: int | None = None
    channel: str = ""
    state: str = ""  # 'visible', 'hidden' or 'reported' (has open reports)
    disposition: str = ""
    tag_id: int | None = None
    since: date | None = None  # Lima dates, inclusive
    until: date | None = None
    organisation_type: str = ""
    region: str = ""
    late: str = ""  # 'si' or 'no'
    grouped: str = ""  # 'si' or 'no'
    oldest_first: bool = False


@dataclass
class QueuePage:
    items: list[Contribution]
    tags: dict[int, list[Tag]]
    open_reports: dict[int, int]
    page: int
    per_page: int
    total: int
    is_total_capped: bool

    @property
    def pages(self) -> int | None:
        """How many pages there are; None when the count was capped (not known)."""
        return None if self.is_total_capped else max(1, -(-self.total // self.per_page))

    @property
    def has_next(self) -> bool:
        return len(self.items) == self.per_page and (self.pages is None or self.page < self.pages)

    @property
    def next_cursor(self) -> str:
        """Where the next page starts, for the "Siguiente" link."""
        last = self.items[-1]
        return f"{last.received_at.isoformat()}_{last.id}"


def _lima_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=clock.LIMA)


def search_words(text: str) -> tuple[list[str], list[str]]:
    """The user's words, folded as `Contribution.search_text` is: those a trigram index
    finds (3 characters or more), and the shorter ones, which only narrow what those found.

    Folding leaves letters, digits and spaces only, so no LIKE wildcard survives in a word.
    """
    words = list(dict.fromkeys(fold(text).split()))
    indexed = [word for word in words if len(word) >= MIN_INDEXED_WORD]
    return indexed, [word for word in words if len(word) < MIN_INDEXED_WORD]


def _text_conditions(text: str) -> list:
    """Every word, as a substring of the folded body, synthesis and sender name (AND).

    Neither planner can tell a rare word from a common one well enough (SQLite never,
    PostgreSQL not for texts over 1 kB, which its statistics leave out), and each choice
    is slow for the other kind: reading every match from the index to show 50 (a second
    or more for a word in half of a million rows), or walking the queue's order past
    nearly every row for a rare word. So the index is read first, up to INDEX_PROBE + 1
    rows: if that is all, those ids are the condition; if not, the words are common and
    the queue's order is walked with a condition no index serves.

    Short words alone are ignored (the queue page says so): no index can find them.
    """
    indexed, short = search_words(text)
    if not indexed:
        return []
    ids = db.session.scalars(text_index_query(indexed, short).limit(INDEX_PROBE + 1)).all()
    if len(ids) <= INDEX_PROBE:
        return [Contribution.id.in_(ids)]
    return [_position(Contribution.search_text, word) > 0 for word in indexed + short]


def text_index_query(indexed: list[str], short: list[str]):
    """The ids of the rows holding every word, as the trigram index finds them (FTS5 table
    on SQLite, GIN index on PostgreSQL); short words are checked on the rows found."""
    if db.session.get_bind().dialect.name == "sqlite":
        return select(search_index.c.rowid).where(
            *[_like(search_index.c.search_text, word) for word in indexed + short]
        )
    return select(Contribution.id).where(
        *[_like(Contribution.search_text, word) for word in indexed],
        *[_position(Contribution.search_text, word) > 0 for word in short],
    )


def _like(column, word: str):
    """`column LIKE '%word%'`, the word written into the SQL itself: as a parameter, a
    statement run often (psycopg prepares it on the 6th run) gets a generic plan, blind to
    the word."""
    return column.like(bindparam(None, f"%{word}%", literal_execute=True))


def _position(column, word: str):
    """Where `word` starts in `column` (0: absent); a function no index serves."""
    if db.session.get_bind().dialect.name == "sqlite":
        return func.instr(column, word)
    return func.strpos(column, word)


def queue_conditions(f: QueueFilter) -> list:
    """The SQL conditions of a queue filter (shared by the page, its count and the bench)."""
    c = Contribution
    where = []
    if f.theme_id:
        where.append(c.theme_id == f.theme_id)
    if f.draft_id:
        where.append(c.draft_id == f.draft_id)
    if f.channel:
        where.append(c.channel == f.channel)
    if f.state in ("visible", "hidden"):
        where.append(c.moderation_state == f.state)
    elif f.state == "reported":
        where.append(c.id.in_(select(Report.contribution_id).where(Report.resolved_at.is_(None))))
    if f.disposition:
        where.append(c.disposition == f.disposition)
    if f.tag_id:
        # Correlated (EXISTS), like the people filter below: the planner walks the queue's
        # order and stops at the page, instead of sorting every tagged contribution.
        where.append(
            exists().where(
                contribution_tags.c.contribution_id == c.id,
                contribution_tags.c.tag_id == f.tag_id,
            )
        )
    if f.since:
        where.append(c.received_at >= _lima_midnight(f.since))
    if f.until:
        where.append(c.received_at < _lima_midnight(f.until + timedelta(days=1)))
    if f.organisation_type or f.region:
        # An account's profile, or what a moderator recorded of a sender without one.
        person, sender = [User.id == c.author_id], [c.author_id.is_(None)]
        if f.organisation_type:
            person.append(User.organisation_type == f.organisation_type)
            sender.append(c.sender_organisation_type == f.organisation_type)
        if f.region:
            person.append(User.region == f.region)
            sender.append(c.sender_region == f.region)
        where.append(or_(exists().where(*person), and_(*sender)))
    if f.late in ("si", "no"):
        where.append(c.is_late.is_(f.late == "si"))
    if f.grouped == "si":
        where.append(c.group_id.is_not(None))
    elif f.grouped == "no":
        where.append(c.group_id.is_(None))
    where.extend(_text_conditions(f.text))
    return where


def queue_order(f: QueueFilter) -> list:
    """Newest first (or oldest first), with the id to break ties: what the indexes hold."""
    if f.oldest_first:
        return [Contribution.received_at.asc(), Contribution.id.asc()]
    return [Contribution.received_at.desc(), Contribution.id.desc()]


def count_queue(where: list, cap: int | None = None) -> tuple[int, bool]:
    """How many contributions meet the queue's conditions, counted up to `cap`; and whether
    the cap was hit."""
    cap = cap or COUNT_CAP
    matches = select(Contribution.id).where(*where).limit(cap + 1).subquery()
    total = db.session.scalar(select(func.count()).select_from(matches))
    return min(total, cap), total > cap


def _after(f: QueueFilter, cursor: tuple[datetime, int]):
    """Rows past a (received_at, id) cursor, in the queue's order (keyset pagination)."""
    key = tuple_(Contribution.received_at, Contribution.id)
    return key > tuple_(*cursor) if f.oldest_first else key < tuple_(*cursor)


def page_query(
    f: QueueFilter,
    where: list,
    page: int,
    per_page: int,
    cursor: tuple[datetime, int] | None = None,
):
    """The ids of one page of the rows meeting `where`: after the cursor when there is one
    (cheap at any depth), else by OFFSET."""
    query = select(Contribution.id).where(*where).order_by(*queue_order(f))
    if cursor is not None:
        return query.where(_after(f, cursor)).limit(per_page)
    return query.limit(per_page).offset((max(1, page) - 1) * per_page)


def filter_queue(
    f: QueueFilter,
    page: int = 1,
    per_page: int = 50,
    cursor: tuple[datetime, int] | None = None,
) -> QueuePage:
    """One page of the moderation queue, with each item's tags and open reports.

    "Siguiente" passes the last row's (received_at, id) as `cursor`, so a deep page costs
    what the first one does; a page number alone is served by OFFSET.
    """
    where = queue_conditions(f)  # once: on SQLite the free text asks its index here
    total, capped = count_queue(where)
    page = max(1, page)
    ids = list(db.session.scalars(page_query(f, where, page, per_page, cursor)))
    items = []
    if ids:
        loaded = db.session.scalars(
            select(Contribution)
            .options(joinedload(Contribution.author), joinedload(Contribution.draft))
            .where(Contribution.id.in_(ids))
        ).all()
        by_id = {item.id: item for item in loaded}
        items = [by_id[i] for i in ids]
    return QueuePage(
        items=items,
        tags=tags_by_contribution(ids),
        open_reports=open_report_counts(ids),
        page=page,
        per_page=per_page,
        total=total,
        is_total_capped=capped,
    )


def parse_cursor(value: str | None) -> tuple[datetime, int] | None:
    """Read a "Siguiente" cursor ("<ISO instant>_<id>"); None when absent or malformed."""
    instant, _, ident = (value or "").rpartition("_")
    try:
        moment = datetime.fromisoformat(instant)
    except ValueError:
        return None
    if moment.tzinfo is None or not ident.isdigit():
        return None
    return moment, int(ident)


def contributions_by_ids(ids: Iterable[int]) -> list[Contribution]:
    """The contributions with these ids, in id order (for bulk actions)."""
    ids = sorted(set(ids))
    if not ids:
        return []
    return list(
        db.session.scalars(
            select(Contribution).where(Contribution.id.in_(ids)).order_by(Contribution.id)
        )
    )


# --------------------------------------------------------------------------- hiding and reports


def hide_contribution(contribution: Contribution, actor: User, reason: str, note: str = "") -> None:
    """Hide a contribution with a published reason; the thread shows a placeholder."""
    if reason not in HIDE_REASONS:
        raise InvalidInput("Elige un motivo de la lista publicada para ocultar el aporte.")
    before = snapshot(contribution)
    with db.session.no_autoflush:  # a stale row must fail in _flush, as a StaleEdit
        contribution.moderation_state = "hidden"
        contribution.hidden_reason = reason
        contribution.hidden_at = clock.now()
        contribution.hidden_by_id = actor.id
        if note.strip():
            contribution.moderator_note = normalise(note)
        _resolve_open_reports(contribution, actor)
        touch_thread(contribution.draft_id)
    _flush()
    record_audit(actor, "contribution.hide", contribution, before, snapshot(contribution))


def restore_contribution(contribution: Contribution, actor: User) -> None:
    """Show a hidden contribution again."""
    if not contribution.is_hidden:
        raise InvalidInput("Este aporte ya está visible.")
    before = snapshot(contribution)
    with db.session.no_autoflush:
        contribution.moderation_state = "visible"
        contribution.hidden_reason = ""
        contribution.hidden_at = None
        contribution.hidden_by_id = None
        touch_thread(contribution.draft_id)
    _flush()
    record_audit(actor, "contribution.restore", contribution, before, snapshot(contribution))


def report_contribution(
    contribution: Contribution, reporter: User, reason: str, note: str = ""
) -> tuple[Report, bool]:
    """A citizen reports a contribution; one report per person (returns it, and if it is new)."""
    if reason not in HIDE_REASONS:
        raise InvalidInput("Elige un motivo de la lista para denunciar el aporte.")
    if contribution.is_hidden:
        raise InvalidInput("Este aporte ya fue ocultado por moderación.")
    existing = db.session.scalar(
        select(Report).where(
            Report.contribution_id == contribution.id, Report.reporter_id == reporter.id
        )
    )
    if existing is not None and existing.resolved_at is None:
        return existing, False
    if existing is not None:  # reported again after a moderator dismissed it: reopen
        existing.reason, existing.note = reason, normalise(note)
        existing.created_at, existing.resolved_at, existing.resolved_by_id = clock.now(), None, None
        db.session.flush()
        log.info("report %s reopened by user %s", existing.id, reporter.id)
        return existing, True
    report = Report(
        contribution_id=contribution.id,
        reporter_id=reporter.id,
        reason=reason,
        note=normalise(note),
        created_at=clock.now(),
    )
    db.session.add(report)
    db.session.flush()
    log.info("contribution %s reported by user %s (%s)", contribution.id, reporter.id, reason)
    return report, True


def open_report_counts(ids: Sequence[int]) -> dict[int, int]:
    """Open reports per contribution, in one query."""
    if not ids:
        return {}
    rows = db.session.execute(
        select(Report.contribution_id, func.count())
        .where(Report.contribution_id.in_(ids), Report.resolved_at.is_(None))
        .group_by(Report.contribution_id)
    )
    return dict(rows.all())


def reports_of(contribution: Contribution) -> list[Report]:
    """Every report of a contribution, open ones first."""
    return list(
        db.session.scalars(
            select(Report)
            .where(Report.contribution_id == contribution.id)
            .order_by(Report.resolved_at.is_not(None), Report.created_at)
        )
    )


def _resolve_open_reports(contribution: Contribution, actor: User) -> int:
    reports = db.session.scalars(
        select(Report).where(
            Report.contribution_id == contribution.id, Report.resolved_at.is_(None)
        )
    ).all()
    for report in reports:
        report.resolved_at = clock.now()
        report.resolved_by_id = actor.id
    return len(reports)


def dismiss_reports(contribution: Contribution, actor: User) -> int:
    """Close a contribution's open reports without hiding it; returns how many."""
    closed = _resolve_open_reports(contribution, actor)
    if not closed:
        raise InvalidInput("Este aporte no tiene denuncias abiertas.")
    db.session.flush()
    record_audit(
        actor, "reports.dismiss", contribution, {"open_reports": closed}, {"open_reports": 0}
    )
    return closed


# --------------------------------------------------------------------------- systematisation


def _check_disposition(disposition: str) -> None:
    if disposition not in DISPOSITIONS:
        raise InvalidInput("Elige una disposición de la lista.")


def update_systematisation(
    contribution: Contribution,
    actor: User,
    *,
    expected_version: int | None,
    synthesis: str,
    disposition: str,
    response: str,
    note: str,
) -> None:
    """Save a contribution's synthesis, disposition, reasoned response and note.

    A grouped contribution takes these from its group: only the note is its own.
    """
    check_version(contribution, expected_version)
    _check_disposition(disposition)
    synthesis, response, note = normalise(synthesis), normalise(response), normalise(note)
    if contribution.group_id is not None and (
        synthesis != contribution.synthesis
        or disposition != contribution.disposition
        or response != contribution.response
    ):
        raise InvalidInput(
            f"Este aporte forma parte del aporte sistematizado n.º {contribution.group_id}: su "
            "síntesis, disposición y respuesta se editan en el grupo."
        )
    before = snapshot(contribution)
    with db.session.no_autoflush:
        contribution.synthesis = synthesis
        contribution.disposition = disposition
        contribution.response = response
        contribution.moderator_note = note
        _touch_if_published(contribution)
    _flush()
    record_audit(actor, "contribution.systematise", contribution, before, snapshot(contribution))


def _sender_profile(contribution: Contribution) -> dict:
    return {
        "sender_organisation": contribution.sender_organisation,
        "sender_organisation_type": contribution.sender_organisation_type,
        "sender_region": contribution.sender_region,
    }


def update_sender_profile(
    contribution: Contribution,
    actor: User,
    *,
    organisation: str,
    organisation_type: str,
    region: str,
) -> int:
    """Record the organisation, type and region of a sender without an account (read from
    the e-mail's signature), on every contribution from the same address; returns how many.

    They count in the participation tables and the queue's filters like an account's
    profile; the organisation stays out of public files (the sender gave no consent).
    """
    if contribution.author_id is not None:
        raise InvalidInput(
            "Este aporte es de una cuenta: su organización y región las indica la persona en "
            "su perfil."
        )
    if organisation_type and organisation_type not in ORGANISATION_TYPES:
        raise InvalidInput("Elige un tipo de organización de la lista.")
    if region and region not in REGIONS:
        raise InvalidInput("Elige una región de la lista.")
    same_sender = [contribution]
    if contribution.author_email:
        same_sender = db.session.scalars(
            select(Contribution).where(
                Contribution.author_id.is_(None),
                Contribution.author_email == contribution.author_email,  # stored lower case
            )
        ).all()
    before = _sender_profile(contribution)
    for each in same_sender:
        each.sender_organisation = normalise(organisation)[:200]
        each.sender_organisation_type = organisation_type
        each.sender_region = region
    _flush()
    after = _sender_profile(contribution) | {"contributions": len(same_sender)}
    record_audit(actor, "contribution.sender_profile", contribution, before, after)
    return len(same_sender)


def set_disposition(contributions: Sequence[Contribution], disposition: str, actor: User) -> int:
    """Bulk: set a disposition; a grouped contribution's whole group takes it."""
    _check_disposition(disposition)
    changed = 0
    done_groups: set[int] = set()
    for contribution in contributions:
        if contribution.group_id is not None:
            if contribution.group_id in done_groups:
                continue
            done_groups.add(contribution.group_id)
            group = db.session.get(ContributionGroup, contribution.group_id)
            if group.disposition != disposition:
                before = _group_snapshot(group)
                group.disposition = disposition
                changed += _apply_group(group, actor)
                record_audit(actor, "group.update", group, before, _group_snapshot(group))
            continue
        if contribution.disposition == disposition:
            continue
        before = snapshot(contribution)
        with db.session.no_autoflush:
            contribution.disposition = disposition
            _touch_if_published(contribution)
        _flush()
        record_audit(
            actor, "contribution.disposition", contribution, before, snapshot(contribution)
        )
        changed += 1
    _flush()
    return changed


def _touch_if_published(contribution: Contribution) -> None:
    published = db.session.scalar(
        select(Consultation.responses_published_at).where(
            Consultation.id == contribution.consultation_id
        )
    )
    if published is not None:
        touch_thread(contribution.draft_id)


# --------------------------------------------------------------------------- groups


@dataclass
class GroupCounts:
    raw: int  # every member
    distinct: int  # distinct people: an account, or an e-mail address, counts once


def group_members(group: ContributionGroup) -> list[Contribution]:
    """The members of a group, oldest first."""
    return list(
        db.session.scalars(
            select(Contribution)
            .options(joinedload(Contribution.author), joinedload(Contribution.draft))
            .where(Contribution.group_id == group.id)
            .order_by(Contribution.received_at, Contribution.id)
        )
    )


def group_counts(group_ids: Sequence[int]) -> dict[int, GroupCounts]:
    """Raw and distinct member counts of each group, in one query."""
    if not group_ids:
        return {}
    person = func.coalesce(
        literal("u") + cast(Contribution.author_id, String),
        literal("e") + func.nullif(Contribution.author_email, ""),
        literal("c") + cast(Contribution.id, String),
    )
    rows = db.session.execute(
        select(Contribution.group_id, func.count(), func.count(person.distinct()))
        .where(Contribution.group_id.in_(group_ids))
        .group_by(Contribution.group_id)
    )
    return {gid: GroupCounts(raw, distinct) for gid, raw, distinct in rows}


def list_groups(consultation: Consultation | None = None) -> list[ContributionGroup]:
    """Every group (of a consultation), newest first."""
    query = select(ContributionGroup).order_by(ContributionGroup.id.desc())
    if consultation is not None:
        query = query.where(ContributionGroup.consultation_id == consultation.id)
    return list(db.session.scalars(query))


def _apply_group(group: ContributionGroup, actor: User) -> int:
    """Copy the group's synthesis, disposition and response to its members."""
    changed = 0
    for member in group_members(group):
        if (member.synthesis, member.disposition, member.response) == (
            group.synthesis,
            group.disposition,
            group.response,
        ):
            continue
        with db.session.no_autoflush:
            member.synthesis = group.synthesis
            member.disposition = group.disposition
            member.response = group.response
            _touch_if_published(member)
        changed += 1
    _flush()
    return changed


def group_contributions(
    contributions: Sequence[Contribution], actor: User, title: str = ""
) -> ContributionGroup:
    """Group contributions as one "aporte sistematizado", or add them to their existing group."""
    if len(contributions) < 2 and not any(c.group_id for c in contributions):
        raise InvalidInput("Selecciona al menos dos aportes para agruparlos.")
    consultations = {c.consultation_id for c in contributions}
    if len(consultations) != 1:
        raise InvalidInput("Solo se agrupan aportes de una misma consulta.")
    groups = {c.group_id for c in contributions if c.group_id is not None}
    if len(groups) > 1:
        raise InvalidInput(
            "Los aportes seleccionados ya pertenecen a grupos distintos "
            f"(n.º {', '.join(str(g) for g in sorted(groups))}): quita primero los de un grupo."
        )
    if groups:
        group = db.session.get(ContributionGroup, groups.pop())
        action = "group.extend"
    else:
        first = next((c for c in contributions if c.disposition != "pendiente"), contributions[0])
        group = ContributionGroup(
            consultation_id=first.consultation_id,
            title=normalise(title) or _title_from(contributions[0]),
            synthesis=first.synthesis,
            disposition=first.disposition,
            response=first.response,
            created_at=clock.now(),
            created_by_id=actor.id,
        )
        db.session.add(group)
        db.session.flush()
        action = "group.create"
        record_audit(actor, action, group, None, _group_snapshot(group))
    for contribution in contributions:
        if contribution.group_id == group.id:
            continue
        before = snapshot(contribution)
        with db.session.no_autoflush:
            contribution.group_id = group.id
            contribution.synthesis = group.synthesis
            contribution.disposition = group.disposition
            contribution.response = group.response
            _touch_if_published(contribution)
        _flush()
        record_audit(actor, "contribution.group", contribution, before, snapshot(contribution))
    return group


def _title_from(contribution: Contribution) -> str:
    words = normalise(contribution.body).split()
    title = " ".join(words[:12])
    return title + ("…" if len(words) > 12 else "")


def update_group(
    group: ContributionGroup,
    actor: User,
    *,
    expected_version: int | None,
    title: str,
    synthesis: str,
    disposition: str,
    response: str,
) -> int:
    """Save a group's shared synthesis, disposition and response; its members take them."""
    check_version(group, expected_version)
    _check_disposition(disposition)
    before = _group_snapshot(group)
    group.title = normalise(title) or group.title
    group.synthesis = normalise(synthesis)
    group.disposition = disposition
    group.response = normalise(response)
    _flush()
    changed = _apply_group(group, actor)
    record_audit(actor, "group.update", group, before, _group_snapshot(group))
    return changed


def remove_from_group(contribution: Contribution, actor: User) -> None:
    """Take a contribution out of its group (it keeps the group's texts as its own)."""
    if contribution.group_id is None:
        raise InvalidInput("Este aporte no pertenece a ningún grupo.")
    before = snapshot(contribution)
    with db.session.no_autoflush:
        contribution.group_id = None
        _touch_if_published(contribution)
    _flush()
    record_audit(actor, "contribution.ungroup", contribution, before, snapshot(contribution))


# --------------------------------------------------------------------------- duplicate decisions


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def _decide(pairs: Sequence[tuple[int, int]], is_duplicate: bool, actor: User) -> int:
    pairs = sorted({_pair(a, b) for a, b in pairs if a != b})
    if not pairs:
        return 0
    firsts = {a for a, _ in pairs}
    known = set(
        db.session.execute(
            select(DuplicateDecision.first_id, DuplicateDecision.second_id).where(
                DuplicateDecision.first_id.in_(firsts)
            )
        ).all()
    )
    new = [p for p in pairs if p not in known]
    now = clock.now()
    for first, second in new:
        db.session.add(
            DuplicateDecision(
                first_id=first,
                second_id=second,
                is_duplicate=is_duplicate,
                decided_at=now,
                decided_by_id=actor.id,
            )
        )
    db.session.flush()
    return len(new)


@dataclass
class Suggestion:
    """Contributions proposed as one group; at most SHOWN of them are loaded for the page."""

    ids: list[int]
    shown: list[Contribution]
    groups: list[ContributionGroup]


SHOWN = 50
SIGNATURE_BATCH = 2_000  # contributions signed per round trip when signatures are missing


class _VisibleState(NamedTuple):
    """What changes when a consultation's visible contributions change."""

    count: int
    id_sum: int
    last_id: int
    last_edited_at: datetime | None


@dataclass(frozen=True)
class _CachedSimilarity:
    state: _VisibleState  # of the contributions in `index`
    index: SimilarityIndex  # grown only while holding `_growing`
    similar: Similar


_similarity_cache: dict[int, _CachedSimilarity] = {}  # one consultation at a time, per process
_growing = threading.Lock()


def _visible(consultation: Consultation) -> tuple:
    return (
        Contribution.consultation_id == consultation.id,
        Contribution.moderation_state == "visible",
    )


def _visible_state(consultation: Consultation) -> _VisibleState:
    count, id_sum, last_id, last_edited_at = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Contribution.id), 0),
            func.coalesce(func.max(Contribution.id), 0),
            func.max(Contribution.edited_at),
        ).where(*_visible(consultation))
    ).one()
    return _VisibleState(count, int(id_sum), last_id, last_edited_at)


def _signature_is_current() -> ColumnElement[bool]:
    return ContributionSignature.body_edited_at.is_not_distinct_from(Contribution.edited_at)


def _store_missing_signatures(consultation: Consultation, after_id: int) -> None:
    """Sign the visible contributions (id > after_id) without an up-to-date signature."""
    missing = db.session.scalars(
        select(Contribution.id)
        .outerjoin(ContributionSignature)
        .where(
            *_visible(consultation),
            Contribution.id > after_id,
            or_(ContributionSignature.contribution_id.is_(None), ~_signature_is_current()),
        )
        .order_by(Contribution.id)
    ).all()
    upsert = (sqlite_insert if db.engine.dialect.name == "sqlite" else postgresql_insert)(
        ContributionSignature
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=[ContributionSignature.contribution_id],
        set_={name: upsert.excluded[name] for name in ("body_edited_at", "text_hash", "signature")},
    )
    for first in range(0, len(missing), SIGNATURE_BATCH):
        rows = db.session.execute(
            select(Contribution.id, Contribution.body, Contribution.edited_at)
            .where(Contribution.id.in_(missing[first : first + SIGNATURE_BATCH]))
            .order_by(Contribution.id)
        ).all()
        signed = fingerprints([body for _, body, _ in rows])
        db.session.execute(
            upsert,
            [
                {
                    "contribution_id": ident,
                    "body_edited_at": edited_at,
                    "text_hash": fingerprint[0] if fingerprint else None,
                    "signature": fingerprint[1].astype("<u4").tobytes() if fingerprint else None,
                }
                for (ident, _, edited_at), fingerprint in zip(rows, signed, strict=True)
            ],
        )


def _stored_fingerprints(
    consultation: Consultation, after_id: int
) -> list[tuple[int, tuple[bytes, np.ndarray] | None]]:
    """(id, fingerprint) of the visible contributions after `after_id`, in id order."""
    _store_missing_signatures(consultation, after_id)
    rows = db.session.execute(
        select(Contribution.id, ContributionSignature.text_hash, ContributionSignature.signature)
        .join(ContributionSignature)
        .where(*_visible(consultation), Contribution.id > after_id, _signature_is_current())
        .order_by(Contribution.id)
    )
    return [
        (ident, (key, np.frombuffer(signature, dtype="<u4")) if key is not None else None)
        for ident, key, signature in rows
    ]


def _after_adding(state: _VisibleState, rows: Sequence[tuple[int, object]]) -> _VisibleState:
    """The state once `rows`, newer contributions in id order, are added to an index."""
    if not rows:
        return state
    return state._replace(
        count=state.count + len(rows),
        id_sum=state.id_sum + sum(ident for ident, _ in rows),
        last_id=rows[-1][0],
    )


def _grown(
    consultation: Consultation, cached: _CachedSimilarity, state: _VisibleState
) -> _CachedSimilarity | None:
    """The cached similarity plus the contributions posted since, or None if more changed."""
    if cached.state.last_edited_at != state.last_edited_at:
        return None
    newer = _stored_fingerprints(consultation, cached.state.last_id)
    with _growing:  # another thread of this worker may be growing the same index
        current = _similarity_cache.get(consultation.id)
        if current is cached and _after_adding(cached.state, newer) == state:
            for ident, fingerprint in newer:
                cached.index.add(ident, fingerprint)
            current = _CachedSimilarity(state, cached.index, cached.index.similar())
            _similarity_cache[consultation.id] = current
    return current if current is not None and current.state == state else None


def _rebuilt(consultation: Consultation, state: _VisibleState) -> _CachedSimilarity:
    """A new index of the visible contributions, from their stored signatures."""
    _similarity_cache.pop(consultation.id, None)  # frees the old index before the new one
    rows = _stored_fingerprints(consultation, 0)
    index = SimilarityIndex()
    for ident, fingerprint in rows:
        index.add(ident, fingerprint)
    built = _CachedSimilarity(
        _after_adding(_VisibleState(0, 0, 0, state.last_edited_at), rows), index, index.similar()
    )
    with _growing:
        _similarity_cache.clear()
        _similarity_cache[consultation.id] = built
    return built


def _similar_for(consultation: Consultation) -> Similar:
    """Identical and near-identical visible contributions, from the stored signatures.

    The index stays in this process: contributions newer than the indexed ones are added to
    it; any other change (an edit, hiding, showing again) builds a new one.
    """
    state = _visible_state(consultation)
    cached = _similarity_cache.get(consultation.id)
    if cached is not None and cached.state != state:
        cached = _grown(consultation, cached, state)
    if cached is None:
        cached = _rebuilt(consultation, state)
    return cached.similar


def _groups_in(consultation: Consultation) -> dict[int, int]:
    """Contribution id -> group id, for every grouped contribution of a consultation."""
    rows = db.session.execute(
        select(Contribution.id, Contribution.group_id).where(
            Contribution.consultation_id == consultation.id, Contribution.group_id.is_not(None)
        )
    )
    return dict(rows.all())


def _decisions_in(consultation: Consultation) -> list[tuple[int, int]]:
    """Every answered pair of a consultation's contributions."""
    rows = db.session.execute(
        select(DuplicateDecision.first_id, DuplicateDecision.second_id)
        .join(Contribution, Contribution.id == DuplicateDecision.first_id)
        .where(Contribution.consultation_id == consultation.id)
    )
    return list(rows.all())


def _open_edges(
    consultation: Consultation, edges: Sequence[tuple[int, int]]
) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """Links not yet answered, between contributions not already in the same group.

    A group counts as one node: a decision about any of its members answers for the group.
    """
    group_of = _groups_in(consultation)

    def node(ident: int) -> tuple[str, int]:
        return ("g", group_of[ident]) if ident in group_of else ("c", ident)

    decided = set()
    for a, b in _decisions_in(consultation):
        decided.add((node(a), node(b)))
        decided.add((node(b), node(a)))
    open_edges = [
        (a, b) for a, b in edges if node(a) != node(b) and (node(a), node(b)) not in decided
    ]
    return open_edges, group_of


def suggest_duplicates(consultation: Consultation, limit: int = 20) -> tuple[list[Suggestion], int]:
    """Proposed groups of near-identical contributions, largest first, and how many there are."""
    open_edges, group_of = _open_edges(consultation, _similar_for(consultation).edges())
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in open_edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    components: dict[int, list[int]] = {}
    for x in parent:
        components.setdefault(find(x), []).append(x)
    ordered = sorted(components.values(), key=lambda ids: (-len(ids), min(ids)))
    suggestions = []
    for ids in ordered[:limit]:
        ids.sort()
        shown = contributions_by_ids(ids[:SHOWN])
        group_ids = sorted({group_of[i] for i in ids if i in group_of})
        groups = [db.session.get(ContributionGroup, g) for g in group_ids]
        suggestions.append(Suggestion(ids=ids, shown=shown, groups=groups))
    return suggestions, len(ordered)


def _suggested_edges(consultation: Consultation, ids: set[int]) -> list[tuple[int, int]]:
    return [(a, b) for a, b in _similar_for(consultation).edges() if a in ids and b in ids]


def reject_duplicates(
    consultation: Consultation, proposed: Sequence[Contribution], actor: User
) -> int:
    """Answer a suggestion "not duplicates": it is not proposed again."""
    ids = {c.id for c in proposed}
    if len(ids) < 2:
        raise InvalidInput("Una sugerencia tiene al menos dos aportes.")
    decided = _decide(_suggested_edges(consultation, ids), False, actor)
    record_audit(
        actor,
        "duplicates.reject",
        consultation,
        None,
        {"contributions": sorted(ids), "decisions": decided},
    )
    return decided


def confirm_duplicates(
    consultation: Consultation,
    chosen: Sequence[Contribution],
    proposed: Sequence[Contribution],
    actor: User,
) -> ContributionGroup:
    """Group the chosen members of a suggestion; the ones left out are answered "not duplicate"."""
    chosen_ids = {c.id for c in chosen}
    left_out = {c.id for c in proposed} - chosen_ids
    group = group_contributions(chosen, actor)
    edges = _suggested_edges(consultation, chosen_ids | left_out)
    _decide([e for e in edges if e[0] in chosen_ids and e[1] in chosen_ids], True, actor)
    _decide([e for e in edges if e[0] in left_out or e[1] in left_out], False, actor)
    return group


# --------------------------------------------------------------------------- publication


def count_pending(consultation: Consultation) -> int:
    """Visible contributions of a consultation still without a disposition."""
    return db.session.scalar(
        select(func.count()).where(
            Contribution.consultation_id == consultation.id,
            Contribution.disposition == "pendiente",
            Contribution.moderation_state == "visible",
        )
    )


def disposition_counts(consultation: Consultation) -> dict[str, int]:
    """Contributions per disposition, in the order of the published list."""
    rows = dict(
        db.session.execute(
            select(Contribution.disposition, func.count())
            .where(Contribution.consultation_id == consultation.id)
            .group_by(Contribution.disposition)
        ).all()
    )
    return {slug: rows.get(slug, 0) for slug in DISPOSITIONS}


def publish_responses(consultation: Consultation, actor: User) -> None:
    """Make dispositions and responses public; only once the window has closed."""
    if consultation.state() != "closed":
        raise NotAllowed(
            "Las respuestas se publican cuando la consulta ha cerrado: todavía se reciben aportes."
        )
    if consultation.responses_published_at is not None:
        raise InvalidInput("Las respuestas de esta consulta ya están publicadas.")
    consultation.responses_published_at = clock.now()
    for draft_id in db.session.scalars(
        select(Draft.id).where(Draft.consultation_id == consultation.id)
    ):
        touch_thread(draft_id)
    db.session.flush()
    record_audit(
        actor,
        "consultation.publish_responses",
        consultation,
        {"responses_published_at": None},
        {
            "responses_published_at": consultation.responses_published_at.isoformat(),
            "pending": count_pending(consultation),
        },
    )


def public_responses(consultation: Consultation, page: int, per_page: int) -> tuple[list, int]:
    """One page of every contribution of a consultation (replies too), by draft then id."""
    where = Contribution.consultation_id == consultation.id
    total = db.session.scalar(select(func.count()).where(where))
    rows = db.session.scalars(
        select(Contribution)
        .options(joinedload(Contribution.author), joinedload(Contribution.draft))
        .where(where)
        .order_by(Contribution.draft_id, Contribution.id)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    ).all()
    return list(rows), total


# --------------------------------------------------------------------------- the audit log


@dataclass
class AuditFilter:
    actor_id: int | None = None
    action: str = ""
    target_type: str = ""
    target_id: int | None = None
    since: date | None = None
    until: date | None = None


def audit_entries(f: AuditFilter, page: int, per_page: int = 50) -> tuple[list[AuditEntry], int]:
    """One page of the audit log, newest first, and how many entries match."""
    where = []
    if f.actor_id:
        where.append(AuditEntry.actor_id == f.actor_id)
    if f.action:
        where.append(AuditEntry.action == f.action)
    if f.target_type:
        where.append(AuditEntry.target_type == f.target_type)
    if f.target_id:
        where.append(AuditEntry.target_id == f.target_id)
    if f.since:
        where.append(AuditEntry.at >= _lima_midnight(f.since))
    if f.until:
        where.append(AuditEntry.at < _lima_midnight(f.until + timedelta(days=1)))
    total = db.session.scalar(select(func.count()).select_from(AuditEntry).where(*where))
    rows = db.session.scalars(
        select(AuditEntry)
        .options(joinedload(AuditEntry.actor))
        .where(*where)
        .order_by(AuditEntry.id.desc())
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    ).all()
    return list(rows), total


def audit_actions() -> list[str]:
    """The actions present in the log, for the filter's list."""
    return list(
        db.session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
    )


def staff() -> list[User]:
    """Moderators and admins, for the audit log's filter."""
    return list(
        db.session.scalars(
            select(User).where(User.role.in_(("moderator", "admin"))).order_by(User.name)
        )
    )

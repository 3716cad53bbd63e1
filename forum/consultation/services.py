"""Consultation services: the window, contributions, threads, counts, imports."""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from forum import clock, text
from forum.accounts.models import User
from forum.consultation.models import (
    OGP_VALUES,
    Consultation,
    Contribution,
    Document,
    Draft,
    FaqEntry,
    Theme,
)
from forum.errors import EmailNotVerified, InvalidInput, NotAllowed
from forum.extensions import db

log = logging.getLogger(__name__)

SHOWN_LEVELS = 3  # replies deeper than this are attached to the deepest shown level


def current_consultation() -> Consultation | None:
    """The consultation the home page shows: the one that opened last."""
    return db.session.scalar(select(Consultation).order_by(Consultation.opens_at.desc()).limit(1))


def themes_with_drafts(consultation: Consultation) -> list[Theme]:
    """The consultation's themes in order, their drafts loaded in the same round trip."""
    return list(
        db.session.scalars(
            select(Theme)
            .options(selectinload(Theme.drafts))
            .where(Theme.consultation_id == consultation.id)
            .order_by(Theme.position)
        )
    )


def window_of(consultation: Consultation) -> dict:
    """The window as ISO 8601 instants, for the audit log."""
    return {
        "opens_at": consultation.opens_at.isoformat(),
        "closes_at": consultation.closes_at.isoformat(),
    }


def set_window(
    consultation: Consultation, opens_at: datetime, closes_at: datetime, actor: str
) -> None:
    """Set when the consultation opens and closes (aware instants)."""
    if closes_at <= opens_at:
        raise InvalidInput("El cierre debe ser posterior a la apertura.")
    log.info(
        "window of %s set by %s: %s -> %s",
        consultation.slug,
        actor,
        opens_at.isoformat(),
        closes_at.isoformat(),
    )
    consultation.opens_at = opens_at
    consultation.closes_at = closes_at
    db.session.flush()


def _check_body(body: str) -> str:
    body = text.normalise(body)
    limit = current_app.config["COMMENT_MAX_LENGTH"]
    if not body:
        raise InvalidInput("Escribe tu aporte antes de enviarlo: está vacío.")
    if len(body) > limit:
        raise InvalidInput(f"El aporte supera los {limit} caracteres ({len(body)}).")
    return body


def touch_thread(draft_id: int | None) -> None:
    """Mark a draft's threads as changed, so their cached rendering is not served again."""
    if draft_id is not None:
        db.session.execute(
            update(Draft)
            .where(Draft.id == draft_id)
            .values(thread_version=Draft.thread_version + 1)
        )


def find_by_idempotency_key(key: str | None) -> Contribution | None:
    if not key:
        return None
    return db.session.scalar(select(Contribution).where(Contribution.idempotency_key == key))


def add_comment(
    draft: Draft,
    author: User,
    body: str,
    parent: Contribution | None = None,
    idempotency_key: str | None = None,
) -> Contribution:
    """Post a forum comment (or a reply) while the consultation is open."""
    draft.consultation.require_open()
    if current_app.config["REQUIRE_EMAIL_VERIFICATION"] and author.email_verified_at is None:
        raise EmailNotVerified()
    if parent is not None and parent.draft_id != draft.id:
        raise InvalidInput("La respuesta no corresponde a este borrador.")
    existing = find_by_idempotency_key(idempotency_key)
    if existing is not None:
        return existing
    try:
        with db.session.begin_nested():
            return add_contribution(
                consultation=draft.consultation,
                draft=draft,
                theme=draft.theme,
                body=body,
                channel="web",
                author=author,
                parent=parent,
                received_at=clock.now(),
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        # The same form, resent while its first send was being stored: answer with that one.
        existing = find_by_idempotency_key(idempotency_key)
        if existing is None:
            raise
        return existing


def add_contribution(
    *,
    consultation: Consultation,
    body: str,
    channel: str,
    received_at: datetime,
    draft: Draft | None = None,
    theme: Theme | None = None,
    author: User | None = None,
    author_name: str = "",
    author_email: str = "",
    parent: Contribution | None = None,
    idempotency_key: str | None = None,
    forwarded_by: str = "",
) -> Contribution:
    """Store a contribution from any channel. Every channel goes through here."""
    body = _check_body(body)
    if theme is None and draft is not None:
        theme = draft.theme
    contribution = Contribution(
        consultation_id=consultation.id,
        draft_id=draft.id if draft else None,
        theme_id=theme.id if theme else None,
        parent_id=parent.id if parent else None,
        thread_root_id=(parent.thread_root_id or parent.id) if parent else None,
        depth=parent.depth + 1 if parent else 0,
        channel=channel,
        author=author,
        author_name=author_name,
        author_email=author_email.lower(),
        body=body,
        body_html=str(text.render(body)),
        received_at=received_at,
        is_late=received_at >= consultation.closes_at,
        idempotency_key=idempotency_key,
        forwarded_by=forwarded_by.lower(),
    )
    if author is None and author_email:
        _copy_sender_profile(contribution)
    db.session.add(contribution)
    touch_thread(contribution.draft_id)
    db.session.flush()
    log.info(
        "contribution %s added via %s by user %s",
        contribution.id,
        channel,
        author.id if author else "-",
    )
    return contribution


def _copy_sender_profile(contribution: Contribution) -> None:
    """A sender already described by a moderator keeps that description on new mail."""
    known = db.session.execute(
        select(
            Contribution.sender_organisation,
            Contribution.sender_organisation_type,
            Contribution.sender_region,
        )
        .where(
            Contribution.author_id.is_(None),
            Contribution.author_email == contribution.author_email,
            or_(
                Contribution.sender_organisation != "",
                Contribution.sender_organisation_type != "",
                Contribution.sender_region != "",
            ),
        )
        .order_by(Contribution.id.desc())
        .limit(1)
    ).first()
    if known:
        (
            contribution.sender_organisation,
            contribution.sender_organisation_type,
            contribution.sender_region,
        ) = known


def link_email_contributions(user: User) -> int:
    """Give a verified account the e-mail contributions sent from its address."""
    result = db.session.execute(
        update(Contribution)
        .where(
            Contribution.author_id.is_(None), func.lower(Contribution.author_email) == user.email
        )
        .values(author_id=user.id)
    )
    return result.rowcount


def can_edit(contribution: Contribution, user: User) -> bool:
    """Authors may edit their own web comment for a short time while the window is open."""
    if not user.is_authenticated or contribution.author_id != user.id:
        return False
    if contribution.channel != "web" or contribution.is_hidden:
        return False
    minutes = current_app.config["COMMENT_EDIT_MINUTES"]
    return clock.now() < contribution.received_at + timedelta(minutes=minutes)


def edit_comment(contribution: Contribution, user: User, body: str) -> None:
    """Change one's own comment; the edit is shown with its time."""
    contribution.draft.consultation.require_open()
    if not can_edit(contribution, user):
        raise NotAllowed(
            "Solo puedes editar tus propios aportes durante los "
            f"{current_app.config['COMMENT_EDIT_MINUTES']} minutos siguientes a su envío."
        )
    contribution.body = _check_body(body)
    contribution.body_html = str(text.render(contribution.body))
    contribution.edited_at = clock.now()
    touch_thread(contribution.draft_id)
    db.session.flush()
    log.info("contribution %s edited by user %s", contribution.id, user.id)


@dataclass
class ThreadNode:
    contribution: Contribution
    children: list["ThreadNode"] = field(default_factory=list)
    replying_to: Contribution | None = None  # set when a deep reply is shown out of place


@dataclass
class ThreadPage:
    threads: list[ThreadNode]
    page: int
    pages: int
    thread_count: int
    contribution_count: int


def thread_page(draft: Draft, page: int, per_page: int) -> ThreadPage:
    """One page of top-level threads with every reply, in a fixed number of queries."""
    on_draft = Contribution.draft_id == draft.id
    thread_count = db.session.scalar(
        select(func.count()).where(on_draft, Contribution.parent_id.is_(None))
    )
    contribution_count = db.session.scalar(select(func.count()).where(on_draft))
    pages = max(1, -(-thread_count // per_page))
    page = min(max(page, 1), pages)
    root_ids = db.session.scalars(
        select(Contribution.id)
        .where(on_draft, Contribution.parent_id.is_(None))
        .order_by(Contribution.id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    rows = []
    if root_ids:
        rows = db.session.scalars(
            select(Contribution)
            .options(joinedload(Contribution.author))
            .where(
                on_draft,
                or_(Contribution.id.in_(root_ids), Contribution.thread_root_id.in_(root_ids)),
            )
            .order_by(Contribution.id)
        ).all()
    return ThreadPage(
        threads=_build_tree(rows),
        page=page,
        pages=pages,
        thread_count=thread_count,
        contribution_count=contribution_count,
    )


def _build_tree(rows: list[Contribution]) -> list[ThreadNode]:
    """Nest replies under their parents; past SHOWN_LEVELS, under the deepest shown ancestor."""
    nodes = {row.id: ThreadNode(row) for row in rows}
    roots = []
    for row in rows:  # ordered by id, so every parent comes before its replies
        node = nodes[row.id]
        if row.parent_id is None or row.parent_id not in nodes:
            roots.append(node)
            continue
        anchor = nodes[row.parent_id]
        while anchor.contribution.depth >= SHOWN_LEVELS:
            anchor = nodes[anchor.contribution.parent_id]
        if row.depth > SHOWN_LEVELS - 1:
            node.replying_to = nodes[row.parent_id].contribution
        anchor.children.append(node)
    return roots


def contribution_counts_by_draft(consultation: Consultation) -> dict[int, int]:
    """Contributions per draft, in one query."""
    rows = db.session.execute(
        select(Contribution.draft_id, func.count())
        .where(Contribution.consultation_id == consultation.id, Contribution.draft_id.is_not(None))
        .group_by(Contribution.draft_id)
    )
    return dict(rows.all())


def contribution_counts_by_theme(consultation: Consultation) -> dict[int, int]:
    """Contributions per theme, in one query."""
    rows = db.session.execute(
        select(Contribution.theme_id, func.count())
        .where(Contribution.consultation_id == consultation.id, Contribution.theme_id.is_not(None))
        .group_by(Contribution.theme_id)
    )
    return dict(rows.all())


def import_consultation(data: dict, actor: str) -> Consultation:
    """Create or update a consultation, its themes, drafts, library and FAQ from a dict.

    Matching is by slug (consultation, theme, document) and code (draft), so loading the
    same file twice changes nothing; contributions are never touched.
    """
    info = data["consultation"]
    consultation = db.session.scalar(select(Consultation).where(Consultation.slug == info["slug"]))
    if consultation is None:
        now = clock.now()
        consultation = Consultation(
            slug=info["slug"], opens_at=now, closes_at=now + timedelta(days=14)
        )
        db.session.add(consultation)
    contact = info.get("contact") or {}
    consultation.title = info["title"]
    consultation.summary = info.get("summary", "")
    consultation.description = info.get("description", "")
    consultation.contact_institution = contact.get("institution", "")
    consultation.contact_email = contact.get("email", "")
    consultation.contact_address = contact.get("address", "")
    consultation.contact_hours = contact.get("hours", "")
    if info.get("opens_at") and info.get("closes_at"):
        consultation.opens_at = clock.parse_lima(str(info["opens_at"]))
        consultation.closes_at = clock.parse_lima(str(info["closes_at"]))
    db.session.flush()
    import_themes(consultation, data.get("themes") or [])

    for position, doc in enumerate(data.get("documents") or []):
        document = _upsert(Document, consultation_id=consultation.id, slug=doc["slug"])
        document.title = doc["title"]
        document.kind = doc.get("kind", "")
        document.summary = doc.get("summary", "")
        published = doc.get("published")
        document.published_on = date.fromisoformat(str(published)) if published else None
        document.is_under_consultation = bool(doc.get("under_consultation"))
        document.position = position

    if data.get("faq"):
        db.session.execute(
            FaqEntry.__table__.delete().where(FaqEntry.consultation_id == consultation.id)
        )
        for position, entry in enumerate(data["faq"]):
            db.session.add(
                FaqEntry(
                    consultation_id=consultation.id,
                    question=entry["question"],
                    answer=entry["answer"],
                    position=position,
                )
            )
    db.session.flush()
    log.info("consultation %s imported by %s", consultation.slug, actor)
    return consultation


def count_themes_and_drafts(consultation: Consultation) -> tuple[int, int]:
    themes = db.session.scalar(select(func.count()).where(Theme.consultation_id == consultation.id))
    drafts = db.session.scalar(select(func.count()).where(Draft.consultation_id == consultation.id))
    return themes, drafts


def import_themes(consultation: Consultation, themes: list[dict]) -> None:
    """Create or update themes and their drafts (matched by slug and code), in file order."""
    for position, theme_data in enumerate(themes):
        theme = _upsert(Theme, consultation_id=consultation.id, slug=theme_data["slug"])
        theme.name = theme_data["name"]
        theme.description = theme_data.get("description", "")
        theme.position = position
        db.session.flush()
        for draft_position, draft_data in enumerate(theme_data.get("drafts") or []):
            draft = _upsert(Draft, consultation_id=consultation.id, code=draft_data["code"])
            draft.theme_id = theme.id
            draft.position = draft_position
            _fill_draft(draft, draft_data)
    db.session.flush()


def _upsert(model, **keys):
    row = db.session.scalar(select(model).filter_by(**keys))
    if row is None:
        row = model(**keys)
        db.session.add(row)
    return row


def _fill_draft(draft: Draft, data: dict) -> None:
    products = data.get("products") or []
    if isinstance(products, str):
        products = [products]
    values = data.get("ogp_values") or []
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",")]
    unknown = [v for v in values if v and v not in OGP_VALUES]
    if unknown:
        raise InvalidInput(
            f"{data['code']}: valores de gobierno abierto desconocidos: {', '.join(unknown)}. "
            f"Valores válidos: {', '.join(OGP_VALUES)}."
        )
    draft.title = data["title"]
    draft.problem = (data.get("problem") or "").strip()
    draft.commitment = (data.get("commitment") or "").strip()
    draft.products = "\n".join(p.strip() for p in products if p and p.strip())
    draft.responsible_institution = data.get("responsible_institution") or ""
    draft.resources = (data.get("resources") or "").strip()
    draft.deadline = str(data.get("deadline") or "")
    draft.contact = data.get("contact") or ""
    draft.ogp_values = ", ".join(v for v in values if v)
    draft.origin = data.get("origin") or ""
    draft.is_illustrative = bool(data.get("is_illustrative"))


def assign_draft(
    contribution: Contribution, theme: Theme | None, draft: Draft | None, actor: User
) -> None:
    """Triage: put a contribution under a theme and, when known, a draft of its consultation."""
    if draft is not None:
        theme = draft.theme
    for target in (theme, draft):
        if target is not None and target.consultation_id != contribution.consultation_id:
            raise InvalidInput("El tema o borrador no pertenece a la consulta de este aporte.")
    previous = contribution.draft_id
    contribution.theme_id = theme.id if theme else None
    contribution.draft_id = draft.id if draft else None
    touch_thread(previous)
    touch_thread(contribution.draft_id)
    db.session.flush()
    log.info(
        "contribution %s assigned to theme %s draft %s by user %s",
        contribution.id,
        contribution.theme_id,
        contribution.draft_id,
        actor.id,
    )

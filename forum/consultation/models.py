"""A consultation, its themes and draft commitments, its library, and the contributions."""

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from forum import clock
from forum.accounts.models import User
from forum.dbtypes import UTCDateTime
from forum.errors import ConsultationNotOpen
from forum.extensions import db
from forum.text import search_texts

OGP_VALUES = (
    "Transparencia",
    "Participación ciudadana",
    "Rendición de cuentas",
    "Tecnología e innovación",
)

CHANNELS = {"web": "Foro virtual", "email": "Correo electrónico"}
# What the moderation queue's free text searches, folded into Contribution.search_text.
SEARCHED_FIELDS = ("body", "synthesis", "author_name")


class Consultation(db.Model):
    __tablename__ = "consultations"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    contact_institution: Mapped[str] = mapped_column(String(200), default="")
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    contact_address: Mapped[str] = mapped_column(String(200), default="")
    contact_hours: Mapped[str] = mapped_column(String(200), default="")
    # Set by an admin after the window closes: dispositions and responses become public.
    responses_published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    themes: Mapped[list["Theme"]] = relationship(
        back_populates="consultation", order_by="Theme.position"
    )
    documents: Mapped[list["Document"]] = relationship(order_by="Document.position")
    faq: Mapped[list["FaqEntry"]] = relationship(order_by="FaqEntry.position")

    def state(self, now: datetime | None = None) -> str:
        """'upcoming', 'open' or 'closed' at the given instant (default: now)."""
        now = now or clock.now()
        if now < self.opens_at:
            return "upcoming"
        if now >= self.closes_at:
            return "closed"
        return "open"

    def is_open(self, now: datetime | None = None) -> bool:
        return self.state(now) == "open"

    def require_open(self) -> None:
        """Raise ConsultationNotOpen, with the reason, unless contributions are accepted now."""
        state = self.state()
        if state == "upcoming":
            opens = clock.to_lima(self.opens_at).strftime("%d/%m/%Y a las %H:%M")
            raise ConsultationNotOpen(
                f"La consulta aún no ha comenzado: se abre el {opens} (hora de Lima)."
            )
        if state == "closed":
            closes = clock.to_lima(self.closes_at).strftime("%d/%m/%Y a las %H:%M")
            raise ConsultationNotOpen(
                f"La consulta cerró el {closes} (hora de Lima): ya no se reciben aportes. "
                "Todo lo publicado sigue disponible para lectura."
            )


class Theme(db.Model):
    __tablename__ = "themes"
    __table_args__ = (UniqueConstraint("consultation_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    slug: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    visit_count: Mapped[int] = mapped_column(Integer, default=0)

    consultation: Mapped[Consultation] = relationship(back_populates="themes")
    drafts: Mapped[list["Draft"]] = relationship(back_populates="theme", order_by="Draft.position")


class Draft(db.Model):
    """A draft commitment, with the columns of the commitment sheet the seeds use."""

    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("consultation_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("themes.id"), index=True)
    code: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(300))
    problem: Mapped[str] = mapped_column(Text, default="")
    commitment: Mapped[str] = mapped_column(Text, default="")
    products: Mapped[str] = mapped_column(Text, default="")  # one product or activity per line
    responsible_institution: Mapped[str] = mapped_column(String(200), default="")
    resources: Mapped[str] = mapped_column(Text, default="")
    deadline: Mapped[str] = mapped_column(String(200), default="")
    contact: Mapped[str] = mapped_column(String(300), default="")
    ogp_values: Mapped[str] = mapped_column(String(300), default="")  # comma-separated OGP_VALUES
    origin: Mapped[str] = mapped_column(String(200), default="")
    is_illustrative: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)
    visit_count: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped whenever a contribution on this draft changes: the key of the thread cache.
    thread_version: Mapped[int] = mapped_column(Integer, default=0)

    theme: Mapped[Theme] = relationship(back_populates="drafts")
    consultation: Mapped[Consultation] = relationship()

    @property
    def product_list(self) -> list[str]:
        return [line for line in self.products.splitlines() if line.strip()]

    @property
    def ogp_value_list(self) -> list[str]:
        return [value.strip() for value in self.ogp_values.split(",") if value.strip()]


class Document(db.Model):
    """A document of the library ("Biblioteca"), some of them under consultation too."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("consultation_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    slug: Mapped[str] = mapped_column(String(120))
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(80), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    published_on: Mapped[date | None] = mapped_column(Date)
    is_under_consultation: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)


class FaqEntry(db.Model):
    __tablename__ = "faq_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    question: Mapped[str] = mapped_column(String(300))
    answer: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Contribution(db.Model):
    """One contribution ("aporte"), whatever its channel: forum comment or e-mail."""

    __tablename__ = "contributions"
    __table_args__ = (
        Index("ix_contributions_draft_thread", "draft_id", "thread_root_id", "id"),
        Index("ix_contributions_consultation_received", "consultation_id", "received_at"),
        Index("ix_contributions_author_email", "author_email"),  # a sender's other mail
        # The free-text filter's index on PostgreSQL; SQLite has an FTS5 table instead,
        # which the models do not describe (see migration 0008_queue_text_search).
        Index(
            "ix_contributions_search_text_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"))
    theme_id: Mapped[int | None] = mapped_column(ForeignKey("themes.id"), index=True)
    draft_id: Mapped[int | None] = mapped_column(ForeignKey("drafts.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("contributions.id"), index=True)
    thread_root_id: Mapped[int | None] = mapped_column(ForeignKey("contributions.id"))
    depth: Mapped[int] = mapped_column(Integer, default=0)
    channel: Mapped[str] = mapped_column(String(20), default="web")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # For contributors without an account (e-mail): their name and address as received.
    author_name: Mapped[str] = mapped_column(String(200), default="")
    author_email: Mapped[str] = mapped_column(String(254), default="")
    # What a moderator recorded of such a sender (from the signature): for the participation
    # tables and the queue's filters; an account's own profile takes precedence.
    sender_organisation: Mapped[str] = mapped_column(String(200), default="")
    sender_organisation_type: Mapped[str] = mapped_column(String(40), default="")
    sender_region: Mapped[str] = mapped_column(String(40), default="")
    body: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    is_late: Mapped[bool] = mapped_column(Boolean, default=False)
    moderation_state: Mapped[str] = mapped_column(String(20), default="visible")
    hidden_reason: Mapped[str] = mapped_column(String(80), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    # E-mail forwarded by staff: the staff member's address (the author is the citizen).
    forwarded_by: Mapped[str] = mapped_column(String(254), default="")
    # Moderation and systematisation (forum.moderation): the same row, so one table to read.
    hidden_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hidden_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    moderator_note: Mapped[str] = mapped_column(Text, default="")
    synthesis: Mapped[str] = mapped_column(Text, default="")
    disposition: Mapped[str] = mapped_column(String(30), default="pendiente", index=True)
    response: Mapped[str] = mapped_column(Text, default="")
    group_id: Mapped[int | None] = mapped_column(ForeignKey("contribution_groups.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # SEARCHED_FIELDS folded (forum.text.search_texts), kept up to date by the listener
    # below; indexed by trigrams (migration 0008). Never shown, so not loaded with the row.
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="", deferred=True)

    __mapper_args__ = {"version_id_col": version}

    author: Mapped[User | None] = relationship(foreign_keys=[author_id])
    draft: Mapped[Draft | None] = relationship()
    theme: Mapped[Theme | None] = relationship()
    parent: Mapped["Contribution | None"] = relationship(
        remote_side="Contribution.id", foreign_keys=[parent_id]
    )

    @property
    def is_hidden(self) -> bool:
        return self.moderation_state == "hidden"

    @property
    def public_author(self) -> str:
        """The name the public sees; contributors without an account stay pseudonymous."""
        if self.author is not None:
            return self.author.public_name
        return f"Participante (aporte {self.id})"

    @property
    def channel_label(self) -> str:
        return CHANNELS.get(self.channel, self.channel)


@event.listens_for(Contribution, "before_insert")
@event.listens_for(Contribution, "before_update")
def _fill_search_text(mapper, connection, contribution: Contribution) -> None:
    """Refold `search_text` whenever a searched field is written, whoever writes it."""
    state = inspect(contribution)
    if state.persistent and not any(
        state.attrs[name].history.has_changes() for name in SEARCHED_FIELDS
    ):
        return
    fields = [getattr(contribution, name) or "" for name in SEARCHED_FIELDS]
    contribution.search_text = search_texts([fields])[0]

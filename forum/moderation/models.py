"""What moderators add to contributions: tags, groups, reports, decisions, the audit log.

The per-contribution fields (disposition, synthesis, response, moderation state) live on
`Contribution` itself, so the queue and the exports read one table.
"""

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from forum import clock
from forum.accounts.models import User
from forum.consultation.models import Contribution
from forum.dbtypes import UTCDateTime
from forum.extensions import db

# Published list of reasons to hide a contribution (slug -> label shown to the public).
HIDE_REASONS = {
    "insulto": "Insultos o lenguaje ofensivo",
    "datos-personales": "Contiene datos personales",
    "spam": "Publicidad o spam",
    "fuera-de-tema": "Fuera de tema",
    "suplantacion": "Suplantación de identidad",
    "contenido-ilegal": "Contenido ilegal o que incita a la violencia",
}

DISPOSITIONS = {
    "pendiente": "Pendiente",
    "incorporado": "Incorporado",
    "incorporado-parcialmente": "Incorporado parcialmente",
    "no-incorporado": "No incorporado",
    "fuera-de-competencia": "Fuera de competencia",
    "derivado": "Derivado a la entidad responsable",
}

TAG_KINDS = {"ogp": "Valor de gobierno abierto", "smart": "Criterio SMART", "otro": "Otro"}

contribution_tags = db.Table(
    "contribution_tags",
    db.Column("contribution_id", ForeignKey("contributions.id"), primary_key=True),
    db.Column("tag_id", ForeignKey("tags.id"), primary_key=True, index=True),
)


class Tag(db.Model):
    """A term of the controlled vocabulary that admins manage."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20), default="otro")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class ContributionGroup(db.Model):
    """An "aporte sistematizado": near-identical contributions under one synthesis and response."""

    __tablename__ = "contribution_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"), index=True)
    title: Mapped[str] = mapped_column(String(300), default="")
    synthesis: Mapped[str] = mapped_column(Text, default="")
    disposition: Mapped[str] = mapped_column(String(30), default="pendiente")
    response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class Report(db.Model):
    """A citizen's report of a contribution; one per person and contribution."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("contribution_id", "reporter_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contribution_id: Mapped[int] = mapped_column(ForeignKey("contributions.id"), index=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    reporter: Mapped[User] = relationship(foreign_keys=[reporter_id])


class DuplicateDecision(db.Model):
    """A moderator's answer to a near-duplicate suggestion, so it is not proposed again."""

    __tablename__ = "duplicate_decisions"
    __table_args__ = (UniqueConstraint("first_id", "second_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    first_id: Mapped[int] = mapped_column(ForeignKey("contributions.id"))  # the smaller id
    second_id: Mapped[int] = mapped_column(ForeignKey("contributions.id"), index=True)
    is_duplicate: Mapped[bool] = mapped_column(Boolean)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class ContributionSignature(db.Model):
    """What near-duplicate suggestions need of one version of a contribution's text.

    Computed lazily for the contributions that lack an up-to-date one; it is up to date while
    `body_edited_at` equals the contribution's `edited_at` (editing a body sets it). Changing
    the normalisation or the MinHash parameters in `duplicates` means emptying this table.
    """

    __tablename__ = "contribution_signatures"

    contribution_id: Mapped[int] = mapped_column(ForeignKey("contributions.id"), primary_key=True)
    body_edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # `duplicates.text_hash` of the normalised text, and NUM_PERM little-endian uint32;
    # both None when the text has no words to compare.
    text_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)


class AuditEntry(db.Model):
    """One moderation or admin action: who, when, what, before and after. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[str] = mapped_column(Text, default="")  # JSON
    after: Mapped[str] = mapped_column(Text, default="")  # JSON

    actor: Mapped[User | None] = relationship()


# Indexes for the moderation queue: each common filter, then the queue's order (newest first).
# They live here, next to the queue that needs them; the tables belong to other domains.
QUEUE_INDEXES = (
    Index("ix_contributions_received_id", Contribution.received_at, Contribution.id),
    Index(
        "ix_contributions_state_received",
        Contribution.moderation_state,
        Contribution.received_at,
        Contribution.id,
    ),
    Index(
        "ix_contributions_channel_received",
        Contribution.channel,
        Contribution.received_at,
        Contribution.id,
    ),
    Index(
        "ix_contributions_late_received",
        Contribution.is_late,
        Contribution.received_at,
        Contribution.id,
    ),
    Index(
        "ix_contributions_disposition_received",
        Contribution.disposition,
        Contribution.received_at,
        Contribution.id,
    ),
    Index(
        "ix_contributions_theme_received",
        Contribution.theme_id,
        Contribution.received_at,
        Contribution.id,
    ),
    Index(
        "ix_contributions_draft_received",
        Contribution.draft_id,
        Contribution.received_at,
        Contribution.id,
    ),
    Index("ix_users_organisation_type", User.organisation_type),
    Index("ix_users_region", User.region),
)

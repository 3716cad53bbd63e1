"""Every message read from the inbox, kept raw, and what became of it; its attachments."""

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from forum import clock
from forum.accounts.models import User
from forum.consultation.models import Contribution, Theme
from forum.dbtypes import UTCDateTime
from forum.extensions import db

STATUSES = {
    "pending": "Guardado, sin procesar",
    "contribution": "Aporte",
    "quarantined": "En cuarentena",
    "error": "Error",
    "duplicate": "Duplicado probable",
    "released": "Liberado a mano",
}
REASONS = {
    "auto-reply": "Respuesta automática o envío masivo",
    "bounce": "Aviso de no entrega",
    "own-system": "Enviado por Aporta",
    "malformed": "Mensaje mal formado o sin texto",
    "too-large": "Mensaje demasiado grande",
    "no-consultation": "No hay consulta a la que asignarlo",
    "internal": "Falla interna al procesarlo",
}


class InboundMessage(db.Model):
    """One message as received (raw bytes and SHA-256), stored before it is parsed."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(20))  # imap, file, upload
    source_ref: Mapped[str] = mapped_column(String(500), default="")  # folder or file path
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    raw: Mapped[bytes] = deferred(mapped_column(LargeBinary, nullable=False))
    size: Mapped[int] = mapped_column(Integer)
    # Over the size limit only the header section is kept; the server keeps the message.
    is_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # server's INTERNALDATE
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    reason: Mapped[str] = mapped_column(String(40), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_email: Mapped[str] = mapped_column(String(254), default="")
    subject: Mapped[str] = mapped_column(String(500), default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    forwarded_by: Mapped[str] = mapped_column(String(254), default="")
    contribution_id: Mapped[int | None] = mapped_column(ForeignKey("contributions.id"), index=True)
    suggested_theme_id: Mapped[int | None] = mapped_column(ForeignKey("themes.id"))
    ack_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    contribution: Mapped[Contribution | None] = relationship()
    suggested_theme: Mapped[Theme | None] = relationship()
    released_by: Mapped[User | None] = relationship()
    attachments: Mapped[list["InboundAttachment"]] = relationship(
        back_populates="message", order_by="InboundAttachment.position"
    )

    @property
    def status_label(self) -> str:
        return STATUSES.get(self.status, self.status)

    @property
    def reason_label(self) -> str:
        return REASONS.get(self.reason, self.reason)

    @property
    def is_releasable(self) -> bool:
        return self.status in ("quarantined", "error", "duplicate")


class InboundAttachment(db.Model):
    """A file attached to a message: kept when its type and size are allowed, else only listed."""

    __tablename__ = "inbound_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    is_allowed: Mapped[bool] = mapped_column(Boolean)
    refused_reason: Mapped[str] = mapped_column(String(20), default="")
    data: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))

    message: Mapped[InboundMessage] = relationship(back_populates="attachments")

    @property
    def refused_label(self) -> str:
        return {"tipo": "tipo de archivo no permitido", "tamaño": "supera el tamaño máximo"}.get(
            self.refused_reason, ""
        )

"""Export jobs: files too large to build while the browser waits, prepared in the background.

A job records who asked for which file (kind, audience, filters), how far it got and, once
ready, the file's size and SHA-256. The file itself lives in the export folder under the
job's token; the row is kept after the file expires, as a record of what was exported.
"""

from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from forum import clock
from forum.dbtypes import UTCDateTime
from forum.extensions import db

# What a job builds: the contributions workbook, the public data package, an institution's pack.
JOB_KINDS = {
    "xlsx": "Excel (XLSX)",
    "zip": "Paquete de datos abiertos (ZIP)",
    "pack": "Paquete XLSX de la entidad",
}
JOB_STATUSES = {
    "pending": "En cola",
    "running": "En preparación",
    "ready": "Listo para descargar",
    "failed": "Falló",
    "interrupted": "Interrumpido",
    "expired": "Caducado",
}


class ExportJob(db.Model):
    __tablename__ = "export_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(43), unique=True)  # in URLs: not guessable
    kind: Mapped[str] = mapped_column(String(10))
    audience: Mapped[str] = mapped_column(String(20))
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"))
    filters: Mapped[str] = mapped_column(Text, default="{}")  # JSON of the form's filter values
    institution: Mapped[str] = mapped_column(String(200), default="")  # slug, for a pack
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    file_name: Mapped[str] = mapped_column(String(200))
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    file_sha256: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def status_label(self) -> str:
        return JOB_STATUSES[self.status]

    @property
    def kind_label(self) -> str:
        return JOB_KINDS[self.kind]

    @property
    def is_active(self) -> bool:
        return self.status in ("pending", "running")

    @property
    def percent(self) -> int:
        if self.status == "ready":
            return 100
        return min(99, 100 * self.rows_done // self.rows_total) if self.rows_total else 0

    def is_stale(self, now: datetime, after: timedelta) -> bool:
        """Active, but no sign of life for `after`: its process died (restart, crash)."""
        last = self.heartbeat_at or self.created_at
        return self.is_active and now - last > after

    def expires_at(self, keep: timedelta) -> datetime | None:
        return self.finished_at + keep if self.status == "ready" and self.finished_at else None

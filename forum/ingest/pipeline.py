"""The edge of a batch ingest: store and commit, process and commit, acknowledge, move.

A crash at any step loses nothing: the raw message is committed before it is parsed, and
the IMAP message is moved only after its result is committed. Running again over the
same mailbox or files finds the stored bytes (SHA-256) and creates nothing twice.
"""

import imaplib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select

from forum.consultation.models import Consultation
from forum.errors import InvalidInput
from forum.extensions import db
from forum.ingest import services
from forum.ingest.models import InboundMessage
from forum.ingest.parse import ParseOptions
from forum.ingest.routing import Catalogue
from forum.ingest.sources import ImapMailbox, RawItem, SourceError

log = logging.getLogger(__name__)

DONE = ("contribution", "quarantined", "error", "duplicate", "released")


@dataclass
class Totals:
    """What one run did. received = contributions + quarantined + errors + duplicates."""

    received: int = 0
    contributions: int = 0
    quarantined: int = 0
    errors: int = 0
    duplicates: int = 0
    resumed: int = 0  # committed by an earlier, interrupted run; only moved now
    acknowledged: int = 0

    def count(self, status: str) -> None:
        self.received += 1
        if status == "contribution":
            self.contributions += 1
        elif status == "quarantined":
            self.quarantined += 1
        elif status == "error":
            self.errors += 1
        else:
            self.duplicates += 1

    def line(self) -> str:
        text = (
            f"Recibidos: {self.received}; aportes: {self.contributions}; "
            f"en cuarentena: {self.quarantined}; errores: {self.errors}; "
            f"duplicados omitidos: {self.duplicates}"
        )
        if self.resumed:
            text += f"; ya guardados en una ejecución anterior: {self.resumed}"
        if self.acknowledged:
            text += f"; acuses enviados: {self.acknowledged}"
        return text + "."


class Run:
    """One ingest run over any source, with the consultation and settings it writes to."""

    def __init__(self, consultation_slug: str = "", ack: bool | None = None):
        self.settings = services.settings()
        self.options: ParseOptions = services.parse_options(self.settings)
        self.ack = self.settings.ack if ack is None else ack
        self.totals = Totals()
        self.consultation_id: int | None = None
        try:
            self.consultation_id = services.target_consultation(consultation_slug).id
        except InvalidInput:
            if consultation_slug:
                raise
        self._catalogue: Catalogue | None = None

    def ingest(self, item: RawItem) -> str:
        """Store, commit, process, commit, acknowledge one message; returns its status."""
        message, created = services.store_raw(
            item.raw,
            source=item.source,
            source_ref=item.source_ref,
            received_at=item.received_at,
            uidvalidity=item.uidvalidity,
            uid=item.uid,
            size=item.size,
        )
        if not created and message.status in DONE:
            status = message.status
            same_place = item.uid is not None and (message.uidvalidity, message.uid) == (
                item.uidvalidity,
                item.uid,
            )
            if same_place:
                self.totals.resumed += 1
            else:
                self.totals.count("duplicate")
                status = "duplicate" if status != "error" else status
            db.session.rollback()
            return status
        db.session.commit()
        message_id = message.id
        try:
            status = services.process_message(
                message, self._consultation(), self.options, self._routes()
            )
            db.session.commit()
        except Exception as error:  # noqa: BLE001 - one bad message must not stop the batch
            db.session.rollback()
            log.exception("message %s could not be processed", message_id)
            message = db.session.get(InboundMessage, message_id)
            services.mark_failed(message, error)
            db.session.commit()
            status = "error"
        self.totals.count(status)
        if status == "contribution" and self.ack:
            self._acknowledge(message)
        return status

    def _acknowledge(self, message: InboundMessage) -> None:
        try:
            if services.send_acknowledgement(message):
                db.session.commit()
                self.totals.acknowledged += 1
        except Exception:  # noqa: BLE001 - the contribution is safe; the ack is retried by hand
            db.session.rollback()
            log.exception("acknowledgement for message %s failed", message.id)

    def _consultation(self) -> Consultation | None:
        if self.consultation_id is None:
            return None
        return db.session.get(Consultation, self.consultation_id)

    def _routes(self) -> Catalogue | None:
        consultation = self._consultation()
        if consultation is None:
            return None
        if self._catalogue is None:
            self._catalogue = services.catalogue(consultation)
        return self._catalogue

    def ingest_items(
        self, items: Iterable[RawItem], progress: Callable[[int], None] | None = None
    ) -> Totals:
        """Every item in turn (files, uploads)."""
        for item in items:
            self.ingest(item)
            if progress:
                progress(1)
        return self.totals

    def ingest_imap(
        self,
        progress: Callable[[int], None] | None = None,
        on_total: Callable[[int], None] | None = None,
        after_commit: Callable[[RawItem], None] | None = None,
    ) -> Totals:
        """Read the IMAP folder in batches; move (or flag) each batch once it is committed."""
        try:
            self._read_imap(progress, on_total, after_commit)
        except (OSError, imaplib.IMAP4.error) as error:
            db.session.rollback()
            raise SourceError(f"se perdió la conexión con el servidor IMAP ({error})") from error
        return self.totals

    def _read_imap(self, progress, on_total, after_commit) -> None:
        with ImapMailbox(self.settings) as box:
            uids = box.pending_uids()
            if on_total:
                on_total(len(uids))
            size = max(1, self.settings.batch_size)
            for start in range(0, len(uids), size):
                results = []
                for item in box.fetch(uids[start : start + size]):
                    results.append((item.uid, self.ingest(item)))
                    if after_commit:
                        after_commit(item)
                    if progress:
                        progress(1)
                box.finish(results)


def stored_count() -> dict[str, int]:
    """Stored messages per status (for reconciling totals)."""
    rows = db.session.execute(
        select(InboundMessage.status, db.func.count()).group_by(InboundMessage.status)
    )
    return dict(rows.all())

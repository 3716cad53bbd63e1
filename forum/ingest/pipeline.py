"""The edge of a batch ingest: store and commit, process and commit, acknowledge, move.

A crash at any step loses nothing: the raw message is committed before it is parsed, and
the IMAP message is moved only after its result is committed. Running again over the
same mailbox or files finds the stored bytes (SHA-256) and creates nothing twice.
"""

import imaplib
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from forum.consultation.models import Consultation
from forum.errors import InvalidInput
from forum.extensions import db
from forum.ingest import services
from forum.ingest.models import InboundMessage
from forum.ingest.parse import ParseOptions, sha256
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
        self._targets: services.Targets | None = None

    def ingest(self, item: RawItem) -> str:
        """Store, commit, process, commit, acknowledge one message; returns its status."""
        return self.ingest_batch([item])[0]

    def ingest_batch(
        self,
        items: list[RawItem],
        after_commit: Callable[[RawItem], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[str]:
        """Each item in turn, after one look-up of the batch's SHA-256s; their statuses."""
        with _kept_after_commit():
            digests = [sha256(item.raw) for item in items]
            stored = services.find_stored_many(digests)
            statuses = []
            for item, digest in zip(items, digests, strict=True):
                statuses.append(self._ingest(item, digest, stored))
                if after_commit:
                    after_commit(item)
                if progress:
                    progress(1)
            db.session.commit()  # ends the look-up's transaction when nothing was new
        return statuses

    def _ingest(self, item: RawItem, digest: str, stored: dict[str, InboundMessage]) -> str:
        message = stored.get(digest)
        if message is None:
            message = stored[digest] = self._store(item, digest)  # again in this batch: duplicate
        if message.status in DONE:
            return self._seen_before(item, message)
        status = self._process(message)
        self.totals.count(status)
        if status == "contribution" and self.ack:
            self._acknowledge(message)
        return status

    def _store(self, item: RawItem, digest: str) -> InboundMessage:
        """The raw bytes, committed before anything is parsed."""
        try:
            message, _ = services.store_raw(
                item.raw,
                source=item.source,
                source_ref=item.source_ref,
                received_at=item.received_at,
                uidvalidity=item.uidvalidity,
                uid=item.uid,
                size=item.size,
                digest=digest,
                is_new=True,
            )
            db.session.commit()
        except IntegrityError:  # a concurrent ingest stored the same bytes a moment ago
            db.session.rollback()
            message = services.find_stored(digest)
        return message

    def _seen_before(self, item: RawItem, message: InboundMessage) -> str:
        """Already stored and processed: by an interrupted run (just move it) or a duplicate."""
        same_place = item.uid is not None and (message.uidvalidity, message.uid) == (
            item.uidvalidity,
            item.uid,
        )
        if same_place:
            self.totals.resumed += 1
            return message.status
        self.totals.count("duplicate")
        return "duplicate" if message.status != "error" else "error"

    def _process(self, message: InboundMessage) -> str:
        """Parse and route a stored message and commit its result; a failure is recorded."""
        message_id = message.id
        try:
            try:
                status = services.process_message(message, self._load_targets(), self.options)
            except IntegrityError:  # a concurrent ingest added the same contribution first
                db.session.rollback()
                status = services.process_message(message, self._load_targets(), self.options)
            db.session.commit()
        except Exception as error:  # noqa: BLE001 - one bad message must not stop the batch
            db.session.rollback()
            log.exception("message %s could not be processed", message_id)
            message = db.session.get(InboundMessage, message_id)
            services.mark_failed(message, error)
            db.session.commit()
            status = "error"
        return status

    def _acknowledge(self, message: InboundMessage) -> None:
        try:
            if services.send_acknowledgement(message):
                db.session.commit()
                self.totals.acknowledged += 1
        except Exception:  # noqa: BLE001 - the contribution is safe; the ack is retried by hand
            db.session.rollback()
            log.exception("acknowledgement for message %s failed", message.id)

    def _load_targets(self) -> services.Targets | None:
        if self.consultation_id is None:
            return None
        if self._targets is None:
            consultation = db.session.get(Consultation, self.consultation_id)
            self._targets = services.load_targets(consultation)
        return self._targets

    def ingest_items(
        self, items: Iterable[RawItem], progress: Callable[[int], None] | None = None
    ) -> Totals:
        """Every item in turn (files, uploads), looked up in batches of INGEST_BATCH_SIZE."""
        iterator = iter(items)
        size = max(1, self.settings.batch_size)
        while batch := list(islice(iterator, size)):
            self.ingest_batch(batch, progress=progress)
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
                items = box.fetch(uids[start : start + size])
                statuses = self.ingest_batch(items, after_commit, progress)
                box.finish([item.uid for item in items], statuses)


@contextmanager
def _kept_after_commit() -> Iterator[None]:
    """While a batch runs, a commit does not expire the loaded objects (consultation, themes,
    drafts, the message just stored): without this every message reloads them all."""
    session = db.session()
    previous = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = previous


def stored_count() -> dict[str, int]:
    """Stored messages per status (for reconciling totals)."""
    rows = db.session.execute(
        select(InboundMessage.status, db.func.count()).group_by(InboundMessage.status)
    )
    return dict(rows.all())

"""Visit counts per theme and draft, buffered in memory and written in batches.

A page view only adds to a dictionary; the buffer is written with one UPDATE per row
when it is old or big enough, so reading a page is never a blocking write.
"""

import atexit
import threading
import time
from collections import Counter

from sqlalchemy import update

from forum.consultation.models import Draft, Theme
from forum.extensions import db

MODELS = {"theme": Theme, "draft": Draft}


class VisitBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._since = time.monotonic()

    def record(self, kind: str, object_id: int, flush_seconds: float, flush_hits: int) -> None:
        """Count one visit; write the buffer if it is due."""
        with self._lock:
            self._counts[(kind, object_id)] += 1
            due = (
                sum(self._counts.values()) >= flush_hits
                or time.monotonic() - self._since >= flush_seconds
            )
        if due:
            self.flush()

    def flush(self) -> None:
        """Write every buffered count in one short transaction of its own."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._since = time.monotonic()
        if not counts:
            return
        with db.engine.begin() as connection:
            for (kind, object_id), hits in sorted(counts.items()):
                model = MODELS[kind]
                connection.execute(
                    update(model)
                    .where(model.id == object_id)
                    .values(visit_count=model.visit_count + hits)
                )


visits = VisitBuffer()


def install(app) -> None:
    """Write what is left in the buffer when the process exits."""

    def flush_at_exit() -> None:
        with app.app_context():
            visits.flush()

    atexit.register(flush_at_exit)

"""Ingest N messages (default 10,000) from a local Dovecot over IMAPS; print rates and memory.

Baseline, in the same run: the time to just FETCH the same messages raw (BODY.PEEK[])
in batches of the same size, with no parsing and no database. Then the real ingest
(store raw, commit, parse, route, contribute, commit, move to "Procesados"). Both phases
also print this process's CPU seconds (a figure less moved by other load on the machine).
Memory: the process's peak resident size after each phase, and the resident size sampled
during the ingest at 10 %, 50 % and 100 % of the messages; bounded means it stays flat.

    .venv/bin/python bench/ingest_imap.py [--messages 10000] [--batch 50]
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/DBNAME --reset]

--reset drops and recreates the public schema of that PostgreSQL database first (use
your own database only); without a URL a new SQLite file in a temporary folder is used.

Needs root and Debian's dovecot-imapd (as the tests do). Prints figures; asserts no time.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import text  # noqa: E402

from forum import create_app  # noqa: E402
from forum.extensions import db  # noqa: E402
from forum.ingest.pipeline import Run, stored_count  # noqa: E402
from tests.ingest_support import (  # noqa: E402
    DATA,
    dovecot_available,
    ingest_config,
    make_email_consultation,
    running_dovecot,
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The resident size now (not the peak)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def corpus(count: int) -> Iterator[bytes]:
    """COUNT distinct messages made from the fixtures (new Message-IDs), ~realistic mix."""
    templates = [p.read_bytes() for p in sorted(DATA.glob("*.eml")) if p.stat().st_size < 100_000]
    for n in range(count):
        raw = templates[n % len(templates)]
        marker = f"X-Bench: {n}\r\n".encode()
        yield marker + raw.replace(b"Message-ID: <", f"Message-ID: <b{n}.".encode(), 1)


def deliver(server, messages: Iterable[bytes]) -> tuple[int, int]:
    """Drop the messages straight into Maildir/new, owned by the mail user; (count, bytes)."""
    new = server.maildir / "new"
    count = size = 0
    for n, raw in enumerate(messages):
        path = new / f"{1700000000 + n}.M{n}P1.bench"
        path.write_bytes(raw)
        os.chown(path, server.uid, server.uid)
        count, size = count + 1, size + len(raw)
    return count, size


def fetch_only(server, batch: int) -> tuple[int, int]:
    connection = server.client()
    try:
        connection.select("INBOX", readonly=True)
        _, data = connection.uid("SEARCH", None, "ALL")
        uids = data[0].split()
        total = 0
        for start in range(0, len(uids), batch):
            chunk = b",".join(uids[start : start + batch]).decode()
            _, fetched = connection.uid(
                "FETCH", chunk, "(UID INTERNALDATE RFC822.SIZE BODY.PEEK[])"
            )
            total += sum(len(item[1]) for item in fetched if isinstance(item, tuple))
        return len(uids), total
    finally:
        connection.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--database", default="")
    parser.add_argument("--reset", action="store_true", help="drop the PostgreSQL schema first")
    args = parser.parse_args()
    if not dovecot_available():
        sys.exit("needs root, dovecot-imapd and openssl (sudo make debian-packages)")

    workdir = tempfile.mkdtemp(prefix="aporta-bench-ingest-")
    url = args.database or f"sqlite:///{workdir}/bench.sqlite3"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": False})
    app.instance_path = workdir
    with running_dovecot() as server, app.app_context():
        if args.reset and url.startswith("postgresql"):
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        upgrade(revision="heads")
        ingest_config(app, INGEST_BATCH_SIZE=args.batch, **server.config("ssl"))
        make_email_consultation()
        db.session.commit()
        count, size = deliver(server, corpus(args.messages))
        print(f"mailbox: {count} messages, {size / 1e6:.1f} MB, database {url.split(':')[0]}")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"peak RSS before: {peak_rss_mib():.0f} MiB")

        started, cpu = time.perf_counter(), time.process_time()
        count, fetched = fetch_only(server, args.batch)
        baseline = time.perf_counter() - started
        print(
            f"baseline FETCH only: {count} messages in {baseline:.1f} s = "
            f"{count / baseline:.0f} msg/s ({fetched / 1e6:.1f} MB; "
            f"{time.process_time() - cpu:.1f} CPU s); peak RSS {peak_rss_mib():.0f} MiB"
        )

        samples = {}
        marks = {max(1, count * pct // 100): pct for pct in (10, 50, 100)}
        done = 0

        def sample(step: int) -> None:
            nonlocal done
            done += step
            if done in marks:
                samples[marks[done]] = rss_mib()

        started, cpu = time.perf_counter(), time.process_time()
        run = Run()
        run.ingest_imap(progress=sample)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        totals = run.totals
        print(
            f"ingest: {totals.received} messages in {elapsed:.1f} s = "
            f"{totals.received / elapsed:.0f} msg/s ({cpu:.1f} CPU s = "
            f"{1000 * cpu / max(1, totals.received):.1f} ms per message); "
            f"peak RSS {peak_rss_mib():.0f} MiB"
        )
        print("RSS during ingest: " + ", ".join(f"{p} %: {m:.0f} MiB" for p, m in samples.items()))
        print(f"ingest / baseline time: {elapsed / baseline:.1f}x")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(totals.line())
        print(f"stored per status: {stored_count()}")
        print(f"folders after: {server.counts()}")


if __name__ == "__main__":
    main()

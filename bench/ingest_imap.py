"""Ingest N messages (default 10,000) from a local Dovecot over IMAPS; print rates and memory.

Baseline, in the same run: the time to just FETCH the same messages raw (BODY.PEEK[])
in batches of the same size, with no parsing and no database. Then the real ingest
(store raw, commit, parse, route, contribute, commit, move to "Procesados"). Peak memory
is the process's peak resident size after each phase; bounded means it does not grow
with the number of messages.

    .venv/bin/python bench/ingest_imap.py [--messages 10000] [--batch 50] [--database URL]

Needs root and Debian's dovecot-imapd (as the tests do). Prints figures; asserts no time.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_migrate import upgrade  # noqa: E402

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


def corpus(count: int) -> list[bytes]:
    """COUNT distinct messages made from the fixtures (new Message-IDs), ~realistic mix."""
    templates = [p.read_bytes() for p in sorted(DATA.glob("*.eml")) if p.stat().st_size < 100_000]
    messages = []
    for n in range(count):
        raw = templates[n % len(templates)]
        marker = f"X-Bench: {n}\r\n".encode()
        raw = raw.replace(b"Message-ID: <", f"Message-ID: <b{n}.".encode(), 1)
        messages.append(marker + raw)
    return messages


def deliver(server, messages: list[bytes]) -> None:
    """Drop the messages straight into Maildir/new, owned by the mail user."""
    new = server.maildir / "new"
    for n, raw in enumerate(messages):
        path = new / f"{1700000000 + n}.M{n}P1.bench"
        path.write_bytes(raw)
        os.chown(path, server.uid, server.uid)


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
    args = parser.parse_args()
    if not dovecot_available():
        sys.exit("needs root, dovecot-imapd and openssl (sudo make debian-packages)")

    workdir = tempfile.mkdtemp(prefix="aporta-bench-ingest-")
    url = args.database or f"sqlite:///{workdir}/bench.sqlite3"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": False})
    app.instance_path = workdir
    with running_dovecot() as server, app.app_context():
        upgrade(revision="heads")
        ingest_config(app, INGEST_BATCH_SIZE=args.batch, **server.config("ssl"))
        make_email_consultation()
        db.session.commit()
        messages = corpus(args.messages)
        size = sum(len(m) for m in messages)
        deliver(server, messages)
        del messages
        print(
            f"mailbox: {args.messages} messages, {size / 1e6:.1f} MB, database {url.split(':')[0]}"
        )
        print(f"peak RSS before: {peak_rss_mib():.0f} MiB")

        started = time.perf_counter()
        count, fetched = fetch_only(server, args.batch)
        baseline = time.perf_counter() - started
        print(
            f"baseline FETCH only: {count} messages in {baseline:.1f} s = "
            f"{count / baseline:.0f} msg/s ({fetched / 1e6:.1f} MB); "
            f"peak RSS {peak_rss_mib():.0f} MiB"
        )

        started = time.perf_counter()
        run = Run()
        run.ingest_imap()
        elapsed = time.perf_counter() - started
        totals = run.totals
        print(
            f"ingest: {totals.received} messages in {elapsed:.1f} s = "
            f"{totals.received / elapsed:.0f} msg/s; peak RSS {peak_rss_mib():.0f} MiB"
        )
        print(f"ingest / baseline time: {elapsed / baseline:.1f}x")
        print(totals.line())
        print(f"stored per status: {stored_count()}")
        print(f"folders after: {server.counts()}")


if __name__ == "__main__":
    main()

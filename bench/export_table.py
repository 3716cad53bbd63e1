"""Rows per second and peak memory of the CSV and XLSX exports, against the database's own dump.

    .venv/bin/python bench/export_table.py [--rows 1000000] [--database sqlite|postgres|both]

Builds a fresh database with the migrations, bulk-inserts ROWS contributions (six themes,
1,000 authors, a third of them by e-mail), then, in the same run, times:
  - the database's own CSV dump of the same joined rows (`sqlite3 -csv`, or PostgreSQL
    `COPY (...) TO STDOUT CSV` through psql), the baseline;
  - `services.write_csv` and `services.write_xlsx` (what `flask export` and the web
    downloads run), each in its own subprocess, which reports its peak RSS (getrusage).
Prints the figures, the ratio export time / dump time and the load average before each
measure (on a shared machine, a load above the number of CPUs slows every figure, the
dump's too). Nothing asserts a time.
PostgreSQL uses the database `aporta_export` (its schema is dropped and rebuilt).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/aporta_export"
THEMES = ["Salud", "Ambiente", "Infraestructura", "Educación", "Seguridad ciudadana", "Saneamiento"]
AUTHORS = 1000
BODY = (
    "Propongo que la plataforma publique los datos en formatos abiertos, por distrito, "
    "con actualización mensual; en nuestra región la información llega tarde. ñandú «ok»"
)
DUMP_SQL = """SELECT c.id, t.name, d.code, d.title, d.responsible_institution, c.channel,
 c.received_at, c.is_late, COALESCE(u.name, c.author_name), c.author_email, u.organisation,
 u.organisation_type, u.region, c.parent_id, c.body, c.synthesis, c.group_id, c.disposition,
 c.response, c.moderation_state, c.hidden_reason
 FROM contributions c LEFT JOIN themes t ON t.id = c.theme_id
 LEFT JOIN drafts d ON d.id = c.draft_id LEFT JOIN users u ON u.id = c.author_id
 ORDER BY c.id"""


def make_app(url: str):
    from forum import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "BASE_URL": "https://aporta.example"})


def build(url: str, rows: int) -> None:
    """A fresh migrated database with `rows` contributions, inserted in bulk."""
    from flask_migrate import upgrade
    from sqlalchemy import insert, text

    from bench._moderation_db import bulk_load
    from forum.accounts.models import User
    from forum.consultation.models import Consultation, Draft, Theme
    from forum.extensions import db

    app = make_app(url)
    with app.app_context():
        if url.startswith("postgresql"):
            with db.engine.begin() as connection:
                connection.execute(text("DROP SCHEMA public CASCADE"))
                connection.execute(text("CREATE SCHEMA public"))
        upgrade(revision="heads")
        now = datetime(2017, 9, 22, 13, 0, tzinfo=UTC)
        db.session.execute(
            insert(Consultation).values(
                id=1,
                slug="paga-2017",
                title="PAGA 2017-2019",
                summary="",
                description="",
                opens_at=now,
                closes_at=now + timedelta(days=14),
                contact_institution="",
                contact_email="",
                contact_address="",
                contact_hours="",
                created_at=now,
            )
        )
        for i, name in enumerate(THEMES, start=1):
            db.session.execute(
                insert(Theme).values(
                    id=i,
                    consultation_id=1,
                    slug=f"t{i}",
                    name=name,
                    description="",
                    position=i,
                    visit_count=0,
                )
            )
            db.session.execute(
                insert(Draft).values(
                    id=i,
                    consultation_id=1,
                    theme_id=i,
                    code=f"D-{i}",
                    title=f"Compromiso {name}",
                    problem="",
                    commitment="",
                    products="",
                    responsible_institution=f"Ministerio {i}",
                    resources="",
                    deadline="",
                    contact="",
                    ogp_values="",
                    origin="",
                    is_illustrative=False,
                    position=0,
                    visit_count=0,
                    thread_version=0,
                )
            )
        db.session.execute(
            insert(User),
            [
                dict(
                    id=i,
                    email=f"p{i}@correo.example",
                    name=f"Persona {i}",
                    organisation=f"Org {i}",
                    organisation_type="ong",
                    region="cusco",
                    role="citizen",
                    password_hash="x",
                    is_name_public=i % 2 == 0,
                    consent_version="1",
                    consented_at=now,
                    created_at=now,
                    is_enabled=True,
                    session_token=f"t{i}",
                )
                for i in range(1, AUTHORS + 1)
            ],
        )
        db.session.commit()
        columns = [
            "id",
            "consultation_id",
            "theme_id",
            "draft_id",
            "depth",
            "channel",
            "author_id",
            "author_name",
            "author_email",
            "body",
            "body_html",
            "received_at",
            "is_late",
            "moderation_state",
            "hidden_reason",
            "forwarded_by",
            "moderator_note",
            "synthesis",
            "disposition",
            "response",
            "version",
        ]

        def record(n: int) -> tuple:
            theme = n % 6 + 1
            by_mail = n % 3 == 0
            return (
                n,
                1,
                theme,
                theme,
                0,
                "email" if by_mail else "web",
                None if by_mail else n % AUTHORS + 1,
                f"Remitente {n}" if by_mail else "",
                f"r{n}@correo.example" if by_mail else "",
                BODY,
                "<p>" + BODY + "</p>",
                (now + timedelta(seconds=n)).replace(tzinfo=None),
                False,
                "visible",
                "",
                "",
                "",
                "",
                "pendiente",
                "",
                1,
            )

        started = time.perf_counter()
        bulk_load("contributions", columns, (record(n) for n in range(1, rows + 1)))
        print(f"  inserted {rows:,} contributions in {time.perf_counter() - started:.1f} s")


def dump(url: str, out: str) -> float:
    """The database's own CSV dump of the same rows; returns seconds."""
    started = time.perf_counter()
    with open(out, "wb") as target:
        if url.startswith("postgresql"):
            command = [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "aporta_export",
                "-q",
                "-c",
                f"COPY ({DUMP_SQL}) TO STDOUT WITH CSV HEADER",
            ]
        else:
            command = ["sqlite3", "-csv", "-header", url[len("sqlite:///") :], DUMP_SQL]
        subprocess.run(command, stdout=target, check=True)
    return time.perf_counter() - started


def child(url: str, fmt: str, out: str) -> None:
    """Run one export in this process and print seconds, seconds until the last row was
    handed to the writer (the rest is the writer finishing: XLSX zips its sheets), rows and
    peak RSS."""
    from forum.export import services
    from forum.export.rows import Audience, Filters

    app = make_app(url)
    last_row_at = [0.0]

    def progress(chunks):
        for chunk in chunks:
            yield chunk
            last_row_at[0] = time.perf_counter()

    with app.app_context():
        consultation = services.find_consultation("paga-2017")
        started = time.perf_counter()
        rows = services.WRITERS[fmt](
            out, consultation, Filters(), Audience.SECRETARIAT, "bench", progress
        )
        seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{seconds} {last_row_at[0] - started} {rows} {peak_kib}")


def rss_kib(pid: int) -> int:
    """A process's resident memory now (Linux /proc), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def export_in_child(url: str, fmt: str, out: str) -> tuple[list[str], list[tuple[float, int]]]:
    """Run `child` in a subprocess, sampling its RSS twice a second; its figures and samples."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", fmt, "--url", url, "--out", out],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    started, samples = time.perf_counter(), []
    while process.poll() is None:
        samples.append((time.perf_counter() - started, rss_kib(process.pid)))
        time.sleep(0.5)
    output = process.stdout.read()
    if process.returncode:
        raise RuntimeError(f"export {fmt} failed ({process.returncode})")
    return output.split()[-4:], samples


def memory_profile(samples: list[tuple[float, int]], rows_seconds: float) -> str:
    """RSS (MiB) at a quarter, half and the end of the rows, and the highest after them."""

    def at(t: float) -> float:
        return max((kib for s, kib in samples if s <= t), default=0) / 1024

    after = max((kib for s, kib in samples if s > rows_seconds), default=0) / 1024
    marks = ", ".join(
        f"{share:.0%} of rows {at(rows_seconds * share):.0f}" for share in (0.25, 0.5, 1)
    )
    return f"RSS MiB: {marks}, while finishing {after:.0f}"


def run(database: str, rows: int) -> None:
    folder = tempfile.mkdtemp(prefix="aporta-bench-export-")
    url = POSTGRES_URL if database == "postgres" else f"sqlite:///{folder}/bench.sqlite3"
    print(f"== {database}: {rows:,} contributions")
    build(url, rows)
    print(f"  load average before the dump: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    baseline = dump(url, os.path.join(folder, "dump.csv"))
    size = os.path.getsize(os.path.join(folder, "dump.csv"))
    print(
        f"  database dump (CSV): {baseline:.1f} s, {rows / baseline:,.0f} rows/s, "
        f"{size / 1e6:.0f} MB"
    )
    for fmt in ("csv", "xlsx"):
        out = os.path.join(folder, f"export.{fmt}")
        load = os.getloadavg()[0]
        (seconds, rows_seconds, written, peak_kib), samples = export_in_child(url, fmt, out)
        seconds, rows_seconds = float(seconds), float(rows_seconds)
        print(
            f"  export {fmt}: {seconds:.1f} s ({rows_seconds:.1f} s to hand over the rows), "
            f"{int(written) / seconds:,.0f} rows/s, peak RSS {int(peak_kib) / 1024:.0f} MiB, "
            f"{os.path.getsize(out) / 1e6:.0f} MB, {seconds / baseline:.1f}x the dump's time "
            f"(load before: {load:.1f})"
        )
        print(f"    {memory_profile(samples, rows_seconds)}")
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--child", choices=["csv", "xlsx", "json"])
    parser.add_argument("--url")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.url, args.child, args.out)
        return
    for database in ("sqlite", "postgres") if args.database == "both" else (args.database,):
        run(database, args.rows)


if __name__ == "__main__":
    main()

"""The moderation queue at 1,000,000 contributions: each common filter alone and combined,
first page and a deep page, on SQLite and PostgreSQL, with the planner's use of indexes.

    .venv/bin/python bench/moderation_queue.py [--rows 1000000] [--only sqlite|postgresql] [--reuse]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/aporta_moderation]

Each figure is the median of 3 runs of the queue's real service (`filter_queue`: the
capped count, the page of ids, the rows with their tags and reports). Page 200 is measured
twice: by OFFSET (a typed page number) and after a cursor (the "Siguiente" link). The baseline is a
full scan of the table (a count over an unindexed expression) measured in the same run.
Each free-text filter is also measured the way the queue searched before migration 0008
(ILIKE over body, synthesis and sender name, every word; one run each, as they take
seconds): a full scan when the words are rare. Nothing asserts a time.
"""

import argparse
import os
import random
import sys
import time
from datetime import datetime, timedelta
from unittest import mock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from sqlalchemy import or_, select, text  # noqa: E402

from bench._moderation_db import analyse, bulk_load, make_app, timed  # noqa: E402
from forum import clock  # noqa: E402
from forum.accounts.models import ORGANISATION_TYPES, REGIONS  # noqa: E402
from forum.consultation.models import Contribution, Draft, Theme  # noqa: E402
from forum.consultation.services import import_consultation  # noqa: E402
from forum.extensions import db  # noqa: E402
from forum.moderation import services  # noqa: E402
from forum.moderation.models import DISPOSITIONS, HIDE_REASONS, Tag  # noqa: E402
from forum.text import fold, search_texts  # noqa: E402

WORDS = (
    "agua saneamiento distrito calidad datos abiertos municipalidad transparencia seguridad "
    "ciudadana comisaría educación escuela salud hospital ambiente bosque minería consulta "
    "propuesta indicador plazo presupuesto región juntas rurales acceso información pública "
    "participación rendición cuentas plataforma portal ministerio gobierno regional local"
).split()
START = datetime(2026, 9, 1, 13, 0)
PER_PAGE = 50
DEEP_PAGE = 200  # offset 9,950


def _fmt(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%S.%f")


def load(rows: int) -> dict:
    """A consultation, 5,000 people, 1,000 groups, tags, reports and `rows` contributions."""
    rng = random.Random(2017)
    themes = [
        {
            "slug": f"tema-{t}",
            "name": f"Tema {t}",
            "drafts": [{"code": f"T{t}-{d}", "title": f"Borrador {t}.{d}"} for d in range(4)],
        }
        for t in range(6)
    ]
    consultation = import_consultation(
        {"consultation": {"slug": "bench", "title": "Bench"}, "themes": themes}, actor="bench"
    )
    services.seed_tags()
    db.session.commit()
    drafts = [(d.id, d.theme_id) for d in db.session.scalars(select(Draft))]
    tag_ids = list(db.session.scalars(select(Tag.id)))
    org_types, regions = list(ORGANISATION_TYPES), list(REGIONS)
    now = _fmt(START)
    people = 5000
    bulk_load(
        "users",
        [
            "id",
            "email",
            "name",
            "organisation",
            "organisation_type",
            "region",
            "role",
            "password_hash",
            "is_name_public",
            "consent_version",
            "consented_at",
            "created_at",
            "is_enabled",
            "session_token",
        ],
        (
            (
                i,
                f"p{i}@bench.example",
                f"Persona {i}",
                "",
                rng.choice(org_types),
                rng.choice(regions),
                "citizen",
                "x",
                1,
                "2026-11",
                now,
                now,
                1,
                f"token-{i}",
            )
            for i in range(1, people + 1)
        ),
    )
    bulk_load(
        "contribution_groups",
        [
            "id",
            "consultation_id",
            "title",
            "synthesis",
            "disposition",
            "response",
            "created_at",
            "version",
        ],
        ((g, consultation.id, f"Grupo {g}", "", "pendiente", "", now, 1) for g in range(1, 1001)),
    )
    texts = [" ".join(rng.choices(WORDS, k=30)) for _ in range(5000)]
    dispositions = list(DISPOSITIONS)
    reasons = list(HIDE_REASONS)
    seconds = 60 * 24 * 3600

    def contributions():
        for i in range(1, rows + 1):
            draft_id, theme_id = drafts[i % len(drafts)]
            email = rng.random() < 0.2
            hidden = rng.random() < 0.02
            body = texts[i % len(texts)]
            if i % 100_000 == 0:
                body += " palabrarara"  # a rare word for the free-text filter: 10 rows
            if i % 200 == 0:
                body += " infrecuente"  # 0.5% of the rows
            if i % 50 == 0:
                body += " ocasional"  # 2% of the rows
            author_name = "Remitente" if email else ""
            described = email and rng.random() < 0.5  # a moderator read half the signatures
            # As the app fills it (the listener on Contribution), from the same function.
            search_text = search_texts([(body, "", author_name)])[0]
            yield (
                i,
                consultation.id,
                theme_id,
                draft_id,
                "email" if email else "web",
                None if email else rng.randint(1, people),
                author_name,
                f"r{i}@correo.example" if email else "",
                body,
                body,
                _fmt(START + timedelta(seconds=i * seconds // rows)),
                1 if rng.random() < 0.01 else 0,
                "hidden" if hidden else "visible",
                rng.choice(reasons) if hidden else "",
                "",
                "",
                "",
                "pendiente" if rng.random() < 0.6 else rng.choice(dispositions),
                "",
                rng.randint(1, 1000) if rng.random() < 0.05 else None,
                1,
                0,
                f"k{i}",
                search_text,
                rng.choice(org_types) if described else "",
                rng.choice(regions) if described else "",
            )

    bulk_load(
        "contributions",
        [
            "id",
            "consultation_id",
            "theme_id",
            "draft_id",
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
            "group_id",
            "version",
            "depth",
            "idempotency_key",
            "search_text",
            "sender_organisation_type",
            "sender_region",
        ],
        contributions(),
    )
    tagged = rng.sample(range(1, rows + 1), rows // 5)
    bulk_load(
        "contribution_tags",
        ["contribution_id", "tag_id"],
        ((c, tag_ids[c % len(tag_ids)]) for c in tagged),
    )
    bulk_load(
        "reports",
        ["contribution_id", "reporter_id", "reason", "note", "created_at"],
        (
            (c, rng.randint(1, people), "spam", "", now)
            for c in rng.sample(range(1, rows + 1), 1000)
        ),
    )
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as connection:
            for table in ("users", "contribution_groups", "contributions", "reports"):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    analyse()
    return ids_for_filters()


def ids_for_filters() -> dict:
    """The theme, draft and tag the filters use."""
    theme = db.session.scalar(select(Theme).order_by(Theme.id))
    draft = db.session.scalar(select(Draft).order_by(Draft.id.desc()))
    tag = db.session.scalar(select(Tag).where(Tag.slug == "medible"))
    return {"theme": theme.id, "draft": draft.id, "tag": tag.id}


def filters(ids: dict) -> dict[str, services.QueueFilter]:
    F = services.QueueFilter
    since = (START + timedelta(days=20)).date()
    return {
        "none (all, newest first)": F(),
        "theme": F(theme_id=ids["theme"]),
        "draft": F(draft_id=ids["draft"]),
        "channel=email": F(channel="email"),
        "state=hidden": F(state="hidden"),
        "state=reported": F(state="reported"),
        "disposition=incorporado": F(disposition="incorporado"),
        "tag": F(tag_id=ids["tag"]),
        "date range (3 days)": F(since=since, until=since + timedelta(days=2)),
        "organisation type": F(organisation_type="academia"),
        "region": F(region="puno"),
        "late": F(late="si"),
        "grouped": F(grouped="si"),
        "text: rare word (10 rows)": F(text="palabrarara"),
        "text: word in 0.5% of rows": F(text="infrecuente"),
        "text: word in 2% of rows": F(text="ocasional"),
        "text: common word (54%)": F(text="saneamiento"),
        "text: two common words": F(text="saneamiento hospital"),
        "text: rare word+2% word": F(text="palabrarara ocasional"),
        "text: common word+short word": F(text="agua pl"),
        "text: common+absent word": F(text="agua de"),  # no row has both: the worst case
        "text: rare word+theme": F(text="palabrarara", theme_id=ids["theme"]),
        "text: common word+theme": F(text="saneamiento", theme_id=ids["theme"]),
        "channel+disposition+theme": F(
            channel="email", disposition="no-incorporado", theme_id=ids["theme"]
        ),
        "tag+state+date range": F(
            tag_id=ids["tag"], state="visible", since=since, until=since + timedelta(days=6)
        ),
        "org type+region+late": F(organisation_type="ong", region="cusco", late="no"),
        "oldest first, disposition": F(disposition="pendiente", oldest_first=True),
    }


def ilike_scan_conditions(words: str) -> list:
    """The free-text filter as it was before migration 0008, every word required: ILIKE
    over the three searched fields, which no index serves."""
    c = Contribution
    return [
        or_(
            c.body.ilike(f"%{word}%"),
            c.synthesis.ilike(f"%{word}%"),
            c.author_name.ilike(f"%{word}%"),
        )
        for word in fold(words).split()
    ]


def plan(query) -> list[str]:
    """The planner's plan for the page-of-ids query."""
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.engine.connect() as connection:
        if db.engine.dialect.name == "postgresql":
            rows = connection.execute(text(f"EXPLAIN {compiled}")).scalars().all()
        else:
            rows = [r[-1] for r in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
    return [
        line.strip()
        for line in rows
        if any(word in line for word in ("Index", "INDEX", "Scan", "SCAN", "SEARCH"))
    ]


def run(kind: str, rows: int, postgres_url: str, reuse: bool) -> None:
    app = make_app(kind, postgres_url, "bench_moderation_queue", keep=reuse)
    with app.app_context():
        loaded = db.session.scalar(select(db.func.count()).select_from(Contribution))
        if reuse and loaded == rows:
            ids = ids_for_filters()
            print(f"\n== {kind}: {rows:,} contributions, loaded by an earlier run")
        else:
            start = time.perf_counter()
            ids = load(rows)
            elapsed = time.perf_counter() - start
            print(f"\n== {kind}: {rows:,} contributions loaded in {elapsed:.1f} s")
        baseline, _ = timed(
            lambda: db.session.scalar(
                select(db.func.count()).where(db.func.length(Contribution.body) > 0)
            )
        )
        print(f"baseline, a full scan of the table: {baseline:.1f} ms")
        print(
            f"{'filter':32} {'first page':>11} {'p.200 offset':>13} {'p.200 cursor':>13} "
            f"{'matches':>8}  first/baseline"
        )
        clock.travel_to(None)
        for name, f in filters(ids).items():
            first, page = timed(lambda f=f: services.filter_queue(f, 1, PER_PAGE))
            deep, _ = timed(lambda f=f: services.filter_queue(f, DEEP_PAGE, PER_PAGE))
            before = db.session.execute(  # the last row of page 199: what "Siguiente" carries
                select(Contribution.received_at, Contribution.id)
                .where(*services.queue_conditions(f))
                .order_by(*services.queue_order(f))
                .offset((DEEP_PAGE - 1) * PER_PAGE - 1)
                .limit(1)
            ).first()
            keyset = "-"
            if before is not None:
                cursor = (before[0], before[1])
                ms, _ = timed(
                    lambda f=f, c=cursor: services.filter_queue(f, DEEP_PAGE, PER_PAGE, c)
                )
                keyset = f"{ms:.1f}ms"
            total = f"{'>' if page.is_total_capped else ''}{page.total}"
            print(
                f"{name:32} {first:9.1f}ms {deep:11.1f}ms {keyset:>13} {total:>8}  "
                f"{first / baseline:.2f}"
            )
            query = (
                select(Contribution.id)
                .where(*services.queue_conditions(f))
                .order_by(*services.queue_order(f))
                .limit(PER_PAGE)
            )
            for line in plan(query)[:3]:
                print(f"    plan: {line}")
            if f.text:
                probe = services.text_index_query(*services.search_words(f.text))
                for line in plan(probe.limit(services.INDEX_PROBE + 1))[:3]:
                    print(f"    plan of the index probe: {line}")
            if f.text:
                with mock.patch.object(services, "_text_conditions", ilike_scan_conditions):
                    scan_first, _ = timed(lambda f=f: services.filter_queue(f, 1, PER_PAGE), 1)
                    scan_deep, _ = timed(
                        lambda f=f: services.filter_queue(f, DEEP_PAGE, PER_PAGE), 1
                    )
                print(
                    f"    before 0008 (ILIKE scan): {scan_first:9.1f}ms {scan_deep:11.1f}ms"
                    f"{'':14} {'':8}  {scan_first / baseline:.2f}"
                )
        db.session.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--reuse", action="store_true", help="measure the data an earlier run loaded"
    )
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/aporta_moderation"
    )
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql"):
        if args.only in (None, kind):
            run(kind, args.rows, args.postgres, args.reuse)


if __name__ == "__main__":
    main()

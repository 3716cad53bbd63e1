"""Near-duplicate suggestions at 100,000 contributions, on SQLite and PostgreSQL.

    .venv/bin/python bench/duplicates.py [--rows 100000] [--only sqlite|postgresql]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/aporta_moderation]

The corpus is realistic for a campaign: 30% copies of 20 form letters (exact, or with
changed case, accents, punctuation or one word), the rest distinct texts. Figures, all from
the same run: reading the texts from the database and normalising plus tokenising them
(the baselines), `find_similar` alone, and the whole service `suggest_duplicates` cold
(database reads, MinHash, LSH, decisions, grouping) and warm (cached similarity), with the
process's CPU time beside the wall time (on a shared machine the wall time grows with the
load, the CPU time much less). Nothing asserts a time.
"""

import argparse
import os
import random
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from sqlalchemy import select  # noqa: E402

from bench._moderation_db import analyse, bulk_load, make_app, timed  # noqa: E402
from forum.consultation.models import Consultation, Contribution, Draft  # noqa: E402
from forum.consultation.services import import_consultation  # noqa: E402
from forum.extensions import db  # noqa: E402
from forum.moderation import duplicates, services  # noqa: E402
from forum.text import fold_many  # noqa: E402

VOCABULARY_SIZE = 4000
LETTERS = 20


def _vocabulary(rng: random.Random) -> list[str]:
    syllables = [
        "ca",
        "de",
        "ción",
        "ta",
        "mi",
        "re",
        "pú",
        "li",
        "go",
        "ña",
        "to",
        "sa",
        "ne",
        "bi",
        "lo",
        "ma",
        "ri",
        "é",
        "an",
        "ur",
    ]
    return ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(VOCABULARY_SIZE)]


def corpus(rows: int, rng: random.Random) -> list[str]:
    """`rows` texts: 30% form-letter copies with small edits, 70% distinct texts."""
    words = _vocabulary(rng)
    letters = [" ".join(rng.choices(words, k=rng.randint(40, 90))) + "." for _ in range(LETTERS)]
    texts = []
    for _ in range(rows):
        if rng.random() < 0.3:
            letter = rng.choice(letters)
            variant = rng.random()
            if variant < 0.5:
                texts.append(letter)
            elif variant < 0.7:
                texts.append(letter.upper())
            elif variant < 0.85:
                texts.append(letter.replace(" ", ", ", 3).replace("é", "e"))
            else:
                parts = letter.split()
                parts[rng.randrange(len(parts))] = rng.choice(words)
                texts.append(" ".join(parts))
        else:
            texts.append(" ".join(rng.choices(words, k=rng.randint(15, 120))))
    return texts


def load(rows: int) -> Consultation:
    consultation = import_consultation(
        {
            "consultation": {"slug": "bench", "title": "Bench"},
            "themes": [{"slug": "t", "name": "T", "drafts": [{"code": "T-1", "title": "T"}]}],
        },
        actor="bench",
    )
    db.session.commit()
    draft = db.session.scalar(select(Draft))
    rng = random.Random(2017)
    texts = corpus(rows, rng)
    bulk_load(
        "contributions",
        [
            "id",
            "consultation_id",
            "theme_id",
            "draft_id",
            "channel",
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
            "depth",
        ],
        (
            (
                i,
                consultation.id,
                draft.theme_id,
                draft.id,
                "email" if i % 3 else "web",
                "",
                "",
                body,
                body,
                "2026-10-01 12:00:00.000000",
                0,
                "visible",
                "",
                "",
                "",
                "",
                "pendiente",
                "",
                1,
                0,
            )
            for i, body in enumerate(texts, 1)
        ),
    )
    analyse()
    return db.session.scalar(select(Consultation))


def run(kind: str, rows: int, postgres_url: str) -> None:
    app = make_app(kind, postgres_url, "bench_moderation_duplicates")
    with app.app_context():
        consultation = load(rows)
        print(f"\n== {kind}: {rows:,} contributions")
        read_ms, texts = timed(
            lambda: db.session.execute(
                select(Contribution.id, Contribution.body).where(
                    Contribution.consultation_id == consultation.id
                )
            ).all()
        )
        tokenise_ms, _ = timed(
            lambda: duplicates.shingle_hashes_many(fold_many([b for _, b in texts]))
        )
        cpu = time.process_time()
        similar_ms, similar = timed(lambda: duplicates.find_similar(texts), repeat=1)
        similar_cpu = time.process_time() - cpu
        services._similar_cache.clear()
        start, cpu = time.perf_counter(), time.process_time()
        suggestions, total = services.suggest_duplicates(consultation)
        cold_ms = (time.perf_counter() - start) * 1000
        cold_cpu = time.process_time() - cpu
        warm_ms, _ = timed(lambda: services.suggest_duplicates(consultation))
        biggest = ", ".join(str(len(s.ids)) for s in suggestions[:5])
        print(
            f"baseline: read the texts {read_ms:,.0f} ms; "
            f"normalise + tokenise {tokenise_ms:,.0f} ms"
        )
        print(
            f"find_similar (MinHash + LSH):       {similar_ms:,.0f} ms "
            f"({similar_ms / (read_ms + tokenise_ms):.1f}x the baselines together)"
        )
        print(f"suggest_duplicates, cold:           {cold_ms:,.0f} ms")
        print(
            f"CPU time of this process (what a busy machine does not inflate): "
            f"find_similar {similar_cpu:.1f} s, suggest_duplicates cold {cold_cpu:.1f} s"
        )
        print(f"suggest_duplicates, warm (cached):  {warm_ms:,.0f} ms")
        print(
            f"found: {len(similar.buckets)} buckets of identical texts, "
            f"{len(similar.pairs)} near-identical pairs; {total} suggestions "
            f"(largest: {biggest})"
        )
        db.session.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/aporta_moderation"
    )
    args = parser.parse_args()
    for kind in ("sqlite", "postgresql"):
        if args.only in (None, kind):
            run(kind, args.rows, args.postgres)


if __name__ == "__main__":
    main()

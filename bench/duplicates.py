"""Near-duplicate suggestions at 100,000 contributions, on SQLite and PostgreSQL.

    .venv/bin/python bench/duplicates.py [--rows 100000] [--only sqlite|postgresql]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/aporta_dups]

The corpus is realistic for a campaign: 30% copies of 20 form letters (exact, or with
changed case, accents, punctuation or one word), the rest distinct texts. Figures, all from
the same run, for the whole service `suggest_duplicates` (database reads, signatures, LSH,
decisions, grouping):

- baselines: reading the texts from the database, and normalising plus tokenising them;
- `find_similar` on all the texts: what every cold start cost before signatures were stored;
- first-ever run: no signature stored yet, all computed, stored and committed;
- cold start: a fresh process (a new worker, a restart) with every signature stored;
- one new contribution after a warm state, and one edited contribution;
- warm: nothing changed.

Each with the process's CPU time beside the wall time (on a shared machine the wall time
grows with the load, the CPU time much less), and the load average during the run. At
the end the service's pairs are checked equal to `find_similar` from scratch. Nothing
asserts a time.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from sqlalchemy import select, text  # noqa: E402

from bench._moderation_db import analyse, bulk_load, make_app, timed  # noqa: E402
from forum import clock  # noqa: E402
from forum import text as forum_text  # noqa: E402
from forum.consultation.models import Consultation, Contribution, Draft  # noqa: E402
from forum.consultation.services import add_contribution, import_consultation  # noqa: E402
from forum.extensions import db  # noqa: E402
from forum.moderation import duplicates, services  # noqa: E402
from forum.text import fold_many  # noqa: E402

SCHEMA = "bench_moderation_duplicates"
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
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('contributions', 'id'), "
                    "(SELECT max(id) FROM contributions))"
                )
            )
    analyse()
    return db.session.scalar(select(Consultation))


def measured(action) -> tuple[float, float, object]:
    """Wall milliseconds, CPU seconds of this process, and the result of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    result = action()
    return (time.perf_counter() - start) * 1000, time.process_time() - cpu, result


def suggest_and_commit(consultation: Consultation):
    """What the duplicates page does: the suggestions, then a commit (keeps new signatures)."""
    result = services.suggest_duplicates(consultation)
    db.session.commit()
    return result


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cold_start(kind: str, postgres_url: str) -> None:
    """In a fresh process, on the database a run left: print the cold start figures as JSON."""
    app = make_app(kind, postgres_url, SCHEMA, keep=True)
    with app.app_context():
        consultation = db.session.scalar(select(Consultation))
        resident = _resident_mb()
        wall, cpu, _ = measured(lambda: suggest_and_commit(consultation))
        print(json.dumps({"ms": wall, "cpu": cpu, "index_mb": _resident_mb() - resident}))


def _line(label: str, wall: float, cpu: float, baseline_ms: float) -> None:
    print(f"{label:44s} {wall:9,.0f} ms  CPU {cpu:6.2f} s  {wall / baseline_ms:6.2f}x baselines")


def _median(runs: list[tuple[float, float, object]]) -> tuple[float, float]:
    """Median wall and CPU time of a few `measured` runs."""
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _texts(consultation: Consultation) -> list[tuple[int, str]]:
    return db.session.execute(
        select(Contribution.id, Contribution.body).where(
            Contribution.consultation_id == consultation.id
        )
    ).all()


def _add_copy(consultation: Consultation, draft: Draft, body: str) -> None:
    add_contribution(
        consultation=consultation,
        draft=draft,
        body=body + " Firmo también.",
        channel="email",
        author_email="bench@correo.example",
        received_at=clock.now(),
    )
    db.session.commit()


def _edit(ident: int, body: str) -> None:
    """What `edit_comment` does to a contribution (without its author and time checks)."""
    contribution = db.session.get(Contribution, ident)
    contribution.body = body
    contribution.body_html = str(forum_text.render(body))
    contribution.edited_at = clock.now()
    db.session.commit()


def run(kind: str, rows: int, postgres_url: str) -> None:
    app = make_app(kind, postgres_url, SCHEMA)
    with app.app_context():
        consultation = load(rows)
        draft = db.session.scalar(select(Draft))
        loads = [os.getloadavg()[0]]
        print(f"\n== {kind}: {rows:,} contributions")
        read_ms, texts = timed(lambda: _texts(consultation))
        tokenise_ms, _ = timed(
            lambda: duplicates.shingle_hashes_many(fold_many([b for _, b in texts]))
        )
        base = read_ms + tokenise_ms
        print(
            f"baselines: read the texts {read_ms:,.0f} ms, "
            f"normalise + tokenise {tokenise_ms:,.0f} ms"
        )
        wall, cpu, _ = measured(lambda: duplicates.find_similar(texts))
        _line("find_similar on all texts (the cold before)", wall, cpu, base)
        services._similarity_cache.clear()
        wall, cpu, (suggestions, total) = measured(lambda: suggest_and_commit(consultation))
        _line("first-ever run (signs and stores every one)", wall, cpu, base)
        loads.append(os.getloadavg()[0])
        child = subprocess.run(
            [sys.executable, __file__, "--cold-start", kind, "--postgres", postgres_url],
            capture_output=True,
            text=True,
            check=True,
        )
        cold = json.loads(child.stdout.strip().splitlines()[-1])
        _line("cold start, signatures stored (new process)", cold["ms"], cold["cpu"], base)
        rng = random.Random(7)
        added = []
        for _ in range(3):
            _add_copy(consultation, draft, texts[rng.randrange(len(texts))][1])
            added.append(measured(lambda: suggest_and_commit(consultation)))
        _line("one new contribution (median of 3)", *_median(added), base)
        edited = []
        for ident in (10, 20, 30):
            _edit(ident, texts[ident + 1][1])
            edited.append(measured(lambda: suggest_and_commit(consultation)))
        _line("one edited contribution (median of 3)", *_median(edited), base)
        warm = [measured(lambda: suggest_and_commit(consultation)) for _ in range(3)]
        _line("warm, nothing changed (median of 3)", *_median(warm), base)
        loads.append(os.getloadavg()[0])
        similar = services._similar_for(consultation)
        same = similar == duplicates.find_similar(_texts(consultation))
        biggest = ", ".join(str(len(s.ids)) for s in suggestions[:5])
        print(
            f"index in memory (cold start process): {cold['index_mb']:,.0f} MB; load average "
            f"(1 min): {', '.join(f'{x:.2f}' for x in loads)} on {os.cpu_count()} CPUs"
        )
        print(
            f"found: {len(similar.buckets)} buckets of identical texts, {len(similar.pairs)} "
            f"near-identical pairs; {total} suggestions (largest: {biggest}); "
            f"equal to find_similar from scratch: {'yes' if same else 'NO'}"
        )
        db.session.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/aporta_dups"
    )
    parser.add_argument("--cold-start", choices=("sqlite", "postgresql"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_start:
        cold_start(args.cold_start, args.postgres)
        return
    for kind in ("sqlite", "postgresql"):
        if args.only in (None, kind):
            run(kind, args.rows, args.postgres)


if __name__ == "__main__":
    main()

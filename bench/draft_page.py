"""Requests per second for a draft page with 1,000 comments, as a ratio to a one-line page.

    .venv/bin/python bench/draft_page.py [--seconds 10] [--database sqlite|postgres]
                                          [--concurrency 8] [--client auto|wrk|python]

Builds a fresh database with the migrations, seeds one open consultation whose draft holds
1,000 comments (100 threads of 10, 50 authors), serves bench.bench_wsgi:app (the real app
plus /bench/hola, a one-line view) with gunicorn and the project's gunicorn.conf.py, and
loads both pages in the same run: warm-up, then two rounds in alternating order. The draft
page is the first page of threads, as an anonymous visitor. Nothing asserts a time; the
report says whether the ratio reaches the issue's target and is saved as JSON in bench/out/.
"""

import argparse
import json
import logging
import os
import platform
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
from datetime import timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import loadgen  # noqa: E402
from bench.server import Gunicorn, cpu_seconds  # noqa: E402

TARGET = 0.40
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
OUT_DIR = os.path.join(REPO, "bench", "out")
BASELINE_PATH = "/bench/hola"
DEMO_FILE = os.path.join(REPO, "forum", "consultation", "demo", "paga_2017_2019.yaml")
DRAFT_CODE = "EDU-1"  # a real (not illustrative) draft of the demo file
AUTHORS = 50
THREADS = 100
REPLIES_PER_THREAD = 9  # 100 * (1 + 9) = 1,000 comments

SENTENCES = [
    "Propongo que la plataforma publique los datos en formatos abiertos y reutilizables.",
    "En nuestra región la información llega tarde y solo en documentos escaneados.",
    "Sería útil un cronograma con hitos trimestrales y responsables con nombre propio.",
    "El compromiso debería incluir indicadores de resultado, no solo de actividades.",
    "Las municipalidades rurales necesitan capacitación antes de usar el sistema.",
    "Sugerimos mesas de trabajo descentralizadas con participación de la academia.",
    "¿Cómo se asegurará el presupuesto después del primer año?",
    "La sociedad civil puede ayudar a validar los datos con veedurías ciudadanas.",
    "Falta mencionar la accesibilidad para personas con discapacidad.",
    "Los reportes deberían actualizarse al menos una vez al mes.",
    "Estamos de acuerdo con el enfoque, pero el plazo parece demasiado corto.",
    "Convendría publicar también las actas de las reuniones de seguimiento.",
    "Es importante que los datos se puedan descargar sin registro previo.",
    "La información debería estar disponible en quechua y aimara.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10, help="measured seconds per URL (default 10)"
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (default 8)")
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk if installed (auto), else Python threads",
    )
    parser.add_argument(
        "--warmup", type=float, default=2, help="warm-up seconds per URL (default 2)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=0,
        help="gunicorn max_requests; 0 (default) keeps workers for the whole run",
    )
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--no-thread-cache",
        action="store_true",
        help="serve with THREAD_CACHE off (renders the threads on every request)",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="PostgreSQL database whose schema public is DROPPED and rebuilt",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run on PostgreSQL even while other sessions are connected to the database",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="no server: time N requests of each page in-process and cProfile the draft page",
    )
    return parser.parse_args()


# --- the database ----------------------------------------------------------------------------


def running_pytest() -> list[int]:
    """Process ids whose command line mentions pytest (they may be using database `test`)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ")
        except OSError:
            continue
        if b"pytest" in cmdline:
            pids.append(int(entry))
    return pids


def postgres_clients(url: str) -> int:
    """Other sessions connected to the database (a test run keeps one open while it runs)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        engine.dispose()


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def seed() -> dict:
    """Migrate the empty database and load the consultation with its 1,000 comments."""
    import yaml
    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from forum import clock, create_app
    from forum.accounts import services as accounts
    from forum.accounts.models import ORGANISATION_TYPES, REGIONS
    from forum.consultation import services
    from forum.consultation.models import Contribution, Draft
    from forum.extensions import db

    app = create_app()
    logging.getLogger("forum").setLevel(logging.WARNING)  # not one line per comment
    with app.app_context():
        upgrade()
        with open(DEMO_FILE, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        data.pop("comments", None)
        consultation = services.import_consultation(data, actor="bench")
        now = clock.now()
        services.set_window(
            consultation, now - timedelta(days=3), now + timedelta(days=14), actor="bench"
        )
        draft = db.session.scalar(
            select(Draft).where(Draft.consultation_id == consultation.id, Draft.code == DRAFT_CODE)
        )
        rng = random.Random(2017)
        org_types, regions = sorted(ORGANISATION_TYPES), sorted(REGIONS)
        authors = [
            accounts.register_user(
                name=f"Participante de prueba {n}",
                email=f"bench{n}@correo.example",
                password=secrets.token_hex(12),
                organisation=f"Colectivo ciudadano {n}" if n % 3 else "",
                organisation_type=org_types[n % len(org_types)],
                region=regions[n % len(regions)],
                is_name_public=n % 5 != 0,
            )
            for n in range(1, AUTHORS + 1)
        ]
        received = consultation.opens_at + timedelta(hours=1)

        def post(parent):
            nonlocal received
            received += timedelta(minutes=3)
            return services.add_contribution(
                consultation=consultation,
                draft=draft,
                body=comment_body(rng),
                channel="web",
                author=rng.choice(authors),
                parent=parent,
                received_at=received,
            )

        for _ in range(THREADS):
            thread = [post(None)]
            for _ in range(REPLIES_PER_THREAD):
                thread.append(post(rng.choice(thread)))  # random trees: depths 1 to 6 or so
        db.session.commit()
        count = db.session.scalar(select(func.count()).where(Contribution.draft_id == draft.id))
        depth = db.session.scalar(
            select(func.max(Contribution.depth)).where(Contribution.draft_id == draft.id)
        )
        info = {
            "consultation": consultation.slug,
            "draft": draft.code,
            "comments": count,
            "threads": THREADS,
            "authors": AUTHORS,
            "max_depth": depth,
            "path": f"/consultas/{consultation.slug}/borradores/{draft.code}",
            "threads_per_page": app.config["THREADS_PER_PAGE"],
        }
        db.session.remove()
        db.engine.dispose()
    if count != THREADS * (1 + REPLIES_PER_THREAD):
        raise RuntimeError(f"seeded {count} comments instead of 1,000")
    return info


def comment_body(rng: random.Random) -> str:
    """A comment of one to three paragraphs; some with a list or a link."""
    paragraphs = [
        " ".join(rng.sample(SENTENCES, rng.randint(1, 4))) for _ in range(rng.randint(1, 3))
    ]
    kind = rng.random()
    if kind < 0.15:
        paragraphs.append("\n".join(f"- {s}" for s in rng.sample(SENTENCES, 3)))
    elif kind < 0.25:
        paragraphs.append(
            "Más detalles en https://www.gob.pe/institucion/pcm/informes-publicaciones"
        )
    return "\n\n".join(paragraphs)


# --- measuring ---------------------------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def client_cpu() -> float:
    import resource

    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def measure(
    client: str, server: Gunicorn, path: str, seconds: float, args, expect_bytes: int
) -> dict:
    """One run, with the CPU the workers, the client and the machine used meanwhile."""
    workers = server.worker_pids()
    before = cpu_seconds(workers), client_cpu(), machine_busy()
    run = loadgen.run(
        client, server.port, path, seconds, args.concurrency, args.wrk_threads, expect_bytes
    )
    after = cpu_seconds(workers), client_cpu(), machine_busy()
    ticks = os.sysconf("SC_CLK_TCK")
    busy = (after[2][0] - before[2][0]) / ticks
    total = (after[2][1] - before[2][1]) / ticks
    worker_cpu, client_cpu_s = after[0] - before[0], after[1] - before[1]
    return {
        "run": run,
        "worker_cpu_s": worker_cpu,
        "client_cpu_s": client_cpu_s,
        "machine_busy": busy / total if total else 0.0,
        "others_busy": max(0.0, busy - worker_cpu - client_cpu_s) / total if total else 0.0,
        "loadavg": os.getloadavg()[0],
    }


def combine(parts: list[dict]) -> dict:
    run = loadgen.Run()
    for part in parts:
        run.add(part["run"])
    worker_cpu = sum(p["worker_cpu_s"] for p in parts)
    client_cpu_s = sum(p["client_cpu_s"] for p in parts)
    result = run.summary()
    result["runs_requests_per_second"] = [round(p["run"].rps, 1) for p in parts]
    result["worker_cpu_ms_per_request"] = (
        round(1000 * worker_cpu / run.requests, 3) if run.requests else None
    )
    result["client_cpu_ms_per_request"] = (
        round(1000 * client_cpu_s / run.requests, 3) if run.requests else None
    )
    for key in ("machine_busy", "others_busy", "loadavg"):
        result[key] = round(sum(p[key] for p in parts) / len(parts), 3)
    result["_run"] = run
    return result


def profile_in_process(draft_path: str, requests: int) -> None:
    """CPU per request of both pages through the WSGI app alone, then a cProfile of the draft."""
    import cProfile
    import pstats

    from werkzeug.test import EnvironBuilder

    from bench.bench_wsgi import app

    def hit(path: str, count: int) -> None:
        environ = EnvironBuilder(path=path, base_url="http://127.0.0.1").get_environ()
        statuses: list[str] = []

        def start_response(status, headers, exc_info=None):
            statuses.append(status)

        for _ in range(count):
            body = app(dict(environ), start_response)
            b"".join(body)
            body.close()
            if not statuses[-1].startswith("200"):
                raise RuntimeError(f"{path} answered {statuses[-1]}")

    cost = {}
    for path in (BASELINE_PATH, draft_path):
        hit(path, 20)
        began = time.process_time()
        hit(path, requests)
        cost[path] = (time.process_time() - began) / requests * 1000
        print(f"in-process CPU per request: {cost[path]:7.3f} ms  {path}")
    print(f"in-process ratio (one-line / draft): {cost[BASELINE_PATH] / cost[draft_path]:.3f}")
    profiler = cProfile.Profile()
    profiler.enable()
    hit(draft_path, requests)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(r"forum|templates|flask/|sqlalchemy/orm/session", 40)


def cpu_ratio(pages: dict) -> float | None:
    """The ratio the worker CPU per request alone would give (less sensitive to other load)."""
    base = pages["baseline"]["worker_cpu_ms_per_request"]
    draft = pages["draft"]["worker_cpu_ms_per_request"]
    return round(base / draft, 4) if base and draft else None


def check_pages(port: int, draft_path: str, info: dict) -> dict:
    """Both pages answer 200 with what they should hold; returns their sizes."""
    status, _, body = loadgen.fetch(port, BASELINE_PATH)
    if status != 200 or body != b"hola":
        raise RuntimeError(f"{BASELINE_PATH} answered {status}: {body[:200]!r}")
    status, headers, body = loadgen.fetch(port, draft_path)
    html = body.decode("utf-8")
    expected = f"{info['comments']} aportes en {info['threads']} conversaciones"
    if status != 200 or expected not in html:
        raise RuntimeError(f"{draft_path} answered {status} without «{expected}»")
    shown = html.count('class="comment level-')
    return {
        "baseline_bytes": 4,
        "draft_bytes": len(body),
        "draft_comments_shown": shown,
        "draft_sets_cookie": "Set-Cookie" in headers,
    }


def machine_info() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1] for line in handle if line.startswith("model name")]
        model = names[0].strip() if names else ""
    except OSError:
        pass
    import gunicorn

    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
    }


def fmt_ms(value) -> str:
    return f"{value:8.2f}" if value is not None else "       -"


def report(result: dict) -> str:
    m, g, pages, data = result["machine"], result["gunicorn"], result["pages"], result["data"]
    client = result["client"]
    settings = (
        f"workers={g['workers']} worker_class={g['worker_class']} threads={g['threads']} "
        f"max_requests={g['max_requests']}; the rest from gunicorn.conf.py "
        "(keepalive 5 s, access log on)"
    )
    if result["thread_cache"] is False:
        settings += "; THREAD_CACHE off"
    lines = [
        "Aporta benchmark: draft page with 1,000 comments vs a one-line Flask page",
        f"machine   nproc={m['nproc']} ({m['cpu']}), {m['platform']}, Python {m['python']}",
        f"database  {result['database']} ({result['database_url']})",
        f"data      {data['comments']} comments in {data['threads']} threads by "
        f"{data['authors']} authors, max depth {data['max_depth']}; "
        f"page 1 shows {result['sizes']['draft_comments_shown']} comments; it "
        + ("sets a" if result["sizes"]["draft_sets_cookie"] else "sets no")
        + " session cookie for an anonymous visitor",
        f"gunicorn  {g['version']}: {g['command']}",
        f"          {settings}",
        f"client    {client['name']}, {client['concurrency']} keep-alive connections, no cookies;",
        f"          warm-up {result['warmup_s']:g} s per URL, then 2 rounds of "
        f"{result['seconds'] / 2:g} s per URL in alternating order",
        "",
        f"{'page':<9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'bytes':>7} "
        f"{'requests':>8} {'errors':>6} {'server CPU ms/req':>17}  path",
    ]
    for key, label in (("baseline", "one-line"), ("draft", "draft")):
        page = pages[key]
        lat = page["latency_ms"]
        errors = page["non200"] + sum(page["transport_errors"].values())
        size = result["sizes"]["baseline_bytes" if key == "baseline" else "draft_bytes"]
        cpu = page["worker_cpu_ms_per_request"] or 0
        lines.append(
            f"{label:<9} {page['requests_per_second']:8.1f} {fmt_ms(lat['p50'])} "
            f"{fmt_ms(lat['p95'])} {fmt_ms(lat['p99'])} {size:7d} {page['requests']:8d} "
            f"{errors:6d} {cpu:17.3f}  {page['path']}"
        )
    for key in ("baseline", "draft"):
        page = pages[key]
        if page["non200"] or page["transport_errors"]:
            lines.append(f"  errors on {key}: {page['non200']} non-200, {page['transport_errors']}")
    base, draft = pages["baseline"], pages["draft"]
    lines += [
        f"req/s per run: one-line {base['runs_requests_per_second']}, "
        f"draft {draft['runs_requests_per_second']}",
        f"machine busy: {base['machine_busy']:.0%} / {draft['machine_busy']:.0%}, of which other "
        f"processes {base['others_busy']:.0%} / {draft['others_busy']:.0%} (load average "
        f"{base['loadavg']:.1f} / {draft['loadavg']:.1f}); load generator CPU ms/req: "
        f"{base['client_cpu_ms_per_request']} / {draft['client_cpu_ms_per_request']}",
        "",
        f"ratio draft / one-line: {result['ratio']:.3f} (requests per second)",
        f"                        {result['cpu_ratio'] or 0:.3f} (server CPU per request, "
        "one-line / draft)",
        f"target >= {TARGET:.2f}: {'met' if result['target_met'] else 'NOT met'}",
    ]
    others = max(base["others_busy"], draft["others_busy"])
    if others > 0.1:
        lines.append(
            f"warning: other processes took up to {others:.0%} of the machine during the runs; "
            "these figures are not comparable with a quiet run"
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    client = loadgen.choose_client(args.client)
    if args.database == "postgres":
        clients = postgres_clients(args.postgres_url)
        if clients and not args.force:
            print(
                f"{clients} other session(s) are connected to {args.postgres_url} (a test run?); "
                "wait for them to end, or pass --force to drop its schema anyway.",
                file=sys.stderr,
            )
            return 2
        busy = running_pytest()
        if busy:
            print(
                f"note: pytest is running (pids {busy}) but not connected to the database; "
                "a PostgreSQL test run started now would drop this benchmark's schema.",
                file=sys.stderr,
            )

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    workdir = tempfile.mkdtemp(prefix="aporta-bench-")
    server = None
    if args.database == "postgres":
        url = args.postgres_url
    else:
        url = "sqlite:///" + os.path.join(workdir, "bench.sqlite3")
    overrides = {
        "APORTA_SQLALCHEMY_DATABASE_URI": url,
        "DATABASE_URL": url,  # it wins over APORTA_*: a caller's own must not leak in
        "APORTA_ENV_NAME": "production",
        "APORTA_SECRET_KEY": secrets.token_hex(32),
        "FLASK_APP": "wsgi.py",
        "PYTHONUNBUFFERED": "1",
    }
    if args.no_thread_cache:
        overrides["APORTA_THREAD_CACHE"] = "false"
    os.environ.update(overrides)
    env = dict(os.environ)
    try:
        if args.database == "postgres":
            reset_postgres(url)
        started = time.monotonic()
        info = seed()
        print(
            f"seeded {info['comments']} comments on {info['path']} in "
            f"{time.monotonic() - started:.1f} s ({args.database})",
            flush=True,
        )

        if args.profile:
            profile_in_process(info["path"], args.profile)
            return 0
        server = Gunicorn(
            "bench.bench_wsgi:app",
            env,
            os.path.join(workdir, "gunicorn.log"),
            workers=args.workers,
            threads=args.threads,
            max_requests=args.max_requests,
        )
        print(f"gunicorn: {server.command_line}", flush=True)
        server.start()
        sizes = check_pages(server.port, info["path"], info)

        paths = {"baseline": BASELINE_PATH, "draft": info["path"]}
        answer = {key: loadgen.answer_bytes(server.port, paths[key]) for key in paths}
        sizes.update({f"{key}_answer_bytes": answer[key] for key in paths})
        for key in ("baseline", "draft", "baseline", "draft"):  # every worker warms up both
            loadgen.run(
                client, server.port, paths[key], args.warmup / 2, args.concurrency, args.wrk_threads
            )
        half = args.seconds / 2
        parts: dict[str, list] = {"baseline": [], "draft": []}
        for order in (("baseline", "draft"), ("draft", "baseline")):
            for key in order:
                print(f"measuring {key} ({paths[key]}) for {half:g} s ...", flush=True)
                parts[key].append(measure(client, server, paths[key], half, args, answer[key]))

        pages = {key: combine(parts[key]) for key in parts}
        for key in pages:
            pages[key]["path"] = paths[key]
        ratio = pages["draft"]["requests_per_second"] / pages["baseline"]["requests_per_second"]
        result = {
            "benchmark": "draft_page",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "database": args.database,
            "database_url": url,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "thread_cache": not args.no_thread_cache,
            "machine": machine_info(),
            "data": info,
            "sizes": sizes,
            "gunicorn": {
                "command": server.command_line,
                **server.settings,
                "version": machine_info()["gunicorn"],
            },
            "client": {
                "name": loadgen.wrk_version() if client == "wrk" else "python (threads, http/1.1)",
                "concurrency": args.concurrency,
                "wrk_threads": args.wrk_threads if client == "wrk" else None,
            },
            "pages": {
                key: {k: v for k, v in page.items() if k != "_run"} for key, page in pages.items()
            },
            "ratio": round(ratio, 4),
            "cpu_ratio": cpu_ratio(pages),
            "target": TARGET,
            "target_met": ratio >= TARGET,
        }
        if any(page["non200"] or page["transport_errors"] for page in result["pages"].values()):
            result["server_log_problems"] = server.log_problems()
        print()
        print(report(result))
        for line in result.get("server_log_problems", []):
            print(f"  server log: {line}")
        os.makedirs(OUT_DIR, exist_ok=True)
        suffix = "-no-thread-cache" if args.no_thread_cache else ""
        out = os.path.join(OUT_DIR, f"draft_page-{args.database}{suffix}.json")
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2, ensure_ascii=False)
        print(f"results   {os.path.relpath(out, REPO)}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
        if args.database == "postgres":
            try:  # leave the database empty, unless someone else started using it meanwhile
                if postgres_clients(url) and not args.force:
                    print(f"left {url} as it is: other sessions are connected", file=sys.stderr)
                else:
                    reset_postgres(url)
            except Exception as error:  # noqa: BLE001
                print(f"could not empty {url}: {error}", file=sys.stderr)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

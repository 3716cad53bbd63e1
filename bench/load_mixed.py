"""Mixed traffic for a bounded time against gunicorn: readers, posters and a moderator.

    .venv/bin/python bench/load_mixed.py [--database sqlite|postgres] [--seconds 60]
                                         [--readers 4] [--posters 4] [--workers 2 --threads 4]

Builds a fresh database with the migrations (SQLite in a temporary folder, or a private
PostgreSQL cluster started for the run on 127.0.0.1, see _pgcluster.py), seeds the demo
consultation (open now) with comments, one account per poster and a moderator, and serves
wsgi:app with gunicorn and the project's gunicorn.conf.py on 127.0.0.1 (development mode,
rate limits raised so that they do not throttle the load; the settings are printed).

Closed loop, a fixed number of concurrent clients, each on its own keep-alive connection:
readers GET the home, theme, draft pages and permalinks anonymously; posters log in, load a
draft page and post a comment carrying a unique marker with the form's idempotency key (a
302 to the comment's anchor is the acknowledgement; on a connection error or a 5xx they
send the same key again); the moderator reads the moderation queue, a contribution's page
and the secretariat's export page. At the end the database is checked: every acknowledged
marker must be there exactly once, and no marker twice ("lost: N, doubled: N"). Prints
requests/s and latency p50/p95/p99 per kind of request; JSON in bench/out/. Nothing
asserts a time.
"""

import argparse
import http.client
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench._pgcluster import PgCluster  # noqa: E402
from bench.server import Gunicorn, cpu_seconds  # noqa: E402

HOST = "127.0.0.1"
OUT_DIR = os.path.join(REPO, "bench", "out")
DEMO_FILE = os.path.join(REPO, "forum", "consultation", "demo", "paga_2017_2019.yaml")
TIMEOUT = 30.0  # seconds one request may take
POST_ATTEMPTS = 60  # sends of one post (same idempotency key) before giving up
POST_GIVE_UP_S = 60.0  # ... or seconds
MAX_REQUESTS_PER_CLIENT = 200_000
HIGH_LIMIT = "1000000 per minute"
PASSWORD = "clave-de-prueba-de-carga"  # noqa: S105 (throwaway accounts in a throwaway database)
SEED_COMMENTS = 45  # on the first draft: three pages of threads
TOKEN = re.compile(r'<input(?=[^>]*\bname="csrf_token")[^>]*\bvalue="([^"]+)"')
KEY = re.compile(r'<input(?=[^>]*\bname="idempotency_key")[^>]*\bvalue="([^"]+)"')
SENTENCES = [
    "Propongo que la plataforma publique los datos en formatos abiertos y reutilizables.",
    "En nuestra región la información llega tarde y solo en documentos escaneados.",
    "Sería útil un cronograma con hitos trimestrales y responsables con nombre propio.",
    "El compromiso debería incluir indicadores de resultado, no solo de actividades.",
    "Las municipalidades rurales necesitan capacitación antes de usar el sistema.",
]


# --- an HTTP client with cookies ---------------------------------------------------------------


class TransportError(Exception):
    """No HTTP answer: refused, reset, closed, timed out."""


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes


class Client:
    """One keep-alive HTTP/1.1 connection with a cookie jar; redirects are not followed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def request(self, method: str, path: str, form: dict | None = None) -> Answer:
        headers = {"Accept-Encoding": "identity", "User-Agent": "aporta-bench"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode("utf-8")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.connection is None:
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise TransportError(type(error).__name__) from error
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                cookie, _, _ = value.partition(";")
                key, _, val = cookie.partition("=")
                self.cookies[key.strip()] = val.strip()
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return Answer(response.status, dict(response.getheaders()), data)


def form_token(body: bytes) -> str:
    match = TOKEN.search(body.decode("utf-8", "replace"))
    if not match:
        raise ValueError("no csrf_token in the page")
    return match.group(1)


# --- what the clients record ---------------------------------------------------------------------


@dataclass
class Stats:
    """Answers by kind: latencies (ms), statuses, transport errors; and a timeline."""

    began: float = field(default_factory=time.monotonic)
    latency: dict = field(default_factory=lambda: defaultdict(list))
    statuses: dict = field(default_factory=lambda: defaultdict(Counter))
    errors: dict = field(default_factory=lambda: defaultdict(Counter))
    timeline: list = field(default_factory=list)  # (start s, end s, kind, status or error)
    posts: dict = field(default_factory=dict)  # marker -> {"acked", "sends", "retries"}
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, client: Client, kind: str, method: str, path: str, form=None) -> Answer:
        """One request, recorded; re-raises TransportError after recording it."""
        start = time.monotonic()
        try:
            answer = client.request(method, path, form)
        except TransportError as error:
            end = time.monotonic()
            with self.lock:
                self.errors[kind][str(error)] += 1
                self.timeline.append((start - self.began, end - self.began, kind, str(error)))
            raise
        end = time.monotonic()
        with self.lock:
            self.latency[kind].append((end - start) * 1000)
            self.statuses[kind][answer.status] += 1
            self.timeline.append((start - self.began, end - self.began, kind, answer.status))
        return answer


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


def summarise(stats: Stats, seconds: float, expected: dict) -> dict:
    """Per kind: requests, rate, latency percentiles, statuses; and the unexpected answers."""
    kinds = {}
    for kind in sorted(set(stats.statuses) | set(stats.errors)):
        latency = stats.latency.get(kind, [])
        statuses = stats.statuses.get(kind, Counter())
        kinds[kind] = {
            "requests": sum(statuses.values()),
            "requests_per_second": round(sum(statuses.values()) / seconds, 1),
            "latency_ms": {
                f"p{p}": round(v, 1) if (v := percentile(latency, p)) is not None else None
                for p in (50, 95, 99)
            },
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "unexpected": sum(v for k, v in statuses.items() if k != expected.get(kind, 200)),
            "transport_errors": dict(stats.errors.get(kind, {})),
        }
    everything = [v for values in stats.latency.values() for v in values]
    total = sum(k["requests"] for k in kinds.values())
    return {
        "seconds": round(seconds, 2),
        "requests": total,
        "requests_per_second": round(total / seconds, 1),
        "latency_ms": {
            f"p{p}": round(v, 1) if (v := percentile(everything, p)) is not None else None
            for p in (50, 95, 99)
        },
        "server_errors_5xx": sum(
            v for s in stats.statuses.values() for k, v in s.items() if k >= 500
        ),
        "transport_errors": sum(sum(e.values()) for e in stats.errors.values()),
        "kinds": kinds,
    }


EXPECTED = {"login": 302, "post": 302}


# --- the clients ---------------------------------------------------------------------------------


class Traffic:
    """Reader, poster and moderator threads until `stop()` or their deadline."""

    def __init__(self, port: int, info: dict, run_id: str, seconds: float) -> None:
        self.port = port
        self.info = info
        self.run_id = run_id
        self.stats = Stats()
        self.deadline = time.monotonic() + seconds
        self.stopping = threading.Event()
        self.aborted = threading.Event()  # Ctrl-C: posts stop retrying too
        self.threads: list[threading.Thread] = []
        self.failures: list[str] = []

    def running(self) -> bool:
        return not self.stopping.is_set() and time.monotonic() < self.deadline

    def start(self, readers: int, posters: int, moderator: bool) -> None:
        jobs = [(self.reader, (n,)) for n in range(readers)]
        jobs += [(self.poster, (n,)) for n in range(posters)]
        if moderator:
            jobs.append((self.moderator, ()))
        for target, args in jobs:
            thread = threading.Thread(target=self._guard, args=(target, *args), daemon=True)
            self.threads.append(thread)
        self.stats.began = time.monotonic()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Let each client finish its request (and a post its resends), then return."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=5 if self.aborted.is_set() else POST_GIVE_UP_S + TIMEOUT + 5)

    def abort(self) -> None:
        self.aborted.set()
        self.stopping.set()

    def wait(self) -> None:
        while self.running():
            time.sleep(0.2)
        self.stop()

    def _guard(self, target, *args) -> None:
        try:
            target(*args)
        except Exception as error:  # noqa: BLE001 (reported, not hidden)
            self.failures.append(f"{target.__name__}{args}: {type(error).__name__}: {error}")

    def _backoff(self, attempt: int) -> None:
        time.sleep(min(1.0, 0.05 * (attempt + 1)))

    def reader(self, number: int) -> None:
        """Anonymous visitor: home, themes, drafts (some second pages), permalinks."""
        rng = random.Random(number)
        client = Client(self.port)
        paths = self.info["read_paths"]
        try:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if not self.running():
                    return
                kind, path = rng.choice(paths)
                try:
                    self.stats.timed(client, kind, "GET", path)
                except TransportError:
                    self._backoff(0)
        finally:
            client.close()

    def login(self, client: Client, email: str) -> None:
        """Log in (retrying while the server or the database is away)."""
        for attempt in range(POST_ATTEMPTS):
            if not self.running():
                return
            try:
                page = self.stats.timed(client, "login page", "GET", "/cuenta/entrar")
                if page.status != 200:
                    self._backoff(attempt)
                    continue
                form = {"csrf_token": form_token(page.body), "email": email, "password": PASSWORD}
                answer = self.stats.timed(client, "login", "POST", "/cuenta/entrar", form)
            except TransportError:
                self._backoff(attempt)
                continue
            if answer.status == 302:
                return
            self._backoff(attempt)
        raise RuntimeError(f"{email} could not log in")

    def poster(self, number: int) -> None:
        """Log in, then: load a draft page, post a comment with its idempotency key, repeat."""
        rng = random.Random(1000 + number)
        client = Client(self.port)
        self.login(client, self.info["posters"][number])
        sequence = 0
        try:
            while self.running() and sequence < MAX_REQUESTS_PER_CLIENT:
                draft_path = rng.choice(self.info["draft_paths"])
                try:
                    page = self.stats.timed(client, "draft (poster)", "GET", draft_path)
                except TransportError:
                    self._backoff(0)
                    continue
                if page.status != 200:
                    self._backoff(0)
                    continue
                html = page.body.decode("utf-8", "replace")
                key = KEY.search(html)
                token = TOKEN.search(html)
                if not (key and token):
                    raise RuntimeError(f"no comment form on {draft_path} for a logged-in poster")
                sequence += 1
                marker = f"bench-{self.run_id}-{number}-{sequence}"
                form = {
                    "csrf_token": token.group(1),
                    "idempotency_key": key.group(1),
                    "body": f"{rng.choice(SENTENCES)} [{marker}]",
                }
                self.send_post(client, draft_path + "/aportes", form, marker)
        finally:
            client.close()

    def send_post(self, client: Client, path: str, form: dict, marker: str) -> None:
        """Send one post until it is acknowledged (302 to its anchor), always the same key.

        Connection errors and 5xx are retried (the first send may or may not have been
        stored); any other answer ends the attempt, unacknowledged.
        """
        record = {"acked": False, "sends": 0, "answers": []}
        with self.stats.lock:
            self.stats.posts[marker] = record
        give_up = time.monotonic() + POST_GIVE_UP_S
        for attempt in range(POST_ATTEMPTS):
            if self.aborted.is_set():
                return
            record["sends"] += 1
            try:
                answer = self.stats.timed(client, "post", "POST", path, form)
            except TransportError as error:
                record["answers"].append(str(error))
                if time.monotonic() > give_up:
                    return
                self._backoff(attempt)
                continue
            record["answers"].append(answer.status)
            if answer.status == 302 and "#aporte-" in answer.headers.get("Location", ""):
                record["acked"] = True
                return
            if answer.status < 500 or time.monotonic() > give_up:
                return
            self._backoff(attempt)

    def moderator(self) -> None:
        """Log in as moderator and read the queue, a contribution and the export page."""
        rng = random.Random(7)
        client = Client(self.port)
        self.login(client, self.info["moderator"])
        paths = []
        for kind, path in self.info["moderator_paths"]:
            try:
                if client.request("GET", path).status == 200:
                    paths.append((kind, path))
            except TransportError:
                pass
        if not paths:
            raise RuntimeError("no moderation or export page answered 200 to the moderator")
        try:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if not self.running():
                    return
                kind, path = rng.choice(paths)
                try:
                    self.stats.timed(client, kind, "GET", path)
                except TransportError:
                    self._backoff(0)
        finally:
            client.close()


# --- the database -------------------------------------------------------------------------------


def server_env(url: str, extra: dict | None = None) -> dict:
    """The environment of the seeding code and of gunicorn: development mode, high limits."""
    env = dict(os.environ)
    env.update(
        {
            "APORTA_SQLALCHEMY_DATABASE_URI": url,
            "DATABASE_URL": url,  # it wins over APORTA_*: a caller's own must not leak in
            "APORTA_ENV_NAME": "development",  # production forces secure cookies over http
            "APORTA_SECRET_KEY": secrets.token_hex(24),
            "APORTA_POST_LIMIT": HIGH_LIMIT,
            "APORTA_LOGIN_LIMIT": HIGH_LIMIT,
            "APORTA_LOGIN_ACCOUNT_LIMIT": HIGH_LIMIT,
            "APORTA_REGISTER_LIMIT": HIGH_LIMIT,
            "FLASK_APP": "wsgi.py",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def seed(env: dict, posters: int) -> dict:
    """Migrate the empty database; load the demo consultation, comments and accounts."""
    import yaml
    from flask_migrate import upgrade
    from sqlalchemy import select

    from forum import clock, create_app
    from forum.accounts import services as accounts
    from forum.accounts.models import ORGANISATION_TYPES, REGIONS
    from forum.consultation import services
    from forum.consultation.models import Draft, Theme
    from forum.extensions import db

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        app = create_app()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    logging.getLogger("forum").setLevel(logging.WARNING)
    rng = random.Random(2019)
    with app.app_context():
        upgrade(revision="heads")
        with open(DEMO_FILE, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        data.pop("comments", None)
        consultation = services.import_consultation(data, actor="bench")
        now = clock.now()
        services.set_window(
            consultation, now - timedelta(days=3), now + timedelta(days=14), actor="bench"
        )
        drafts = db.session.scalars(
            select(Draft).where(Draft.consultation_id == consultation.id).order_by(Draft.id)
        ).all()[:4]
        themes = db.session.scalars(
            select(Theme).where(Theme.consultation_id == consultation.id).order_by(Theme.id)
        ).all()[:3]

        def account(email: str, role: str = "citizen"):
            return accounts.register_user(
                name=f"Participante {email.split('@')[0]}",
                email=email,
                password=PASSWORD,
                organisation="",
                organisation_type=sorted(ORGANISATION_TYPES)[0],
                region=sorted(REGIONS)[0],
                is_name_public=True,
                role=role,
            )

        poster_emails = [f"poster{n}@correo.example" for n in range(posters)]
        authors = [account(email) for email in poster_emails]
        account("moderadora@correo.example", role="moderator")
        seeded = []
        for n in range(SEED_COMMENTS):  # two thirds on the first draft: it has a page 2
            seeded.append(
                services.add_contribution(
                    consultation=consultation,
                    draft=drafts[0] if n % 3 else drafts[n % len(drafts)],
                    body=" ".join(rng.sample(SENTENCES, 2)),
                    channel="web",
                    author=rng.choice(authors) if authors else None,
                    received_at=now - timedelta(hours=2) + timedelta(minutes=n),
                )
            )
        for n in range(15):
            parent = rng.choice(seeded[:SEED_COMMENTS])
            seeded.append(
                services.add_contribution(
                    consultation=consultation,
                    draft=parent.draft,
                    body=" ".join(rng.sample(SENTENCES, 2)),
                    channel="web",
                    author=rng.choice(authors) if authors else None,
                    parent=parent,
                    received_at=now - timedelta(minutes=60 - n),
                )
            )
        db.session.commit()
        slug = consultation.slug
        draft_paths = [f"/consultas/{slug}/borradores/{d.code}" for d in drafts]
        ids = [c.id for c in seeded]
        read_paths = [("home", "/")]
        read_paths += [("theme", f"/consultas/{slug}/temas/{t.slug}") for t in themes]
        read_paths += [("draft", path) for path in draft_paths]
        read_paths += [("draft", draft_paths[0] + "?pagina=2")]
        read_paths += [("permalink", f"/aportes/{i}") for i in ids[:: max(1, len(ids) // 8)]]
        info = {
            "consultation": slug,
            "drafts": [d.code for d in drafts],
            "seeded_comments": len(seeded),
            "draft_paths": draft_paths,
            "read_paths": read_paths,
            "posters": poster_emails,
            "moderator": "moderadora@correo.example",
            "moderator_paths": [
                ("moderation queue", "/moderacion/"),
                ("moderation queue", "/moderacion/?pagina=2"),
                ("moderation contribution", f"/moderacion/aportes/{ids[0]}"),
                ("export page", "/datos/secretaria/"),
            ],
        }
        db.session.remove()
        db.engine.dispose()
    return info


def check_posts(url: str, run_id: str, posts: dict) -> dict:
    """Count each marker in the database: acknowledged ones must be there exactly once."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            bodies = connection.scalars(
                text("SELECT body FROM contributions WHERE body LIKE :pattern"),
                {"pattern": f"%bench-{run_id}-%"},
            ).all()
    finally:
        engine.dispose()
    found = Counter(m for body in bodies for m in re.findall(rf"bench-{run_id}-\d+-\d+", body))
    acked = [m for m, r in posts.items() if r["acked"]]
    unacked = [m for m, r in posts.items() if not r["acked"]]
    return {
        "attempted": len(posts),
        "acknowledged": len(acked),
        "unacknowledged": len(unacked),
        "unacknowledged_stored": sum(1 for m in unacked if found[m]),
        "stored": sum(found.values()),
        "lost": sum(1 for m in acked if found[m] == 0),
        "doubled": sum(1 for m, n in found.items() if n > 1),
        "unknown": sum(1 for m in found if m not in posts),
        "resent": sum(1 for r in posts.values() if r["sends"] > 1),
        "lost_markers": [m for m in acked if found[m] == 0][:10],
        "doubled_markers": [m for m, n in found.items() if n > 1][:10],
    }


def log_count(path: str, needle: str) -> int:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if needle in line)
    except OSError:
        return 0


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --- the run --------------------------------------------------------------------------------------


class Environment:
    """A database (SQLite file or private PostgreSQL) and a seeded gunicorn; `close()` ends all."""

    def __init__(self, database: str, posters: int, workers: int, threads: int, extra_env=None):
        self.database = database
        self.workdir = tempfile.mkdtemp(prefix="aporta-load-")
        self.cluster: PgCluster | None = None
        self.server: Gunicorn | None = None
        self.posters = posters
        self.workers, self.threads = workers, threads
        self.extra_env = extra_env or {}
        self.keep = False  # keep the folder with the server log

    def open(self) -> dict:
        if self.database == "postgres":
            self.cluster = PgCluster()
            self.cluster.start()
            self.url = self.cluster.url
        else:
            self.url = "sqlite:///" + os.path.join(self.workdir, "load.sqlite3")
        env = server_env(self.url, self.extra_env)
        started = time.monotonic()
        self.info = seed(env, self.posters)
        self.seed_seconds = time.monotonic() - started
        self.server = Gunicorn(
            "wsgi:app",
            env,
            os.path.join(self.workdir, "gunicorn.log"),
            workers=self.workers,
            threads=self.threads,
        )
        self.server.start()
        return self.info

    def describe(self) -> list[str]:
        s = self.server.settings
        lines = [
            f"database  {self.database}: {self.url}"
            + (f" ({self.cluster.version}, private cluster)" if self.cluster else " (WAL)"),
            f"gunicorn  {self.server.command_line}",
            f"          workers={s['workers']} worker_class={s['worker_class']} "
            f"threads={s['threads']} max_requests=0; keepalive 5 s, timeout 120 s and the access "
            "log from gunicorn.conf.py",
            f"app       development mode; APORTA_POST_LIMIT, _LOGIN_LIMIT, _LOGIN_ACCOUNT_LIMIT, "
            f"_REGISTER_LIMIT = '{HIGH_LIMIT}'",
        ]
        if self.extra_env:
            lines.append(f"          extra environment: {self.extra_env}")
        return lines

    def close(self) -> None:
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            if self.cluster is not None:
                self.cluster.remove()
            if self.keep:
                print(f"kept {self.workdir} (the server log)")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds (60)")
    parser.add_argument("--readers", type=int, default=4, help="anonymous readers (4)")
    parser.add_argument("--posters", type=int, default=4, help="logged-in posters (4)")
    parser.add_argument("--no-moderator", action="store_true")
    parser.add_argument(
        "--ramp",
        default="",
        metavar="N,N,...",
        help="first run N readers + N posters + the moderator for --ramp-seconds at each "
        "level, then measure with the fewest clients reaching 90%% of the highest rate",
    )
    parser.add_argument("--ramp-seconds", type=float, default=10, help="seconds per level (10)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (4)")
    return parser.parse_args()


def interruptible() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so every finally block runs."""

    def terminate(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def print_kinds(summary: dict) -> None:
    print(
        f"{'kind':<24} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
        "  statuses / errors"
    )
    for kind, k in summary["kinds"].items():
        lat = k["latency_ms"]
        cells = [f"{v:7.1f}" if v is not None else "      -" for v in lat.values()]
        errors = f" {k['transport_errors']}" if k["transport_errors"] else ""
        print(
            f"{kind:<24} {k['requests']:8d} {k['requests_per_second']:7.1f} {' '.join(cells)}"
            f"  {k['statuses']}{errors}"
        )
    lat = summary["latency_ms"]
    print(
        f"{'all':<24} {summary['requests']:8d} {summary['requests_per_second']:7.1f} "
        f"{lat['p50']:7.1f} {lat['p95']:7.1f} {lat['p99']:7.1f}"
    )


def main() -> int:
    args = parse_args()
    interruptible()
    run_id = secrets.token_hex(3)
    levels = [int(level) for level in args.ramp.split(",") if level.strip()]
    accounts = max([args.posters, *levels])
    environment = Environment(args.database, accounts, args.workers, args.threads)
    traffic = None
    ramp = []
    try:
        load_before = loadavg()
        info = environment.open()
        described = environment.describe()
        print("Aporta: mixed load (closed loop, fixed number of clients)")
        print(f"machine   nproc={os.cpu_count()}, load average before: {load_before}")
        for line in described:
            print(line)
        print(
            f"data      {info['seeded_comments']} seeded comments on drafts {info['drafts']}, "
            f"{accounts} poster accounts, 1 moderator "
            f"(seeded in {environment.seed_seconds:.1f} s)"
        )
        print(
            f"clients   {args.readers} readers, {args.posters} posters, "
            f"{0 if args.no_moderator else 1} moderator; one keep-alive connection each; "
            f"{args.seconds:g} s",
            flush=True,
        )
        for level in levels:
            traffic = Traffic(environment.server.port, info, f"r{level}{run_id}", args.ramp_seconds)
            traffic.start(level, level, not args.no_moderator)
            traffic.wait()
            step = summarise(traffic.stats, time.monotonic() - traffic.stats.began, EXPECTED)
            check = check_posts(environment.url, f"r{level}{run_id}", traffic.stats.posts)
            ramp.append(
                {
                    "readers": level,
                    "posters": level,
                    "requests_per_second": step["requests_per_second"],
                    "latency_ms": step["latency_ms"],
                    "server_errors_5xx": step["server_errors_5xx"],
                    "transport_errors": step["transport_errors"],
                    "lost": check["lost"],
                    "doubled": check["doubled"],
                }
            )
            print(f"ramp      {level} readers + {level} posters: {ramp[-1]}", flush=True)
        if ramp:
            top = max(step["requests_per_second"] for step in ramp)
            best = next(step for step in ramp if step["requests_per_second"] >= 0.9 * top)
            args.readers = args.posters = best["readers"]
            print(
                f"measured run: {best['readers']} readers + {best['posters']} posters, the "
                f"fewest clients reaching 90 % of the highest rate ({top} req/s)"
            )
        workers = environment.server.worker_pids()
        cpu_before = cpu_seconds(workers)
        traffic = Traffic(environment.server.port, info, run_id, args.seconds)
        traffic.start(args.readers, args.posters, not args.no_moderator)
        traffic.wait()
        elapsed = time.monotonic() - traffic.stats.began
        worker_cpu = cpu_seconds(workers) - cpu_before
        load_after = loadavg()
        environment.server.stop()  # every answer is out: the database holds what was acked
        environment.server = None
        summary = summarise(traffic.stats, elapsed, EXPECTED)
        check = check_posts(environment.url, run_id, traffic.stats.posts)
        locked = log_count(os.path.join(environment.workdir, "gunicorn.log"), "database is locked")
        print()
        print_kinds(summary)
        print()
        print(
            f"server    5xx answers: {summary['server_errors_5xx']}, transport errors: "
            f"{summary['transport_errors']}, 'database is locked' in the log: {locked}, "
            f"worker CPU {worker_cpu:.1f} s in {elapsed:.1f} s"
        )
        print(
            f"posts     {check['attempted']} sent, {check['acknowledged']} acknowledged, "
            f"{check['unacknowledged']} not ({check['unacknowledged_stored']} of them stored), "
            f"{check['resent']} resent with the same key"
        )
        print(f"load average after: {load_after}")
        for failure in traffic.failures:
            print(f"client failure: {failure}")
        lost = check["lost"] + sum(step["lost"] for step in ramp)
        doubled = check["doubled"] + sum(step["doubled"] for step in ramp)
        if ramp:
            print(f"(ramp and measured run together: lost {lost}, doubled {doubled})")
        print(f"lost: {check['lost']}, doubled: {check['doubled']}")
        result = {
            "benchmark": "load_mixed",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "database": args.database,
            "nproc": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "setup": described,
            "clients": {
                "readers": args.readers,
                "posters": args.posters,
                "moderator": not args.no_moderator,
            },
            "ramp": ramp,
            "summary": summary,
            "worker_cpu_s": round(worker_cpu, 1),
            "database_is_locked": locked,
            "posts": check,
            "client_failures": traffic.failures,
        }
        os.makedirs(OUT_DIR, exist_ok=True)
        suffix = "-ramp" if ramp else ""
        out = os.path.join(OUT_DIR, f"load_mixed-{args.database}{suffix}.json")
        with open(out, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2, ensure_ascii=False)
        print(f"results   {os.path.relpath(out, REPO)}")
        errors = summary["server_errors_5xx"] + sum(s["server_errors_5xx"] for s in ramp)
        healthy = not (lost or doubled or errors)
        return 0 if healthy and not traffic.failures else 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if traffic is not None:
            traffic.abort()
        environment.close()


if __name__ == "__main__":
    sys.exit(main())

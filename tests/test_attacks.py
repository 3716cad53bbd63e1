"""Tried as an attacker would, against a running server.

1. Script injection: every payload of tests/data/xss/payloads.txt goes through every text
   field a person fills that others later see (name and organisation at registration,
   comment, reply, edited comment, the refusal page that gives the text back). Every page
   that shows them is loaded in Debian's Chromium, with the Content-Security-Policy
   bypassed so that the escaping itself is what is tested: no marker set, no dialog, no
   request to another address, no dangerous element or attribute, the text shown as text.
2. SQL injection: sqlmap against the live server's query parameters, path segments and the
   login and registration forms finds no injectable parameter.
3. Cross-site request forgery: forms served from another origin (same site, other port)
   and from another site auto-submit to the app while the victim is logged in; the app
   refuses them (400) and nothing changes. SameSite=Lax keeps the cookie off cross-site POSTs.
"""

import base64
import importlib.util
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from forum import clock, text
from forum.accounts.models import CONSENT_VERSION, User
from forum.consultation import services
from forum.consultation.models import Consultation, Contribution
from forum.extensions import db
from forum.moderation import services as moderation
from tests.conftest import csrf_token, form_post, login, require_service
from tests.factories import PASSWORD, draft, make_comment, make_consultation, make_user

CHROMIUM = "/usr/bin/chromium"
ATTACKER_SITE = "attacker.test"  # another site, resolved by Chromium itself to 127.0.0.1
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    f"--host-resolver-rules=MAP {ATTACKER_SITE} 127.0.0.1",
]
TIMEOUT_MS = 10_000
PAYLOADS_FILE = Path(__file__).parent / "data" / "xss" / "payloads.txt"
DRAFT_PATH = "/consultas/paga-prueba/borradores/SAN-1"
NO_LIMITS = "100000 per minute"
LIMITS = ("LOGIN_LIMIT", "LOGIN_ACCOUNT_LIMIT", "REGISTER_LIMIT", "RESET_LIMIT", "POST_LIMIT")
CSRF_MESSAGE = "La página caducó o el formulario no es válido"

# One round trip per page: markers, dangerous markup, forbidden text, and the texts asked for.
AUDIT = """
({needles, texts, values}) => {
  const bad = [];
  const forbidden = new Set(['SCRIPT', 'IFRAME', 'FRAME', 'OBJECT', 'EMBED', 'BASE', 'STYLE',
                             'APPLET', 'MATH', 'SVG', 'TEMPLATE', 'NOSCRIPT', 'XMP']);
  const never = ['srcdoc', 'ping', 'srcset', 'data', 'background', 'poster', 'style'];
  const urls = ['href', 'src', 'action', 'formaction', 'xlink:href'];
  for (const el of document.querySelectorAll('*')) {
    const tag = el.tagName.toUpperCase();
    if (forbidden.has(tag)) bad.push('element ' + tag);
    if (tag === 'META' && el.hasAttribute('http-equiv')) bad.push('meta http-equiv');
    if (tag === 'LINK' && new URL(el.href).origin !== location.origin) bad.push('link ' + el.href);
    if (tag === 'IMG') bad.push('img ' + el.getAttribute('src'));
    for (const name of el.getAttributeNames()) {
      const value = el.getAttribute(name);
      if (name.startsWith('on') || never.includes(name)) bad.push(tag + ' ' + name + '=' + value);
      if (urls.includes(name)) {
        let scheme;
        try { scheme = new URL(value, location.href).protocol; } catch (e) { scheme = 'invalid'; }
        if (!SAFE.includes(scheme)) bad.push(tag + ' ' + name + '=' + value);
      }
    }
  }
  const html = document.documentElement.outerHTML;
  const text = (selector) => {
    const el = document.querySelector(selector);
    return el === null ? null : el.textContent;
  };
  const value = (selector) => {
    const el = document.querySelector(selector);
    return el === null ? null : el.value;
  };
  return {
    marker: typeof window.__xss,
    frames: window.frames.length,
    bad: bad,
    found: needles.filter((needle) => html.includes(needle)),
    texts: Object.fromEntries(texts.map((s) => [s, text(s)])),
    values: Object.fromEntries(values.map((s) => [s, value(s)])),
  };
}
""".replace("SAFE", repr(["http:", "https:", "mailto:"]))
# What a template would print had it evaluated {{config}} or a Python object.
EVALUATED = ["&lt;Config", "<Config", "&lt;class", "<class", "&lt;function", "<function"]

_ESCAPE = re.compile(r"⟪U\+([0-9A-F]{4,6})⟫|⟪PAD (\d+)⟫")
_TAG = re.compile(r"<[a-zA-Z!/][a-zA-Z0-9]*")
_LIMA_TIME = re.compile(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}")


def load_payloads() -> list[str]:
    """The corpus, with its two escapes expanded (code points and long filler)."""

    def expand(match: re.Match) -> str:
        if match.group(1):
            return chr(int(match.group(1), 16))
        filler = "Relleno largo para probar límites. "
        size = int(match.group(2))
        return (filler * (size // len(filler) + 1))[:size]

    lines = PAYLOADS_FILE.read_text(encoding="utf-8").splitlines()
    return [_ESCAPE.sub(expand, line) for line in lines if line and not line.startswith("# ")]


PAYLOADS = load_payloads()


def as_shown(value: str) -> str:
    """What a browser shows of stored text: NUL is dropped or replaced, CR is a line end."""
    return value.replace("\x00", "").replace("\ufffd", "").replace("\r\n", "\n").replace("\r", "\n")


def commit() -> None:
    db.session.commit()


def fresh_db() -> None:
    db.session.rollback()
    db.session.expire_all()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module, that resolves the attacker's site to 127.0.0.1."""
    require_service(os.path.exists(CHROMIUM), f"Debian's Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the package is in requirements-dev.txt
        require_service(False, "the playwright Python package")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def unlimited(app):
    """Rate limits out of the way (the tests send many requests; conftest restores them)."""
    for name in LIMITS:
        app.config[name] = NO_LIMITS
    return app


class Visitor:
    """A browser context that records dialogs and refuses every request off the app."""

    def __init__(self, context, origin: str, allowed: tuple[str, ...] = ()):
        self.context = context
        self.origin = origin
        self.allowed = (origin + "/", *allowed)
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        context.route("**/*", self._route)
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.set_default_navigation_timeout(TIMEOUT_MS)
        self.page.on("dialog", self._on_dialog)

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(self.allowed):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def log_in(self, email: str) -> None:
        page = self.page
        page.goto("/cuenta/entrar")
        page.get_by_label("Correo electrónico").fill(email)
        page.get_by_label("Contraseña", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Entrar", exact=True).click()
        page.get_by_role("button", name=re.compile(r"^Salir")).wait_for()

    def assert_harmless(
        self, where: str, secret: str, texts: tuple[str, ...] = (), values: tuple[str, ...] = ()
    ) -> dict[str, str | None]:
        """Nothing ran, nothing left the site, nothing dangerous is in the document.

        Returns the text of each selector in `texts` and the value of each in `values`.
        """
        arg = {"needles": [secret, *EVALUATED], "texts": list(texts), "values": list(values)}
        audit = self.page.evaluate(AUDIT, arg)
        assert audit["marker"] == "undefined", f"a payload ran on {where}"
        assert self.dialogs == [], f"a dialog opened on {where}: {self.dialogs}"
        assert self.foreign == [], f"requests left the site from {where}: {self.foreign}"
        assert audit["bad"] == [] and audit["frames"] == 0, f"dangerous markup on {where}"
        assert audit["found"] == [], f"secret or evaluated template on {where}"
        return {**audit["texts"], **audit["values"]}


@pytest.fixture
def visitor(browser, live_server) -> Iterator[Callable[..., Visitor]]:
    """Open browser contexts on the live server; all closed after the test."""
    contexts = []

    def _open(bypass_csp: bool = True, allowed: tuple[str, ...] = ()) -> Visitor:
        context = browser.new_context(base_url=live_server, locale="es-PE", bypass_csp=bypass_csp)
        contexts.append(context)
        return Visitor(context, live_server, allowed)

    yield _open
    for context in contexts:
        context.close()


# --------------------------------------------------------------------------- 1. XSS


def test_corpus_is_large_and_covers_the_classes():
    assert len(PAYLOADS) >= 60
    corpus = "\n".join(PAYLOADS).lower()
    for needle in [
        "<script",
        "onerror",
        "javascript:",
        "data:text/html",
        "vbscript:",
        "<svg",
        "<math",
        "srcdoc",
        "http-equiv",
        "expression(",
        "{{7*7}}",
        "{{config}}",
        "](javascript:",
        "![",
        "<https://",
        '"><svg',
        "\u202e",
        "\x00",
        "&#106;",
        "jav\tascript",
    ]:
        assert needle in corpus, needle
    assert max(len(p) for p in PAYLOADS) > 4000
    for payload in PAYLOADS:
        assert _has_marker(payload), f"payload without a marker: {payload!r}"


def _has_marker(payload: str) -> bool:
    """Would set window.__xss, open a dialog, call another address, or is a template."""
    encoded = re.search(r"base64,([A-Za-z0-9+/=]+)", payload)
    if encoded:
        payload += base64.b64decode(encoded.group(1)).decode()
    markers = ("__xss", "alert(", "127.0.0.1:9", "{{", "{%", "${", "<%")
    return any(marker in payload for marker in markers)


def _seed_payloads() -> tuple[list[tuple[str, str, int, int, str]], str]:
    """One author per payload (as name and organisation), its comment, an edited reply to it.

    Returns (name, organisation, comment id, reply id, payload) per payload, and the
    replier's e-mail. The authors share one real password hash: hashing a hundred
    passwords would take half a minute, and registration itself is driven through the
    real form in test_payloads_typed_into_the_real_forms_never_run.
    """
    consultation_draft = draft("SAN-1")
    replier = make_user(name="Persona que responde", organisation="Red de prueba")
    rows = []
    for index, payload in enumerate(PAYLOADS):
        # A NUL in a name is refused by PostgreSQL (see test_nul_bytes_never_cause_a_server_error).
        author = User(
            name=payload.replace("\x00", "")[:120].strip(),
            organisation=payload.replace("\x00", "")[:200].strip(),
            email=f"xss{index}@correo.example",
            organisation_type="ong",
            region="cusco",
            is_name_public=True,
            consent_version=CONSENT_VERSION,
            consented_at=clock.now(),
            password_hash=replier.password_hash,
        )
        db.session.add(author)
        comment = make_comment(consultation_draft, author, payload)
        reply = make_comment(consultation_draft, replier, "Respuesta provisional.", parent=comment)
        services.edit_comment(reply, replier, payload)
        rows.append((author.name, author.organisation, comment.id, reply.id, payload))
    return rows, replier.email


def _assert_shows_text(shown: str | None, payload: str, where: str) -> None:
    """Every tag the payload typed is on the page as text; 7*7 was not computed."""
    assert shown is not None, f"nothing shown on {where}"
    text = as_shown(shown)
    for tag in set(_TAG.findall(payload.replace("\x00", ""))):
        assert tag in text, f"{tag!r} of {payload[:60]!r} is not shown as text on {where}"
    if "7*7" in payload:
        without_times = _LIMA_TIME.sub("", text)  # "02:49" is a time, not 7*7
        assert "7*7" in text and "49" not in without_times, f"7*7 was evaluated on {where}"


SUBMIT = """
({action, token, body}) => {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = action;
  for (const [name, value] of [['csrf_token', token], ['body', body]]) {
    const field = document.createElement('textarea');
    field.name = name;
    field.value = value;
    form.appendChild(field);
  }
  document.body.appendChild(form);
  form.submit();
}
"""


@pytest.mark.browser
def test_payloads_in_every_field_never_run(app, visitor, unlimited):
    make_consultation("open")
    app.config["THREADS_PER_PAGE"] = len(PAYLOADS) + 5
    rows, replier_email = _seed_payloads()
    commit()
    secret = app.config["SECRET_KEY"]
    you = visitor()
    page = you.page

    # The draft page: every name, organisation, comment and edited reply at once.
    page.goto(DRAFT_PATH)
    selectors = []
    for _name, _organisation, comment_id, reply_id, _payload in rows:
        item = f"#aporte-{comment_id} > article"
        selectors += [f"{item} .author strong", f"{item} .org", f"{item} .body"]
        selectors.append(f"#aporte-{reply_id} .body")
    shown = you.assert_harmless("the draft page", secret, texts=tuple(selectors))
    for name, organisation, comment_id, reply_id, payload in rows:
        item = f"#aporte-{comment_id} > article"
        assert shown[f"{item} .author strong"] == as_shown(name)
        assert shown[f"{item} .org"] == as_shown(organisation)
        _assert_shows_text(shown[f"{item} .body"], payload, f"the draft page, {comment_id}")
        _assert_shows_text(
            shown[f"#aporte-{reply_id} .body"], payload, f"the draft page, {reply_id}"
        )

    # Each permalink, the reply page (quoting the payload) and the edit page (a textarea).
    you.log_in(replier_email)
    for name, organisation, comment_id, reply_id, payload in rows:
        page.goto(f"/aportes/{comment_id}")
        where = f"permalink {comment_id}"
        shown = you.assert_harmless(where, secret, texts=(".author strong", ".org", ".body"))
        assert shown[".author strong"] == as_shown(name) and shown[".org"] == as_shown(organisation)
        _assert_shows_text(shown[".body"], payload, where)

        page.goto(f"/aportes/{comment_id}/responder")
        where = f"reply page {comment_id}"
        shown = you.assert_harmless(where, secret, texts=("h1", "blockquote"))
        assert shown["h1"] == f"Responder a {as_shown(name)}"
        _assert_shows_text(shown["blockquote"], payload, where)

        page.goto(f"/aportes/{reply_id}/editar")
        shown = you.assert_harmless(f"edit page {reply_id}", secret, values=("#body",))
        assert as_shown(shown["#body"]) == as_shown(text.normalise(payload))

    # The refusal page gives back what was sent, once the window has closed.
    token = csrf_token(page.content())
    consultation = db.session.scalar(select(Consultation))
    clock.travel_to(consultation.closes_at + timedelta(minutes=1))
    for _name, _organisation, comment_id, _reply_id, payload in rows:
        action = f"/aportes/{comment_id}/responder"
        with page.expect_navigation():
            page.evaluate(SUBMIT, {"action": action, "token": token, "body": payload})
        where = f"refusal page {comment_id}"
        if "\x00" in payload:  # refused before any view: NUL never belongs in a form
            shown = you.assert_harmless(where, secret, texts=("h1",))
            assert shown["h1"] == "Solicitud no válida", where
            continue
        shown = you.assert_harmless(where, secret, texts=("h1",), values=("#texto-guardado",))
        assert shown["h1"] == "No se pudo publicar tu aporte", where
        assert as_shown(shown["#texto-guardado"]) == as_shown(payload), where


@pytest.mark.browser
def test_moderation_text_never_runs_for_staff_or_the_public(app, visitor, unlimited):
    """Report notes, synthesis, responses and notes: seen by staff, then published."""
    consultation = make_consultation("open")
    app.config["THREADS_PER_PAGE"] = len(PAYLOADS) + 5
    rows, _replier_email = _seed_payloads()
    moderator = make_user("moderator", name="Moderadora")
    reporter = make_user(name="Persona que denuncia")
    for _name, _organisation, comment_id, _reply_id, payload in rows:
        comment = db.session.get(Contribution, comment_id)
        moderation.report_contribution(comment, reporter, "spam", note=payload[:1000])
        moderation.update_systematisation(
            comment,
            moderator,
            expected_version=comment.version,
            synthesis=payload[:2000],
            disposition="incorporado",
            response=payload,
            note=payload[:2000],
        )
    commit()
    secret = app.config["SECRET_KEY"]
    moderator_email = moderator.email
    staff = visitor()
    staff.log_in(moderator_email)
    page = staff.page

    pages = -(-2 * len(rows) // 50)
    for number in range(1, pages + 1):
        page.goto(f"/moderacion/?pagina={number}")
        staff.assert_harmless(f"the queue, page {number}", secret)
    for payload in FORM_SAMPLE:  # the search box gives the text back
        page.goto("/moderacion/?" + urlencode({"q": payload}))
        shown = staff.assert_harmless("the queue searched", secret, values=("#q",))
        assert shown["#q"] == payload
    for _name, _organisation, comment_id, _reply_id, payload in rows:
        page.goto(f"/moderacion/aportes/{comment_id}")
        where = f"the moderation page of {comment_id}"
        shown = staff.assert_harmless(where, secret, texts=("main",), values=("#synthesis",))
        assert as_shown(shown["#synthesis"]) == as_shown(text.normalise(payload[:2000])), where
        _assert_shows_text(shown["main"], payload[:1000], where)

    clock.travel_to(consultation.closes_at + timedelta(minutes=1))
    moderation.publish_responses(db.session.get(Consultation, consultation.id), moderator)
    commit()
    public = visitor()
    public.page.goto(DRAFT_PATH)
    selectors = tuple(f"#aporte-{row[2]} > article .response" for row in rows)
    shown = public.assert_harmless("the draft page with responses", secret, texts=selectors)
    for selector, (*_ignored, payload) in zip(selectors, rows, strict=True):
        _assert_shows_text(shown[selector], payload, f"the response {selector}")
    for number in range(1, pages + 1):
        public.page.goto(f"/consultas/paga-prueba/respuestas?pagina={number}")
        public.assert_harmless(f"the public responses, page {number}", secret)


FORM_SAMPLE = [
    '"><svg onload=window.__xss=17>',
    "</textarea><script>window.__xss=7</script>",
    "{{7*7}}",
    "[enlace](javascript:window.__xss=51)",
]


@pytest.mark.browser
@pytest.mark.parametrize(
    "payload", FORM_SAMPLE, ids=["breakout", "textarea", "template", "markdown"]
)
def test_payloads_typed_into_the_real_forms_never_run(
    app, visitor, unlimited, live_server, payload
):
    make_consultation("open")
    other = make_user(name="Ana Quispe")
    parent = make_comment(draft("SAN-1"), other, "Un aporte al que responder.")
    commit()
    parent_id = parent.id
    secret = app.config["SECRET_KEY"]
    you = visitor(bypass_csp=False)  # as a real visitor: the policy on
    page = you.page

    page.goto("/cuenta/registro")
    page.locator("#name").fill(payload)
    page.locator("#email").fill("atacante@correo.example")
    page.locator("#password").fill("una-clave-larga-2026")
    page.locator("#password_confirm").fill("una-clave-larga-2026")
    page.locator("#organisation").fill(payload)
    page.locator("#organisation_type").select_option("ong")
    page.locator("#region").select_option("cusco")
    page.locator("#is_name_public").check()
    page.locator("#consent").check()
    page.get_by_role("button", name="Crear cuenta").click()
    page.get_by_text("Tu cuenta está lista").wait_for()
    you.assert_harmless("the page after registration", secret)
    assert (
        page.get_by_role("button", name=re.compile(r"^Salir")).text_content()
        == f"Salir ({payload})"
    )

    page.goto(DRAFT_PATH)
    page.locator("#body").fill(payload)
    page.get_by_role("button", name="Publicar aporte").click()
    page.wait_for_url(re.compile(r"#aporte-\d+$"))
    comment_id = int(page.url.rsplit("-", 1)[1])

    page.goto(f"/aportes/{parent_id}/responder")
    page.locator("#body").fill("Texto provisional de la respuesta.")
    page.get_by_role("button", name="Publicar respuesta").click()
    page.wait_for_url(re.compile(r"#aporte-\d+$"))
    reply_id = int(page.url.rsplit("-", 1)[1])
    page.goto(f"/aportes/{reply_id}/editar")
    page.locator("#body").fill(payload)
    page.get_by_role("button", name="Guardar cambios").click()
    page.wait_for_url(re.compile(r"#aporte-\d+$"))

    you.assert_harmless("the draft page", secret)
    for contribution_id in (comment_id, reply_id):
        item = page.locator(f"#aporte-{contribution_id} > article")
        assert item.locator(".author strong").text_content() == payload
        assert item.locator(".org").text_content() == payload
        _assert_shows_text(item.locator(".body").text_content(), payload, "the draft page")
    # And as someone else, with the page now served from the shared thread cache.
    stranger = visitor(bypass_csp=True)
    stranger.page.goto(DRAFT_PATH)
    stranger.assert_harmless("the cached draft page", secret)
    stranger.page.goto(f"/aportes/{reply_id}")
    stranger.assert_harmless("the reply's permalink", secret)

    fresh_db()
    stored = db.session.get(Contribution, reply_id)
    assert stored.body == payload and stored.edited_at is not None
    assert stored.author.name == payload and stored.author.organisation == payload


def test_nul_bytes_never_cause_a_server_error(client, csrf_on, unlimited):
    make_consultation("open")
    commit()
    registered = form_post(
        client,
        "/cuenta/registro",
        None,
        {
            "name": "Ana\x00<script>",
            "email": "ana@correo.example",
            "password": PASSWORD,
            "password_confirm": PASSWORD,
            "organisation": "Red\x00",
            "organisation_type": "ong",
            "region": "cusco",
            "is_name_public": "y",
            "consent": "y",
        },
    )
    assert registered.status_code < 500
    for url in (
        "/consultas/paga%00prueba/borradores/SAN-1",
        "/consultas/paga-prueba/temas/sane%00amiento",
        "/consultas/paga-prueba/biblioteca/plan%00",
    ):
        assert client.get(url).status_code == 404, url


# --------------------------------------------------------------------------- 2. SQL injection


def _sqlmap_available() -> bool:
    return importlib.util.find_spec("sqlmap") is not None and _sqlmap_command().exists()


def _sqlmap_command() -> Path:
    return Path(sys.executable).parent / "sqlmap"


def run_sqlmap(tmp_path: Path, name: str, dbms: str, *target: str) -> str:
    """Run sqlmap once, bounded, and return what it printed."""
    output = tmp_path / name
    command = [
        str(_sqlmap_command()),
        *target,
        "--batch",
        "--level=1",
        "--risk=1",
        # Time-based blind (T) is left out: on a two-core machine a threaded test server's
        # delays are noise, and every other technique is tried.
        "--technique=BEUSQ",
        f"--dbms={dbms}",
        "--timeout=10",
        "--retries=1",
        "--flush-session",
        "--disable-coloring",
        f"--output-dir={output}",
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    done = subprocess.run(  # noqa: S603 (a fixed command, no shell)
        command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path, check=False
    )
    printed = done.stdout + done.stderr
    (tmp_path / f"{name}.txt").write_text(printed)
    return printed


def assert_nothing_injectable(printed: str, parameters: list[str]) -> None:
    assert "unhandled exception" not in printed.lower(), printed[-3000:]
    assert "testing '" in printed, "sqlmap tested nothing:\n" + printed[-3000:]
    for parameter in parameters:
        assert f"parameter '{parameter}' does not seem to be injectable" in printed, (
            f"{parameter} was not tested:\n" + printed[-3000:]
        )
    for finding in ("is vulnerable", "identified the following injection point", "appears to be"):
        assert finding not in printed, printed[-3000:]
    assert "all tested parameters do not appear to be injectable" in printed
    assert "500 (Internal Server Error)" not in printed, "the scan made the server fail"


@pytest.fixture
def sqlmap_target(app, unlimited, live_server) -> tuple[str, str]:
    require_service(_sqlmap_available(), "sqlmap (pip install sqlmap==1.10.10)")
    make_consultation("open")
    author = make_user()
    for number in range(3):
        make_comment(draft("SAN-1"), author, f"Aporte número {number}.")
    make_user(email="persona@correo.example")
    commit()
    dbms = "PostgreSQL" if db.engine.dialect.name == "postgresql" else "SQLite"
    return live_server, dbms


def test_sqlmap_finds_nothing_in_query_parameters_and_path_segments(sqlmap_target, tmp_path):
    server, dbms = sqlmap_target
    url = f"{server}/consultas/paga-prueba*/borradores/SAN-1*?pagina=1*"
    printed = run_sqlmap(tmp_path, "draft", dbms, "-u", url)
    assert_nothing_injectable(printed, ["#1*", "#2*", "#3*"])


def test_sqlmap_finds_nothing_in_the_login_form(sqlmap_target, tmp_path):
    server, dbms = sqlmap_target
    printed = run_sqlmap(
        tmp_path,
        "login",
        dbms,
        "-u",
        f"{server}/cuenta/entrar",
        "--data",
        "csrf_token=x&email=persona%40correo.example&password=una-clave-cualquiera",
        "--csrf-token=csrf_token",
        f"--csrf-url={server}/cuenta/entrar",
    )
    assert_nothing_injectable(printed, ["email", "password"])


def test_sqlmap_finds_nothing_in_the_registration_form(sqlmap_target, tmp_path):
    server, dbms = sqlmap_target
    fields = (
        "csrf_token=x&name=Ana+Quispe&email=nueva%40correo.example&password=una-clave-larga-1"
        "&password_confirm=una-clave-larga-1&organisation=Red&organisation_type=ong"
        "&region=cusco&is_name_public=y&consent=y"
    )
    printed = run_sqlmap(
        tmp_path,
        "register",
        dbms,
        "-u",
        f"{server}/cuenta/registro",
        "--data",
        fields,
        "--csrf-token=csrf_token",
        f"--csrf-url={server}/cuenta/registro",
    )
    assert_nothing_injectable(
        printed, ["name", "email", "organisation", "organisation_type", "region"]
    )


QUEUE_FILTERS = {
    "q": "agua",
    "tema": "1",
    "borrador": "1",
    "canal": "web",
    "estado": "visible",
    "disposicion": "pendiente",
    "etiqueta": "1",
    "desde": "2020-01-01",
    "hasta": "2030-12-31",
    "tipo": "ong",
    "region": "cusco",
    "tardio": "no",
    "agrupado": "no",
    "orden": "antiguos",
    "pagina": "1",
}


def test_sqlmap_finds_nothing_in_the_moderation_queue_filters(sqlmap_target, client, tmp_path):
    server, dbms = sqlmap_target
    make_user("moderator", email="moderadora@correo.example")
    commit()
    assert login(client, "moderadora@correo.example").status_code == 302
    cookie = client.get_cookie("session").value
    printed = run_sqlmap(
        tmp_path,
        "queue",
        dbms,
        "-u",
        f"{server}/moderacion/?{urlencode(QUEUE_FILTERS)}",
        f"--cookie=session={cookie}",
    )
    assert "got a 302 redirect" not in printed, "the moderator's session was not accepted"
    assert_nothing_injectable(printed, list(QUEUE_FILTERS))


# --------------------------------------------------------------------------- 3. CSRF


class AttackerPages:
    """A second, tiny web server on 127.0.0.1 (another port): the attacker's site."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                body = pages.get(self.path, "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def attacker() -> Iterator[AttackerPages]:
    pages = AttackerPages()
    try:
        yield pages
    finally:
        pages.close()


def forged_form(action: str, fields: dict[str, str], enctype: str = "") -> str:
    inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )
    enc = f' enctype="{enctype}"' if enctype else ""
    return (
        "<!doctype html><title>Gana un premio</title>"
        f'<form id="f" method="post" action="{escape(action)}"{enc}>{inputs}</form>'
        "<script>document.getElementById('f').submit()</script>"
    )


def forged_fetch(action: str, body: str) -> str:
    return (
        "<!doctype html><title>Gana un premio</title><script>"
        f"fetch({action!r}, {{method: 'POST', mode: 'no-cors', credentials: 'include', "
        f"headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: {body!r}}})"
        "</script>"
    )


def _state() -> tuple:
    """Everything a forged request could change."""
    fresh_db()
    consultation = db.session.scalar(select(Consultation))
    return (
        db.session.scalar(select(func.count()).select_from(Contribution)),
        db.session.scalar(select(func.count()).select_from(User)),
        tuple(db.session.scalars(select(Contribution.body).order_by(Contribution.id))),
        consultation.opens_at,
        consultation.closes_at,
        tuple(db.session.scalars(select(User.session_token).order_by(User.id))),
    )


def _forgeries(server: str, own_id: int, parent_id: int, token: str) -> dict[str, tuple[str, dict]]:
    """Every state-changing form, as an attacker would forge it (token: none or the attacker's)."""
    base = {"csrf_token": token} if token else {}
    return {
        "comment": (f"{server}{DRAFT_PATH}/aportes", {**base, "body": "Aporte falsificado."}),
        "reply": (f"{server}/aportes/{parent_id}/responder", {**base, "body": "Respuesta falsa."}),
        "edit": (f"{server}/aportes/{own_id}/editar", {**base, "body": "Edición falsificada."}),
        "logout": (f"{server}/cuenta/salir", base),
        "window": (
            f"{server}/admin/consultas/paga-prueba/ventana",
            {**base, "opens_at": "2000-01-01T00:00", "closes_at": "2000-01-02T00:00"},
        ),
        "register": (
            f"{server}/cuenta/registro",
            {
                **base,
                "name": "Cuenta del atacante",
                "email": "atacante@correo.example",
                "password": PASSWORD,
                "password_confirm": PASSWORD,
                "organisation_type": "ong",
                "region": "cusco",
                "consent": "y",
            },
        ),
        "login": (
            f"{server}/cuenta/entrar",
            {**base, "email": "atacante0@correo.example", "password": PASSWORD},
        ),
        "resend": (f"{server}/cuenta/confirmar", base),
    }


@pytest.mark.browser
@pytest.mark.parametrize("site", ["same-site", "cross-site"])
def test_forged_cross_site_posts_are_refused(
    app, client, visitor, attacker, unlimited, csrf_on, live_server, site
):
    make_consultation("open")
    admin = make_user("admin", name="Administradora")
    make_user(email="atacante0@correo.example")
    parent = make_comment(draft("SAN-1"), make_user(), "Un aporte ajeno.")
    own = make_comment(draft("SAN-1"), admin, "Mi aporte, que nadie más puede cambiar.")
    commit()
    admin_email, own_id, parent_id = admin.email, own.id, parent.id
    # A real token, but of the attacker's own session: it must not work for the victim.
    attackers_token = csrf_token(client.get("/cuenta/entrar").get_data(as_text=True))
    host = "127.0.0.1" if site == "same-site" else ATTACKER_SITE
    attacker_origin = f"http://{host}:{attacker.port}"

    victim = visitor(allowed=(attacker_origin + "/",))
    victim.log_in(admin_email)
    cookies = {c["name"]: c for c in victim.context.cookies()}
    assert cookies["session"]["sameSite"] == "Lax" and cookies["session"]["httpOnly"]
    before = _state()

    attempts = []
    for token in ("", attackers_token):
        for name, (action, fields) in _forgeries(live_server, own_id, parent_id, token).items():
            attempts.append(
                (f"{name}-form{'-token' if token else ''}", action, forged_form(action, fields))
            )
        action, fields = _forgeries(live_server, own_id, parent_id, token)["comment"]
        attempts.append(
            (
                f"comment-text-plain{'-token' if token else ''}",
                action,
                forged_form(action, fields, enctype="text/plain"),
            )
        )
        body = "&".join(f"{k}={v}" for k, v in fields.items())
        attempts.append(
            (f"comment-fetch{'-token' if token else ''}", action, forged_fetch(action, body))
        )

    for name, action, html in attempts:
        path = f"/{name}.html"
        attacker.pages[path] = html
        with victim.page.expect_response(
            lambda r, a=action: r.url == a and r.request.method == "POST"
        ) as answer:
            victim.page.goto(attacker_origin + path)
        response = answer.value
        assert response.status == 400, f"{name} ({site}) answered {response.status}"
        if response.request.is_navigation_request():  # a fetch's opaque body is not kept
            assert CSRF_MESSAGE in response.text(), name
        cookie_header = response.request.all_headers().get("cookie", "")
        if site == "same-site":  # the cookie goes along: only the token refuses it
            assert "session=" in cookie_header, name
        else:  # SameSite=Lax: a cross-site POST carries no session cookie at all
            assert "session=" not in cookie_header, name
        assert _state() == before, f"{name} ({site}) changed something"

    assert victim.foreign == []
    # Still logged in, and the same page really can post (the test could see a change).
    page = victim.page
    page.goto(DRAFT_PATH)
    assert (
        page.get_by_role("button", name=re.compile(r"^Salir")).text_content()
        == "Salir (Administradora)"
    )
    page.locator("#body").fill("Aporte legítimo desde la propia página.")
    page.get_by_role("button", name="Publicar aporte").click()
    page.wait_for_url(re.compile(r"#aporte-\d+$"))
    assert _state()[0] == before[0] + 1

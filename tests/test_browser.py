"""End-to-end tests in a real browser: Debian's Chromium driven by Playwright (sync API).

They cover what only a browser shows: the journey of a new participant, that hostile text
never runs, that a window closing under an open page loses nothing, accessibility (axe-core,
WCAG 2.1 A/AA) at phone and desktop sizes, and that everything works without JavaScript.

Playwright must never download a browser: it drives /usr/bin/chromium (Debian package
`chromium`). When that is missing the tests skip (or fail with APORTA_REQUIRE_SERVICES=1).
"""

import os
import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from forum import clock
from forum.consultation.models import Consultation, Contribution
from forum.extensions import db
from tests.conftest import require_service
from tests.factories import PASSWORD, draft, make_comment, make_consultation, make_user

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DRAFT_PATH = "/consultas/paga-prueba/borradores/SAN-1"
THEME_PATH = "/consultas/paga-prueba/temas/saneamiento"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING_IMPACTS = ("serious", "critical")
VIEWPORTS = {
    "phone": {"width": 375, "height": 812},
    "desktop": {"width": 1280, "height": 900},
}
TIMEOUT_MS = 10_000


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the whole module; every test gets fresh contexts from it."""
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


class Session:
    """One browser context and its page, with what the page asked for and any dialog."""

    def __init__(self, context, origin: str):
        self.context = context
        self.origin = origin
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        context.on("request", lambda request: self.requests.append(request.url))
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.set_default_navigation_timeout(TIMEOUT_MS)
        self.page.on("dialog", self._on_dialog)

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def external_requests(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(self.origin + "/")]


@pytest.fixture
def open_session(browser, live_server) -> Iterator[Callable[..., Session]]:
    """Open a fresh browser context on the live server; all are closed after the test."""
    sessions: list[Session] = []

    def _open(**context_options) -> Session:
        context_options.setdefault("viewport", VIEWPORTS["desktop"])
        context_options.setdefault("locale", "es-PE")
        context = browser.new_context(base_url=live_server, **context_options)
        session = Session(context, live_server)
        sessions.append(session)
        return session

    yield _open
    for session in sessions:
        session.context.close()


# --------------------------------------------------------------------------- helpers


def expect(*args, **kwargs):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def commit() -> None:
    """Make what the factories flushed visible to the live server's own sessions."""
    db.session.commit()


def fresh_db() -> None:
    """Forget what this thread's session holds, to read what the server wrote."""
    db.session.rollback()
    db.session.expire_all()


def log_in(page, email: str, password: str = PASSWORD) -> None:
    """Log in through the login form, as a person would."""
    page.goto("/cuenta/entrar")
    page.get_by_label("Correo electrónico").fill(email)
    page.get_by_label("Contraseña", exact=True).fill(password)
    page.get_by_role("button", name="Entrar", exact=True).click()
    expect(page.get_by_role("button", name=re.compile(r"^Salir"))).to_be_visible()


def fragment_id(url: str) -> int:
    """The contribution id in a URL ending in #aporte-N."""
    match = re.search(r"#aporte-(\d+)$", url)
    assert match, f"expected a URL ending in #aporte-N, got {url}"
    return int(match.group(1))


def assert_no_email(page, *emails: str) -> None:
    html = page.content().lower()
    for email in emails:
        assert email.lower() not in html, f"the address {email} is in the HTML of {page.url}"


def assert_accessible(page, where: str) -> None:
    """No serious or critical WCAG 2.1 A/AA violation, per axe-core."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(
        page,
        options={"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]},
    )
    blocking = [v for v in results.response["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    lines = []
    for violation in blocking:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            lines.append(f"    target {node['target']}: {node['html']}")
    assert not blocking, f"axe-core violations on {where} ({page.url}):\n" + "\n".join(lines)


def contribution_count() -> int:
    fresh_db()
    return db.session.scalar(select(func.count()).select_from(Contribution))


# --------------------------------------------------------------------------- 1. the journey


def test_new_participant_registers_comments_and_replies(open_session, live_server):
    make_consultation("open")
    other = make_user(name="Ana Quispe", organisation="Red de Agua")
    existing = make_comment(
        draft("SAN-1"), other, "Propongo publicar los datos de calidad del agua."
    )
    commit()
    existing_id, other_email = existing.id, other.email
    new_email = "rosa.mamani@correo.example"
    comment_text = "Sugiero incluir a las juntas administradoras de agua rurales."
    reply_text = "De acuerdo, y que los datos se publiquen cada mes."

    session = open_session()
    page = session.page

    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Plan de prueba")
    assert_no_email(page, other_email, new_email)
    page.get_by_role("link", name="Saneamiento", exact=True).click()
    expect(page).to_have_url(live_server + THEME_PATH)
    expect(page.get_by_role("heading", level=1)).to_have_text("Saneamiento")

    page.get_by_role("link", name=re.compile(r"SAN-1")).click()
    expect(page).to_have_url(live_server + DRAFT_PATH)
    expect(page.locator(f"#aporte-{existing_id}")).to_contain_text("datos de calidad del agua")
    assert_no_email(page, other_email, new_email)
    expect(page.locator("#body")).to_have_count(0)  # not logged in: no form

    page.get_by_role("link", name="regístrate", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(live_server + "/cuenta/registro") + r"\?next="))
    page.locator("#name").fill("Rosa Mamani")
    page.locator("#email").fill(new_email)
    page.locator("#password").fill("una-clave-larga-2026")
    page.locator("#password_confirm").fill("una-clave-larga-2026")
    page.locator("#organisation").fill("Colectivo Ciudadano")
    page.locator("#organisation_type").select_option("ong")
    page.locator("#region").select_option("cusco")
    page.locator("#is_name_public").check()
    page.locator("#consent").check()
    page.get_by_role("button", name="Crear cuenta").click()

    # Back on the draft the link came from, logged in.
    expect(page).to_have_url(live_server + DRAFT_PATH)
    expect(page.get_by_text("Tu cuenta está lista")).to_be_visible()
    expect(page.get_by_role("button", name="Salir (Rosa Mamani)")).to_be_visible()
    assert_no_email(page, other_email, new_email)

    page.goto(DRAFT_PATH)
    page.locator("#body").fill(comment_text)
    page.get_by_role("button", name="Publicar aporte").click()
    expect(page).to_have_url(re.compile(re.escape(live_server + DRAFT_PATH) + r"#aporte-\d+$"))
    comment_id = fragment_id(page.url)
    expect(page.get_by_text("Gracias: tu aporte fue publicado.")).to_be_visible()
    mine = page.locator(f"ol.threads > li#aporte-{comment_id}")
    expect(mine).to_contain_text(comment_text)
    expect(mine.locator(".author")).to_contain_text("Rosa Mamani")
    assert_no_email(page, other_email, new_email)

    page.locator(f"#aporte-{existing_id} > article").get_by_role(
        "link", name="Responder a Ana Quispe"
    ).click()
    expect(page).to_have_url(f"{live_server}/aportes/{existing_id}/responder")
    expect(page.get_by_role("heading", level=1)).to_have_text("Responder a Ana Quispe")
    assert_no_email(page, other_email, new_email)
    page.locator("#body").fill(reply_text)
    page.get_by_role("button", name="Publicar respuesta").click()

    expect(page).to_have_url(re.compile(re.escape(live_server + DRAFT_PATH) + r"#aporte-\d+$"))
    reply_id = fragment_id(page.url)
    nested = page.locator(f"#aporte-{existing_id} .replies > li#aporte-{reply_id}")
    expect(nested).to_contain_text(reply_text)
    expect(nested.locator(".author")).to_contain_text("Rosa Mamani")
    expect(page.locator(f"ol.threads > li#aporte-{reply_id}")).to_have_count(0)
    assert_no_email(page, other_email, new_email)

    fresh_db()
    stored_comment = db.session.get(Contribution, comment_id)
    stored_reply = db.session.get(Contribution, reply_id)
    assert stored_comment.parent_id is None and stored_comment.body == comment_text
    assert stored_reply.parent_id == existing_id and stored_reply.body == reply_text
    assert stored_reply.author.email == new_email

    assert session.dialogs == []
    assert session.requests, "the request listener saw nothing"
    assert session.external_requests() == [], "requests left the site (CDN, fonts, trackers?)"


# --------------------------------------------------------------------------- 2. XSS


XSS_BODY = (
    '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">\n\n'
    "[enlace](javascript:window.__xss=3)"
)


def test_hostile_comment_shows_as_text_and_never_runs(open_session, live_server):
    make_consultation("open")
    user = make_user()
    commit()
    session = open_session()
    page = session.page
    log_in(page, user.email)

    page.goto(DRAFT_PATH)
    page.locator("#body").fill(XSS_BODY)
    page.get_by_role("button", name="Publicar aporte").click()
    expect(page).to_have_url(re.compile(re.escape(live_server + DRAFT_PATH) + r"#aporte-\d+$"))
    comment_id = fragment_id(page.url)
    body = page.locator(f"#aporte-{comment_id} .body")

    expect(body).to_contain_text("<script>window.__xss=1</script>")
    expect(body).to_contain_text('<img src=x onerror="window.__xss=2">')
    expect(body.locator("script, img, iframe, object, embed")).to_have_count(0)
    link = body.get_by_text("enlace", exact=True)
    expect(link).to_have_count(1)
    assert link.get_attribute("href") is None
    for element in body.locator("*").all():
        attributes = element.evaluate("e => e.getAttributeNames()")
        assert not [a for a in attributes if a.lower().startswith("on")], attributes
    link.click()  # nothing to follow
    expect(page).to_have_url(re.compile(re.escape(live_server + DRAFT_PATH)))

    # Reload the page as another visitor would (the threads HTML is cached and shared).
    page.reload()
    expect(page.locator(f"#aporte-{comment_id} .body")).to_contain_text("window.__xss=1")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate("window.__xss") is None
    assert session.dialogs == []
    assert not [url for url in session.requests if url.rstrip("/").endswith("/x")]
    assert session.external_requests() == []


# --------------------------------------------------------------------------- 3. window closes


def test_window_closing_while_page_is_open_refuses_and_keeps_the_text(open_session, live_server):
    consultation = make_consultation("open")
    user = make_user()
    commit()
    closes_at = consultation.closes_at
    typed = "Mi aporte escrito con calma mientras la consulta seguía abierta."

    page = open_session().page
    log_in(page, user.email)
    page.goto(DRAFT_PATH)
    expect(page.get_by_role("button", name="Publicar aporte")).to_be_visible()
    page.locator("#body").fill(typed)

    clock.travel_to(closes_at + timedelta(minutes=1))  # the server shares this process's clock

    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Publicar aporte").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("No se pudo publicar tu aporte")
    expect(page.get_by_role("alert")).to_contain_text("cerró")
    saved = page.get_by_label("Tu texto")
    expect(saved).to_have_value(typed)
    assert saved.evaluate("e => e.tagName") == "TEXTAREA"
    expect(page.locator("html")).to_have_attribute("lang", "es")
    assert contribution_count() == 0


# --------------------------------------------------------------------------- 4. accessibility


def _a11y_data() -> str:
    """An open consultation, a thread with a reply, a pseudonymous author; returns a login."""
    make_consultation("open")
    named = make_user(name="Ana Quispe", organisation="Red de Agua")
    hidden = make_user(is_name_public=False)
    reader = make_user()
    first = make_comment(
        draft("SAN-1"),
        named,
        "Dos ideas:\n\n- publicar los datos\n- ver https://www.gob.pe/vivienda\n\n"
        "Más en [el informe](https://ejemplo.pe/informe).",
    )
    make_comment(draft("SAN-1"), hidden, "Estoy de acuerdo con **la primera**.", parent=first)
    make_comment(draft("SAN-1"), reader, "Un segundo hilo de conversación.")
    commit()
    return reader.email


def _open_home(page, email):
    page.goto("/")
    expect(page.get_by_role("heading", level=2, name="Temas en consulta")).to_be_visible()


def _open_theme(page, email):
    page.goto(THEME_PATH)
    expect(page.get_by_role("link", name=re.compile("SAN-1"))).to_be_visible()


def _open_draft_anonymous(page, email):
    page.goto(DRAFT_PATH)
    expect(page.locator("li.comment")).to_have_count(3)
    expect(page.get_by_role("link", name="regístrate", exact=True)).to_be_visible()


def _open_draft_logged_in(page, email):
    log_in(page, email)
    page.goto(DRAFT_PATH)
    expect(page.locator("li.comment")).to_have_count(3)
    expect(page.locator("#body")).to_be_visible()


def _open_reply(page, email):
    log_in(page, email)
    page.goto(DRAFT_PATH)
    page.locator("ol.threads > li").first.locator("> article").get_by_role(
        "link", name=re.compile(r"^Responder")
    ).click()
    expect(page.get_by_role("button", name="Publicar respuesta")).to_be_visible()


def _open_register(page, email):
    page.goto("/cuenta/registro")
    expect(page.get_by_role("button", name="Crear cuenta")).to_be_visible()


def _open_register_errors(page, email):
    page.goto("/cuenta/registro")
    page.locator("#email").fill("no-es-un-correo")
    page.locator("#password").fill("corta")
    page.locator("#password_confirm").fill("otra")
    page.get_by_role("button", name="Crear cuenta").click()
    expect(page.locator(".form-errors")).to_be_visible()
    expect(page.locator("#consent")).to_have_attribute("aria-invalid", "true")


def _open_login(page, email):
    page.goto("/cuenta/entrar")
    expect(page.get_by_role("button", name="Entrar", exact=True)).to_be_visible()


def _open_login_errors(page, email):
    page.goto("/cuenta/entrar")
    page.get_by_label("Correo electrónico").fill(email)
    page.get_by_label("Contraseña", exact=True).fill("no-es-la-clave")
    page.get_by_role("button", name="Entrar", exact=True).click()
    expect(page.locator(".form-errors")).to_be_visible()


def _open_refused(page, email):
    log_in(page, email)
    page.goto(DRAFT_PATH)
    page.locator("#body").fill("Un aporte que llega tarde.")
    consultation = db.session.scalar(select(Consultation))
    clock.travel_to(consultation.closes_at + timedelta(minutes=1))
    page.get_by_role("button", name="Publicar aporte").click()
    expect(page.get_by_label("Tu texto")).to_have_value("Un aporte que llega tarde.")


A11Y_PAGES = {
    "home": _open_home,
    "theme": _open_theme,
    "draft-anonymous": _open_draft_anonymous,
    "draft-logged-in": _open_draft_logged_in,
    "reply": _open_reply,
    "register": _open_register,
    "register-errors": _open_register_errors,
    "login": _open_login,
    "login-errors": _open_login_errors,
    "refused": _open_refused,
}


@pytest.mark.parametrize("viewport", list(VIEWPORTS), ids=list(VIEWPORTS))
@pytest.mark.parametrize("page_name", list(A11Y_PAGES), ids=list(A11Y_PAGES))
def test_pages_have_no_serious_wcag_violation(open_session, page_name, viewport):
    email = _a11y_data()
    session = open_session(viewport=VIEWPORTS[viewport])
    A11Y_PAGES[page_name](session.page, email)
    assert_accessible(session.page, f"{page_name} at {viewport} size")
    assert session.external_requests() == []


# --------------------------------------------------------------------------- 5. no JavaScript


def test_log_in_and_comment_without_javascript(open_session, live_server):
    make_consultation("open")
    user = make_user(name="Luis Huamán")
    commit()
    session = open_session(java_script_enabled=False)
    page = session.page

    # Prove scripts really are off in this context.
    page.set_content(
        "<p id='js'>apagado</p><script>document.getElementById('js').textContent='x'</script>"
    )
    expect(page.locator("#js")).to_have_text("apagado")

    log_in(page, user.email)
    page.goto(DRAFT_PATH)
    text = "Aporte enviado sin JavaScript, con un formulario normal."
    page.locator("#body").fill(text)
    page.get_by_role("button", name="Publicar aporte").click()
    expect(page).to_have_url(re.compile(re.escape(live_server + DRAFT_PATH) + r"#aporte-\d+$"))
    comment_id = fragment_id(page.url)
    expect(page.locator(f"#aporte-{comment_id} .body")).to_have_text(text)
    expect(page.locator(f"#aporte-{comment_id} .author")).to_contain_text("Luis Huamán")

    fresh_db()
    stored = db.session.get(Contribution, comment_id)
    assert stored is not None and stored.body == text and stored.author_id == user.id

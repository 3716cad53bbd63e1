"""Consultation: pages, the window, threaded comments, edits, counts, visits."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from forum import clock
from forum.consultation import services
from forum.consultation.models import Contribution, Draft, Theme
from forum.consultation.visits import visits
from forum.extensions import db
from tests.conftest import QueryCounter, csrf_token, form_post, login
from tests.factories import draft, make_comment, make_consultation, make_user

DRAFT_URL = "/consultas/paga-prueba/borradores/SAN-1"
POST_URL = DRAFT_URL + "/aportes"


@pytest.fixture
def citizen(client):
    """An open consultation and a logged-in citizen (CSRF on, as in a browser)."""
    client.application.config["WTF_CSRF_ENABLED"] = True
    make_consultation()
    user = make_user(email="vecina@correo.example", name="Vecina Activa")
    db.session.commit()
    login(client, "vecina@correo.example")
    return user


def post_comment(client, body, url=POST_URL, page=DRAFT_URL, **extra):
    return form_post(client, page, url, {"body": body, **extra})


def count_contributions() -> int:
    return db.session.scalar(select(func.count()).select_from(Contribution))


def test_home_shows_the_open_window_in_lima_time_and_time_left(client):
    consultation = make_consultation()
    consultation.closes_at = clock.parse_lima("2026-12-06T23:59")
    clock.travel_to(clock.parse_lima("2026-11-22T10:00"))
    db.session.commit()
    html = client.get("/").get_data(as_text=True)
    assert "Consulta abierta" in html
    assert "06/12/2026 23:59" in html and "(hora de Lima)" in html
    assert "Quedan 14 días y 13 horas" in html
    assert "Saneamiento" in html and "Salud" in html


@pytest.mark.parametrize(
    "state, words", [("upcoming", "aún no comienza"), ("closed", "Consulta cerrada")]
)
def test_home_shows_upcoming_and_closed_states(client, state, words):
    make_consultation(state)
    db.session.commit()
    assert words in client.get("/").get_data(as_text=True)


def test_home_without_consultation(client):
    assert "No hay consultas publicadas" in client.get("/").get_data(as_text=True)


def test_draft_page_shows_the_commitment_sheet(client):
    make_consultation()
    db.session.commit()
    html = client.get(DRAFT_URL).get_data(as_text=True)
    for expected in [
        "SAN-1",
        "Sistema de información de saneamiento",
        "Ministerio de Vivienda",
        "Transparencia",
        "Plataforma",
        "Institución responsable",
    ]:
        assert expected in html
    assert "Inicia sesión</a> o" in html  # anonymous: invited to log in, no form
    assert 'name="body"' not in html


def test_theme_page_lists_drafts_with_counts(client):
    make_consultation()
    author = make_user()
    make_comment(draft("SAN-1"), author)
    make_comment(draft("SAN-1"), author)
    make_comment(draft("SAN-2"), author)
    db.session.commit()
    html = client.get("/consultas/paga-prueba/temas/saneamiento").get_data(as_text=True)
    assert "2 aportes" in html and "1 aporte<" in html.replace(" ", "").replace(
        "1aporte<", "1 aporte<"
    )
    home = client.get("/").get_data(as_text=True)
    assert "3 aportes" in home


def test_citizen_posts_a_comment(client, citizen):
    response = post_comment(
        client, "Propongo **datos abiertos** por distrito.\n\n- agua\n- desagüe"
    )
    assert response.status_code == 302
    contribution = db.session.scalar(select(Contribution))
    assert response.headers["Location"].endswith(f"{DRAFT_URL}#aporte-{contribution.id}")
    assert contribution.channel == "web" and contribution.author_id == citizen.id
    assert contribution.theme_id == draft().theme_id and not contribution.is_late
    html = client.get(DRAFT_URL).get_data(as_text=True)
    assert "<strong>datos abiertos</strong>" in html and "<li>desagüe</li>" in html
    assert "Vecina Activa" in html


def test_reply_to_a_reply_nests_and_deep_replies_attach_to_the_third_level(client, citizen):
    other = make_user(name="Otra Persona")
    chain = [make_comment(draft(), other, "nivel 0")]
    for level in range(1, 6):
        chain.append(
            make_comment(
                draft(), other if level % 2 else citizen, f"nivel {level}", parent=chain[-1]
            )
        )
    db.session.commit()
    page = services.thread_page(draft(), 1, 20)
    (root,) = page.threads
    level1 = root.children[0]
    level2 = level1.children[0]
    assert [n.contribution.body for n in level2.children] == ["nivel 3", "nivel 4", "nivel 5"]
    assert [n.replying_to.body for n in level2.children] == ["nivel 2", "nivel 3", "nivel 4"]

    html = client.get(DRAFT_URL).get_data(as_text=True)
    assert html.count('class="comment level-2"') == 4
    assert "en respuesta a" in html


def test_reply_through_the_reply_page(client, citizen):
    other = make_user(name="Autora Original")
    parent = make_comment(draft(), other, "Texto original")
    db.session.commit()
    reply_url = f"/aportes/{parent.id}/responder"
    page = client.get(reply_url).get_data(as_text=True)
    assert "Responder a Autora Original" in page and "Texto original" in page
    response = post_comment(client, "Estoy de acuerdo.", url=reply_url, page=reply_url)
    assert response.status_code == 302
    reply = db.session.scalar(select(Contribution).where(Contribution.parent_id == parent.id))
    assert reply.depth == 1 and reply.thread_root_id == parent.id


@pytest.mark.parametrize("moment", ["before", "after"])
def test_posting_outside_the_window_is_refused_by_the_server(client, citizen, moment):
    other = make_user()
    parent = make_comment(draft(), other, "Aporte previo")
    mine = make_comment(draft(), citizen, "Mío")
    db.session.commit()
    form_page = client.get(DRAFT_URL).get_data(as_text=True)  # the form was loaded while open
    token = csrf_token(form_page)
    consultation = draft().consultation
    instant = (
        consultation.opens_at - timedelta(hours=1) if moment == "before" else consultation.closes_at
    )
    clock.travel_to(instant)
    before = count_contributions()

    attempts = [
        client.post(POST_URL, data={"csrf_token": token, "body": "Llegó tarde mi texto"}),
        client.post(
            f"/aportes/{parent.id}/responder",
            data={"csrf_token": token, "body": "Respuesta tardía"},
        ),
        client.post(
            f"/aportes/{mine.id}/editar", data={"csrf_token": token, "body": "Edición tardía"}
        ),
    ]
    for response, typed in zip(
        attempts, ["Llegó tarde mi texto", "Respuesta tardía", "Edición tardía"], strict=True
    ):
        html = response.get_data(as_text=True)
        assert response.status_code == 403
        assert ("aún no ha comenzado" if moment == "before" else "cerró el") in html
        assert typed in html  # what the person typed is kept
    assert count_contributions() == before
    db.session.expire_all()
    assert db.session.get(Contribution, mine.id).body == "Mío"

    page = client.get(DRAFT_URL).get_data(as_text=True)
    assert 'name="body"' not in page and "Responder" not in page
    assert "Aporte previo" in page  # everything stays readable


def test_too_long_comment_is_refused_and_kept(client, citizen, app):
    app.config["COMMENT_MAX_LENGTH"] = 50
    long_text = "palabra " * 10
    response = post_comment(client, long_text)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "supera los 50 caracteres" in html
    assert "palabra palabra" in html
    assert count_contributions() == 0


def test_empty_comment_is_refused(client, citizen):
    response = post_comment(client, "   ")
    assert response.status_code == 422
    assert "Escribe tu aporte" in response.get_data(as_text=True)


def test_the_same_form_sent_twice_makes_one_contribution(client, citizen):
    page = client.get(DRAFT_URL).get_data(as_text=True)
    token = csrf_token(page)
    key = page.split('name="idempotency_key" type="hidden" value="')[1].split('"')[0]
    data = {"csrf_token": token, "idempotency_key": key, "body": "Doble clic"}
    first = client.post(POST_URL, data=data)
    second = client.post(POST_URL, data=data)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert count_contributions() == 1


def test_author_edits_own_comment_for_a_short_time(client, citizen, app):
    mine = make_comment(draft(), citizen, "Primera versión")
    db.session.commit()
    permalink = client.get(f"/aportes/{mine.id}").get_data(as_text=True)
    assert "Editar mi aporte" in permalink
    edit_url = f"/aportes/{mine.id}/editar"
    assert "Primera versión" in client.get(edit_url).get_data(as_text=True)
    response = form_post(client, edit_url, None, {"body": "Segunda versión"})
    assert response.status_code == 302
    html = client.get(DRAFT_URL).get_data(as_text=True)
    assert "Segunda versión" in html and "editado el" in html

    clock.travel_to(clock.now() + timedelta(minutes=app.config["COMMENT_EDIT_MINUTES"] + 1))
    assert client.get(edit_url).status_code == 403
    assert "Editar mi aporte" not in client.get(f"/aportes/{mine.id}").get_data(as_text=True)


def test_nobody_edits_someone_elses_comment(client, citizen):
    other = make_user()
    theirs = make_comment(draft(), other, "Ajeno")
    db.session.commit()
    assert client.get(f"/aportes/{theirs.id}/editar").status_code == 403
    token = csrf_token(client.get(DRAFT_URL).get_data(as_text=True))
    response = client.post(
        f"/aportes/{theirs.id}/editar", data={"csrf_token": token, "body": "Cambiado"}
    )
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Contribution, theirs.id).body == "Ajeno"


@pytest.mark.parametrize(
    "method, url",
    [
        ("post", POST_URL),
        ("get", "/aportes/1/responder"),
        ("post", "/aportes/1/responder"),
        ("get", "/aportes/1/editar"),
        ("post", "/aportes/1/editar"),
    ],
)
def test_posting_routes_need_an_account(client, no_csrf, method, url):
    make_consultation()
    make_comment(draft(), make_user())
    db.session.commit()
    response = getattr(client, method)(url, data={"body": "anónimo"})
    assert response.status_code == 302
    assert "/cuenta/entrar" in response.headers["Location"]
    assert count_contributions() == 1


def test_threads_are_paginated_by_top_level_thread(client, app):
    app.config["THREADS_PER_PAGE"] = 2
    make_consultation()
    author = make_user()
    roots = [make_comment(draft(), author, f"hilo {n}") for n in range(5)]
    reply = make_comment(draft(), author, "respuesta al hilo 4", parent=roots[4])
    db.session.commit()
    first = client.get(DRAFT_URL).get_data(as_text=True)
    assert "hilo 0" in first and "hilo 1" in first and "hilo 2" not in first
    assert "6 aportes en 5 conversaciones" in first
    third = client.get(DRAFT_URL + "?pagina=3").get_data(as_text=True)
    assert "hilo 4" in third and "respuesta al hilo 4" in third and "hilo 0" not in third
    response = client.get(f"/aportes/{reply.id}")
    assert f"{DRAFT_URL}?pagina=3#aporte-{reply.id}" in response.get_data(as_text=True)


def test_draft_page_with_1000_comments_runs_a_fixed_number_of_queries(client, app):
    app.config["THREAD_CACHE"] = False
    app.config["THREADS_PER_PAGE"] = 500
    app.config["VISIT_FLUSH_SECONDS"] = 3600  # a batched visit write is not the page's query
    make_consultation()
    authors = [make_user() for _ in range(20)]
    roots = [make_comment(draft(), authors[n % 20], f"hilo {n}") for n in range(5)]
    db.session.commit()
    with QueryCounter() as small:
        assert client.get(DRAFT_URL).status_code == 200

    parents = list(roots)
    for n in range(995):
        parent = parents[n % len(parents)] if n % 3 else None
        comment = make_comment(draft(), authors[n % 20], f"aporte {n}", parent=parent)
        parents.append(comment)
    db.session.commit()
    assert count_contributions() == 1000
    with QueryCounter() as large:
        response = client.get(DRAFT_URL)
    assert response.status_code == 200
    assert response.get_data(as_text=True).count('class="comment level-') == 1000
    assert len(large.statements) == len(small.statements), large.statements


def test_thread_cache_follows_new_comments(client):
    make_consultation()
    author = make_user()
    make_comment(draft(), author, "primero")
    db.session.commit()
    assert "primero" in client.get(DRAFT_URL).get_data(as_text=True)
    make_comment(draft(), author, "segundo")
    db.session.commit()
    assert "segundo" in client.get(DRAFT_URL).get_data(as_text=True)


def test_visits_are_counted_in_batches(client, app):
    app.config["VISIT_FLUSH_HITS"] = 1000
    app.config["VISIT_FLUSH_SECONDS"] = 3600
    make_consultation()
    db.session.commit()
    for _ in range(3):
        client.get(DRAFT_URL)
    client.get("/consultas/paga-prueba/temas/saneamiento")
    db.session.expire_all()
    assert draft().visit_count == 0  # a page view is not a write
    visits.flush()
    db.session.expire_all()
    assert draft().visit_count == 3
    theme = db.session.scalar(select(Theme).where(Theme.slug == "saneamiento"))
    assert theme.visit_count == 1


def test_visits_flush_when_the_buffer_is_full(client, app):
    app.config["VISIT_FLUSH_HITS"] = 2
    make_consultation()
    db.session.commit()
    client.get(DRAFT_URL)
    client.get(DRAFT_URL)
    db.session.expire_all()
    assert draft().visit_count == 2


def test_library_faq_and_contact(client, runner):
    from forum.consultation.demo import DEMO_FILE

    runner.invoke(args=["consultation", "load", DEMO_FILE])
    slug = "paga-2017-2019"
    library = client.get(f"/consultas/{slug}/biblioteca").get_data(as_text=True)
    assert "autoevaluación" in library.lower() and "También en consulta pública" in library
    document = client.get(f"/consultas/{slug}/biblioteca/informe-autoevaluacion-2015-2016")
    assert document.status_code == 200
    faq = client.get(f"/consultas/{slug}/preguntas-frecuentes").get_data(as_text=True)
    assert faq.count("<h2>") >= 8
    contact = client.get(f"/consultas/{slug}/contacto").get_data(as_text=True)
    assert "aportes@aporta.example" in contact and "[Salud]" in contact


def test_unknown_pages_get_a_spanish_404(client):
    make_consultation()
    db.session.commit()
    for url in ["/no-existe", "/consultas/paga-prueba/borradores/XYZ-9", "/aportes/999"]:
        response = client.get(url)
        assert response.status_code == 404
        assert "Página no encontrada" in response.get_data(as_text=True)


def test_draft_codes_are_case_insensitive_in_urls(client):
    make_consultation()
    db.session.commit()
    assert client.get("/consultas/paga-prueba/borradores/san-1").status_code == 200


def test_oversized_post_gets_a_spanish_413(client, citizen, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    token = csrf_token(client.get(DRAFT_URL).get_data(as_text=True))
    response = client.post(POST_URL, data={"csrf_token": token, "body": "x" * 5000})
    assert response.status_code == 413
    assert "tamaño máximo" in response.get_data(as_text=True)


def test_unexpected_error_gets_a_spanish_500(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "contribution_counts_by_theme", broken)
    make_consultation()
    db.session.commit()
    response = client.get("/")
    assert response.status_code == 500
    assert "Error del servidor" in response.get_data(as_text=True)
    assert "boom" not in response.get_data(as_text=True)


def test_healthz_checks_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_draft_counts_include_every_channel(client):
    consultation = make_consultation()
    services.add_contribution(
        consultation=consultation,
        draft=draft(),
        body="Por correo",
        channel="email",
        received_at=clock.now(),
        author_name="Correo",
        author_email="c@correo.example",
    )
    db.session.commit()
    assert services.contribution_counts_by_draft(consultation) == {draft().id: 1}
    html = client.get(DRAFT_URL).get_data(as_text=True)
    assert "Por correo" in html and "c@correo.example" not in html


def test_contribution_after_closing_is_marked_late(client):
    consultation = make_consultation("closed")
    late = services.add_contribution(
        consultation=consultation,
        draft=draft(),
        body="Tarde",
        channel="email",
        received_at=clock.now(),
        author_name="X",
        author_email="x@correo.example",
    )
    assert late.is_late


def test_drafts_table_holds_sheet_fields():
    make_consultation()
    sheet = db.session.scalar(select(Draft).where(Draft.code == "SAN-1"))
    assert sheet.ogp_value_list == ["Transparencia"] and sheet.product_list == ["Plataforma"]


def test_anonymous_draft_pages_are_micro_cached_but_people_see_their_own_writes(app, client):
    app.config["PAGE_CACHE_SECONDS"] = 60
    app.config["VISIT_FLUSH_HITS"] = 1000
    make_consultation()
    author = make_user(email="autora@correo.example")
    make_comment(draft(), author, "primero")
    db.session.commit()
    first = client.get(DRAFT_URL)
    assert "primero" in first.get_data(as_text=True)
    assert "Set-Cookie" not in first.headers  # nothing personal in a shared page
    make_comment(draft(), author, "segundo")
    db.session.commit()
    again = client.get(DRAFT_URL)
    assert "segundo" not in again.get_data(as_text=True)  # served from the micro-cache
    assert again.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]

    logged_in = app.test_client()
    login(logged_in, "autora@correo.example")
    assert "segundo" in logged_in.get(DRAFT_URL).get_data(as_text=True)
    visits.flush()
    db.session.expire_all()
    assert draft().visit_count == 3  # cached answers are still counted


def test_a_form_resent_while_its_first_send_is_stored_answers_with_the_first(monkeypatch):
    """The race behind a double click: both sends pass the look-up, one insert wins."""
    make_consultation()
    author = make_user()
    first = services.add_comment(draft(), author, "Doble envío", idempotency_key="clave-1")
    db.session.commit()
    original = services.find_by_idempotency_key
    calls = []

    def first_look_misses(key):
        calls.append(key)
        return None if len(calls) == 1 else original(key)

    monkeypatch.setattr(services, "find_by_idempotency_key", first_look_misses)
    second = services.add_comment(draft(), author, "Doble envío", idempotency_key="clave-1")
    db.session.commit()
    assert second.id == first.id
    assert count_contributions() == 1

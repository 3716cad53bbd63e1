"""Moderation: the queue, hiding, reports, tags, systematisation, groups, publication, audit."""

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, text

from forum import clock
from forum.consultation.models import Contribution
from forum.consultation.services import add_contribution, edit_comment
from forum.extensions import db
from forum.moderation import services
from forum.moderation.models import AuditEntry, ContributionGroup, Report, Tag, contribution_tags
from tests.conftest import QueryCounter, csrf_token, form_post, login
from tests.factories import draft, make_comment, make_consultation, make_user

DRAFT_URL = "/consultas/paga-prueba/borradores/SAN-1"


@pytest.fixture
def moderator(client):
    """An open consultation, the seeded tags, and a logged-in moderator (CSRF on)."""
    client.application.config["WTF_CSRF_ENABLED"] = True
    make_consultation()
    services.seed_tags()
    user = make_user("moderator", email="moderadora@correo.example", name="Moderadora")
    db.session.commit()
    login(client, "moderadora@correo.example")
    return user


def queue_ids(client, **args) -> list[int]:
    html = client.get("/moderacion/", query_string=args).get_data(as_text=True)
    return [int(part.split('"')[0]) for part in html.split('name="aporte" value="')[1:]]


def post_on(client, page: str, url: str, data: dict, follow: bool = False):
    return form_post(client, page, url, data, follow=follow)


def audit_actions(target=None) -> list[str]:
    query = select(AuditEntry.action).order_by(AuditEntry.id)
    if target is not None:
        query = query.where(
            AuditEntry.target_type == target.__tablename__, AuditEntry.target_id == target.id
        )
    return list(db.session.scalars(query))


def fresh(contribution: Contribution) -> Contribution:
    db.session.expire_all()
    return db.session.get(Contribution, contribution.id)


def email_contribution(body: str, **extra) -> Contribution:
    target = draft("SAN-1")
    fields = {"author_name": "Juan Correo", "author_email": "juan@correo.example"}
    fields.update(extra)
    return add_contribution(
        consultation=target.consultation,
        draft=target,
        body=body,
        channel="email",
        received_at=clock.now(),
        **fields,
    )


# --------------------------------------------------------------------------- tags


def test_seed_tags_is_idempotent_and_covers_ogp_smart_and_out_of_scope(runner):
    result = runner.invoke(args=["moderation", "seed-tags"])
    assert "Etiquetas creadas: 10" in result.output
    again = runner.invoke(args=["moderation", "seed-tags"])
    assert "Etiquetas creadas: 0" in again.output
    names = set(db.session.scalars(select(Tag.name)))
    assert {
        "Transparencia",
        "Específico",
        "Medible",
        "Alcanzable",
        "Relevante",
        "Temporal",
    } <= names
    assert "Fuera de alcance" in names
    assert db.session.scalar(select(func.count()).select_from(Tag)) == 10


def test_admin_manages_the_vocabulary_and_a_retired_tag_cannot_be_applied(client):
    client.application.config["WTF_CSRF_ENABLED"] = True
    make_consultation()
    admin = make_user("admin", email="admin@correo.example")
    comment = make_comment(draft(), admin)
    db.session.commit()
    login(client, "admin@correo.example")
    post_on(client, "/moderacion/etiquetas", None, {"name": "Agua potable", "kind": "otro"})
    tag = db.session.scalar(select(Tag).where(Tag.slug == "agua-potable"))
    assert tag is not None and tag.is_active
    duplicate = post_on(
        client, "/moderacion/etiquetas", None, {"name": "Agua  potable", "kind": "otro"}
    )
    assert duplicate.status_code == 422 and "Ya existe" in duplicate.get_data(as_text=True)
    prefix = f"t{tag.id}-"
    post_on(
        client,
        "/moderacion/etiquetas",
        f"/moderacion/etiquetas/{tag.id}",
        {prefix + "name": "Agua potable rural", prefix + "kind": "otro"},  # is_active unticked
    )
    db.session.expire_all()
    assert tag.name == "Agua potable rural" and not tag.is_active
    with pytest.raises(services.InvalidInput):
        services.tag_contributions([comment], tag, admin)
    assert audit_actions(tag) == ["tag.create", "tag.update"]


# --------------------------------------------------------------------------- the queue


def test_queue_filters_combine_and_paginate(client, moderator):
    people = {
        "ong": make_user(organisation_type="ong", region="cusco"),
        "academia": make_user(organisation_type="academia", region="puno"),
    }
    clock.travel_to(clock.now() - timedelta(days=1))
    old = make_comment(draft("SAN-1"), people["ong"], "Agua para todos, ayer.")
    clock.travel_to(None)
    web = make_comment(draft("SAN-2"), people["academia"], "Repositorio de estudios abiertos.")
    mail = email_contribution("Propuesta por correo sobre saneamiento rural.")
    late = email_contribution("Llegó tarde.", author_email="tarde@correo.example")
    late.is_late = True
    hidden = make_comment(draft("SAL-1"), people["ong"], "Texto ofensivo.")
    services.hide_contribution(hidden, moderator, "insulto")
    tag = db.session.scalar(select(Tag).where(Tag.slug == "transparencia"))
    services.tag_contributions([web, mail], tag, moderator)
    services.set_disposition([mail], "incorporado", moderator)
    db.session.commit()

    assert queue_ids(client) == [hidden.id, late.id, mail.id, web.id, old.id]  # newest first
    assert queue_ids(client, orden="antiguos")[0] == old.id
    assert queue_ids(client, canal="email") == [late.id, mail.id]
    assert queue_ids(client, canal="email", tardio="no") == [mail.id]
    assert queue_ids(client, tardio="si") == [late.id]
    assert queue_ids(client, estado="hidden") == [hidden.id]
    assert queue_ids(client, etiqueta=str(tag.id)) == [mail.id, web.id]
    assert queue_ids(client, etiqueta=str(tag.id), disposicion="incorporado") == [mail.id]
    assert queue_ids(client, disposicion="pendiente", canal="web") == [hidden.id, web.id, old.id]
    assert queue_ids(client, tipo="academia") == [web.id]
    assert queue_ids(client, region="cusco") == [hidden.id, old.id]
    assert queue_ids(client, tipo="ong", region="cusco", estado="visible") == [old.id]
    assert queue_ids(client, borrador=str(draft("SAN-2").id)) == [web.id]
    assert queue_ids(client, tema=str(draft("SAL-1").theme_id)) == [hidden.id]
    assert queue_ids(client, q="SANEAMIENTO") == [mail.id]
    assert queue_ids(client, q="100%") == []  # LIKE wildcards are taken literally
    today = clock.to_lima(clock.now()).date()
    assert old.id not in queue_ids(client, desde=today.isoformat())
    assert queue_ids(client, hasta=(today - timedelta(days=1)).isoformat()) == [old.id]
    assert queue_ids(client, agrupado="si") == []

    page = services.filter_queue(services.QueueFilter(), page=2, per_page=2)
    assert [c.id for c in page.items] == [mail.id, web.id]
    assert page.total == 5 and page.pages == 3 and not page.is_total_capped and page.has_next
    assert services.count_queue(services.queue_conditions(services.QueueFilter()), cap=3) == (
        3,
        True,
    )


def test_a_capped_count_pages_on_without_a_total(client, moderator, monkeypatch):
    for n in range(5):
        make_comment(draft(), make_user(), f"Aporte {n}.")
    db.session.commit()
    monkeypatch.setattr(services, "COUNT_CAP", 3)
    page = services.filter_queue(services.QueueFilter(), page=1, per_page=2)
    assert page.is_total_capped and page.pages is None and page.has_next
    monkeypatch.setattr("forum.moderation.views.PER_PAGE", 2)
    html = client.get("/moderacion/", query_string={"pagina": 2}).get_data(as_text=True)
    assert "Más de 3 aportes" in html
    assert "Página 2</span>" in html and ">Siguiente</a>" in html and ">Anterior</a>" in html


def test_next_pages_follow_a_cursor_and_match_offset_pages(client, moderator, monkeypatch):
    clock.travel_to(clock.now() - timedelta(hours=1))
    same_instant = [make_comment(draft(), make_user(), f"Aporte {n}.") for n in range(3)]
    clock.travel_to(None)
    later = [make_comment(draft(), make_user(), f"Después {n}.") for n in range(3)]
    db.session.commit()
    newest_first = [c.id for c in reversed(same_instant + later)]
    monkeypatch.setattr("forum.moderation.views.PER_PAGE", 2)
    seen, url = [], "/moderacion/?canal=web"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += [int(part.split('"')[0]) for part in html.split('name="aporte" value="')[1:]]
        nxt = re.search(r'href="([^"]+)">Siguiente</a>', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
        assert url is None or ("despues=" in url and "canal=web" in url)
    assert seen == newest_first  # ties on received_at are broken by id, none lost
    for oldest_first in (False, True):
        f = services.QueueFilter(oldest_first=oldest_first)
        by_offset = services.filter_queue(f, page=2, per_page=2)
        first = services.filter_queue(f, page=1, per_page=2)
        by_cursor = services.filter_queue(
            f, page=2, per_page=2, cursor=services.parse_cursor(first.next_cursor)
        )
        assert [c.id for c in by_cursor.items] == [c.id for c in by_offset.items]
    assert services.parse_cursor("basura") is None
    assert services.parse_cursor("2026-11-22T10:00:00_7") is None  # naive instants refused


# --------------------------------------------------------------------------- free text


def search(**filters) -> list[int]:
    """The ids the queue's service finds, newest first."""
    page = services.filter_queue(services.QueueFilter(**filters), per_page=100)
    return [c.id for c in page.items]


def test_free_text_ignores_case_accents_and_punctuation_and_needs_every_word(client, moderator):
    author = make_user()
    both = make_comment(draft(), author, "EDUCACIÓN y participación ciudadana, ¡ya!")
    education = make_comment(draft(), author, "Más educación rural.")
    children = make_comment(draft(), author, "Niños y niñas primero.")
    db.session.commit()
    assert search(text="educacion") == [education.id, both.id]
    assert search(text="Participación Ciudadana") == [both.id]
    assert search(text="ciudadana educación") == [both.id]  # any order
    assert search(text="ciudad particip") == [both.id]  # parts of words
    assert search(text="participacion rural") == []
    assert search(text="NIÑAS") == [children.id]
    assert search(text="ninas") == []  # ñ is a letter of its own
    assert queue_ids(client, q="educacion ciudadana") == [both.id]


def test_short_words_narrow_what_longer_words_find_and_alone_are_ignored(client, moderator):
    author = make_user()
    thirty = make_comment(draft(), author, "Reglamentar la ley 30 de agua.")
    thirty_one = make_comment(draft(), author, "Reglamentar la ley 31 de agua.")
    db.session.commit()
    assert search(text="ley 30") == [thirty.id]
    assert search(text="agua 31 de") == [thirty_one.id]
    html = client.get("/moderacion/", query_string={"q": "30 de"}).get_data(as_text=True)
    assert "no tiene ninguna palabra de tres letras o más" in html
    assert queue_ids(client, q="30 de") == [thirty_one.id, thirty.id]
    assert "no tiene ninguna palabra" not in client.get("/moderacion/?q=ley").get_data(as_text=True)


def test_like_wildcards_typed_in_the_search_are_punctuation_not_wildcards(moderator):
    author = make_user()
    percent = make_comment(draft(), author, "Cobertura del 100% al 2030.")
    make_comment(draft(), author, "Cobertura total al 2030.")
    file_name = make_comment(draft(), author, "Ver el archivo plan_agua.pdf")
    make_comment(draft(), author, "Un plan sin agua.")  # "plan" and "agua", no "pdf"
    db.session.commit()
    assert services.search_words("%100% a_b\\") == (["100"], ["a", "b"])
    assert search(text="100%") == [percent.id]
    assert search(text="%cobertura_del%") == [percent.id]
    assert search(text="plan_agua.pdf") == [file_name.id]
    assert len(search(text="%_%")) == 4  # nothing to search for: no filter


def test_an_edited_comment_is_found_by_its_new_text_only(moderator):
    author = make_user()
    comment = make_comment(draft(), author, "Propongo más bibliotecas.")
    db.session.commit()
    assert search(text="bibliotecas") == [comment.id]
    edit_comment(comment, author, "Propongo más hospitales.")
    db.session.commit()
    assert search(text="bibliotecas") == []
    assert search(text="hospitales") == [comment.id]


def test_synthesis_group_synthesis_and_sender_name_are_searched(moderator):
    mail = email_contribution("Texto del correo.", author_name="Rosa Quispe Mamani")
    first = make_comment(draft(), make_user(), "Primer aporte.")
    second = make_comment(draft(), make_user(), "Segundo aporte.")
    services.update_systematisation(
        mail,
        moderator,
        expected_version=mail.version,
        synthesis="Pide indicadores trimestrales.",
        disposition="pendiente",
        response="",
        note="nota interna sin buscar",
    )
    group = services.group_contributions([first, second], moderator)
    services.update_group(
        group,
        moderator,
        expected_version=group.version,
        title="",
        synthesis="Alcantarillado en zonas rurales.",
        disposition="pendiente",
        response="",
    )
    db.session.commit()
    assert search(text="quispe") == [mail.id]
    assert search(text="trimestrales") == [mail.id]
    assert search(text="alcantarillado") == [second.id, first.id]
    assert search(text="interna") == []  # the moderator's note is not searched


def test_free_text_combines_with_the_other_filters(client, moderator, monkeypatch):
    author = make_user()
    web = make_comment(draft("SAN-1"), author, "Calidad del agua en Puno.")
    other_draft = make_comment(draft("SAL-1"), author, "Calidad del agua en hospitales.")
    mail = email_contribution("Calidad del agua en Cusco.")
    services.hide_contribution(mail, moderator, "insulto")
    db.session.commit()
    san = draft("SAN-1")
    expected = {
        (("text", "calidad agua"),): [mail.id, other_draft.id, web.id],
        (("text", "calidad agua"), ("channel", "web")): [other_draft.id, web.id],
        (("text", "agua"), ("theme_id", san.theme_id)): [mail.id, web.id],
        (("text", "agua"), ("draft_id", san.id), ("state", "visible")): [web.id],
    }
    # The index is read up to a threshold, past which the queue's order is walked instead;
    # both paths must give the same answer.
    for probe in (services.INDEX_PROBE, 1):
        monkeypatch.setattr(services, "INDEX_PROBE", probe)
        for filters, ids in expected.items():
            assert search(**dict(filters)) == ids
    assert queue_ids(client, q="agua", canal="email", estado="hidden") == [mail.id]


def test_the_free_text_filter_uses_the_trigram_index(moderator):
    make_comment(draft(), make_user(), "Calidad del agua.")
    db.session.commit()
    query = services.text_index_query(["calidad", "agua"], ["de"])
    compiled = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # A tiny table is cheaper to read whole: forbid that, to see the index is usable.
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(connection.exec_driver_sql(f"EXPLAIN {compiled}").scalars())
            assert "ix_contributions_search_text_trgm" in plan
        else:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
            plan = "\n".join(row[-1] for row in rows)
            assert "contributions_search VIRTUAL TABLE INDEX 0:L0L0L0" in plan
    # The words are written into the SQL, not sent as parameters: a prepared statement's
    # generic plan would not see whether a word is rare.
    with QueryCounter() as counter:
        found = services.filter_queue(services.QueueFilter(text="calidad agua"))
    assert len(found.items) == 1
    assert any("calidad%" in statement for statement in counter.statements)


def test_the_sqlite_search_index_follows_inserts_updates_and_deletes(moderator):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("the FTS5 table and its triggers exist on SQLite only")
    author = make_user()
    kept = make_comment(draft(), author, "Bosques y ríos.")
    edited = make_comment(draft(), author, "Minería ilegal.")
    deleted = make_comment(draft(), author, "Minería formal.")
    db.session.commit()
    edit_comment(edited, author, "Pesca artesanal.")
    db.session.execute(delete(Contribution).where(Contribution.id == deleted.id))
    db.session.commit()

    def indexed(word: str) -> list[int]:
        return list(
            db.session.scalars(
                select(services.search_index.c.rowid)
                .where(services.search_index.c.search_text.like(f"%{word}%"))
                .order_by(services.search_index.c.rowid)
            )
        )

    assert indexed("mineria") == []
    assert indexed("pesca") == [edited.id]
    assert indexed("rios") == [kept.id]
    # FTS5 compares its index with contributions.search_text and raises on any difference.
    db.session.execute(
        text(
            "INSERT INTO contributions_search (contributions_search, rank) "
            "VALUES ('integrity-check', 1)"
        )
    )


def test_queue_shows_channel_late_and_reports_and_no_citizen_email_to_the_public(client, moderator):
    mail = email_contribution("Propuesta enviada por correo.")
    db.session.commit()
    html = client.get("/moderacion/").get_data(as_text=True)
    assert "Correo electrónico" in html and "Juan Correo" in html
    public = client.get(DRAFT_URL).get_data(as_text=True)
    assert "juan@correo.example" not in public and f"aporte-{mail.id}" in public


# --------------------------------------------------------------------------- hiding and reports


def test_hiding_shows_a_placeholder_with_the_reason_and_restoring_brings_it_back(client, moderator):
    author = make_user()
    comment = make_comment(draft(), author, "Un texto con un insulto grave.")
    db.session.commit()
    assert "insulto grave" in client.get(DRAFT_URL).get_data(as_text=True)  # cached now
    page = f"/moderacion/aportes/{comment.id}"
    response = post_on(
        client, page, page + "/ocultar", {"reason": "insulto", "note": "Reincidente"}, follow=True
    )
    assert "Aporte ocultado" in response.get_data(as_text=True)
    html = client.get(DRAFT_URL).get_data(as_text=True)
    assert "insulto grave" not in html
    assert "ocultado por moderación. Motivo: Insultos o lenguaje ofensivo" in html
    assert "Motivo: Insultos" in client.get(f"/aportes/{comment.id}").get_data(as_text=True)
    assert fresh(comment).moderator_note == "Reincidente"

    post_on(client, page, page + "/restaurar", {})
    assert "insulto grave" in client.get(DRAFT_URL).get_data(as_text=True)
    assert audit_actions(comment) == ["contribution.hide", "contribution.restore"]
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "contribution.hide"))
    assert json.loads(entry.before)["moderation_state"] == "visible"
    assert json.loads(entry.after)["hidden_reason"] == "insulto"
    assert entry.actor_id == moderator.id
    assert db.session.scalar(select(func.count()).select_from(Contribution)) == 1  # never deleted


def test_hiding_requires_a_published_reason(client, moderator):
    comment = make_comment(draft(), make_user())
    db.session.commit()
    page = f"/moderacion/aportes/{comment.id}"
    post_on(client, page, page + "/ocultar", {"reason": "porque-si"})
    assert not fresh(comment).is_hidden


def test_citizen_reports_once_reports_reach_the_queue_and_hiding_closes_them(client, moderator):
    comment = make_comment(draft(), make_user(), "Compren en mi tienda www.spam.example")
    other = make_comment(draft(), make_user(), "Aporte normal.")
    make_user(email="vecino@correo.example")
    db.session.commit()
    client.post(
        "/cuenta/salir", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))}
    )
    login(client, "vecino@correo.example")
    url = f"/aportes/{comment.id}/denunciar"
    first = post_on(client, url, None, {"reason": "spam", "note": "Publicidad"}, follow=True)
    assert "revisará el aporte" in first.get_data(as_text=True)
    second = post_on(client, url, None, {"reason": "spam"}, follow=True)
    assert "Ya habías denunciado" in second.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Report)) == 1

    client.post(
        "/cuenta/salir", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))}
    )
    login(client, "moderadora@correo.example")
    assert queue_ids(client, estado="reported") == [comment.id]
    assert "1 denuncia" in client.get("/moderacion/").get_data(as_text=True)
    page = f"/moderacion/aportes/{comment.id}"
    assert "Publicidad" in client.get(page).get_data(as_text=True)
    post_on(client, page, page + "/ocultar", {"reason": "spam"})
    assert queue_ids(client, estado="reported") == []
    assert other.id not in queue_ids(client, estado="hidden")


def test_dismissing_reports_keeps_the_contribution_visible(client, moderator):
    comment = make_comment(draft(), make_user())
    services.report_contribution(comment, make_user(), "fuera-de-tema")
    db.session.commit()
    page = f"/moderacion/aportes/{comment.id}"
    post_on(client, page, page + "/denuncias/cerrar", {})
    assert queue_ids(client, estado="reported") == []
    assert not fresh(comment).is_hidden
    assert audit_actions(comment) == ["reports.dismiss"]


# --------------------------------------------------------------------------- bulk actions and tags


def test_bulk_actions_tag_untag_hide_and_set_disposition(client, moderator):
    a = make_comment(draft(), make_user(), "Primero.")
    b = make_comment(draft(), make_user(), "Segundo.")
    c = make_comment(draft(), make_user(), "Tercero.")
    db.session.commit()
    tag = db.session.scalar(select(Tag).where(Tag.slug == "medible"))

    def bulk(action, ids, **extra):
        page = client.get("/moderacion/").get_data(as_text=True)
        data = {
            "csrf_token": csrf_token(page),
            "lote-accion": action,
            "aporte": [str(i) for i in ids],
            "lote-etiqueta": str(tag.id),
            "lote-motivo": "spam",
            "lote-disposicion": "no-incorporado",
            "lote-volver": "/moderacion/",
            **extra,
        }
        return client.post("/moderacion/lote", data=data, follow_redirects=True).get_data(
            as_text=True
        )

    assert "puesta en 2 aporte(s)" in bulk("etiquetar", [a.id, b.id])
    assert "puesta en 1 aporte(s)" in bulk("etiquetar", [b.id, c.id])  # b already had it
    assert queue_ids(client, etiqueta=str(tag.id)) == [c.id, b.id, a.id]
    assert "quitada de 1 aporte(s)" in bulk("desetiquetar", [a.id])
    assert "No incorporado" in bulk("disposicion", [a.id, b.id])
    assert queue_ids(client, disposicion="no-incorporado") == [b.id, a.id]
    assert "1 aporte(s) ocultado(s)" in bulk("ocultar", [c.id])
    assert fresh(c).hidden_reason == "spam"
    assert "Marca al menos un aporte" in bulk("ocultar", [])
    assert audit_actions().count("contribution.tag") == 3


def test_tags_on_the_contribution_page(client, moderator):
    comment = make_comment(draft(), make_user())
    db.session.commit()
    tag = db.session.scalar(select(Tag).where(Tag.slug == "temporal"))
    page = f"/moderacion/aportes/{comment.id}"
    post_on(client, page, page + "/etiquetas", {"tag": str(tag.id)})
    assert (
        db.session.scalar(
            select(func.count()).where(contribution_tags.c.contribution_id == comment.id)
        )
        == 1
    )
    post_on(client, page, page + "/etiquetas/quitar", {"tag": str(tag.id)})
    assert (
        db.session.scalar(
            select(func.count()).where(contribution_tags.c.contribution_id == comment.id)
        )
        == 0
    )


# --------------------------------------------------------------------------- systematisation


def test_systematisation_is_saved_and_audited(client, moderator):
    comment = make_comment(draft(), make_user())
    db.session.commit()
    page = f"/moderacion/aportes/{comment.id}"
    post_on(
        client,
        page,
        page + "/sistematizar",
        {
            "synthesis": "Pide datos abiertos.",
            "disposition": "incorporado-parcialmente",
            "response": "Se incluye el producto 2.",
            "note": "Ver mesa temática",
            "version": "1",
        },
    )
    comment = fresh(comment)
    assert (comment.synthesis, comment.disposition) == (
        "Pide datos abiertos.",
        "incorporado-parcialmente",
    )
    assert comment.response == "Se incluye el producto 2." and comment.version == 2
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "contribution.systematise")
    )
    assert json.loads(entry.before)["disposition"] == "pendiente"
    assert json.loads(entry.after)["response"] == "Se incluye el producto 2."


def test_two_moderators_never_silently_overwrite_each_other(app, client, moderator):
    comment = make_comment(draft(), make_user())
    make_user("moderator", email="segundo@correo.example")
    db.session.commit()
    page = f"/moderacion/aportes/{comment.id}"
    second = app.test_client()
    login(second, "segundo@correo.example")
    # Both load the form at version 1.
    token_first = csrf_token(client.get(page).get_data(as_text=True))
    token_second = csrf_token(second.get(page).get_data(as_text=True))
    fields = {"synthesis": "", "disposition": "incorporado", "note": "", "version": "1"}
    first = client.post(
        page + "/sistematizar",
        data={"csrf_token": token_first, **fields, "response": "Respuesta de la primera."},
    )
    assert first.status_code == 302
    clash = second.post(
        page + "/sistematizar",
        data={"csrf_token": token_second, **fields, "response": "Respuesta del segundo."},
    )
    html = clash.get_data(as_text=True)
    assert clash.status_code == 409
    assert "Otra persona guardó cambios" in html
    assert "Respuesta del segundo." in html  # what they typed is still in the form
    assert "Respuesta de la primera." in html  # and they see the saved version
    assert fresh(comment).response == "Respuesta de la primera."
    # Having seen it, saving again (the form now carries version 2) goes through.
    again = second.post(
        page + "/sistematizar",
        data={
            "csrf_token": token_second,
            **fields,
            "version": "2",
            "response": "Respuesta del segundo.",
        },
    )
    assert again.status_code == 302
    assert fresh(comment).response == "Respuesta del segundo."


def test_a_concurrent_commit_after_loading_is_caught_by_the_version_column(moderator):
    comment = make_comment(draft(), make_user())
    db.session.commit()
    loaded = db.session.get(Contribution, comment.id)
    with db.engine.begin() as connection:  # another request commits in between
        connection.execute(
            Contribution.__table__.update()
            .where(Contribution.id == comment.id)
            .values(response="otra", version=Contribution.version + 1)
        )
    with pytest.raises(services.StaleEdit):
        services.update_systematisation(
            loaded,
            moderator,
            expected_version=1,
            synthesis="",
            disposition="incorporado",
            response="mía",
            note="",
        )
    db.session.rollback()


# --------------------------------------------------------------------------- groups


def test_grouping_keeps_every_member_counts_raw_and_distinct_and_shares_the_response(
    client, moderator
):
    person = make_user()
    a = make_comment(draft(), person, "Carta modelo: pedimos agua potable.")
    b = email_contribution(
        "Carta modelo: pedimos agua potable.", author_email="otra@correo.example"
    )
    c = make_comment(draft(), person, "Carta modelo: pedimos agua potable!")  # same person again
    db.session.commit()
    group = services.group_contributions([a, b, c], moderator)
    db.session.commit()
    assert services.group_counts([group.id])[group.id] == services.GroupCounts(raw=3, distinct=2)

    page = f"/moderacion/grupos/{group.id}"
    post_on(
        client,
        page,
        None,
        {
            "title": "Agua potable",
            "synthesis": "Piden agua.",
            "disposition": "incorporado",
            "response": "Se incluye.",
            "version": str(group.version),
        },
    )
    for member in (a, b, c):
        member = fresh(member)
        assert (member.disposition, member.response, member.group_id) == (
            "incorporado",
            "Se incluye.",
            group.id,
        )
    assert "3</strong> aportes de <strong>2</strong>" in client.get(page).get_data(as_text=True)
    # A grouped member's texts are edited on the group, not one by one.
    with pytest.raises(services.InvalidInput):
        services.update_systematisation(
            fresh(a),
            moderator,
            expected_version=fresh(a).version,
            synthesis="",
            disposition="no-incorporado",
            response="",
            note="",
        )
    db.session.rollback()
    member_page = f"/moderacion/aportes/{c.id}"
    post_on(client, member_page, member_page + "/desagrupar", {})
    assert fresh(c).group_id is None
    assert services.group_counts([group.id])[group.id].raw == 2
    assert "group.update" in audit_actions(group)


def test_group_edit_is_version_checked(client, moderator):
    a = make_comment(draft(), make_user(), "Uno.")
    b = make_comment(draft(), make_user(), "Dos.")
    group = services.group_contributions([a, b], moderator)
    db.session.commit()
    response = post_on(
        client,
        f"/moderacion/grupos/{group.id}",
        None,
        {
            "title": "T",
            "synthesis": "",
            "disposition": "incorporado",
            "response": "Tarde",
            "version": str(group.version - 1),
        },
    )
    assert response.status_code == 409 and "Tarde" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(ContributionGroup, group.id).response == ""


def test_grouping_refuses_two_existing_groups(moderator):
    comments = [make_comment(draft(), make_user(), f"Texto {n}.") for n in range(4)]
    services.group_contributions(comments[:2], moderator)
    services.group_contributions(comments[2:], moderator)
    with pytest.raises(services.InvalidInput, match="grupos distintos"):
        services.group_contributions([comments[0], comments[2]], moderator)


# --------------------------------------------------------------------------- publication


def test_publication_waits_for_the_close_then_shows_dispositions_and_responses(client, moderator):
    admin = make_user("admin", email="jefa@correo.example")
    kept = make_comment(draft(), make_user(), "Publiquen los datos de agua.")
    hidden = make_comment(draft(), make_user(), "Mi DNI es 12345678.")
    pending = make_comment(draft(), make_user(), "Sin respuesta aún.")
    services.update_systematisation(
        kept,
        moderator,
        expected_version=kept.version,
        synthesis="Datos",
        disposition="incorporado",
        response="Se publicarán cada mes.",
        note="",
    )
    services.hide_contribution(hidden, moderator, "datos-personales")
    db.session.commit()
    client.post(
        "/cuenta/salir", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))}
    )
    login(client, "jefa@correo.example")
    publish = "/moderacion/consultas/paga-prueba/publicar"
    page = client.get(publish).get_data(as_text=True)
    assert "<strong>1</strong> aporte visible todavía sin disposición" in page
    assert "cuando la consulta haya cerrado" in page
    with pytest.raises(services.NotAllowed):
        services.publish_responses(kept.draft.consultation, admin)
    assert "todavía no ha publicado" in client.get("/consultas/paga-prueba/respuestas").get_data(
        as_text=True
    )
    html = client.get(DRAFT_URL).get_data(as_text=True)
    assert "Se publicarán cada mes." not in html  # cached before publication

    clock.travel_to(kept.draft.consultation.closes_at + timedelta(hours=1))
    response = post_on(client, publish, None, {}, follow=True)
    assert "Respuestas publicadas" in response.get_data(as_text=True)
    html = client.get(DRAFT_URL).get_data(as_text=True)
    assert "Disposición:</strong> Incorporado" in html and "Se publicarán cada mes." in html
    assert "Disposición:</strong> Pendiente" in html
    assert "12345678" not in html and "Motivo: Contiene datos personales" in html
    listing = client.get("/consultas/paga-prueba/respuestas").get_data(as_text=True)
    assert "Se publicarán cada mes." in listing and f"N.º {pending.id}" in listing
    assert "Aporte ocultado por moderación. Motivo: Contiene datos personales" in listing
    assert "12345678" not in listing
    assert "consultation.publish_responses" in audit_actions()
    again = post_on(client, publish, None, {}, follow=True)
    assert "ya están publicadas" in again.get_data(as_text=True)


def test_changes_after_publication_reach_the_cached_draft_page(client, moderator):
    comment = make_comment(draft(), make_user())
    consultation = comment.draft.consultation
    clock.travel_to(consultation.closes_at + timedelta(hours=1))
    consultation.responses_published_at = clock.now()
    db.session.commit()
    assert "Disposición:</strong> Pendiente" in client.get(DRAFT_URL).get_data(as_text=True)
    services.set_disposition([comment], "derivado", moderator)
    db.session.commit()
    assert "Derivado a la entidad responsable" in client.get(DRAFT_URL).get_data(as_text=True)


# --------------------------------------------------------------------------- audit


def test_audit_log_is_viewable_and_filterable_by_admins_only_and_append_only(
    app, client, moderator
):
    comment = make_comment(draft(), make_user())
    services.hide_contribution(comment, moderator, "spam")
    services.restore_contribution(comment, moderator)
    make_user("admin", email="jefa@correo.example")
    db.session.commit()
    assert client.get("/moderacion/auditoria").status_code == 403  # a moderator
    client.post(
        "/cuenta/salir", data={"csrf_token": csrf_token(client.get("/").get_data(as_text=True))}
    )
    login(client, "jefa@correo.example")
    html = client.get("/moderacion/auditoria").get_data(as_text=True)
    assert "contribution.hide" in html and "Moderadora" in html
    only = client.get("/moderacion/auditoria", query_string={"accion": "contribution.restore"})
    text = only.get_data(as_text=True)
    assert "contribution.restore" in text and "<td>contribution.hide</td>" not in text
    by_target = client.get(
        "/moderacion/auditoria", query_string={"objeto": "contributions", "objeto_id": comment.id}
    )
    assert "2 entradas" in by_target.get_data(as_text=True)
    audit_rules = [r for r in app.url_map.iter_rules() if "auditoria" in r.rule]
    assert [sorted(r.methods - {"HEAD", "OPTIONS"}) for r in audit_rules] == [["GET"]]
    assert not any(name.startswith(("delete_audit", "edit_audit")) for name in dir(services))

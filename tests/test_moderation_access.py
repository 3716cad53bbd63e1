"""The whole matrix: every moderation and admin route x four roles x GET and POST.

Refused requests are refused on the server (login redirect or 403), even when a citizen
forges a POST with a valid CSRF token from their own session, and they change nothing.
"""

import pytest
from sqlalchemy import select

from forum.extensions import db
from forum.moderation import services
from forum.moderation.models import Tag
from tests.conftest import csrf_token, login
from tests.factories import draft, make_comment, make_consultation, make_user

ROLES = ("anonymous", "citizen", "moderator", "admin")
ADMIN_ONLY = {"moderation.tags", "moderation.edit_tag", "moderation.audit", "moderation.publish"}


def _guarded_rules(app) -> list:
    rules = [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(("moderation.", "consultation_admin."))
    ]
    return sorted(rules, key=lambda rule: rule.rule)


def _state() -> dict:
    """Every row of every table: what a refused request must leave as it was."""
    db.session.expire_all()
    found = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(select(table).order_by(*table.primary_key.columns)).all()
        found[table.name] = [tuple(row) for row in rows]
    return found


@pytest.fixture
def world(client):
    """One of everything a route can take as a parameter, and one account per role."""
    client.application.config["WTF_CSRF_ENABLED"] = True
    make_consultation()
    services.seed_tags()
    accounts = {
        role: make_user(role, email=f"{role}@correo.example")
        for role in ("citizen", "moderator", "admin")
    }
    first = make_comment(draft(), accounts["citizen"], "Carta modelo sobre agua.")
    second = make_comment(draft(), accounts["citizen"], "Carta modelo sobre agua.")
    third = make_comment(draft(), accounts["citizen"], "Otro tema.")
    group = services.group_contributions([first, second], accounts["admin"])
    db.session.commit()
    tag = db.session.scalar(select(Tag).order_by(Tag.id))
    return {
        "params": {
            "contribution_id": third.id,
            "group_id": group.id,
            "tag_id": tag.id,
            "slug": "paga-prueba",
        },
        "payload": {
            "reason": "spam",
            "note": "forjado",
            "tag": str(tag.id),
            "lote-accion": "ocultar",
            "lote-motivo": "spam",
            "aporte": [str(first.id), str(second.id), str(third.id)],
            "motivo": "spam",
            "etiqueta": str(tag.id),
            "disposicion": "no-incorporado",
            "disposition": "no-incorporado",
            "synthesis": "forjada",
            "response": "forjada",
            "title": "forjado",
            "version": "1",
            "name": "Etiqueta forjada",
            "kind": "otro",
            "propuestos": f"{first.id},{third.id}",
            "incluir": [str(first.id), str(third.id)],
            "respuesta": "agrupar",
            "opens_at": "2020-01-01T08:00",
            "closes_at": "2020-01-02T08:00",
            f"t{tag.id}-name": "forjada",
            f"t{tag.id}-kind": "otro",
        },
    }


def _client_for(app, role: str):
    client = app.test_client()
    if role != "anonymous":
        login(client, f"{role}@correo.example")
    return client


def _allowed(role: str, endpoint: str) -> bool:
    if role == "admin":
        return True
    if role == "moderator":
        return endpoint.startswith("moderation.") and endpoint not in ADMIN_ONLY
    return False


def test_the_matrix_covers_every_moderation_and_admin_route(app):
    endpoints = {rule.endpoint for rule in _guarded_rules(app)}
    assert {
        "moderation.queue",
        "moderation.bulk",
        "moderation.contribution",
        "moderation.systematise",
        "moderation.hide",
        "moderation.restore",
        "moderation.add_tag",
        "moderation.remove_tag",
        "moderation.dismiss_reports",
        "moderation.ungroup",
        "moderation.groups",
        "moderation.group",
        "moderation.duplicates",
        "consultation_admin.window",
    } | ADMIN_ONLY <= endpoints


@pytest.mark.parametrize("role", ROLES)
def test_every_route_for_every_role(app, world, role):
    client = _client_for(app, role)
    token = csrf_token(
        client.get("/cuenta/entrar" if role == "anonymous" else "/").get_data(as_text=True)
    )
    checked = 0
    for rule in _guarded_rules(app):
        url = rule.build(world["params"], append_unknown=False)[1]
        for method in ("GET", "POST"):
            before = _state() if not _allowed(role, rule.endpoint) else None
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(url, data={"csrf_token": token, **world["payload"]})
            where = f"{role} {method} {url}"
            if method not in rule.methods:
                assert response.status_code == 405, where
            elif role == "anonymous":
                assert response.status_code == 302, where
                assert "/cuenta/entrar" in response.headers["Location"], where
            elif not _allowed(role, rule.endpoint):
                assert response.status_code == 403, where
            else:
                assert response.status_code not in (400, 401, 403, 405, 500), where
                if method == "GET":
                    assert response.status_code == 200, where
            if before is not None:
                assert _state() == before, f"{where} changed the database"
            checked += 1
    assert checked == 2 * len(_guarded_rules(app))


def test_a_forged_citizen_post_changes_nothing_where_a_moderator_post_does(app, world):
    url = f"/moderacion/aportes/{world['params']['contribution_id']}/ocultar"
    citizen = _client_for(app, "citizen")
    token = csrf_token(citizen.get("/").get_data(as_text=True))
    before = _state()
    assert citizen.post(url, data={"csrf_token": token, "reason": "spam"}).status_code == 403
    assert _state() == before
    moderator = _client_for(app, "moderator")
    token = csrf_token(moderator.get("/").get_data(as_text=True))
    assert moderator.post(url, data={"csrf_token": token, "reason": "spam"}).status_code == 302
    assert _state() != before

"""The window's admin page, and who may reach it."""

import pytest
from sqlalchemy import select

from forum.consultation.models import Consultation
from forum.extensions import db
from tests.conftest import form_post, login
from tests.factories import make_consultation, make_user

WINDOW_URL = "/admin/consultas/paga-prueba/ventana"


@pytest.fixture(autouse=True)
def _setup(csrf_on):
    make_consultation()
    make_user("admin", email="admin@sgp.example.gob.pe")
    make_user("moderator", email="mod@sgp.example.gob.pe")
    make_user("citizen", email="vecino@correo.example")
    db.session.commit()


def test_admin_sets_the_window_in_lima_time(client):
    login(client, "admin@sgp.example.gob.pe")
    page = client.get(WINDOW_URL).get_data(as_text=True)
    assert 'id="opens_at"' in page and "hora de Lima" in page
    response = form_post(
        client, WINDOW_URL, None, {"opens_at": "2017-09-22T08:00", "closes_at": "2017-10-06T23:59"}
    )
    assert response.status_code == 302
    consultation = db.session.scalar(select(Consultation))
    db.session.refresh(consultation)
    assert consultation.closes_at.isoformat() == "2017-10-07T04:59:00+00:00"
    assert "Consulta cerrada" in client.get("/").get_data(as_text=True)


def test_admin_window_errors_keep_the_values(client):
    login(client, "admin@sgp.example.gob.pe")
    response = form_post(
        client, WINDOW_URL, None, {"opens_at": "2017-10-06T08:00", "closes_at": "2017-09-22T08:00"}
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "El cierre debe ser posterior" in html
    assert 'value="2017-10-06T08:00"' in html


@pytest.mark.parametrize(
    "email, status", [(None, 302), ("vecino@correo.example", 403), ("mod@sgp.example.gob.pe", 403)]
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_only_admins_reach_the_window(client, email, status, method):
    if email:
        login(client, email)
    consultation = db.session.scalar(select(Consultation))
    closes_before = consultation.closes_at
    response = getattr(client, method)(
        WINDOW_URL, data={"opens_at": "2017-09-22T08:00", "closes_at": "2017-10-06T23:59"}
    )
    assert response.status_code in (status, 400)  # a forged POST without token is refused too
    if response.status_code == 302:
        assert "/cuenta/entrar" in response.headers["Location"]
    db.session.expire_all()
    assert db.session.scalar(select(Consultation)).closes_at == closes_before


def test_forged_post_with_a_valid_session_token_is_still_refused_to_a_citizen(client):
    login(client, "vecino@correo.example")
    response = form_post(
        client, "/", WINDOW_URL, {"opens_at": "2017-09-22T08:00", "closes_at": "2017-10-06T23:59"}
    )
    assert response.status_code == 403

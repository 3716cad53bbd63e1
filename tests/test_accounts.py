"""Accounts: registration with consent, login, password reset, roles, privacy."""

import os
import re
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from forum.accounts.models import User
from forum.extensions import db
from tests.conftest import form_post, login
from tests.factories import PASSWORD, make_comment, make_consultation, make_user
from tests.factories import draft as get_draft

REGISTRATION = {
    "name": "Rosa Condori",
    "email": "Rosa.Condori@Correo.Example",
    "password": "una-clave-larga-9",
    "password_confirm": "una-clave-larga-9",
    "organisation": "Colectivo Agua Viva",
    "organisation_type": "ong",
    "region": "puno",
    "is_name_public": "y",
    "consent": "y",
}


@pytest.fixture(autouse=True)
def _csrf(csrf_on):
    """Every account test posts forms as a browser would, with CSRF on."""


def register(client, **changes):
    return form_post(client, "/cuenta/registro", None, {**REGISTRATION, **changes})


def test_registration_creates_a_citizen_with_consent_and_logs_in(client):
    response = register(client)
    assert response.status_code == 302
    user = db.session.scalar(select(User))
    assert user.email == "rosa.condori@correo.example"
    assert user.role == "citizen"
    assert user.consented_at is not None and user.consent_version
    assert user.organisation_type == "ong" and user.region == "puno"
    assert user.password_hash != REGISTRATION["password"]
    assert "Salir (Rosa Condori)" in client.get("/").get_data(as_text=True)


def test_registration_page_states_purpose_and_retention(client):
    html = client.get("/cuenta/registro").get_data(as_text=True)
    assert "Ley 29733" in html
    assert "Finalidad" in html and "Conservación" in html
    assert 'name="consent"' in html


def test_registration_without_consent_is_refused_and_keeps_what_was_typed(client):
    response = register(client, consent="")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "debes aceptar el tratamiento" in html
    assert 'value="Rosa Condori"' in html
    assert 'value="Colectivo Agua Viva"' in html
    assert '<option selected value="puno">' in html
    assert db.session.scalar(select(User)) is None


def test_email_is_unique_whatever_its_case(client):
    register(client)
    client.post("/cuenta/salir", data={})
    other = client.application.test_client()
    response = form_post(
        other, "/cuenta/registro", None, {**REGISTRATION, "email": "ROSA.condori@correo.EXAMPLE"}
    )
    assert response.status_code == 422
    assert "Ya existe una cuenta" in response.get_data(as_text=True)
    assert len(db.session.scalars(select(User)).all()) == 1


def test_missing_fields_get_spanish_messages(client):
    response = register(client, name="", email="no-es-correo", region="", password_confirm="otra")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Este campo es obligatorio." in html
    assert "Escribe un correo electrónico válido" in html
    assert "Elige tu región." in html
    assert "Las contraseñas no coinciden." in html


def test_post_without_csrf_token_is_refused(client):
    response = client.post("/cuenta/registro", data=REGISTRATION)
    assert response.status_code == 400
    assert db.session.scalar(select(User)) is None


def test_login_and_logout(client):
    make_user(email="ana@correo.example")
    db.session.commit()
    response = login(client, "ANA@correo.example")
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "Salir (" in page
    form_post(client, "/", "/cuenta/salir", {})
    assert "Entrar" in client.get("/").get_data(as_text=True)


def test_wrong_password_gets_one_message_for_every_failure(client):
    make_user(email="ana@correo.example")
    db.session.commit()
    wrong_password = login(client, "ana@correo.example", "equivocada-123")
    unknown_user = login(client, "nadie@correo.example", "equivocada-123")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 422
        assert "El correo o la contraseña no son correctos." in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "target, expected",
    [
        ("/consultas/x/borradores/SAN-1", "/consultas/x/borradores/SAN-1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ],
)
def test_login_next_parameter_never_leaves_the_site(client, target, expected):
    make_user(email="ana@correo.example")
    db.session.commit()
    response = form_post(
        client,
        "/cuenta/entrar",
        f"/cuenta/entrar?next={target}",
        {"email": "ana@correo.example", "password": PASSWORD},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def _outbox(app) -> list:
    folder = os.path.join(app.instance_path, app.config["MAIL_OUTBOX"])
    if not os.path.isdir(folder):
        return []
    messages = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as handle:
            messages.append(message_from_bytes(handle.read(), policy=policy.default))
    return messages


@pytest.fixture
def outbox(app):
    folder = os.path.join(app.instance_path, app.config["MAIL_OUTBOX"])
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        os.remove(os.path.join(folder, name))
    return lambda: _outbox(app)


def _reset_link(message) -> str:
    match = re.search(r"http://localhost(/cuenta/contrasena/nueva/\S+)", message.get_content())
    assert match, message.get_content()
    return match.group(1)


def test_password_reset_by_mailed_link(client, outbox):
    user = make_user(email="ana@correo.example")
    db.session.commit()
    response = form_post(client, "/cuenta/contrasena/olvido", None, {"email": "ana@correo.example"})
    assert response.status_code == 302
    (message,) = outbox()
    assert message["To"] == "ana@correo.example"
    link = _reset_link(message)

    new = {"password": "nueva-clave-segura", "password_confirm": "nueva-clave-segura"}
    assert form_post(client, link, None, new).status_code == 302
    db.session.refresh(user)
    assert user.check_password("nueva-clave-segura")
    assert login(client, "ana@correo.example", "nueva-clave-segura").status_code == 302

    reused = client.get(link, follow_redirects=True)
    assert "no es válido o ya venció" in reused.get_data(as_text=True)


def test_password_reset_answers_the_same_for_unknown_addresses(client, outbox):
    make_user(email="ana@correo.example")
    db.session.commit()
    known = form_post(
        client, "/cuenta/contrasena/olvido", None, {"email": "ana@correo.example"}, follow=True
    )
    unknown = form_post(
        client, "/cuenta/contrasena/olvido", None, {"email": "x@correo.example"}, follow=True
    )
    assert "Si existe una cuenta" in known.get_data(as_text=True)
    assert "Si existe una cuenta" in unknown.get_data(as_text=True)
    assert len(outbox()) == 1


def test_expired_reset_link_is_refused(app, client, outbox):
    make_user(email="ana@correo.example")
    db.session.commit()
    form_post(client, "/cuenta/contrasena/olvido", None, {"email": "ana@correo.example"})
    link = _reset_link(outbox()[0])
    app.config["PASSWORD_RESET_MAX_AGE"] = -1
    response = client.get(link, follow_redirects=True)
    assert "no es válido o ya venció" in response.get_data(as_text=True)


def test_password_change_ends_other_sessions(app, client, outbox):
    make_user(email="ana@correo.example")
    db.session.commit()
    other_device = app.test_client()
    login(other_device, "ana@correo.example")
    assert "Salir (" in other_device.get("/").get_data(as_text=True)

    form_post(client, "/cuenta/contrasena/olvido", None, {"email": "ana@correo.example"})
    link = _reset_link(outbox()[0])
    form_post(
        client, link, None, {"password": "otra-clave-larga", "password_confirm": "otra-clave-larga"}
    )
    assert "Salir (" not in other_device.get("/").get_data(as_text=True)


def test_public_pages_never_show_an_email_address(client):
    make_consultation()
    author = make_user(email="secreta.persona@correo.example", name="Juana Pérez")
    shy = make_user(email="timida@correo.example", name="Nombre Oculto", is_name_public=False)
    first = make_comment(get_draft(), author, "Mi aporte público.")
    reply = make_comment(get_draft(), shy, "Respuesta discreta.", parent=first)
    db.session.commit()
    for url in [
        "/",
        "/consultas/paga-prueba/temas/saneamiento",
        "/consultas/paga-prueba/borradores/SAN-1",
        f"/aportes/{first.id}",
        f"/aportes/{reply.id}",
    ]:
        html = client.get(url).get_data(as_text=True)
        assert "secreta.persona" not in html and "timida@" not in html
        assert "Nombre Oculto" not in html
    draft_page = client.get("/consultas/paga-prueba/borradores/SAN-1").get_data(as_text=True)
    assert "Juana Pérez" in draft_page
    assert f"Participante {shy.id}" in draft_page


def test_users_create_command_makes_a_moderator(runner):
    result = runner.invoke(
        args=[
            "users",
            "create",
            "--role",
            "moderator",
            "--email",
            "Mod@SGP.example.gob.pe",
            "--name",
            "Moderadora",
            "--password",
            "clave-moderadora-1",
        ]
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User))
    assert user.role == "moderator" and user.email == "mod@sgp.example.gob.pe"
    assert user.check_password("clave-moderadora-1")
    again = runner.invoke(
        args=[
            "users",
            "create",
            "--email",
            "mod@sgp.example.gob.pe",
            "--name",
            "X",
            "--password",
            "clave-larga-123",
        ]
    )
    assert again.exit_code != 0 and "Ya existe una cuenta" in again.output


def test_login_is_rate_limited(app, client):
    app.config["LOGIN_LIMIT"] = "3 per minute"
    codes = [login(client, "nadie@correo.example", "equivocada-1").status_code for _ in range(4)]
    assert codes[:3] == [422, 422, 422]
    assert codes[3] == 429

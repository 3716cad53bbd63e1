"""Security by default: headers, cookies, secrets, throttling, verification, limits, backups."""

import os
import shutil
import socket
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select

from forum import create_app
from forum.accounts.models import User
from forum.consultation import services as consultation_services
from forum.consultation.models import Contribution
from forum.extensions import db
from tests.conftest import csrf_token, form_post, login, require_service
from tests.factories import PASSWORD, draft, make_comment, make_consultation, make_user

PRODUCTION_SECRET = "p" * 48


@pytest.fixture
def production_app(app):
    """The same database, configured as in production."""
    prod = create_app(
        {
            "ENV_NAME": "production",
            "SECRET_KEY": PRODUCTION_SECRET,
            "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
            "RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    prod.instance_path = app.instance_path
    prod.test_client_class = app.test_client_class
    yield prod
    with prod.app_context():
        db.engine.dispose()


@pytest.mark.parametrize(
    "url", ["/", "/cuenta/entrar", "/static/aporta.css", "/no-existe", "/healthz"]
)
def test_security_headers_on_every_response(client, url):
    response = client.get(url)
    response.close()
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert len(response.headers["X-Request-ID"]) >= 16


def test_hsts_only_behind_https(client):
    assert "Strict-Transport-Security" not in client.get("/").headers
    secure = client.get("/", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_static_files_are_cacheable_and_pages_are_not_stored_for_users(client):
    static = client.get("/static/aporta.css")
    static.close()
    assert "max-age=3600" in static.headers["Cache-Control"]
    assert client.get("/").headers["Cache-Control"] == "no-cache"
    make_user(email="ana@correo.example")
    db.session.commit()
    login(client, "ana@correo.example")
    assert client.get("/").headers["Cache-Control"] == "no-store"


def test_request_id_from_a_proxy_is_kept_only_when_sane(client):
    assert client.get("/", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    forged = client.get("/", headers={"X-Request-ID": "<script>" + "x" * 80}).headers[
        "X-Request-ID"
    ]
    assert "<" not in forged and len(forged) == 32


@pytest.mark.parametrize("secret", ["", "dev-only-not-secret", "short"])
def test_production_refuses_to_start_without_a_real_secret(secret):
    with pytest.raises(RuntimeError, match="APORTA_SECRET_KEY"):
        create_app({"ENV_NAME": "production", "SECRET_KEY": secret})


def test_production_cookies_are_secure_httponly_and_samesite(production_app):
    with production_app.app_context():
        make_user(email="ana@correo.example")
        db.session.commit()
    client = production_app.test_client()
    page = client.get("/cuenta/entrar", base_url="https://localhost")
    response = client.post(
        "/cuenta/entrar",
        base_url="https://localhost",
        headers={"Referer": "https://localhost/cuenta/entrar"},
        data={
            "csrf_token": csrf_token(page.get_data(as_text=True)),
            "email": "ana@correo.example",
            "password": PASSWORD,
            "remember": "y",
        },
    )
    assert response.status_code == 302
    cookies = response.headers.getlist("Set-Cookie")
    session = next(c for c in cookies if c.startswith("session="))
    remember = next(c for c in cookies if c.startswith("remember_token="))
    for cookie in (session, remember):
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_development_session_cookie_is_httponly_and_samesite(client):
    response = client.get("/cuenta/entrar")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_failed_logins_are_throttled_per_account_across_addresses(app, client):
    app.config["LOGIN_ACCOUNT_LIMIT"] = "3 per minute"
    make_user(email="ana@correo.example")
    db.session.commit()
    codes = []
    for n in range(4):
        other = app.test_client()
        page = other.get("/cuenta/entrar", environ_base={"REMOTE_ADDR": f"10.0.0.{n}"})
        codes.append(
            other.post(
                "/cuenta/entrar",
                environ_base={"REMOTE_ADDR": f"10.0.0.{n}"},
                data={
                    "csrf_token": csrf_token(page.get_data(as_text=True)),
                    "email": "ANA@correo.example",
                    "password": "equivocada-1",
                },
            ).status_code
        )
    assert codes == [422, 422, 422, 429]
    # Another account from the same addresses is not blocked by ana's failures.
    make_user(email="beto@correo.example")
    db.session.commit()
    assert login(app.test_client(), "beto@correo.example").status_code == 302


def test_successful_logins_do_not_count_against_the_account(app, client):
    app.config["LOGIN_ACCOUNT_LIMIT"] = "2 per minute"
    make_user(email="ana@correo.example")
    db.session.commit()
    for _ in range(4):
        assert login(app.test_client(), "ana@correo.example").status_code == 302


def test_posting_is_rate_limited(app, client, csrf_on):
    app.config["POST_LIMIT"] = "2 per minute"
    make_consultation()
    make_user(email="ana@correo.example")
    db.session.commit()
    login(client, "ana@correo.example")
    url = "/consultas/paga-prueba/borradores/SAN-1"
    codes = [
        form_post(client, url, url + "/aportes", {"body": f"aporte {n}"}).status_code
        for n in range(3)
    ]
    assert codes == [302, 302, 429]


def _outbox_texts(app) -> list[str]:
    """The text of every mail in the outbox folder, emptying it."""
    folder = os.path.join(app.instance_path, app.config["MAIL_OUTBOX"])
    texts = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), "rb") as handle:
            texts.append(message_from_bytes(handle.read(), policy=policy.default).get_content())
        os.remove(os.path.join(folder, name))
    return texts


def test_new_accounts_must_verify_their_address_before_posting_in_production(production_app):
    with production_app.app_context():
        make_consultation()
        db.session.commit()
    _outbox_texts(production_app)
    client = production_app.test_client()
    registration = {
        "name": "Rosa",
        "email": "rosa@correo.example",
        "password": "una-clave-larga-9",
        "password_confirm": "una-clave-larga-9",
        "organisation_type": "ong",
        "region": "puno",
        "consent": "y",
    }
    response = form_post(client, "/cuenta/registro", None, registration)
    assert response.status_code == 302
    draft_url = "/consultas/paga-prueba/borradores/SAN-1"
    refused = form_post(client, draft_url, draft_url + "/aportes", {"body": "Mi aporte"})
    assert refused.status_code == 403
    assert "confirma tu correo" in refused.get_data(as_text=True)

    (mail,) = _outbox_texts(production_app)
    link = mail.split("http://localhost")[1].split()[0]
    assert "Tu correo quedó confirmado" in client.get(link, follow_redirects=True).get_data(
        as_text=True
    )
    assert (
        form_post(client, draft_url, draft_url + "/aportes", {"body": "Mi aporte"}).status_code
        == 302
    )


def test_registration_does_not_reveal_existing_addresses_in_production(production_app):
    with production_app.app_context():
        make_user(email="ana@correo.example")
        db.session.commit()
    _outbox_texts(production_app)
    client = production_app.test_client()
    registration = {
        "name": "Otra",
        "email": "ANA@correo.example",
        "password": "una-clave-larga-9",
        "password_confirm": "una-clave-larga-9",
        "organisation_type": "ong",
        "region": "puno",
        "consent": "y",
    }
    response = form_post(client, "/cuenta/registro", None, registration, follow=True)
    html = response.get_data(as_text=True)
    assert "Te enviamos un correo para confirmar" in html and "Ya existe" not in html
    (notice,) = _outbox_texts(production_app)
    assert "intentó crear una cuenta nueva con este correo" in notice


def test_verified_address_collects_its_earlier_email_contributions(app, client, csrf_on):
    consultation = make_consultation()
    consultation_services.add_contribution(
        consultation=consultation,
        draft=draft(),
        body="Enviado por correo",
        channel="email",
        received_at=consultation.opens_at,
        author_name="Rosa",
        author_email="Rosa@Correo.example",
    )
    db.session.commit()
    _outbox_texts(app)
    registration = {
        "name": "Rosa",
        "email": "rosa@correo.example",
        "password": "una-clave-larga-9",
        "password_confirm": "una-clave-larga-9",
        "organisation_type": "ong",
        "region": "puno",
        "consent": "y",
    }
    form_post(client, "/cuenta/registro", None, registration)
    user = db.session.scalar(select(User))
    contribution = db.session.scalar(select(Contribution))
    assert contribution.author_id is None  # not before the address is proven
    (mail,) = _outbox_texts(app)
    client.get(mail.split("http://localhost")[1].split()[0])
    db.session.expire_all()
    assert db.session.get(Contribution, contribution.id).author_id == user.id


def _redis_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def test_rate_limits_are_shared_across_workers_through_redis(app):
    require_service(_redis_available(), "Redis on 127.0.0.1:6379")
    config = {
        "SECRET_KEY": PRODUCTION_SECRET,
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/15",
        "LOGIN_LIMIT": "3 per minute",
        "WTF_CSRF_ENABLED": False,
    }
    workers = [create_app(config), create_app(config)]
    try:
        from forum.extensions import limiter

        with workers[0].app_context():
            limiter.reset()
        codes = []
        for n in range(4):
            worker = workers[n % 2]
            worker.test_client_class = app.test_client_class
            codes.append(
                worker.test_client()
                .post(
                    "/cuenta/entrar", data={"email": "x@correo.example", "password": "equivocada-1"}
                )
                .status_code
            )
        assert codes == [422, 422, 422, 429]
    finally:
        for worker in workers:
            with worker.app_context():
                limiter.reset()
                db.engine.dispose()


def test_backup_and_restore_bring_every_contribution_back(app, runner, tmp_path):
    backend = db.engine.dialect.name
    if backend == "postgresql":
        require_service(
            shutil.which("pg_dump") is not None,
            "pg_dump (Debian postgresql-client)",
        )
    make_consultation()
    author = make_user()
    ids = [make_comment(draft(), author, f"aporte {n}").id for n in range(25)]
    db.session.commit()
    path = tmp_path / "aporta.backup"
    result = runner.invoke(args=["backup", "--out", str(path)])
    assert result.exit_code == 0, result.output
    db.session.execute(Contribution.__table__.delete())
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Contribution)) == 0

    result = runner.invoke(args=["restore", str(path), "--yes"])
    assert result.exit_code == 0, result.output
    restored = db.session.scalars(select(Contribution.id).order_by(Contribution.id)).all()
    assert restored == ids

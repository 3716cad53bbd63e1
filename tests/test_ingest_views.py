"""Moderators' e-mail pages: access, triage, held messages, release, downloads, upload."""

import io
import mailbox

import pytest
from sqlalchemy import func, select

from forum.consultation.models import Contribution
from forum.extensions import db
from forum.ingest.models import InboundAttachment, InboundMessage
from forum.ingest.pipeline import Run
from forum.ingest.sources import RawItem
from tests.conftest import csrf_token, form_post, login
from tests.factories import make_user
from tests.ingest_support import fixture_bytes, ingest_config, make_email_consultation

FIXTURES = [
    "018_fwd-gmail-es-mixed-labels.eml",  # routed to SAN-1
    "021_fwd-outlook-desktop-es.eml",  # triage
    "022_fwd-outlook-web-es-with-pdf.eml",  # PDF attachment
    "039_attachment-exe-blocked.eml",  # refused .exe, triage
    "046_autoreply-auto-submitted.eml",  # quarantined
    "064_malformed-empty-body.eml",  # error
]


@pytest.fixture
def moderator(app, client):
    app.config["WTF_CSRF_ENABLED"] = True
    ingest_config(app)
    make_email_consultation()
    user = make_user(role="moderator", email="moderadora@aporta.example", name="Moderadora")
    db.session.commit()
    Run().ingest_items(RawItem(raw=fixture_bytes(n), source="file", source_ref=n) for n in FIXTURES)
    login(client, "moderadora@aporta.example")
    return user


def _message(sender: str) -> InboundMessage:
    return db.session.scalar(select(InboundMessage).where(InboundMessage.from_email == sender))


ROUTES = [
    ("get", "/moderacion/correo/"),
    ("get", "/moderacion/correo/retenidos"),
    ("get", "/moderacion/correo/subir"),
    ("get", "/moderacion/correo/mensajes/{message}"),
    ("get", "/moderacion/correo/mensajes/{message}/original.eml"),
    ("get", "/moderacion/correo/adjuntos/{attachment}"),
    ("post", "/moderacion/correo/mensajes/{message}/liberar"),
    ("post", "/moderacion/correo/aportes/{contribution}/asignar"),
    ("post", "/moderacion/correo/subir"),
]


@pytest.mark.parametrize(
    "role, expected", [(None, 302), ("citizen", 403), ("moderator", 200), ("admin", 200)]
)
@pytest.mark.parametrize("method, url", ROUTES)
def test_every_route_checks_the_role_on_the_server(
    app, client, csrf_on, role, expected, method, url
):
    ingest_config(app)
    make_email_consultation()
    Run().ingest_items(
        [
            RawItem(
                raw=fixture_bytes("022_fwd-outlook-web-es-with-pdf.eml"),
                source="file",
                source_ref="x",
            )
        ]
    )
    message = db.session.scalar(select(InboundMessage))
    attachment = db.session.scalar(select(InboundAttachment))
    if role:
        make_user(role=role, email=f"{role}@aporta.example")
    db.session.commit()
    if role:
        login(client, f"{role}@aporta.example")
    app.config["WTF_CSRF_ENABLED"] = False  # so a POST reaches the role check
    target = url.format(
        message=message.id, attachment=attachment.id, contribution=message.contribution_id
    )
    response = getattr(client, method)(target)
    if method == "post" and expected == 200:
        assert response.status_code in (200, 302, 400)  # reached the view
    else:
        assert response.status_code == expected


def test_triage_lists_unrouted_email_with_the_citizen_and_the_forwarder(client, moderator):
    html = client.get("/moderacion/correo/").get_data(as_text=True)
    assert "Teresa Cárdenas" in html and "tcardenas@defensoras.example" in html
    assert "reenviado por atorres@sgp.example.gob.pe" in html
    assert "para que una mujer no tenga que contar su historia cinco veces" in html
    assert "Se reenvía para su registro" not in html
    assert "Rosa Quispe" not in html  # routed to SAN-1, not waiting
    assert "Recibidos en total: 6" in html


def test_assigning_a_draft_takes_it_out_of_triage(client, moderator):
    contribution = _message("tcardenas@defensoras.example").contribution
    page = client.get("/moderacion/correo/").get_data(as_text=True)
    draft_id = db.session.execute(db.text("SELECT id FROM drafts WHERE code = 'SEG-1'")).scalar()
    prefix = f"c{contribution.id}-"
    response = client.post(
        f"/moderacion/correo/aportes/{contribution.id}/asignar",
        data={
            "csrf_token": csrf_token(page),
            prefix + "theme": "",
            prefix + "draft": str(draft_id),
        },
    )
    assert response.status_code == 302
    db.session.expire_all()
    assigned = db.session.get(Contribution, contribution.id)
    assert assigned.draft.code == "SEG-1" and assigned.theme.slug == "seguridad-ciudadana"
    assert "tcardenas@defensoras.example" not in client.get("/moderacion/correo/").get_data(
        as_text=True
    )


def test_assign_without_csrf_token_is_refused(client, moderator):
    contribution = _message("tcardenas@defensoras.example").contribution
    response = client.post(f"/moderacion/correo/aportes/{contribution.id}/asignar", data={})
    assert response.status_code == 400
    assert db.session.get(Contribution, contribution.id).draft_id is None


def test_held_messages_show_their_reason_and_can_be_released(client, moderator):
    html = client.get("/moderacion/correo/retenidos").get_data(as_text=True)
    assert "Respuesta automática o envío masivo" in html
    assert "Mensaje mal formado o sin texto" in html
    auto_reply = _message("rosa.quispe@correo.example")
    assert auto_reply is not None  # 018 is by Rosa too, but forwarded by staff
    held = db.session.scalar(select(InboundMessage).where(InboundMessage.status == "quarantined"))
    before = db.session.scalar(select(func.count()).select_from(Contribution))
    url = f"/moderacion/correo/mensajes/{held.id}"
    response = form_post(client, url, url + "/liberar", {}, follow=True)
    assert "Mensaje liberado como aporte" in response.get_data(as_text=True)
    db.session.expire_all()
    released = db.session.get(InboundMessage, held.id)
    assert released.status == "released" and released.released_by_id == moderator.id
    assert db.session.scalar(select(func.count()).select_from(Contribution)) == before + 1
    assert released.contribution.draft_id is None  # waits in triage


def test_an_empty_message_cannot_be_released(client, moderator):
    failed = db.session.scalar(select(InboundMessage).where(InboundMessage.status == "error"))
    url = f"/moderacion/correo/mensajes/{failed.id}"
    response = form_post(client, url, url + "/liberar", {}, follow=True)
    assert "no tiene texto que publicar" in response.get_data(as_text=True)
    assert db.session.get(InboundMessage, failed.id).status == "error"


def test_original_and_attachments_are_downloads_never_inline(client, moderator):
    message = _message("privas@correo.example")
    page = client.get(f"/moderacion/correo/mensajes/{message.id}").get_data(as_text=True)
    assert "escuelas_sin_agua_ucayali.pdf" in page
    assert "Reenviado por" in page and "psalas@sgp.example.gob.pe" in page
    pdf = message.attachments[0]
    response = client.get(f"/moderacion/correo/adjuntos/{pdf.id}")
    assert response.status_code == 200
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.data.startswith(b"%PDF")
    raw = client.get(f"/moderacion/correo/mensajes/{message.id}/original.eml")
    assert raw.data == fixture_bytes("022_fwd-outlook-web-es-with-pdf.eml")
    assert raw.headers["Content-Disposition"].startswith("attachment;")

    exe = _message("maruiz@correo.example").attachments[0]
    assert exe.is_allowed is False and exe.data is None
    assert client.get(f"/moderacion/correo/adjuntos/{exe.id}").status_code == 404
    page = client.get(f"/moderacion/correo/mensajes/{exe.message_id}").get_data(as_text=True)
    assert "tipo de archivo no permitido" in page


def test_public_pages_never_show_the_email_address(app, moderator):
    contribution = _message("privas@correo.example").contribution
    response = app.test_client().get(f"/aportes/{contribution.id}")  # anonymous visitor
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "qué locales tienen agua segura" in html
    assert "privas@correo.example" not in html
    assert "psalas@sgp.example.gob.pe" not in html
    assert f"Participante (aporte {contribution.id})" in html


def test_upload_of_eml_and_mbox_goes_through_the_same_pipeline(client, moderator, tmp_path):
    box = mailbox.mbox(str(tmp_path / "export.mbox"))
    for name in ("001_plain-utf8.eml", "036_duplicate-message-id.eml"):
        box.add(mailbox.mboxMessage(fixture_bytes(name)))
    box.flush()
    box.close()
    page = client.get("/moderacion/correo/subir").get_data(as_text=True)
    assert 'for="files"' in page
    response = client.post(
        "/moderacion/correo/subir",
        data={
            "csrf_token": csrf_token(page),
            "files": [
                (io.BytesIO(fixture_bytes("002_iso-8859-1-8bit.eml")), "002.eml"),
                (io.BytesIO((tmp_path / "export.mbox").read_bytes()), "export.mbox"),
                (io.BytesIO(fixture_bytes("018_fwd-gmail-es-mixed-labels.eml")), "018.eml"),
            ],
        },
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Recibidos: 4; aportes: 2; en cuarentena: 0; errores: 0; duplicados omitidos: 2." in html
    sources = set(db.session.scalars(select(InboundMessage.source)))
    assert "upload" in sources


def test_upload_without_files_shows_a_spanish_error(client, moderator):
    response = form_post(client, "/moderacion/correo/subir", None, {})
    assert response.status_code == 200
    assert "Elige al menos un archivo" in response.get_data(as_text=True)

"""Senders without an account: a moderator records what their e-mail's signature says
(organisation, type, region), and they count like accounts in the queue's filters, the
participation tables and the exports, without their organisation ever being public."""

import csv
import io

from sqlalchemy import select

from forum.consultation.models import Consultation, Contribution
from forum.export import summaries
from forum.export.rows import Filters
from forum.extensions import db
from forum.moderation.models import AuditEntry
from tests import test_moderation
from tests.factories import draft, make_comment, make_user
from tests.test_moderation import email_contribution, fresh, post_on, queue_ids

moderator = test_moderation.moderator  # the fixture: an open consultation and a moderator


def contribution_page(contribution: Contribution) -> str:
    return f"/moderacion/aportes/{contribution.id}"


def record_sender(client, contribution: Contribution, **fields):
    page = contribution_page(contribution)
    return post_on(client, page, f"{page}/remitente", fields)


def test_a_moderator_describes_a_sender_on_every_mail_from_the_address(client, moderator):
    first = email_contribution("Primer correo.", author_email="ana@ong.example")
    second = email_contribution("Segundo correo.", author_email="ana@ong.example")
    other = email_contribution("Otra persona.", author_email="otro@correo.example")
    db.session.commit()

    response = record_sender(
        client, first, organisation="ONG Agua Limpia", organisation_type="ong", region="cusco"
    )
    assert response.status_code == 302
    for contribution in (fresh(first), fresh(second)):
        assert (
            contribution.sender_organisation,
            contribution.sender_organisation_type,
            contribution.sender_region,
        ) == ("ONG Agua Limpia", "ong", "cusco")
    assert fresh(other).sender_organisation_type == ""
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.action == "contribution.sender_profile")
    )
    assert entry.actor_id == moderator.id and '"contributions": 2' in entry.after

    later = email_contribution("Tercer correo, días después.", author_email="ana@ong.example")
    assert (later.sender_organisation_type, later.sender_region) == ("ong", "cusco")


def test_the_sender_form_keeps_what_was_typed_and_refuses_unknown_values(client, moderator):
    mail = email_contribution("Un correo.")
    db.session.commit()
    response = record_sender(
        client, mail, organisation="Colectivo Río", organisation_type="secta", region="cusco"
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'value="Colectivo Río"' in html and "no se guardó nada" in html
    assert fresh(mail).sender_organisation == ""


def test_an_account_keeps_its_own_profile(client, moderator):
    comment = make_comment(draft("SAN-1"), make_user(), "Desde mi cuenta.")
    db.session.commit()
    assert "Datos del remitente" not in client.get(contribution_page(comment)).get_data(True)
    response = record_sender(client, comment, organisation="X", organisation_type="ong", region="")
    assert response.status_code == 400
    assert "su organización y región las indica la persona" in response.get_data(as_text=True)
    assert fresh(comment).sender_organisation_type == ""


def test_described_senders_count_in_filters_tables_and_exports(client, moderator):
    account = make_user(organisation_type="academia", region="puno", email="u@correo.example")
    web = make_comment(draft("SAN-1"), account, "Desde la universidad.")
    mail = email_contribution("Desde la ONG.", author_email="ana@ong.example")
    unknown = email_contribution("Sin firma.", author_email="anonimo@correo.example")
    db.session.commit()
    record_sender(
        client, mail, organisation="ONG Agua Limpia", organisation_type="ong", region="cusco"
    )

    assert queue_ids(client, tipo="ong") == [mail.id]
    assert queue_ids(client, region="cusco") == [mail.id]
    assert queue_ids(client, region="puno") == [web.id]
    assert unknown.id not in queue_ids(client, tipo="ong")

    consultation = db.session.get(Consultation, mail.consultation_id)
    by_type = summaries.participants_by_type(consultation, Filters())
    assert {row[0]: row[1] for row in by_type.rows}["ONG"] == 1  # Cuadro 2
    by_region = {
        row[0]: row for row in summaries.participants_by_region(consultation, Filters()).rows
    }
    assert by_region["Cusco"][1:] == [0, 1, 0, 1]  # Cuadro 3: civil society in Cusco
    assert by_region["Sin dato"][1:] == [0, 0, 1, 1]  # the sender nobody described

    staff_rows = read_csv(client.get("/datos/secretaria/aportes.csv?consulta=paga-prueba"))
    row = next(r for r in staff_rows if r["id"] == str(mail.id))
    assert (row["organisation"], row["organisation_type"], row["region"]) == (
        "ONG Agua Limpia",
        "ong",
        "cusco",
    )
    public_rows = read_csv(client.get("/datos/aportes.csv?consulta=paga-prueba"))
    row = next(r for r in public_rows if r["id"] == str(mail.id))
    assert (row["organisation"], row["organisation_type"], row["region"]) == ("", "ong", "cusco")


def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.get_data().decode("utf-8-sig"), newline="")))

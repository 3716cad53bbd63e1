"""The moderation journey in a real browser (Debian's Chromium, Playwright, axe-core).

A moderator filters the queue, tags and hides contributions with a reason, groups two
near-identical ones from the suggestions, writes responses; the admin publishes after the
close; a citizen sees the dispositions and responses on the draft page, and the hidden one
only as a placeholder with its reason. axe checks the queue and the contribution page.
"""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from forum import clock
from forum.consultation.models import Contribution
from forum.extensions import db
from forum.moderation import services
from forum.moderation.models import Tag
from tests import test_browser
from tests.factories import draft, make_comment, make_consultation, make_user
from tests.test_browser import DRAFT_PATH, assert_accessible, commit, expect, fresh_db, log_in

pytestmark = pytest.mark.browser
browser = test_browser.browser  # the module-scoped Chromium, shared with test_browser.py
open_session = test_browser.open_session

LETTER = (
    "Pedimos que el compromiso publique cada mes los indicadores de calidad del agua de "
    "cada distrito, en formato abierto y con las juntas rurales."
)


def test_moderator_tags_hides_groups_answers_and_the_admin_publishes(open_session):
    make_consultation("open")
    citizen = make_user(name="Ana Quispe")
    letter = make_comment(draft(), citizen, LETTER)
    copy = make_comment(
        draft(), make_user(name="Luis Rojas"), LETTER.replace("Pedimos", "¡PEDIMOS")
    )
    insult = make_comment(draft(), make_user(name="Troll"), "Son todos unos inútiles y ladrones.")
    proposal = make_comment(
        draft(), citizen, "Propongo un tablero público de obras de saneamiento."
    )
    make_user("moderator", email="moderadora@correo.example", name="Moderadora")
    make_user("admin", email="jefa@correo.example", name="Jefa")
    services.seed_tags()
    commit()
    ids = {"letter": letter.id, "copy": copy.id, "insult": insult.id, "proposal": proposal.id}
    closes_at = letter.draft.consultation.closes_at

    moderator = open_session().page
    log_in(moderator, "moderadora@correo.example")
    moderator.goto("/moderacion/")
    expect(moderator.get_by_role("heading", level=1)).to_have_text("Cola de moderación")
    assert_accessible(moderator, "the moderation queue")

    # Filter: web contributions with "saneamiento" in the text.
    moderator.locator("summary", has_text="Filtros").click()
    moderator.locator("#canal").select_option("web")
    moderator.locator("#q").fill("saneamiento")
    moderator.get_by_role("button", name="Filtrar").click()
    expect(moderator.get_by_role("status")).to_contain_text("1 aporte con estos filtros")
    expect(moderator.locator(f"#marcar-{ids['proposal']}")).to_have_count(1)

    # Tag it, with a bulk action on the selection.
    moderator.locator(f"#marcar-{ids['proposal']}").check()
    moderator.locator("#lote-accion").select_option("etiquetar")
    moderator.locator("#lote-etiqueta").select_option(
        label="Transparencia (Valor de gobierno abierto)"
    )
    moderator.get_by_role("button", name="Aplicar a los marcados").click()
    expect(moderator.locator(".flash-success")).to_contain_text("Etiqueta «Transparencia» puesta")

    # Hide the insult with a published reason, from its page.
    moderator.goto(f"/moderacion/aportes/{ids['insult']}")
    assert_accessible(moderator, "the contribution moderation page")
    moderator.get_by_label("Motivo (se muestra al público)").select_option("insulto")
    moderator.get_by_role("button", name="Ocultar el aporte").click()
    expect(moderator.locator(".flash-success")).to_contain_text("Aporte ocultado")

    # Answer the proposal.
    moderator.goto(f"/moderacion/aportes/{ids['proposal']}")
    moderator.get_by_label("Disposición").select_option("incorporado-parcialmente")
    moderator.get_by_label("Respuesta razonada").fill("Se incluye como producto 3 del compromiso.")
    moderator.get_by_role("button", name="Guardar sistematización").click()
    expect(moderator.locator(".flash-success")).to_have_text("Sistematización guardada.")

    # Group the two near-identical letters from the suggestions, and answer the group.
    moderator.get_by_role("link", name="Duplicados sugeridos").click()
    expect(moderator.get_by_role("heading", name="Sugerencia 1: 2 aportes")).to_be_visible()
    moderator.get_by_role("button", name="Confirmar y agrupar").click()
    expect(moderator.locator(".flash-success")).to_contain_text(
        "Agrupados en el aporte sistematizado"
    )
    moderator.get_by_role("link", name="Aportes sistematizados").click()
    moderator.get_by_role("link", name=re.compile(r"^N\.º \d+:")).click()
    expect(moderator.get_by_text("2 aportes de 2 personas distintas")).to_be_visible()
    moderator.get_by_label("Disposición").select_option("incorporado")
    moderator.get_by_label("Respuesta razonada compartida").fill(
        "Los indicadores se publicarán cada mes en datos abiertos."
    )
    moderator.get_by_role("button", name="Guardar para todo el grupo").click()
    expect(moderator.locator(".flash-success")).to_contain_text("2 aporte(s) del grupo")

    # The window closes; the admin sees what is pending and publishes.
    clock.travel_to(closes_at + timedelta(hours=2))
    admin = open_session().page
    log_in(admin, "jefa@correo.example")
    admin.goto("/moderacion/consultas/paga-prueba/publicar")
    expect(admin.get_by_role("status")).to_contain_text(
        "0 aportes visibles todavía sin disposición"
    )
    admin.get_by_role("button", name="Publicar las respuestas").click()
    expect(admin.locator(".flash-success")).to_contain_text("Respuestas publicadas")

    # A citizen reads the draft: dispositions, responses, and the placeholder.
    reader = open_session().page
    reader.goto(DRAFT_PATH)
    proposal_item = reader.locator(f"#aporte-{ids['proposal']}")
    expect(proposal_item).to_contain_text("Disposición: Incorporado parcialmente")
    expect(proposal_item).to_contain_text("Se incluye como producto 3 del compromiso.")
    for key in ("letter", "copy"):
        expect(reader.locator(f"#aporte-{ids[key]}")).to_contain_text("Disposición: Incorporado")
        expect(reader.locator(f"#aporte-{ids[key]}")).to_contain_text("cada mes en datos abiertos")
    hidden_item = reader.locator(f"#aporte-{ids['insult']}")
    expect(hidden_item).to_contain_text("Motivo: Insultos o lenguaje ofensivo")
    expect(hidden_item).not_to_contain_text("ladrones")
    assert_accessible(reader, "the draft page with published responses")
    reader.get_by_role("link", name="Ver todas las respuestas de la consulta").click()
    expect(reader.get_by_role("heading", level=1)).to_have_text("Respuestas a los aportes")
    expect(reader.locator("body")).not_to_contain_text("ladrones")

    fresh_db()
    assert (
        services.tags_by_contribution([ids["proposal"]])[ids["proposal"]][0].name == "Transparencia"
    )
    grouped = [db.session.get(Contribution, ids[key]).group_id for key in ("letter", "copy")]
    assert grouped[0] is not None and grouped[0] == grouped[1]
    assert db.session.get(Contribution, ids["insult"]).hidden_reason == "insulto"
    assert len(db.session.scalars(select(Tag)).all()) == 10  # the seeded vocabulary, unchanged

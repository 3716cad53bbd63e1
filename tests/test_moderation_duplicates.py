"""Near-duplicate suggestions: Spanish normalisation, MinHash LSH, confirm and reject."""

import numpy as np
from sqlalchemy import func, select

from forum.extensions import db
from forum.moderation import duplicates, services
from forum.moderation.models import DuplicateDecision
from forum.text import fold, fold_many
from tests.conftest import form_post, login
from tests.factories import draft, make_comment, make_consultation, make_user

LETTER = (
    "Solicitamos que el compromiso de saneamiento incluya indicadores trimestrales de calidad "
    "del agua en cada distrito, publicados en formato abierto y con participación de las "
    "juntas administradoras de servicios de saneamiento rurales del país."
)


def test_vectorised_signatures_equal_datasketch_minhash():
    texts = (LETTER, "agua", "dos palabras tres cuatro")
    sets = [duplicates.shingle_hashes(fold(text)) for text in texts]
    assert [len(values) for values in sets] == [len(LETTER.split()) - 2, 1, 2]
    ours = duplicates.signatures(sets)
    for row, values in zip(ours, sets, strict=True):
        expected = duplicates.reference_minhash(int(v) for v in values).hashvalues
        assert np.array_equal(row, expected)


def test_batch_normalising_and_hashing_equal_one_text_at_a_time():
    texts = [LETTER, "Año", "", "dos palabras", "uno dos tres", "¡Hola, MUNDO cruel y frío!"]
    keys = fold_many(texts)
    assert keys == [fold(text) for text in texts]
    keys = [key for key in keys if key]
    flat, counts = duplicates.shingle_hashes_many(keys)
    one_by_one = [duplicates.shingle_hashes(key) for key in keys]
    assert counts.tolist() == [len(values) for values in one_by_one]
    assert flat.tolist() == np.concatenate(one_by_one).tolist()
    assert np.array_equal(
        duplicates.signatures_flat(flat, counts), duplicates.signatures(one_by_one)
    )


def test_finds_form_letters_accents_and_small_edits_not_unrelated_texts():
    texts = [
        (1, LETTER),
        (2, LETTER.upper().replace("Á", "A")),  # the same letter, shouted, by e-mail
        (3, LETTER.replace("calidad", "cálidad").replace(",", "")),  # accents and punctuation
        (4, LETTER.replace("trimestrales", "mensuales")),  # a small edit
        (5, "Propongo que la policía publique mapas del delito por comisaría cada mes."),
        (6, "Me parece bien."),
    ]
    found = duplicates.find_similar(texts)
    assert found.buckets == [[1, 2, 3]]
    assert found.pairs == [(1, 4)]
    linked = {x for edge in found.edges() for x in edge}
    assert linked == {1, 2, 3, 4}


def _letters(moderator_name="Moderadora"):
    make_consultation()
    citizen = make_user()
    letters = [make_comment(draft(), citizen, LETTER) for _ in range(3)]
    edited = make_comment(draft(), citizen, LETTER.replace("trimestrales", "mensuales"))
    other = make_comment(draft(), citizen, "Otro aporte sin relación alguna con la carta.")
    moderator = make_user("moderator", email="moderadora@correo.example", name=moderator_name)
    db.session.commit()
    return letters, edited, other, moderator


def test_confirming_groups_and_nothing_is_proposed_again(client):
    letters, edited, other, moderator = _letters()
    suggestions, total = services.suggest_duplicates(letters[0].draft.consultation)
    assert total == 1 and suggestions[0].ids == sorted([c.id for c in letters] + [edited.id])
    group = services.confirm_duplicates(
        letters[0].draft.consultation, letters + [edited], letters + [edited], moderator
    )
    db.session.commit()
    assert services.group_counts([group.id])[group.id].raw == 4
    assert services.suggest_duplicates(letters[0].draft.consultation) == ([], 0)
    # A new copy arrives: it is proposed against the existing group, not the old pairs.
    late = make_comment(draft(), make_user(), LETTER)
    db.session.commit()
    suggestions, total = services.suggest_duplicates(late.draft.consultation)
    assert total == 1 and late.id in suggestions[0].ids and suggestions[0].groups == [group]


def test_rejecting_and_leaving_out_are_remembered(client):
    letters, edited, other, moderator = _letters()
    consultation = letters[0].draft.consultation
    proposed = letters + [edited]
    services.confirm_duplicates(consultation, letters, proposed, moderator)  # edited left out
    db.session.commit()
    assert services.suggest_duplicates(consultation) == ([], 0)
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(DuplicateDecision)
            .where(DuplicateDecision.is_duplicate.is_(False))
        )
        >= 1
    )


def test_the_duplicates_page_confirms_and_rejects(client):
    client.application.config["WTF_CSRF_ENABLED"] = True
    letters, edited, other, moderator = _letters()
    login(client, "moderadora@correo.example")
    page = client.get("/moderacion/duplicados").get_data(as_text=True)
    assert (
        "Sugerencia 1: 4 aportes" in page
        and str(other.id) not in page.split("Sugerencia 1")[1][:20]
    )
    ids = ",".join(str(c.id) for c in letters + [edited])
    response = form_post(
        client,
        "/moderacion/duplicados",
        None,
        {
            "propuestos": ids,
            "resto": "",
            "incluir": [str(c.id) for c in letters],
            "respuesta": "agrupar",
        },
        follow=True,
    )
    assert "Agrupados en el aporte sistematizado" in response.get_data(as_text=True)
    db.session.expire_all()
    assert {c.group_id for c in letters} != {None} and edited.group_id is None
    assert "No hay sugerencias pendientes" in client.get("/moderacion/duplicados").get_data(
        as_text=True
    )


def test_rejecting_on_the_page(client):
    client.application.config["WTF_CSRF_ENABLED"] = True
    letters, edited, other, moderator = _letters()
    login(client, "moderadora@correo.example")
    ids = ",".join(str(c.id) for c in letters + [edited])
    response = form_post(
        client,
        "/moderacion/duplicados",
        None,
        {"propuestos": ids, "resto": "", "respuesta": "descartar"},
        follow=True,
    )
    assert "no se volverá a proponer" in response.get_data(as_text=True)
    assert "No hay sugerencias pendientes" in client.get("/moderacion/duplicados").get_data(
        as_text=True
    )
    assert all(c.group_id is None for c in letters)

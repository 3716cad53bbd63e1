"""Near-duplicate suggestions: Spanish normalisation, MinHash LSH, stored signatures, confirm and
reject."""

import random

import numpy as np
import pytest
from sqlalchemy import func, select

from forum.consultation import services as consultation_services
from forum.consultation.models import Contribution
from forum.extensions import db
from forum.moderation import duplicates, services
from forum.moderation.models import ContributionSignature, DuplicateDecision
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
    assert _stored_signatures() == 5  # the page kept the signatures it computed
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


def test_find_similar_links_the_same_texts_whatever_the_input_order():
    texts = _campaign(random.Random(7), 120)
    found = duplicates.find_similar(texts)
    assert found.buckets and found.pairs
    assert duplicates.find_similar(reversed(texts)) == found


def test_the_index_takes_ids_in_increasing_order_only():
    index = duplicates.SimilarityIndex()
    index.add(5, None)
    with pytest.raises(ValueError):
        index.add(5, None)


WORDS = (
    "agua saneamiento distrito calidad junta rural datos abiertos informe trimestral "
    "municipio escuela salud presupuesto obra vecinos consulta plazo compromiso acceso"
).split()


def _campaign(rng: random.Random, rows: int) -> list[tuple[int, str]]:
    """(id, text): copies of three letters, some with one word changed, and distinct texts."""
    letters = [" ".join(rng.choices(WORDS, k=40)) for _ in range(3)]
    texts = []
    for ident in range(1, rows + 1):
        if rng.random() < 0.5:
            words = rng.choice(letters).split()
            if rng.random() < 0.5:
                words[rng.randrange(len(words))] = rng.choice(WORDS).upper()
            texts.append((ident, " ".join(words)))
        else:
            texts.append((ident, " ".join(rng.choices(WORDS, k=rng.randint(1, 30)))))
    return texts


def _post_all(texts) -> list:
    citizen = make_user()
    posted = [make_comment(draft(), citizen, text) for _, text in texts]
    db.session.commit()
    return posted


def _stored_signatures() -> int:
    return db.session.scalar(select(func.count()).select_from(ContributionSignature))


@pytest.fixture
def signed(monkeypatch) -> list[int]:
    """How many texts each call of `fingerprints` signed, as services call it."""
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return duplicates.fingerprints(texts)

    monkeypatch.setattr(services, "fingerprints", counting)
    return calls


def _from_scratch(consultation) -> duplicates.Similar:
    rows = db.session.execute(
        select(Contribution.id, Contribution.body).where(
            Contribution.consultation_id == consultation.id,
            Contribution.moderation_state == "visible",
        )
    )
    return duplicates.find_similar(rows.all())


def test_stored_signatures_give_what_find_similar_gives_first_cold_and_growing(client, signed):
    make_consultation()
    texts = _campaign(random.Random(2017), 160)
    first = _post_all(texts[:100])
    consultation = first[0].draft.consultation
    found = services._similar_for(consultation)  # first ever: every text signed and stored
    assert found == _from_scratch(consultation) and found.pairs and found.buckets
    assert sum(signed) == 100 and _stored_signatures() == 100
    db.session.commit()
    services._similarity_cache.clear()  # a restart: only the stored signatures are read
    assert services._similar_for(consultation) == found and sum(signed) == 100
    index = services._similarity_cache[consultation.id].index
    _post_all(texts[100:])  # newer contributions join the index in memory
    grown = services._similar_for(consultation)
    assert grown == _from_scratch(consultation) and len(grown.pairs) > len(found.pairs)
    assert sum(signed) == 160 and services._similarity_cache[consultation.id].index is index


def test_a_new_copy_is_suggested_with_one_signature_and_no_rebuild(client, signed):
    letters, edited, other, moderator = _letters()
    consultation = letters[0].draft.consultation
    services.suggest_duplicates(consultation)
    index = services._similarity_cache[consultation.id].index
    signed.clear()
    late = make_comment(draft(), make_user(), LETTER.replace("rurales", "urbanas"))
    db.session.commit()
    suggestions, total = services.suggest_duplicates(consultation)
    assert total == 1 and late.id in suggestions[0].ids
    assert signed == [1] and services._similarity_cache[consultation.id].index is index


def test_editing_a_body_signs_it_again_once(client, signed):
    letters, edited, other, moderator = _letters()
    consultation = letters[0].draft.consultation
    services.suggest_duplicates(consultation)
    before = db.session.get(ContributionSignature, other.id).text_hash
    consultation_services.edit_comment(other, other.author, LETTER)
    db.session.commit()
    signed.clear()
    suggestions, total = services.suggest_duplicates(consultation)
    db.session.commit()
    services._similarity_cache.clear()  # a restart: the new signature is current, not redone
    services.suggest_duplicates(consultation)
    assert signed == [1]
    assert total == 1 and other.id in suggestions[0].ids
    stored = db.session.get(ContributionSignature, other.id)
    assert stored.body_edited_at == other.edited_at
    assert stored.text_hash == db.session.get(ContributionSignature, letters[0].id).text_hash
    assert stored.text_hash != before
    assert services._similar_for(consultation) == _from_scratch(consultation)


def test_hidden_contributions_drop_out_and_come_back(client):
    letters, edited, other, moderator = _letters()
    consultation = letters[0].draft.consultation
    services.suggest_duplicates(consultation)
    services.hide_contribution(letters[1], moderator, "spam")
    db.session.commit()
    suggestions, _ = services.suggest_duplicates(consultation)
    assert suggestions[0].ids == sorted([letters[0].id, letters[2].id, edited.id])
    services.restore_contribution(letters[1], moderator)
    db.session.commit()
    suggestions, _ = services.suggest_duplicates(consultation)
    assert suggestions[0].ids == sorted([c.id for c in letters] + [edited.id])


def test_a_text_without_words_is_stored_once_and_never_suggested(client, signed):
    make_consultation()
    posted = _post_all([(1, "¡¡¡ ... !!!"), (2, "¿?"), (3, LETTER)])
    consultation = posted[0].draft.consultation
    assert services.suggest_duplicates(consultation) == ([], 0)
    assert db.session.get(ContributionSignature, posted[0].id).signature is None
    db.session.commit()
    services._similarity_cache.clear()
    assert services.suggest_duplicates(consultation) == ([], 0) and sum(signed) == 3

"""forum.text: rendering untrusted text safely."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from forum import text


def test_paragraphs_lists_and_links():
    html = str(text.render("Primer párrafo.\n\nSegundo con https://gob.pe\n\n- uno\n- dos"))
    assert "<p>Primer párrafo.</p>" in html
    assert '<a href="https://gob.pe" rel="nofollow ugc noopener">https://gob.pe</a>' in html
    assert "<ul>\n<li>uno</li>\n<li>dos</li>\n</ul>" in html


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        '"><svg onload=alert(1)>',
        "<a href='javascript:alert(1)'>x</a>",
        "<iframe src=//evil.example></iframe>",
    ],
)
def test_html_typed_by_a_person_is_shown_as_text(payload):
    html = str(text.render(payload))
    assert "<script" not in html and "<img" not in html and "<svg" not in html
    assert "<iframe" not in html and "<a " not in html
    assert "&lt;" in html


def test_markdown_link_with_a_script_url_loses_its_href():
    html = str(text.render("[pulsa](javascript:alert(1))"))
    assert "javascript" not in html
    assert "href" not in html


def test_markdown_link_keeps_rel():
    html = str(text.render("[norma](https://www.gob.pe/pcm)"))
    assert html == '<p><a href="https://www.gob.pe/pcm" rel="nofollow ugc noopener">norma</a></p>'


def test_normalise_strips_control_characters_and_unifies_newlines():
    assert text.normalise("a\x00b\r\nc  \r\n\x07") == "ab\nc"


@pytest.mark.parametrize("value", ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"])
def test_spreadsheet_cells_never_start_a_formula(value):
    assert text.spreadsheet_cell(value) == "'" + value


def test_slugify():
    assert text.slugify("Seguridad ciudadana") == "seguridad-ciudadana"
    assert text.slugify("Educación") == "educacion"


def test_a_list_right_under_a_sentence_is_still_a_list():
    html = str(text.render("Proponemos:\n- uno\n- dos\n1. tres"))
    assert "<p>Proponemos:</p>" in html
    assert "<li>uno</li>" in html and "<li>dos</li>" in html


def test_rendering_is_safe_from_many_threads_at_once():
    """bleach's Cleaner and Markdown's converter are not thread-safe: each thread has its own."""
    texts = [f"Aporte {n}: **negrita** y https://gob.pe/{n}\n\n- punto {n}" for n in range(400)]
    expected = [str(text.render(t)) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda t: str(text.render(t)), texts * 4))
    assert results == expected * 4


def test_fold_lowers_case_and_folds_accents_and_punctuation_but_keeps_the_enye():
    assert text.fold("¡Participación CIUDADANA, ya!  Año 2017…") == (
        "participacion ciudadana ya año 2017"
    )
    assert text.fold("...") == ""

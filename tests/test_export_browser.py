"""Exports in a real browser: no serious axe-core violation at phone and desktop size, no
request leaving the site, charts drawn without JavaScript, a large workbook prepared by a
background job and downloaded, with and without JavaScript."""

import io
import re

import openpyxl
import pytest

from forum.extensions import db
from tests.factories import make_user
from tests.test_browser import (  # noqa: F401
    VIEWPORTS,
    assert_accessible,
    browser,
    expect,
    log_in,
    open_session,
)
from tests.test_export import seed_2017

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("viewport", list(VIEWPORTS), ids=list(VIEWPORTS))
@pytest.mark.parametrize("path", ["/datos/panel", "/datos/"], ids=["dashboard", "downloads"])
def test_public_data_pages_have_no_serious_wcag_violation(open_session, viewport, path):  # noqa: F811
    seed_2017()
    db.session.commit()
    session = open_session(viewport=VIEWPORTS[viewport])
    session.page.goto(path)
    expect(session.page.get_by_role("heading", level=1)).to_be_visible()
    assert_accessible(session.page, f"{path} at {viewport} size")
    assert session.external_requests() == []


def test_dashboard_charts_render_without_javascript(open_session):  # noqa: F811
    seed_2017()
    db.session.commit()
    page = open_session(java_script_enabled=False, viewport=VIEWPORTS["phone"]).page
    page.goto("/datos/panel")
    chart = page.locator("svg[role=img]").first
    expect(chart).to_be_visible()
    assert chart.bounding_box()["width"] <= VIEWPORTS["phone"]["width"]
    expect(page.locator("table.figures").first).to_contain_text("Seguridad ciudadana")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= VIEWPORTS["phone"]["width"], "the page scrolls sideways on a phone"


def test_a_moderator_prepares_a_large_workbook_and_downloads_it(open_session, app, monkeypatch):  # noqa: F811
    monkeypatch.setitem(app.config, "EXPORT_DIRECT_MAX_ROWS", 5)
    seed_2017()
    make_user(role="moderator", email="moderadora@aporta.example")
    db.session.commit()
    page = open_session().page
    log_in(page, "moderadora@aporta.example")
    page.goto("/datos/secretaria/")
    page.get_by_role("link", name="Excel (XLSX)").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Preparar el archivo")
    assert_accessible(page, "the page that offers to prepare a large file")
    page.get_by_role("button", name="Preparar el archivo").click()
    # The page refreshes its status by itself (JavaScript) until the link appears.
    download_link = page.get_by_role("link", name=re.compile(r"^Descargar aportes-secretaria"))
    expect(download_link).to_be_visible(timeout=60_000)
    assert_accessible(page, "the export job page, file ready")
    with page.expect_download() as info:
        download_link.click()
    assert info.value.suggested_filename == "aportes-secretaria-paga-2017.xlsx"
    with open(info.value.path(), "rb") as downloaded:
        book = openpyxl.load_workbook(io.BytesIO(downloaded.read()))
    assert book["Aportes"].max_row == 21


def test_the_job_page_works_without_javascript(open_session, app, monkeypatch):  # noqa: F811
    monkeypatch.setitem(app.config, "EXPORT_DIRECT_MAX_ROWS", 5)
    seed_2017()
    db.session.commit()
    page = open_session(java_script_enabled=False).page
    page.goto("/datos/aportes.zip")
    page.get_by_role("button", name="Preparar el archivo").click()
    expect(page.get_by_text("Estado:")).to_be_visible()
    for _ in range(120):  # a person presses "Actualizar" until the file is ready
        refresh = page.get_by_role("link", name="Actualizar esta página")
        if not refresh.count():
            break
        page.wait_for_timeout(500)
        refresh.click()
    expect(
        page.get_by_role("link", name=re.compile(r"^Descargar aportes-paga-2017.zip"))
    ).to_be_visible()

"""The public dashboard in a real browser: no serious axe-core violation at phone and desktop
size, no request leaving the site, charts drawn without JavaScript."""

import pytest

from forum.extensions import db
from tests.test_browser import VIEWPORTS, assert_accessible, browser, expect, open_session  # noqa: F401
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

"""Background export jobs: large XLSX files and data packages prepared apart, then downloaded.

The threshold EXPORT_DIRECT_MAX_ROWS is lowered so the 2017 case (20 contributions) needs
a job; the job runs in a real thread against the real database, as under gunicorn.
"""

import hashlib
import io
import json
import os
import re
import time
import zipfile
from datetime import timedelta

import openpyxl
import pytest
from sqlalchemy import func, select

from forum import clock
from forum.export import jobs, services
from forum.export.models import ExportJob
from forum.export.rows import Audience
from forum.extensions import db
from tests import test_export
from tests.conftest import csrf_token, login
from tests.factories import make_user
from tests.test_export import EMAIL_RE, seed_2017


@pytest.fixture
def case_2017(app, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_DIRECT_MAX_ROWS", 5)
    return seed_2017()


staff = test_export.staff  # a logged-in moderator, on this module's case_2017


def wait_until_finished(location: str, seconds: float = 60) -> ExportJob:
    """The job behind a status page address, once its thread has finished."""
    token = location.rstrip("/").rsplit("/", 1)[-1]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.session.rollback()  # a new transaction sees the thread's commits
        job = jobs.find_job(token)
        if not job.is_active:
            return job
        time.sleep(0.05)
    raise AssertionError(f"export job {token} still {job.status} after {seconds} s")


def start_job(client, url: str):
    """Open a download address, check it offers a job, and press the button."""
    page = client.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Preparar el archivo" in html
    response = client.post(url, data={"csrf_token": csrf_token(html)})
    assert response.status_code == 303
    return response.headers["Location"]


def test_a_large_xlsx_is_prepared_apart_with_progress_then_downloaded_and_resumed(staff):
    page = staff.get("/datos/secretaria/aportes.xlsx?canal=web")
    assert "tendrá 10 aportes" in page.get_data(as_text=True)  # the filter counts
    assert page.headers["Content-Type"].startswith("text/html")

    location = start_job(staff, "/datos/secretaria/aportes.xlsx?canal=web")
    job = wait_until_finished(location)
    assert (job.status, job.rows_done, job.rows_total) == ("ready", 10, 10)
    assert json.loads(job.filters) == {"canal": "web"}

    status = staff.get(location).get_data(as_text=True)
    assert "Listo para descargar" in status and job.file_sha256 in status
    download = staff.get(f"{location}/{job.file_name}")
    assert download.status_code == 200
    body = download.get_data()
    download.close()
    assert download.headers["X-Aporta-SHA256"] == hashlib.sha256(body).hexdigest()
    assert download.headers["Cache-Control"] == "no-store"
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames[0] == "Aportes" and book["Aportes"].max_row == 11
    metadata = dict(book["Metadatos"].iter_rows(values_only=True))
    assert metadata["Filas"] == "10" and '"channel": "web"' in metadata["Filtros"]

    part = staff.get(f"{location}/{job.file_name}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.get_data() == body[100:200]
    part.close()


def test_small_files_are_still_sent_at_once(staff, app):
    app.config["EXPORT_DIRECT_MAX_ROWS"] = 20
    response = staff.get("/datos/secretaria/aportes.xlsx")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    assert db.session.scalar(select(func.count(ExportJob.id))) == 0


def test_the_public_data_package_is_prepared_for_anyone_and_holds_no_email(client, case_2017):
    location = start_job(client, "/datos/aportes.zip")
    job = wait_until_finished(location)
    assert job.status == "ready" and job.requested_by_id is None
    with client.get(f"{location}/{job.file_name}") as download:
        data = download.get_data()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "datapackage.json" in archive.namelist()
        table = archive.read("aportes.csv").decode("utf-8")
    assert len(table.strip().splitlines()) == 21
    assert not EMAIL_RE.search(table)


def test_an_institution_pack_is_prepared_apart(staff):
    location = start_job(staff, "/datos/secretaria/entidades/ministerio-del-interior.xlsx")
    job = wait_until_finished(location)
    assert (job.status, job.rows_total, job.file_name) == (
        "ready",
        6,
        "aportes-ministerio-del-interior.xlsx",
    )
    with staff.get(f"{location}/{job.file_name}") as download:
        book = openpyxl.load_workbook(io.BytesIO(download.get_data()))
    codes = {row[4] for row in book["Aportes"].iter_rows(min_row=2, values_only=True)}
    assert codes == {"SEG-1"}


def test_asking_twice_gives_the_job_already_in_preparation(case_2017):
    moderator = make_user(role="moderator", email="mod@aporta.example")
    db.session.flush()
    values = {"canal": "email"}
    first = jobs.request_job("xlsx", case_2017, values, Audience.SECRETARIAT, "a.xlsx", moderator)
    again = jobs.request_job("xlsx", case_2017, values, Audience.SECRETARIAT, "a.xlsx", moderator)
    other = jobs.request_job("xlsx", case_2017, {}, Audience.SECRETARIAT, "a.xlsx", moderator)
    assert again.id == first.id and other.id != first.id
    assert first.rows_total == 10 and other.rows_total == 20


def test_too_many_jobs_at_once_are_refused_in_spanish(staff, app, monkeypatch):
    monkeypatch.setitem(app.config, "EXPORT_JOBS_MAX_RUNNING", 1)
    page = staff.get("/datos/secretaria/aportes.xlsx").get_data(as_text=True)
    consultation = services.find_consultation("paga-2017")
    jobs.request_job("xlsx", consultation, {"canal": "web"}, Audience.PUBLIC, "x.xlsx", None)
    db.session.commit()

    anonymous = app.test_client()
    public_page = anonymous.get("/datos/aportes.xlsx").get_data(as_text=True)
    response = anonymous.post("/datos/aportes.xlsx", data={"csrf_token": csrf_token(public_page)})
    assert response.status_code == 503
    assert "Vuelve a pedir el archivo en unos minutos" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(ExportJob.id))) == 1

    # Public jobs do not hold up the secretariat's: they are counted apart.
    response = staff.post("/datos/secretaria/aportes.xlsx", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 303
    wait_until_finished(response.headers["Location"])


def test_citizens_cannot_start_or_see_secretariat_jobs(client, staff, case_2017):
    location = start_job(staff, "/datos/secretaria/aportes.xlsx")
    job = wait_until_finished(location)
    staff.post("/cuenta/salir", data={"csrf_token": csrf_token(staff.get("/").get_data(True))})

    assert client.get(location).status_code == 302  # anonymous: to the login page
    make_user(email="ciudadana@correo.example")
    db.session.commit()
    login(client, "ciudadana@correo.example")
    token = csrf_token(client.get("/datos/").get_data(as_text=True))
    for url in (
        "/datos/secretaria/aportes.xlsx",
        "/datos/secretaria/entidades/ministerio-de-salud.xlsx",
    ):
        assert client.post(url, data={"csrf_token": token}).status_code == 403
    assert client.get(location).status_code == 403
    assert client.get(f"{location}/{job.file_name}").status_code == 403
    assert db.session.scalar(select(func.count(ExportJob.id))) == 1


def test_a_post_without_its_csrf_token_starts_nothing(staff):
    assert staff.post("/datos/secretaria/aportes.xlsx").status_code == 400
    assert staff.post("/datos/aportes.zip").status_code == 400
    assert db.session.scalar(select(func.count(ExportJob.id))) == 0


def test_a_job_whose_process_died_is_marked_interrupted(staff, case_2017):
    job = jobs.request_job("xlsx", case_2017, {}, Audience.SECRETARIAT, "a.xlsx", None)
    job.status = "running"
    db.session.commit()
    with open(jobs.file_path(job) + ".part", "wb") as part:
        part.write(b"half a file")
    clock.travel_to(clock.now() + timedelta(minutes=6))
    page = staff.get(f"/datos/exportaciones/{job.token}").get_data(as_text=True)
    assert "Interrumpido" in page and "se interrumpió" in page
    assert not os.path.exists(jobs.file_path(job) + ".part")


def test_finished_files_are_deleted_after_the_keep_time(staff):
    location = start_job(staff, "/datos/secretaria/aportes.xlsx")
    job = wait_until_finished(location)
    assert os.path.exists(jobs.file_path(job))
    clock.travel_to(clock.now() + timedelta(hours=25))
    assert "Caducado" in staff.get(location).get_data(as_text=True)
    assert not os.path.exists(jobs.file_path(job))
    assert staff.get(f"{location}/{job.file_name}").status_code == 404


def test_a_failing_job_says_so_in_spanish_and_leaves_no_partial_file(staff, case_2017):
    job = jobs.request_job(
        "xlsx", case_2017, {"tema": "salud"}, Audience.SECRETARIAT, "a.xlsx", None
    )
    job.filters = json.dumps({"tema": "salud-renombrada"})  # the theme changed meanwhile
    db.session.commit()
    jobs.start(job)
    job = wait_until_finished(f"/datos/exportaciones/{job.token}")
    assert job.status == "failed"
    page = staff.get(f"/datos/exportaciones/{job.token}").get_data(as_text=True)
    assert "La temática «salud-renombrada» no existe en esta consulta" in page
    assert not os.path.exists(jobs.file_path(job) + ".part")
    assert not os.path.exists(jobs.file_path(job))


def test_a_job_whose_process_is_killed_fails_at_once(staff, case_2017):
    job = jobs.request_job("xlsx", case_2017, {}, Audience.SECRETARIAT, "a.xlsx", None)
    db.session.commit()
    process = jobs.start(job)
    process.kill()
    job = wait_until_finished(f"/datos/exportaciones/{job.token}")
    assert job.status == "failed"
    page = staff.get(f"/datos/exportaciones/{job.token}").get_data(as_text=True)
    assert "terminó con el código -9" in page
    assert not os.path.exists(jobs.file_path(job))
    assert not os.path.exists(jobs.file_path(job) + ".part")


def test_the_secretariat_page_lists_recent_jobs(staff):
    location = start_job(staff, "/datos/secretaria/aportes.xlsx")
    wait_until_finished(location)
    page = staff.get("/datos/secretaria/").get_data(as_text=True)
    assert "aportes-secretaria-paga-2017.xlsx" in page and "Listo para descargar" in page
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert title.startswith("Exportaciones de la secretaría ·") and "<" not in title
    assert page.count("Archivos preparados aparte") == 1


def test_a_token_that_looks_like_an_option_still_runs(staff, case_2017):
    job = jobs.request_job("xlsx", case_2017, {}, Audience.SECRETARIAT, "a.xlsx", None)
    job.token = "-9oPOKy6OFoRM3WJvk2DTdLllT4AMDQ4cCTmRi66z1Q"  # seen in a run: click took it
    db.session.commit()
    jobs.start(job)
    assert wait_until_finished(f"/datos/exportaciones/{job.token}").status == "ready"

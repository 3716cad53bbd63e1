"""`flask consultation ...` and `flask seed-demo`."""

from datetime import timedelta

from sqlalchemy import func, select

from forum import clock
from forum.consultation.demo import DEMO_FILE
from forum.consultation.models import Consultation, Contribution, Draft, Theme
from forum.extensions import db
from tests.factories import make_consultation

THEME_ORDER = [
    "Salud",
    "Educación",
    "Ambiente",
    "Infraestructura",
    "Saneamiento",
    "Seguridad ciudadana",
]


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_seed_demo_loads_the_2017_2019_consultation_open_now(runner, client):
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    consultation = db.session.scalar(select(Consultation))
    assert consultation.title == "Plan de Acción de Gobierno Abierto 2017-2019"
    assert consultation.is_open()
    assert timedelta(days=1) <= clock.now() - consultation.opens_at <= timedelta(days=4)
    assert timedelta(days=13) <= consultation.closes_at - clock.now() <= timedelta(days=15)
    assert [t.name for t in consultation.themes] == THEME_ORDER
    codes = {d.code for d in db.session.scalars(select(Draft))}
    assert {"SAN-1", "SAN-2", "SAN-3", "SEG-4", "INF-6", "AMB-1"} <= codes
    salud = [d for d in db.session.scalars(select(Draft)) if d.code.startswith("SAL")]
    assert salud and all(d.is_illustrative for d in salud)
    assert not any(
        d.is_illustrative for d in db.session.scalars(select(Draft)) if not d.code.startswith("SAL")
    )
    assert count(Contribution) >= 20
    assert "2017" in consultation.description  # the 2017 dates are kept in the text
    assert "ficticio" in client.get("/consultas/paga-2017-2019/borradores/SAN-1").get_data(
        as_text=True
    )


def test_seed_demo_if_empty_runs_once(runner):
    runner.invoke(args=["seed-demo", "--if-empty"])
    before = count(Contribution), count(Draft)
    result = runner.invoke(args=["seed-demo", "--if-empty"])
    assert "no se cargó" in result.output
    runner.invoke(args=["seed-demo"])
    assert (count(Contribution), count(Draft)) == before


def test_load_yaml_twice_changes_nothing(runner):
    assert runner.invoke(args=["consultation", "load", DEMO_FILE]).exit_code == 0
    drafts, themes = count(Draft), count(Theme)
    result = runner.invoke(args=["consultation", "load", DEMO_FILE])
    assert result.exit_code == 0 and "6 temas" in result.output
    assert (count(Draft), count(Theme)) == (drafts, themes)


def test_load_csv_adds_drafts_to_a_consultation(runner, tmp_path):
    make_consultation()
    db.session.commit()
    path = tmp_path / "borradores.csv"
    path.write_text(
        "theme,code,title,problem,commitment,products,responsible_institution,resources,deadline,contact,ogp_values\n"
        'Educación,EDU-9,"Datos abiertos de colegios","Falta información","Publicar datos",'
        '"Portal | Catálogo",MINEDU,Presupuesto,Diciembre 2019,Oficina de datos,'
        '"Transparencia, Rendición de cuentas"\n',
        encoding="utf-8-sig",
    )
    result = runner.invoke(
        args=["consultation", "load", str(path), "--consultation", "paga-prueba"]
    )
    assert result.exit_code == 0, result.output
    edu = db.session.scalar(select(Draft).where(Draft.code == "EDU-9"))
    assert edu.theme.slug == "educacion" and edu.product_list == ["Portal", "Catálogo"]
    assert edu.ogp_value_list == ["Transparencia", "Rendición de cuentas"]


def test_load_rejects_a_bad_file_with_a_clear_message(runner, tmp_path):
    make_consultation()
    db.session.commit()
    path = tmp_path / "mal.csv"
    path.write_text("tema,codigo\nSalud,SAL-9\n", encoding="utf-8")
    result = runner.invoke(args=["consultation", "load", str(path)])
    assert result.exit_code != 0 and "faltan las columnas" in result.output
    bad_value = tmp_path / "mal.yaml"
    bad_value.write_text(
        "consultation: {slug: x, title: X}\nthemes:\n- slug: s\n  name: S\n  drafts:\n"
        "  - {code: S-1, title: T, ogp_values: [Magia]}\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["consultation", "load", str(bad_value)])
    assert (
        result.exit_code != 0 and "valores de gobierno abierto desconocidos: Magia" in result.output
    )


def test_set_window_in_lima_time(runner):
    make_consultation()
    db.session.commit()
    result = runner.invoke(
        args=[
            "consultation",
            "set-window",
            "--opens",
            "2017-09-22T08:00",
            "--closes",
            "2017-10-06T23:59",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "abre 2017-09-22 08:00 y cierra 2017-10-06 23:59 (hora de Lima)" in result.output
    consultation = db.session.scalar(select(Consultation))
    db.session.refresh(consultation)
    assert consultation.opens_at.isoformat() == "2017-09-22T13:00:00+00:00"
    assert consultation.closes_at.isoformat() == "2017-10-07T04:59:00+00:00"


def test_set_window_refuses_nonsense(runner):
    make_consultation()
    db.session.commit()
    backwards = runner.invoke(
        args=[
            "consultation",
            "set-window",
            "--opens",
            "2017-10-06T08:00",
            "--closes",
            "2017-09-22T08:00",
        ]
    )
    assert backwards.exit_code != 0 and "El cierre debe ser posterior" in backwards.output
    garbage = runner.invoke(
        args=["consultation", "set-window", "--opens", "mañana", "--closes", "luego"]
    )
    assert garbage.exit_code != 0 and "Fecha no válida" in garbage.output

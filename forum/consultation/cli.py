"""`flask consultation ...` and `flask seed-demo`."""

import csv
import os

import click
import yaml
from flask.cli import with_appcontext
from sqlalchemy import select

from forum import clock
from forum.consultation import demo, services
from forum.consultation.models import Consultation
from forum.errors import ForumError
from forum.extensions import db
from forum.moderation import services as moderation
from forum.text import slugify

CSV_COLUMNS = (
    "theme",
    "code",
    "title",
    "problem",
    "commitment",
    "products",
    "responsible_institution",
    "resources",
    "deadline",
    "contact",
    "ogp_values",
)


@click.group("consultation")
def consultation_group():
    """Manage consultations: load drafts, set the window."""


def _find(slug: str | None) -> Consultation:
    if slug:
        consultation = db.session.scalar(select(Consultation).where(Consultation.slug == slug))
    else:
        consultation = services.current_consultation()
    if consultation is None:
        raise click.ClickException(
            "No existe esa consulta. Carga una con `flask consultation load`."
        )
    return consultation


@consultation_group.command("set-window")
@click.option("--opens", required=True, help="Apertura, hora de Lima, ISO 8601: 2017-09-22T08:00")
@click.option("--closes", required=True, help="Cierre, hora de Lima, ISO 8601: 2017-10-06T23:59")
@click.option("--consultation", "slug", help="Slug (por defecto, la consulta actual)")
@with_appcontext
def set_window(opens, closes, slug):
    """Set when contributions are accepted (Lima local time)."""
    consultation = _find(slug)
    before = services.window_of(consultation)
    try:
        services.set_window(consultation, clock.parse_lima(opens), clock.parse_lima(closes), "cli")
    except ValueError as error:
        raise click.ClickException(f"Fecha no válida: {error}") from error
    except ForumError as error:
        raise click.ClickException(error.message) from error
    moderation.record_audit(
        None, "consultation.set_window", consultation, before, services.window_of(consultation)
    )
    db.session.commit()
    click.echo(
        f"{consultation.title}: abre {clock.to_lima(consultation.opens_at):%Y-%m-%d %H:%M} "
        f"y cierra {clock.to_lima(consultation.closes_at):%Y-%m-%d %H:%M} (hora de Lima)."
    )


@consultation_group.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--consultation", "slug", help="For CSV: the consultation that receives the drafts")
@with_appcontext
def load(path, slug):
    """Load a consultation from YAML, or draft commitments from CSV (one row per draft)."""
    try:
        if os.path.splitext(path)[1].lower() in (".yaml", ".yml"):
            with open(path, encoding="utf-8") as handle:
                consultation = services.import_consultation(yaml.safe_load(handle), actor="cli")
        else:
            consultation = _find(slug)
            services.import_themes(consultation, _read_csv(path))
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        raise click.ClickException(f"El archivo no tiene el formato esperado: {error!r}") from error
    except ForumError as error:
        raise click.ClickException(error.message) from error
    db.session.commit()
    themes, drafts = services.count_themes_and_drafts(consultation)
    click.echo(f"{consultation.title}: {themes} temas, {drafts} borradores.")


def _read_csv(path: str) -> list[dict]:
    """Themes with their drafts from a CSV of the columns in CSV_COLUMNS (products split on |)."""
    themes: dict[str, dict] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"faltan las columnas {', '.join(sorted(missing))}")
        for row in reader:
            name = row["theme"].strip()
            theme = themes.setdefault(name, {"slug": slugify(name), "name": name, "drafts": []})
            draft = {key: row[key] for key in CSV_COLUMNS if key != "theme"}
            draft["products"] = [p.strip() for p in row["products"].split("|")]
            theme["drafts"].append(draft)
    return list(themes.values())


@click.command("seed-demo")
@click.option("--if-empty", is_flag=True, help="Only when the database has no consultation yet.")
@with_appcontext
def seed_demo(if_empty):
    """Load the 2017-2019 demo consultation, open from a few days ago for two weeks."""
    if if_empty and services.current_consultation() is not None:
        click.echo("La base ya tiene una consulta: no se cargó la demostración.")
        return
    summary = demo.seed()
    db.session.commit()
    click.echo(summary)

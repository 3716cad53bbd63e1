"""`flask moderation ...`."""

import click
from sqlalchemy import select

from forum.consultation.models import Consultation
from forum.consultation.services import current_consultation
from forum.extensions import db
from forum.moderation import services


@click.group("moderation")
def moderation_group():
    """Moderation tasks from the command line."""


@moderation_group.command("seed-tags")
def seed_tags_command():
    """Create the seeded tag vocabulary (OGP values, SMART, fuera de alcance); idempotent."""
    created = services.seed_tags()
    db.session.commit()
    click.echo(f"Etiquetas creadas: {created} (las existentes no se tocan).")


@moderation_group.command("suggest-duplicates")
@click.option("--consultation", "slug", help="Slug of the consultation (default: the current one).")
def suggest_duplicates_command(slug: str | None):
    """Print the pending near-duplicate suggestions of a consultation."""
    if slug:
        consultation = db.session.scalar(select(Consultation).where(Consultation.slug == slug))
    else:
        consultation = current_consultation()
    if consultation is None:
        raise click.ClickException("No hay ninguna consulta con ese identificador.")
    suggestions, total = services.suggest_duplicates(consultation)
    db.session.commit()  # keeps the signatures computed for this run
    click.echo(f"{total} sugerencia(s) en {consultation.slug}.")
    for number, suggestion in enumerate(suggestions, 1):
        ids = ", ".join(str(i) for i in suggestion.ids[:20])
        more = f" y {len(suggestion.ids) - 20} más" if len(suggestion.ids) > 20 else ""
        click.echo(f"{number}. {len(suggestion.ids)} aportes: {ids}{more}")

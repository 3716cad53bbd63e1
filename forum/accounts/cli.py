"""`flask users ...`: manage accounts from the command line."""

import click
from flask.cli import with_appcontext

from forum.accounts import services
from forum.accounts.models import ORGANISATION_TYPES, REGIONS, ROLES
from forum.errors import ForumError
from forum.extensions import db


@click.group("users")
def users_group():
    """Manage user accounts."""


@users_group.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(ROLES), default="citizen", show_default=True)
@click.option("--organisation", default="Secretaría de Gestión Pública", show_default=True)
@click.option(
    "--organisation-type", type=click.Choice(list(ORGANISATION_TYPES)), default="entidad-publica"
)
@click.option("--region", type=click.Choice(list(REGIONS)), default="lima-metropolitana")
@click.password_option(help="Asked for when not given (it is never echoed or logged).")
@with_appcontext
def create_user(email, name, role, organisation, organisation_type, region, password):
    """Create an account, e.g. a moderator: flask users create --role moderator ..."""
    try:
        user = services.register_user(
            name=name,
            email=email,
            password=password,
            organisation=organisation,
            organisation_type=organisation_type,
            region=region,
            is_name_public=True,
            role=role,
        )
    except ForumError as error:
        raise click.ClickException(error.message) from error
    db.session.commit()
    click.echo(f"Cuenta {user.id} creada con el rol {role}.")

"""`flask backup` and `flask restore`: consistent snapshots of the whole database.

SQLite is copied with its online backup API (consistent while the app keeps writing);
PostgreSQL is dumped with pg_dump's custom format and restored with pg_restore.
"""

import os
import shutil
import sqlite3
import subprocess

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url

from forum import clock
from forum.extensions import db


def _url():
    return make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])


def _pg_args(url) -> tuple[list[str], dict]:
    """Connection arguments for pg_dump/pg_restore; the password travels in the environment."""
    args = ["--host", url.host or "127.0.0.1", "--port", str(url.port or 5432)]
    if url.username:
        args += ["--username", url.username]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    return args + ["--dbname", url.database], env


def backup_database(path: str) -> None:
    """Write a consistent snapshot of the database to path."""
    url = _url()
    if url.get_backend_name() == "sqlite":
        source = sqlite3.connect(url.database)
        target = sqlite3.connect(path)
        try:
            with target:
                source.backup(target)
        finally:
            target.close()
            source.close()
    elif url.get_backend_name() == "postgresql":
        args, env = _pg_args(url)
        _require("pg_dump")
        # pg_dump from PATH on purpose (the Debian client matching the server); no shell.
        subprocess.run(  # noqa: S603
            ["pg_dump", "--format=custom", "--file", path, *args],  # noqa: S607
            env=env,
            check=True,
        )
    else:
        raise click.ClickException(f"Base de datos no soportada: {url.get_backend_name()}")


def restore_database(path: str) -> None:
    """Replace the database's contents with a snapshot made by backup_database."""
    url = _url()
    db.session.remove()
    db.engine.dispose()
    if url.get_backend_name() == "sqlite":
        source = sqlite3.connect(path)
        target = sqlite3.connect(url.database)
        try:
            with target:
                source.backup(target)
        finally:
            target.close()
            source.close()
    elif url.get_backend_name() == "postgresql":
        args, env = _pg_args(url)
        _require("pg_restore")
        subprocess.run(  # noqa: S603
            [  # noqa: S607
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                *args,
                path,
            ],
            env=env,
            check=True,
        )
    else:
        raise click.ClickException(f"Base de datos no soportada: {url.get_backend_name()}")


def _require(program: str) -> None:
    if shutil.which(program) is None:
        raise click.ClickException(
            f"Falta {program}: instala el cliente de PostgreSQL (Debian: postgresql-client)."
        )


@click.command("backup")
@click.option(
    "--out", "path", type=click.Path(dir_okay=False, writable=True), help="Archivo destino"
)
@with_appcontext
def backup_command(path: str | None) -> None:
    """Write a consistent snapshot of the database."""
    path = path or f"aporta-{clock.now():%Y%m%dT%H%M%SZ}.backup"
    backup_database(path)
    click.echo(f"Copia de seguridad escrita en {path} ({os.path.getsize(path)} bytes).")


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="No preguntar antes de reemplazar los datos")
@with_appcontext
def restore_command(path: str, yes: bool) -> None:
    """Replace the database's contents with a snapshot (stop the app servers first)."""
    if not yes:
        click.confirm("Esto reemplaza todos los datos actuales. ¿Continuar?", abort=True)
    restore_database(path)
    click.echo(f"Datos restaurados desde {path}.")

"""`flask ingest imap` and `flask ingest files`: read e-mail contributions."""

import logging
import sys
import time

import click

from forum.errors import ForumError
from forum.ingest.pipeline import Run, Totals
from forum.ingest.sources import SourceError, file_loaders

log = logging.getLogger(__name__)


@click.group("ingest")
def ingest_group():
    """Read e-mail contributions from IMAP or files."""


@ingest_group.command("imap")
@click.option(
    "--consultation", "slug", default="", help="Slug de la consulta (por defecto, la última)."
)
@click.option("--watch", is_flag=True, help="Seguir leyendo el buzón cada INTERVAL segundos.")
@click.option(
    "--interval", default=60, show_default=True, help="Segundos entre lecturas con --watch."
)
@click.option("--runs", default=0, help="Con --watch, parar tras N lecturas (0: nunca).")
@click.option(
    "--ack/--no-ack", default=None, help="Enviar acuse de recibo (por defecto según config)."
)
def imap_command(slug: str, watch: bool, interval: int, runs: int, ack: bool | None):
    """Read the IMAP folder once (or keep reading with --watch); print a summary per run."""
    done = 0
    while True:
        failed = _imap_once(slug, ack)
        done += 1
        if not watch:
            if failed:
                raise SystemExit(1)
            return
        if runs and done >= runs:
            return
        time.sleep(max(1, interval))


def _imap_once(slug: str, ack: bool | None) -> bool:
    try:
        run = Run(slug, ack=ack)
    except ForumError as error:
        raise click.ClickException(error.message) from error
    bar = click.progressbar(length=0, label="Leyendo el buzón", file=sys.stderr)

    def on_total(total: int) -> None:
        bar.length = total

    try:
        with bar:
            run.ingest_imap(progress=bar.update, on_total=on_total)
    except SourceError as error:
        _summary(run.totals)
        click.echo(
            f"Error: la lectura del buzón se interrumpió: {error}. "
            "Lo ya guardado está a salvo; vuelva a ejecutar el comando.",
            err=True,
        )
        return True
    _summary(run.totals)
    return False


@ingest_group.command("files")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--consultation", "slug", default="", help="Slug de la consulta (por defecto, la última)."
)
@click.option(
    "--ack/--no-ack", default=None, help="Enviar acuse de recibo (por defecto según config)."
)
def files_command(paths: tuple[str, ...], slug: str, ack: bool | None):
    """Ingest .eml files, .mbox files and Maildir folders; running twice adds nothing."""
    try:
        run = Run(slug, ack=ack)
        loaders = file_loaders(list(paths))
    except (ForumError, SourceError) as error:
        raise click.ClickException(getattr(error, "message", str(error))) from error
    with click.progressbar(loaders, label="Leyendo archivos", file=sys.stderr) as bar:
        for load in bar:
            run.ingest_items(load())
    _summary(run.totals)


def _summary(totals: Totals) -> None:
    click.echo(totals.line())
    log.info("ingest run: %s", totals.line())

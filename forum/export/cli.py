"""`flask export csv|xlsx|json|datapackage|pack`: write exports to files, with a progress bar.

Every command writes FILE plus FILE.sha256 (sha256sum format) and FILE.metadata.json
(when, for whom, with which filters, how many rows, the file's SHA-256).
"""

import click

from forum.errors import ForumError
from forum.export import jobs, services
from forum.export.rows import Audience, count_rows


def filter_options(command):
    """The filters every export command accepts."""
    options = [
        click.option(
            "--consultation", "consulta", help="Slug de la consulta (por defecto, la actual)."
        ),
        click.option("--theme", "tema", help="Slug de la temática."),
        click.option("--draft", "borrador", help="Código del borrador, p. ej. SAN-1."),
        click.option("--channel", "canal", type=click.Choice(["web", "email"])),
        click.option("--from", "desde", help="Desde (AAAA-MM-DD, hora de Lima)."),
        click.option("--to", "hasta", help="Hasta (AAAA-MM-DD, hora de Lima), inclusive."),
        click.option("--disposition", "disposicion", help="Código de la disposición."),
        click.option("--tag", "etiqueta", help="Slug de la etiqueta."),
    ]
    for option in reversed(options):
        command = option(command)
    return click.option("--out", "out", required=True, type=click.Path(dir_okay=False))(command)


def _run(what: str, out: str, values: dict, write, audience: Audience) -> None:
    try:
        consultation = services.find_consultation(values.get("consulta"))
        filters = services.parse_filters(consultation, values)
        total = count_rows(consultation, filters)
        with click.progressbar(length=total, label=f"Exportando {total} aportes", file=None) as bar:

            def progress(chunks):
                for chunk in chunks:
                    bar.update(len(chunk))
                    yield chunk

            rows = write(out, consultation, filters, progress)
    except ForumError as error:
        raise click.ClickException(error.message) from None
    digest = services.write_sidecars(out, consultation, filters, audience, what, rows)
    click.echo(f"{out}: {rows} filas, SHA-256 {digest}")


@click.group("export")
def export_group():
    """Export the contributions table and summaries."""


def _format_command(fmt: str):
    @filter_options
    @click.option(
        "--public",
        is_flag=True,
        help="La versión pública (sin correos ni nombres sin consentimiento).",
    )
    def command(out: str, public: bool, **values):
        audience = Audience.PUBLIC if public else Audience.SECRETARIAT
        writer = services.WRITERS[fmt]

        def write(path, consultation, filters, progress):
            return writer(path, consultation, filters, audience, "cli", progress)

        _run(fmt, out, values, write, audience)

    command.__doc__ = (
        f"Write the contributions table as {fmt.upper()} (secretariat unless --public)."
    )
    return export_group.command(fmt)(command)


for _fmt in services.FORMATS:
    _format_command(_fmt)


@export_group.command("datapackage")
@filter_options
def datapackage(out: str, **values):
    """Write the public export as a zipped Frictionless data package."""

    def write(path, consultation, filters, progress):
        return services.write_datapackage(path, consultation, filters, "cli", progress)

    _run("datapackage", out, values, write, Audience.PUBLIC)


@export_group.command("pack")
@click.option("--institution", required=True, help="Entidad responsable (nombre exacto o slug).")
@filter_options
def pack(out: str, institution: str, **values):
    """Write one responsible institution's XLSX pack (the contributions on its drafts)."""

    def write(path, consultation, filters, progress):
        found = services.find_institution(consultation, institution)
        return services.write_institution_pack(path, consultation, found, filters, "cli", progress)

    _run("xlsx", out, values, write, Audience.INSTITUTION)


@export_group.command("run-job")
@click.argument("token")
def run_job(token: str):
    """Build the file of a pending export job (the web app starts this command)."""
    try:
        jobs.run_job(token)
    except ForumError as error:
        raise click.ClickException(error.message) from None

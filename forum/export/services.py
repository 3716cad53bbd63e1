"""Export services: check filters, build files for an audience, the dashboard's figures.

Every file records when it was generated, for which audience, with which filters, and the
SHA-256 of its data (the bytes of the CSV export with the same filters): in the XLSX's
"Metadatos" sheet, in the JSON's metadata and trailer, in datapackage.json, and in the
sidecar files the CLI writes. See docs/exports.md.
"""

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date

from flask import current_app
from sqlalchemy import func, select

from forum import clock
from forum.consultation.models import CHANNELS, Consultation, Contribution, Draft, Theme
from forum.consultation.services import current_consultation
from forum.errors import InvalidInput
from forum.export import formats, summaries
from forum.export.rows import (
    Audience,
    Filters,
    columns_for,
    count_rows,
    iter_chunks,
    responses_are_public,
)
from forum.extensions import db
from forum.moderation.models import DISPOSITIONS, Tag
from forum.text import slugify

log = logging.getLogger(__name__)

FORMATS = ("csv", "json", "xlsx")
# What the CLI passes to show progress: chunks of rows in, the same chunks out.
Progress = Callable[[Iterable[list[tuple]]], Iterable[list[tuple]]]
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "zip": "application/zip",
}


def find_consultation(slug: str | None) -> Consultation:
    """The consultation with that slug, or the current one."""
    if slug:
        found = db.session.scalar(select(Consultation).where(Consultation.slug == slug))
    else:
        found = current_consultation()
    if found is None:
        raise InvalidInput(
            f"No existe la consulta «{slug}»." if slug else "Todavía no hay ninguna consulta."
        )
    return found


# The filter fields of forms, URLs and export jobs (Spanish names, as people see them).
FILTER_NAMES = ("tema", "borrador", "canal", "desde", "hasta", "disposicion", "etiqueta", "entidad")


def parse_filters(consultation: Consultation, values: Mapping[str, str | None]) -> Filters:
    """Filters from form or command-line values (Spanish names); unknown values refused."""

    def value(name: str) -> str | None:
        raw = (values.get(name) or "").strip()
        return raw or None

    theme, draft, channel = value("tema"), value("borrador"), value("canal")
    disposition, tag, institution = value("disposicion"), value("etiqueta"), value("entidad")
    in_consultation = (Theme.consultation_id == consultation.id,)
    if theme and not db.session.scalar(
        select(Theme.id).where(*in_consultation, Theme.slug == theme)
    ):
        raise InvalidInput(f"La temática «{theme}» no existe en esta consulta.")
    if draft:
        draft = draft.upper()
        if not db.session.scalar(
            select(Draft.id).where(Draft.consultation_id == consultation.id, Draft.code == draft)
        ):
            raise InvalidInput(f"El borrador «{draft}» no existe en esta consulta.")
    if channel and channel not in CHANNELS:
        raise InvalidInput(f"La vía «{channel}» no existe: usa {' o '.join(CHANNELS)}.")
    if disposition and disposition not in DISPOSITIONS:
        raise InvalidInput(f"La disposición «{disposition}» no existe.")
    if tag and not db.session.scalar(select(Tag.id).where(Tag.slug == tag)):
        raise InvalidInput(f"La etiqueta «{tag}» no existe.")
    date_from, date_to = _date(value("desde"), "desde"), _date(value("hasta"), "hasta")
    if date_from and date_to and date_from > date_to:
        raise InvalidInput("La fecha «desde» debe ser anterior o igual a la fecha «hasta».")
    return Filters(
        theme=theme,
        draft=draft,
        channel=channel,
        date_from=date_from,
        date_to=date_to,
        disposition=disposition,
        tag=tag,
        institution=institution,
    )


def _date(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"La fecha «{name}» no es válida: escríbela como AAAA-MM-DD (por ejemplo 2017-09-22)."
        ) from None


def metadata(consultation: Consultation, filters: Filters, audience: Audience, fmt: str) -> dict:
    """What every file says about itself before its rows."""
    return {
        "generated_at": clock.to_lima(clock.now()).isoformat(timespec="seconds"),
        "consultation": consultation.slug,
        "consultation_title": consultation.title,
        "audience": audience.value,
        "format": fmt,
        "filters": filters.describe(),
        "licence": formats.LICENCE["name"] if audience is Audience.PUBLIC else "",
        "checksum": "rows_sha256: SHA-256 of the CSV export with the same filters",
    }


def _log(what: str, consultation: Consultation, filters: Filters, audience: Audience, actor: str):
    log.info(
        "export %s of %s for %s by %s, filters %s",
        what,
        consultation.slug,
        audience.value,
        actor,
        json.dumps(filters.describe(), ensure_ascii=False),
    )


def stream_csv(
    consultation: Consultation, filters: Filters, audience: Audience, actor: str
) -> Iterator[bytes]:
    """The contributions table as CSV chunks."""
    _log("csv", consultation, filters, audience, actor)
    chunks = iter_chunks(consultation, filters, audience)
    return formats.csv_chunks(columns_for(audience), chunks)


def stream_json(
    consultation: Consultation, filters: Filters, audience: Audience, actor: str
) -> Iterator[bytes]:
    """The contributions table as JSON chunks, metadata first and checksum last."""
    _log("json", consultation, filters, audience, actor)
    chunks = iter_chunks(consultation, filters, audience)
    return formats.json_chunks(
        columns_for(audience), chunks, metadata(consultation, filters, audience, "json")
    )


def write_csv(
    path: str,
    consultation: Consultation,
    filters: Filters,
    audience: Audience,
    actor: str,
    progress: Progress = iter,
) -> int:
    """Write the CSV file; returns its number of rows."""
    _log("csv", consultation, filters, audience, actor)
    counted = _Counted(progress(iter_chunks(consultation, filters, audience)))
    with open(path, "wb") as out:
        for chunk in formats.csv_chunks(columns_for(audience), counted):
            out.write(chunk)
    return counted.n


def write_json(
    path: str,
    consultation: Consultation,
    filters: Filters,
    audience: Audience,
    actor: str,
    progress: Progress = iter,
) -> int:
    """Write the JSON file; returns its number of rows."""
    _log("json", consultation, filters, audience, actor)
    counted = _Counted(progress(iter_chunks(consultation, filters, audience)))
    meta = metadata(consultation, filters, audience, "json")
    with open(path, "wb") as out:
        for chunk in formats.json_chunks(columns_for(audience), counted, meta):
            out.write(chunk)
    return counted.n


class _Counted:
    """Chunks of rows passed through, counting the rows."""

    def __init__(self, chunks: Iterable[list[tuple]]):
        self.chunks, self.n = chunks, 0

    def __iter__(self):
        for chunk in self.chunks:
            self.n += len(chunk)
            yield chunk


def suppression_threshold() -> int:
    """Counts below this are hidden in public tables by organisation type and region."""
    return int(current_app.config["EXPORT_SUPPRESS_BELOW"])


def participant_tables(
    consultation: Consultation, filters: Filters, audience: Audience
) -> list[summaries.Table]:
    """Cuadros 1-3 for the audience (Cuadro 3 with small counts hidden outside the secretariat)."""
    below = 0 if audience is Audience.SECRETARIAT else suppression_threshold()
    return [
        summaries.participants_by_sector(consultation, filters),
        summaries.participants_by_type(consultation, filters),
        summaries.participants_by_region(consultation, filters, suppress_below=below),
    ]


def write_xlsx(
    path: str,
    consultation: Consultation,
    filters: Filters,
    audience: Audience,
    actor: str,
    progress: Progress = iter,
) -> int:
    """Write the workbook (see formats.write_xlsx); returns its number of rows."""
    _log("xlsx", consultation, filters, audience, actor)
    themes = db.session.scalars(
        select(Theme.name).where(Theme.consultation_id == consultation.id).order_by(Theme.position)
    ).all()
    if filters.theme:
        themes = db.session.scalars(
            select(Theme.name).where(
                Theme.consultation_id == consultation.id, Theme.slug == filters.theme
            )
        ).all()
    meta = metadata(consultation, filters, audience, "xlsx")

    def metadata_sheet(digest: formats.CsvDigest) -> list[tuple[str, str]]:
        return [
            ("Generado (hora de Lima)", meta["generated_at"]),
            ("Consulta", f"{consultation.title} ({consultation.slug})"),
            ("Audiencia", audience.label),
            (
                "Filtros",
                json.dumps(meta["filters"], ensure_ascii=False) if meta["filters"] else "ninguno",
            ),
            ("Filas", str(digest.rows)),
            ("SHA-256 de los datos (CSV equivalente)", digest.hexdigest()),
            (
                "Licencia",
                formats.LICENCE["title"]
                if audience is Audience.PUBLIC
                else "Uso interno: contiene datos personales (Ley 29733)"
                if audience is Audience.SECRETARIAT
                else "Uso de la entidad responsable",
            ),
        ]

    digest = formats.write_xlsx(
        path,
        columns_for(audience),
        progress(iter_chunks(consultation, filters, audience)),
        summary=summaries.theme_channel(consultation, filters),
        participants=participant_tables(consultation, filters, audience),
        theme_names=list(themes),
        metadata=metadata_sheet,
    )
    return digest.rows


WRITERS = {"csv": write_csv, "json": write_json, "xlsx": write_xlsx}


def file_sha256(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def write_sidecars(
    path: str, consultation: Consultation, filters: Filters, audience: Audience, fmt: str, rows: int
) -> str:
    """FILE.sha256 (sha256sum format) and FILE.metadata.json next to a written file."""
    digest = file_sha256(path)
    name = os.path.basename(path)
    with open(path + ".sha256", "w", encoding="utf-8") as out:
        out.write(f"{digest}  {name}\n")
    info = metadata(consultation, filters, audience, fmt) | {
        "file": name,
        "file_sha256": digest,
        "row_count": rows,
    }
    del info["checksum"]
    with open(path + ".metadata.json", "w", encoding="utf-8") as out:
        json.dump(info, out, ensure_ascii=False, indent=1)
    return digest


def write_datapackage(
    path: str,
    consultation: Consultation,
    filters: Filters,
    actor: str,
    progress: Progress = iter,
) -> int:
    """The public export as a Frictionless data package, zipped: datapackage.json, the
    contributions CSV and the theme x channel CSV, each with its Table Schema and hash."""
    _log("datapackage", consultation, filters, Audience.PUBLIC, actor)
    columns = columns_for(Audience.PUBLIC)
    counted = _Counted(progress(iter_chunks(consultation, filters, Audience.PUBLIC)))
    summary = summaries.theme_channel(consultation, filters)
    summary_bytes = formats.summary_csv(summary)
    meta = metadata(consultation, filters, Audience.PUBLIC, "datapackage")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        sha, size = hashlib.sha256(), 0
        with archive.open("aportes.csv", "w", force_zip64=True) as member:
            for chunk in formats.csv_chunks(columns, counted, with_bom=False):
                sha.update(chunk)
                size += len(chunk)
                member.write(chunk)
        archive.writestr("aportes-por-tematica-y-via.csv", summary_bytes)
        descriptor = {
            "name": f"aporta-{slugify(consultation.slug)}",
            "title": f"Aportes a la consulta: {consultation.title}",
            "description": (
                "Aportes recibidos en la consulta pública, por el foro virtual y por correo "
                "electrónico. Sin direcciones de correo; nombres solo con consentimiento; "
                "aportes ocultos por moderación como fila mínima con el motivo."
            ),
            "created": meta["generated_at"],
            "licenses": [formats.LICENCE],
            "aporta": {"filters": meta["filters"], "row_count": counted.n},
            "resources": [
                {
                    "name": "aportes",
                    "path": "aportes.csv",
                    "format": "csv",
                    "mediatype": "text/csv",
                    "encoding": "utf-8",
                    "bytes": size,
                    "hash": f"sha256:{sha.hexdigest()}",
                    "schema": formats.table_schema(columns),
                },
                {
                    "name": "aportes-por-tematica-y-via",
                    "path": "aportes-por-tematica-y-via.csv",
                    "format": "csv",
                    "mediatype": "text/csv",
                    "encoding": "utf-8",
                    "bytes": len(summary_bytes),
                    "hash": f"sha256:{hashlib.sha256(summary_bytes).hexdigest()}",
                    "schema": formats.summary_schema(summary),
                },
            ],
        }
        archive.writestr("datapackage.json", json.dumps(descriptor, ensure_ascii=False, indent=1))
    return counted.n


@dataclass
class Institution:
    slug: str
    name: str
    contributions: int


def institutions(consultation: Consultation) -> list[Institution]:
    """The responsible institutions of the consultation's drafts, with their contributions."""
    rows = db.session.execute(
        select(Draft.responsible_institution, func.count(Contribution.id))
        .outerjoin(Contribution, Contribution.draft_id == Draft.id)
        .where(Draft.consultation_id == consultation.id, Draft.responsible_institution != "")
        .group_by(Draft.responsible_institution)
        .order_by(Draft.responsible_institution)
    )
    return [Institution(slugify(name), name, n) for name, n in rows]


def find_institution(consultation: Consultation, slug_or_name: str) -> Institution:
    """An institution by its slug or its exact name."""
    for institution in institutions(consultation):
        if slug_or_name in (institution.slug, institution.name):
            return institution
    raise InvalidInput(f"Ninguna entidad responsable de esta consulta se llama «{slug_or_name}».")


def write_institution_pack(
    path: str,
    consultation: Consultation,
    institution: Institution,
    filters: Filters,
    actor: str,
    progress: Progress = iter,
) -> int:
    """The XLSX of the contributions on one institution's drafts, for that institution."""
    narrowed = pack_filters(filters, institution)
    return write_xlsx(path, consultation, narrowed, Audience.INSTITUTION, actor, progress)


def pack_filters(filters: Filters, institution: Institution) -> Filters:
    """The filters narrowed to one institution's drafts."""
    return Filters(**(filters.__dict__ | {"institution": institution.name}))


@dataclass
class Dashboard:
    theme_channel: summaries.Table
    by_day: list
    by_type_region: summaries.Table
    by_sector: summaries.Table
    by_region: summaries.Table
    visits: list[dict]
    responses: summaries.ResponseShare
    responses_public: bool
    total: int


def dashboard(consultation: Consultation, filters: Filters, audience: Audience) -> Dashboard:
    """The participation figures for the dashboard page of this audience."""
    below = 0 if audience is Audience.SECRETARIAT else suppression_threshold()
    return Dashboard(
        theme_channel=summaries.theme_channel(consultation, filters),
        by_day=summaries.by_day(consultation, filters),
        by_type_region=summaries.type_by_region(consultation, filters, suppress_below=below),
        by_sector=summaries.participants_by_sector(consultation, filters),
        by_region=summaries.participants_by_region(consultation, filters, suppress_below=below),
        visits=summaries.visits(consultation, filters),
        responses=summaries.response_share(consultation, filters),
        responses_public=audience is Audience.SECRETARIAT or responses_are_public(consultation),
        total=count_rows(consultation, filters),
    )

"""Writers for the contributions table: CSV, JSON and XLSX, each reading rows one at a time.

CSV: UTF-8 with a BOM and CRLF line ends (RFC 4180), so Excel in Spanish opens accents and
line breaks. Every text cell that a spreadsheet would run (= + - @ ...) is neutralised with
forum.text.spreadsheet_cell, in CSV and XLSX alike; JSON keeps the text as it is.
XLSX: XlsxWriter in constant-memory mode, every text written as a string, never a formula.
"""

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from operator import itemgetter

import xlsxwriter

from forum.accounts.models import ORGANISATION_TYPES, REGIONS
from forum.consultation.models import CHANNELS
from forum.export.rows import Column
from forum.export.summaries import Table
from forum.moderation.models import DISPOSITIONS, HIDE_REASONS
from forum.text import slugify, spreadsheet_cell

BOM = "\ufeff"
FLUSH_BYTES = 64 * 1024
XLSX_MAX_ROWS = 1_048_576
MODERATION_STATES = {"visible": "Visible", "hidden": "Oculto"}


def csv_cell(value) -> str:
    """A summary value as CSV text: text neutralised, numbers as written."""
    if isinstance(value, str):
        return spreadsheet_cell(value)
    return str(value)


# A text cell that starts with anything but a letter, digit or "_" might be run by a
# spreadsheet; only rows holding one go through spreadsheet_cell, cell by cell. (The
# cells are joined with NUL to look at all starts at once; a NUL inside a text can only
# send a row through the exact check without need.)
_SEPARATOR = "\x00"
_SUSPECT_START = re.compile(r"\x00[^\w\x00]")


def neutralise(rows: list[list], text_at: tuple[int, ...]) -> None:
    """Apply spreadsheet_cell to the text cells (positions `text_at`) of the rows, in place."""
    texts = itemgetter(*text_at)
    blob = _SEPARATOR + _SEPARATOR.join(chain.from_iterable(map(texts, rows)))
    if not _SUSPECT_START.search(blob):
        return
    for row in rows:
        if _SUSPECT_START.search(_SEPARATOR + _SEPARATOR.join(texts(row))):
            for index in text_at:
                row[index] = spreadsheet_cell(row[index])


def _positions(columns: list[Column]) -> tuple[int, int, tuple[int, ...]]:
    """Where is_late and tags are, and where the text cells are once tags are joined."""
    ids = [column.id for column in columns]
    text_at = tuple(index for index, column in enumerate(columns) if column.type == "string")
    return ids.index("is_late"), ids.index("tags"), text_at


def csv_rows(columns: list[Column]) -> Callable[[list[tuple]], list[list]]:
    """A function: a chunk of rows -> the CSV cells (booleans true/false, tags joined by '; ',
    text neutralised; None is written empty by csv.writer)."""
    late_at, tags_at, text_at = _positions(columns)

    def convert(chunk: list[tuple]) -> list[list]:
        rows = []
        for row in chunk:
            cells = list(row)
            cells[late_at] = "true" if cells[late_at] else "false"
            cells[tags_at] = "; ".join(cells[tags_at])
            rows.append(cells)
        neutralise(rows, text_at)
        return rows

    return convert


class CsvDigest:
    """The SHA-256 of the CSV file the rows make (with BOM), computed alongside any writer.

    Every file records it, so a JSON or XLSX file can be checked against the CSV export
    with the same filters, and a CSV file against the checksum the others recorded.
    """

    def __init__(self, columns: list[Column], with_bom: bool = True):
        self.convert = csv_rows(columns)
        self.sha = hashlib.sha256()
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")
        self.rows = 0
        if with_bom:
            self.buffer.write(BOM)
        self.writer.writerow([column.id for column in columns])

    def add(self, chunk: list[tuple]) -> str:
        """Add a chunk of rows; returns the CSV text written so far and not yet taken."""
        self.writer.writerows(self.convert(chunk))
        self.rows += len(chunk)
        return self._take() if self.buffer.tell() >= FLUSH_BYTES else ""

    def _take(self) -> str:
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        self.sha.update(text.encode("utf-8"))
        return text

    def finish(self) -> str:
        """The last CSV text; after it, `hexdigest` is final."""
        return self._take()

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def csv_chunks(
    columns: list[Column], chunks: Iterable[list[tuple]], with_bom: bool = True
) -> Iterator[bytes]:
    """The CSV file, in pieces of at least 64 KiB (one per chunk of rows past that size)."""
    digest = CsvDigest(columns, with_bom)
    for chunk in chunks:
        text = digest.add(chunk)
        if text:
            yield text.encode("utf-8")
    yield digest.finish().encode("utf-8")


def json_chunks(
    columns: list[Column], chunks: Iterable[list[tuple]], metadata: dict
) -> Iterator[bytes]:
    """A JSON object: metadata, the rows as "contributions", then the count and checksum."""
    digest = CsvDigest(columns)
    ids = [column.id for column in columns]
    encode = json.JSONEncoder(ensure_ascii=False).encode
    head = json.dumps({"metadata": metadata}, ensure_ascii=False, indent=1)
    yield (head[:-2] + ',\n "contributions": [').encode("utf-8")
    separator = "\n  "
    for chunk in chunks:
        digest.add(chunk)
        text = ",\n  ".join([encode(dict(zip(ids, row, strict=True))) for row in chunk])
        if text:
            yield (separator + text).encode("utf-8")
            separator = ",\n  "
    digest.finish()
    tail = {"row_count": digest.rows, "rows_sha256": digest.hexdigest()}
    yield ("\n ],\n" + json.dumps(tail, ensure_ascii=False, indent=1)[2:] + "\n").encode("utf-8")


# What the XLSX shows people instead of codes.
LABELS = {
    "channel": CHANNELS,
    "organisation_type": ORGANISATION_TYPES,
    "region": REGIONS,
    "disposition": DISPOSITIONS,
    "moderation_state": MODERATION_STATES,
    "hidden_reason": HIDE_REASONS,
}


def people_rows(columns: list[Column]) -> Callable[[list[tuple]], list[list]]:
    """A function: a chunk of rows -> the XLSX cells people read (labels instead of codes,
    Sí/No, tags joined by '; ', text neutralised, None kept for an empty cell)."""
    late_at, tags_at, text_at = _positions(columns)
    labelled = [
        (index, LABELS[column.id]) for index, column in enumerate(columns) if column.id in LABELS
    ]

    def convert(chunk: list[tuple]) -> list[list]:
        rows = []
        for row in chunk:
            cells = list(row)
            cells[late_at] = "Sí" if cells[late_at] else "No"
            cells[tags_at] = "; ".join(cells[tags_at])
            for index, labels in labelled:
                cells[index] = labels.get(cells[index], cells[index])
            rows.append(cells)
        neutralise(rows, text_at)
        return rows

    return convert


def sheet_name(name: str, taken: set[str]) -> str:
    """A valid, unique worksheet name (31 characters, none of []:*?/\\)."""
    clean = "".join(" " if ch in "[]:*?/\\" else ch for ch in name).strip("' ") or "Hoja"
    candidate, n = clean[:31], 2
    while candidate.lower() in taken:
        suffix = f" ({n})"
        candidate, n = clean[: 31 - len(suffix)] + suffix, n + 1
    taken.add(candidate.lower())
    return candidate


class _TableSheet:
    """A worksheet of rows under a frozen, filtered header; continues in a new sheet when full."""

    def __init__(self, workbook, name: str, columns: list[Column], taken: set[str], formats):
        self.workbook, self.name, self.columns, self.taken = workbook, name, columns, taken
        self.formats = formats
        self.part = 0
        self._open()

    def _open(self) -> None:
        self.part += 1
        name = self.name if self.part == 1 else f"{self.name[:24]} ({self.part})"
        self.sheet = self.workbook.add_worksheet(sheet_name(name, self.taken))
        for index, column in enumerate(self.columns):
            wrap = self.formats["wrap"] if column.width >= 40 else None
            self.sheet.set_column(index, index, column.width, wrap)
        for index, column in enumerate(self.columns):
            self.sheet.write_string(0, index, column.heading, self.formats["heading"])
        self.sheet.freeze_panes(1, 0)
        self.row = 0

    def add(self, rows: list[list]) -> None:
        """Write rows of cells: text as strings (never formulas), numbers, None left empty."""
        write_string, write_number = self.sheet.write_string, self.sheet.write_number
        for cells in rows:
            if self.row + 1 >= XLSX_MAX_ROWS:
                self.close()
                self._open()
                write_string, write_number = self.sheet.write_string, self.sheet.write_number
            self.row += 1
            for index, value in enumerate(cells):
                if value.__class__ is str:
                    if value:
                        write_string(self.row, index, value)
                elif value is not None:
                    write_number(self.row, index, value)

    def close(self) -> None:
        self.sheet.autofilter(0, 0, max(self.row, 1), len(self.columns) - 1)


def write_table(sheet, first_row: int, table: Table, formats, caption: str) -> int:
    """Write a summary table (caption, headings, rows, note); returns the next free row."""
    sheet.write_string(first_row, 0, caption, formats["title"])
    row = first_row + 2
    for col, heading in enumerate(table.headings):
        sheet.write_string(row, col, heading, formats["heading"])
    for cells in table.rows:
        row += 1
        for col, value in enumerate(cells):
            is_total = cells[0] in ("Total", "Total (%)")
            fmt = formats["total"] if is_total else None
            if isinstance(value, str):
                sheet.write_string(row, col, spreadsheet_cell(value), fmt)
            else:
                sheet.write_number(row, col, value, fmt)
    if table.note:
        row += 1
        sheet.write_string(row, 0, table.note)
    return row + 2


def write_xlsx(
    path: str,
    columns: list[Column],
    chunks: Iterable[list[tuple]],
    *,
    summary: Table,
    participants: list[Table],
    theme_names: list[str],
    metadata: Callable[[CsvDigest], list[tuple[str, str]]],
) -> CsvDigest:
    """The workbook: Aportes, Resumen (Cuadro 4), Participantes (Cuadros 1-3), one sheet per
    theme, Metadatos (written last, with the row count and the data checksum)."""
    workbook = xlsxwriter.Workbook(
        path,
        {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False},
    )
    formats = {
        "heading": workbook.add_format({"bold": True, "bg_color": "#E8EEF4", "text_wrap": True}),
        "title": workbook.add_format({"bold": True, "font_size": 12}),
        "total": workbook.add_format({"bold": True}),
        "wrap": workbook.add_format({"text_wrap": True, "valign": "top"}),
    }
    taken: set[str] = set()
    table = _TableSheet(workbook, "Aportes", columns, taken, formats)

    resumen = workbook.add_worksheet(sheet_name("Resumen", taken))
    resumen.set_column(0, 0, 28)
    resumen.set_column(1, len(summary.headings), 14)
    write_table(resumen, 0, summary, formats, f"Cuadro 4: {summary.title}")

    people = workbook.add_worksheet(sheet_name("Participantes", taken))
    people.set_column(0, 0, 40)
    people.set_column(1, 12, 14)
    next_row = 0
    for number, part in enumerate(participants, start=1):
        next_row = write_table(people, next_row, part, formats, f"Cuadro {number}: {part.title}")

    by_theme = {name: _TableSheet(workbook, name, columns, taken, formats) for name in theme_names}
    theme_at = [column.id for column in columns].index("theme")
    digest = CsvDigest(columns)
    convert = people_rows(columns)
    for chunk in chunks:
        digest.add(chunk)
        cells = convert(chunk)
        table.add(cells)
        per_theme: dict[str, list[list]] = {}
        for row, row_cells in zip(chunk, cells, strict=True):
            per_theme.setdefault(row[theme_at], []).append(row_cells)
        for name, theme_cells in per_theme.items():
            if name in by_theme:
                by_theme[name].add(theme_cells)
    digest.finish()
    table.close()
    for sheet in by_theme.values():
        sheet.close()

    info = workbook.add_worksheet(sheet_name("Metadatos", taken))
    info.set_column(0, 0, 34)
    info.set_column(1, 1, 90)
    for index, (key, value) in enumerate(metadata(digest)):
        info.write_string(index, 0, key, formats["heading"])
        info.write_string(index, 1, spreadsheet_cell(value))
    workbook.close()
    return digest


LICENCE = {
    "name": "CC-BY-4.0",
    "path": "https://creativecommons.org/licenses/by/4.0/",
    "title": "Creative Commons Atribución 4.0 Internacional",
}


def table_schema(columns: list[Column]) -> dict:
    """The Table Schema of the contributions CSV: stable names, types, code lists."""
    codes = {
        "channel": list(CHANNELS),
        "organisation_type": list(ORGANISATION_TYPES),
        "region": list(REGIONS),
        "disposition": list(DISPOSITIONS),
        "moderation_state": list(MODERATION_STATES),
        "hidden_reason": list(HIDE_REASONS),
    }
    schema_fields = []
    for column in columns:
        item = {
            "name": column.id,
            "title": column.heading,
            "type": column.type,
            "description": column.description,
        }
        if column.id in codes:
            item["constraints"] = {"enum": codes[column.id]}
        if column.id == "id":
            item["constraints"] = {"required": True, "unique": True}
        schema_fields.append(item)
    return {"fields": schema_fields, "primaryKey": ["id"], "missingValues": [""]}


def summary_schema(table: Table) -> dict:
    """The Table Schema of a summary CSV: a text first column, integer counts after it."""
    names = ["tematica", *[_field_name(h) for h in table.headings[1:]]]
    schema_fields = [{"name": names[0], "title": table.headings[0], "type": "string"}]
    schema_fields += [
        {"name": name, "title": heading, "type": "integer"}
        for name, heading in zip(names[1:], table.headings[1:], strict=True)
    ]
    return {"fields": schema_fields}


def _field_name(heading: str) -> str:
    return slugify(heading).replace("-", "_")


def summary_csv(table: Table) -> bytes:
    """A summary table as CSV (no BOM), with the field names of summary_schema."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([f["name"] for f in summary_schema(table)["fields"]])
    for cells in table.rows:
        writer.writerow([csv_cell(cell) for cell in cells])
    return buffer.getvalue().encode("utf-8")

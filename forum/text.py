"""The one owner of untrusted text: cleaning, rendering to safe HTML, plain text, cells."""

import functools
import html
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence

import bleach
import markdown
from bleach.linkifier import DEFAULT_CALLBACKS
from markupsafe import Markup

ALLOWED_TAGS = frozenset({"p", "br", "ul", "ol", "li", "a", "em", "strong", "code"})
ALLOWED_ATTRIBUTES = {"a": ["href", "rel"]}
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})
LINK_REL = "nofollow ugc noopener"
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_ENYE = "\x01"  # stands for ñ while accents are folded (bodies hold no control characters)
_SEPARATOR = "\x02"  # between texts folded together
# Byte table: digits, a-z and the two markers stay, everything else becomes a space.
_KEPT = set(b"0123456789abcdefghijklmnopqrstuvwxyz\x01\x02")
_WORD_BYTES = bytes(byte if byte in _KEPT else 32 for byte in range(256))


def normalise(text: str) -> str:
    """Strip control characters and trailing space; unify line endings."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_CHARS.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def _set_rel(attrs: dict, new: bool = False) -> dict:
    attrs[(None, "rel")] = LINK_REL
    return attrs


_per_thread = threading.local()


def _tools() -> tuple[markdown.Markdown, bleach.Cleaner]:
    """This thread's Markdown converter and bleach cleaner: neither is thread-safe."""
    if not hasattr(_per_thread, "cleaner"):
        _per_thread.markdown = markdown.Markdown(output_format="html")
        _per_thread.cleaner = bleach.Cleaner(
            tags=ALLOWED_TAGS,
            attributes=ALLOWED_ATTRIBUTES,
            protocols=ALLOWED_PROTOCOLS,
            strip=True,
            filters=[
                lambda source: bleach.linkifier.LinkifyFilter(
                    source, callbacks=[*DEFAULT_CALLBACKS, _set_rel], skip_tags={"code"}
                )
            ],
        )
    return _per_thread.markdown, _per_thread.cleaner


def render(text: str) -> Markup:
    """Markdown-like plain text (paragraphs, lists, links) to clean HTML.

    Raw HTML typed by a person is escaped first, so it shows as text and never runs.
    """
    escaped = html.escape(_separate_lists(normalise(text)), quote=False)
    converter, cleaner = _tools()
    converted = converter.reset().convert(escaped)
    return Markup(cleaner.clean(converted))  # noqa: S704 (escaped, then cleaned by bleach)


@functools.lru_cache(maxsize=4096)
def render_repeated(text: str) -> Markup:
    """render() memoised, for text shown on every page view (draft sheets, FAQ, responses)."""
    return render(text)


def _separate_lists(text: str) -> str:
    """People start a list right under a sentence; Markdown wants a blank line first."""
    lines = text.split("\n")
    out: list[str] = []
    for line in lines:
        if _LIST_ITEM.match(line) and out and out[-1].strip() and not _LIST_ITEM.match(out[-1]):
            out.append("")
        out.append(line)
    return "\n".join(out)


def plain(text: str) -> str:
    """Plain text for exports and e-mail: the source text, normalised."""
    return normalise(text)


def spreadsheet_cell(value: str) -> str:
    """Neutralise a cell that a spreadsheet would run as a formula."""
    if value and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def fold(text: str) -> str:
    """Lower case, no accents (ñ kept), punctuation and spacing collapsed: text to compare."""
    return fold_many([text])[0]


def fold_many(texts: Sequence[str]) -> list[str]:
    """`fold` for many texts at once: one pass of C string functions over all of them."""
    joined = _SEPARATOR.join(texts).lower().replace("ñ", _ENYE)
    folded = unicodedata.normalize("NFKD", joined).encode("ascii", "ignore")
    words = folded.translate(_WORD_BYTES).decode("ascii").replace(_ENYE, "ñ")
    return [" ".join(part.split()) for part in words.split(_SEPARATOR)]


def search_texts(records: Iterable[Sequence[str]]) -> list[str]:
    """Each record's text fields folded into one searchable text (a space between fields,
    so no word runs from one field into the next)."""
    return fold_many([" ".join(fields) for fields in records])


def slugify(name: str) -> str:
    """'Seguridad ciudadana' -> 'seguridad-ciudadana'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "-".join("".join(ch if ch.isalnum() else " " for ch in ascii_name.lower()).split())

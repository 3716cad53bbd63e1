"""Theme and draft from a message: draft code or [Tag] in the subject, or a plus address.

Pure functions over plain data, so the rules are tested without a database. Anything not
routed with confidence gets no theme: it waits in the triage list, with a suggestion
taken from the text when one theme's name stands out.
"""

import re
from dataclasses import dataclass

from forum.text import slugify

_CODE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2,5})-(\d{1,3})(?![0-9])")
_TAG = re.compile(r"\[([^\[\]]{2,60})\]")


@dataclass(frozen=True)
class Catalogue:
    """What can be routed to: theme slug -> name, draft code -> theme slug."""

    themes: dict[str, str]
    drafts: dict[str, str]

    def theme_for_prefix(self, prefix: str) -> str | None:
        """The theme of drafts whose code starts with PREFIX- (when they share one)."""
        slugs = {slug for code, slug in self.drafts.items() if code.split("-")[0] == prefix}
        return slugs.pop() if len(slugs) == 1 else None


@dataclass(frozen=True)
class Route:
    theme: str | None = None
    draft_code: str | None = None
    suggested_theme: str | None = None


def route(subject: str | None, recipients: list[str], text: str, catalogue: Catalogue) -> Route:
    """Route by draft code, then [Tag], then plus address; otherwise only suggest a theme."""
    subject = subject or ""
    for prefix, number in _CODE.findall(subject):
        code = f"{prefix.upper()}-{int(number)}"
        if code in catalogue.drafts:
            return Route(theme=catalogue.drafts[code], draft_code=code)
        theme = catalogue.theme_for_prefix(prefix.upper())
        if theme:
            return Route(theme=theme)
    by_name = {slugify(name): slug for slug, name in catalogue.themes.items()}
    for tag in _TAG.findall(subject):
        slug = slugify(tag)
        if slug in catalogue.themes:
            return Route(theme=slug)
        if slug in by_name:
            return Route(theme=by_name[slug])
    for address in recipients:
        local = address.split("@")[0]
        if "+" in local:
            slug = slugify(local.split("+", 1)[1])
            if slug in catalogue.themes:
                return Route(theme=slug)
    return Route(suggested_theme=suggest(subject + "\n" + text, catalogue))


def suggest(text: str, catalogue: Catalogue) -> str | None:
    """The theme whose name (or slug words) the text mentions most, if one clearly leads."""
    words = slugify(text).split("-")
    joined = "-" + "-".join(words) + "-"
    scores = {}
    for slug, name in catalogue.themes.items():
        needle = "-" + slugify(name) + "-"
        scores[slug] = joined.count(needle)
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    if not ranked or ranked[0][1] == 0:
        return None
    if len(ranked) > 1 and ranked[1][1] == ranked[0][1]:
        return None
    return ranked[0][0]

"""HTML e-mail bodies made plain text: scripts, styles, heads and comments dropped."""

import re

from bs4 import BeautifulSoup, Comment

_BLOCKS = ("p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table")
_BLANK_RUN = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Readable text of an HTML body, entities decoded, one paragraph per block."""
    soup = BeautifulSoup(html, "html.parser")
    for element in soup(["script", "style", "head", "title", "xml"]):
        element.decompose()
    for comment in soup.find_all(string=lambda node: isinstance(node, Comment)):
        comment.extract()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(_BLOCKS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    for item in soup.find_all("li"):
        item.insert(0, "- ")
    text = soup.get_text()
    lines = [" ".join(line.split()) for line in text.replace("\xa0", " ").split("\n")]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip()

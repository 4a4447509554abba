"""Notes' markdown as rich Text: how quotes and passages look in the terminal.

Notes are markdown, or plain text with markdown in it (slides exported to .txt), so their lines
are kept as they are and only what reads as markup is rendered: **strong**, *emphasis*, `code`,
~~strike~~, links (their text, then the address, dimmed), images ([alt text], dimmed) and
`#` heading lines (bold, without the hashes). The inline parser is markdown-it's (CommonMark,
the one rich uses), so "** spaced **" or snake_case stay as written.
"""

from __future__ import annotations

import re
from functools import cache

from rich.style import Style
from rich.text import Text

_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
_STYLES = {"strong": "bold", "em": "italic", "s": "strike", "link": "underline"}
_DIM, _CODE = Style.parse("dim"), Style.parse("bold cyan")


@cache
def _parser():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("strikethrough")


class _Renderer:
    """The rendered text, and the offset in the raw text reached so far."""

    def __init__(self, raw: str):
        self.raw, self.text, self.cursor = raw, Text(), 0

    def shown(self, piece: str, styles: list[Style]) -> None:
        """Text of the raw one: each character is found from the cursor on (skipping the markup,
        escapes and entities between them)."""
        for ch in piece:
            at = self.raw.find(ch, self.cursor)
            if at >= 0:
                self.cursor = at + 1
        self.text.append(piece, Style.combine(styles) if styles else None)

    def added(self, piece: str, style: Style) -> None:
        """Text that is not in the raw one (a link's address)."""
        self.text.append(piece, style)

    def inline(self, end: int, styles: list[Style]) -> None:
        """The raw text from the cursor to `end`, through the inline parser."""
        (block,) = _parser().parseInline(self.raw[self.cursor : end])
        styles, links = list(styles), []
        for tok in block.children or []:
            kind, _, edge = tok.type.rpartition("_")
            if edge == "open" and kind in _STYLES:
                styles.append(Style.parse(_STYLES[kind]))
                if kind == "link":
                    links.append(str(tok.attrs.get("href", "")))
                    styles.append(Style(link=links[-1]))
            elif edge == "close" and kind in _STYLES:
                del styles[-(2 if kind == "link" else 1) :]
                if kind == "link" and links[-1] and not self.text.plain.endswith(links[-1]):
                    self.added(f" ({links[-1]})", _DIM)
                del links[-1:]
            elif tok.type in ("softbreak", "hardbreak"):
                self.shown("\n", [])
            elif tok.type == "image":
                self.added("[", _DIM)
                self.shown(tok.content, [*styles, _DIM])
                self.added("]", _DIM)
            elif tok.type == "code_inline":
                self.shown(tok.content, [*styles, _CODE])
            else:  # text, html_inline
                self.shown(tok.content, styles)
        self.cursor = max(self.cursor, end)


def note_text(text: str) -> Text:
    """`text` (a note's markdown) rendered."""
    r = _Renderer(text)
    for m in _HEADING.finditer(text):
        r.inline(m.start(), [])
        r.cursor = m.start(1)
        r.inline(m.end(1), [Style.parse("bold")])
        r.cursor = m.end()
    r.inline(len(text), [])
    return r.text

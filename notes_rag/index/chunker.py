"""Structure-aware chunking of notes into passages for retrieval and for the answering GPT.

A note is parsed with markdown-it-py into blocks (headings, paragraphs, list blocks, code fences,
tables, quotes) with their source line ranges. Blocks are packed in order into chunks of about
`IndexConfig.chunk_words` words:

- a heading starts a new chunk (once the current one is not tiny) and extends the heading path;
- a block that does not fit goes to the next chunk whole; a block too big for any chunk is split:
  paragraphs at sentence boundaries, lists at top-level items, code only when the fence alone
  exceeds the token limit (then on lines);
- consecutive chunks of one section share a small overlap (trailing sentences of the previous);
- the hard bound is the encoder's own token count of the embedded text (prompt + heading path +
  text) against its maximum sequence length, so the encoder never silently truncates a chunk.

Chunk text is an exact slice of the source (markdown kept), so evidence quotes and line citations
match the file. `.txt` files are parsed the same way; when a `.txt` has no markdown headings (a
slide export or a plain note), short title-like lines act as headings instead.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

from notes_rag.index.config import IndexConfig
from notes_rag.text import line_starts, looks_like_title, n_words

_MD = MarkdownIt("commonmark").enable("table")
_ATX = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_WORD = re.compile(r"\S+")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A note longer than this is parsed a section at a time: markdown-it's token list of a whole
# 100 MB note peaked at 2.0 GB (docs/BENCHMARKS.md, "Index at scale"). Shorter notes, nearly
# all, are parsed whole, as before.
SECTION_CHARS = 1_000_000


@dataclass(frozen=True)
class Chunk:
    file: str
    heading_path: tuple[str, ...]
    line_start: int  # 1-based, inclusive
    line_end: int  # 1-based, inclusive
    text: str
    # Where a citation points in a file not cited by line: "p12" (PDF page), "cells 3-5" (notebook
    # cells); "" for notes, cited as file:line_start-line_end (index/documents.py sets it).
    location: str = ""

    @property
    def embed_text(self) -> str:
        return embed_text(self.heading_path, self.text)


def embed_text(heading_path: tuple[str, ...], text: str) -> str:
    """What the encoder sees: the heading path gives a passage its topic."""
    return f"{' > '.join(heading_path)}\n{text}" if heading_path else text


@dataclass
class _Unit:
    start: int  # char offsets into the source, end exclusive
    end: int
    kind: str  # heading | para | list | code | other
    path: tuple[str, ...]
    words: int
    parts: list[tuple[int, int]] = field(default_factory=list)  # top-level list items


def is_markdown(text: str, filename: str) -> bool:
    """Markdown files, and .txt files that use markdown headings (notes saved with .txt)."""
    if filename.lower().endswith((".md", ".markdown")):
        return True
    return len(_ATX.findall(text)) >= 2


def _span(text: str, starts: list[int], first: int, last: int) -> tuple[int, int]:
    """Char span of 0-based lines [first, last), trailing whitespace trimmed."""
    s = starts[first]
    e = starts[last] if last < len(starts) else len(text)
    while e > s and text[e - 1].isspace():
        e -= 1
    while s < e and text[s] in " \t":
        s += 1
    return s, e


def _sections(text: str, starts: list[int]) -> list[tuple[int, int]]:
    """0-based line ranges [first, last) to parse one at a time, each about `SECTION_CHARS`.
    A section starts only where no block can continue across it: at a heading line, or at a
    line starting at the margin with a letter or digit after a blank line (it ends any list,
    quote, paragraph or indented code), never inside a fenced code block."""
    if len(text) <= SECTION_CHARS:
        return [(0, len(starts))]
    cuts, fence, blank_before = [0], "", True
    for i, at in enumerate(starts):
        line = text[at : starts[i + 1] if i + 1 < len(starts) else len(text)]
        m = _FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line[m.end() :].strip():
                fence = ""
        elif m:
            fence = m.group(1)
        elif (
            at - starts[cuts[-1]] >= SECTION_CHARS
            and line[:1].strip()
            and (_ATX.match(line) or (blank_before and line[0].isalnum()))
        ):
            cuts.append(i)
        blank_before = not line.strip()
    return list(zip(cuts, cuts[1:] + [len(starts)]))


def _parse_units(text: str, markdown: bool) -> Iterator[_Unit]:
    starts = line_starts(text)
    stack: list[tuple[int, str]] = []  # (level, title) of the enclosing headings
    for first, last in _sections(text, starts):
        end = starts[last] if last < len(starts) else len(text)
        tokens = _MD.parse(text[starts[first] : end])
        for tok in tokens:
            if tok.map is not None:
                tok.map = [tok.map[0] + first, tok.map[1] + first]
        stack = yield from _section_units(tokens, text, starts, stack, markdown)


def _section_units(tokens, text: str, starts: list[int], stack: list[tuple[int, str]], markdown: bool):
    """The units of one section's tokens (maps in the note's lines); returns the heading stack
    at its end, which the next section continues."""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.level != 0 or tok.map is None or tok.nesting == -1:
            i += 1
            continue
        s, e = _span(text, starts, *tok.map)
        if s >= e:
            i += 1
            continue
        if tok.type == "heading_open":
            title = tokens[i + 1].content.strip()
            level = int(tok.tag[1])
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            yield _Unit(s, e, "heading", tuple(t for _, t in stack), n_words(text[s:e]))
        else:
            kind = {
                "paragraph_open": "para",
                "bullet_list_open": "list",
                "ordered_list_open": "list",
                "fence": "code",
                "code_block": "code",
            }.get(tok.type, "other")
            unit = _Unit(s, e, kind, tuple(t for _, t in stack), n_words(text[s:e]))
            if kind == "list":
                unit.parts = _list_items(tokens, i, text, starts)
            if not markdown and kind == "para" and looks_like_title(text[s:e]):
                # Slide exports and plain notes: a short line without punctuation titles what follows.
                stack = [(1, text[s:e].strip())]
                unit.kind, unit.path = "heading", tuple(t for _, t in stack)
            yield unit
        i += 1
    return stack


def _list_items(tokens, open_idx: int, text: str, starts: list[int]) -> list[tuple[int, int]]:
    items, depth = [], 0
    for tok in tokens[open_idx:]:
        depth += tok.nesting
        if tok.type == "list_item_open" and tok.level == 1 and tok.map:
            items.append(_span(text, starts, *tok.map))
        if depth == 0:
            break
    return [it for it in items if it[0] < it[1]]


def _chunk_path(units: list[_Unit]) -> tuple[str, ...]:
    """Leading headings are part of the chunk: its path is that of its first content."""
    for u in units:
        if u.kind != "heading":
            return u.path
    return units[-1].path


class _Packer:
    """Greedy packing of units into chunks under the word target and the token limit."""

    def __init__(self, text: str, file: str, cfg: IndexConfig, count_tokens: Callable[[str], int], max_tokens: int):
        self.text, self.file, self.cfg = text, file, cfg
        self.count_tokens, self.max_tokens = count_tokens, max_tokens
        self.starts = line_starts(text)
        self.cur: list[_Unit] = []
        self.cur_is_overlap = False  # cur holds only the overlap carried from the previous chunk
        self.chunks: list[Chunk] = []
        self._paths: dict[tuple[str, ...], tuple[str, ...]] = {}

    # -- sizes ---------------------------------------------------------------------------------
    def _path(self, units: list[_Unit]) -> tuple[str, ...]:
        """The chunk's heading path, outermost headings dropped while it would take more than half
        of the token limit (deep outlines of long headings, or a tiny encoder limit); a last
        heading still over that is cut to its first words, since no split of the chunk's text
        could make room for it."""
        path = _chunk_path(units)
        if path not in self._paths:
            budget = self.max_tokens // 2
            fitted = path
            while len(fitted) > 1 and self.count_tokens(embed_text(fitted, "")) > budget:
                fitted = fitted[1:]
            if fitted and self.count_tokens(embed_text(fitted, "")) > budget:
                words = fitted[0].split()
                while words and self.count_tokens(embed_text((" ".join(words),), "")) > budget:
                    words = words[: len(words) // 2] if len(words) > 1 else []
                fitted = (" ".join(words),) if words else ()
            self._paths[path] = fitted
        return self._paths[path]

    def _tokens(self, units: list[_Unit]) -> int:
        return self.count_tokens(embed_text(self._path(units), self.text[units[0].start : units[-1].end]))

    def _words(self, units: list[_Unit]) -> int:
        return n_words(self.text[units[0].start : units[-1].end]) if units else 0

    def _content_words(self) -> int:
        return 0 if self.cur_is_overlap else sum(u.words for u in self.cur if u.kind != "heading")

    def _fits(self, units: list[_Unit], word_limit: int | None) -> bool:
        if word_limit is not None and self._words(units) > word_limit:
            return False
        return self._tokens(units) <= self.max_tokens

    # -- packing -------------------------------------------------------------------------------
    def add(self, u: _Unit) -> None:
        if u.kind == "heading":
            if self._content_words() >= self.cfg.min_chunk_words:
                self.flush(overlap=False)
            elif self.cur_is_overlap:
                self.cur, self.cur_is_overlap = [], False  # overlap never crosses a heading
        self._place(u)

    def _place(self, u: _Unit) -> None:
        # Code is kept whole whenever the token limit allows; prose also respects the word target.
        target = None if u.kind == "code" else self.cfg.chunk_words
        if self._fits(self.cur + [u], target):
            self._append(u)
            return
        if not self.cur_is_overlap and any(x.kind != "heading" for x in self.cur):
            self.flush(overlap=True)
            if self._fits(self.cur + [u], target):
                self._append(u)
                return
        if self.cur_is_overlap:
            self.cur, self.cur_is_overlap = [], False  # overlap would only make u split needlessly
        # Too big for the target: a moderately long block still stays whole in a chunk of its own
        # (after any headings, or without their lines: the heading path names them anyway), a
        # longer one is split into smaller units.
        whole = None if u.kind == "code" else self.cfg.max_block_words
        if self.cur and not self._fits(self.cur + [u], whole) and self._fits([u], whole):
            if any(h.path[-1] not in u.path for h in self.cur):
                self.flush(overlap=False, final=True)  # titles that are not in u's path are content
            self.cur = []
        if self._fits(self.cur + [u], whole) or u.end - u.start <= 1:
            self._append(u)
            return
        pieces = self._split(u)
        if len(pieces) == 1:
            pieces = self._hard_split(u)
        for p in pieces:
            self._place(p)

    def _append(self, u: _Unit) -> None:
        self.cur.append(u)
        self.cur_is_overlap = False

    def flush(self, overlap: bool, final: bool = False) -> None:
        if self.cur_is_overlap:
            self.cur, self.cur_is_overlap = [], False
        # Headings at the end belong to what follows them, not to this chunk.
        n = len(self.cur)
        while n and self.cur[n - 1].kind == "heading" and not final:
            n -= 1
        body, headings = self.cur[:n], self.cur[n:]
        if body:
            first, last = body[0], body[-1]
            self.chunks.append(
                Chunk(
                    self.file,
                    self._path(body),
                    bisect.bisect_right(self.starts, first.start),
                    bisect.bisect_right(self.starts, last.end - 1),
                    self.text[first.start : last.end],
                )
            )
        carried: list[_Unit] = []
        if overlap and body and not headings and self.cfg.overlap_words > 0:
            tail = body[-1]
            if tail.kind in ("para", "other"):
                pieces = self._split(tail)
            elif tail.kind == "list":
                pieces = [tail]
            else:
                pieces = []  # code is never repeated
            for p in reversed(pieces):
                if sum(c.words for c in carried) + p.words > self.cfg.overlap_words:
                    break
                carried.insert(0, p)
            # Repeating the whole previous chunk is duplication, not overlap.
            if carried and carried[0].start <= body[0].start:
                carried = carried[1:]
        if headings:
            self.cur, self.cur_is_overlap = headings, False
        else:
            self.cur, self.cur_is_overlap = carried, bool(carried)

    # -- splitting -----------------------------------------------------------------------------
    def _sub(self, u: _Unit, s: int, e: int, kind: str | None = None) -> _Unit | None:
        while s < e and self.text[s].isspace():
            s += 1
        while e > s and self.text[e - 1].isspace():
            e -= 1
        if s >= e:
            return None
        return _Unit(s, e, kind or u.kind, u.path, n_words(self.text[s:e]))

    def _split(self, u: _Unit) -> list[_Unit]:
        if u.kind == "list" and len(u.parts) > 1:
            bounds = [(s, e) for s, e in u.parts]
        elif u.kind == "code":
            bounds = [(m.start(), m.end()) for m in re.finditer(r"[^\n]*\n?", self.text[u.start : u.end]) if m.group()]
            bounds = [(u.start + s, u.start + e) for s, e in bounds]
        else:
            seg = self.text[u.start : u.end]
            bounds, pos = [], 0
            for m in _SENTENCE_END.finditer(seg):
                bounds.append((u.start + pos, u.start + m.start()))
                pos = m.end()
            bounds.append((u.start + pos, u.end))
        kind = "para" if u.kind in ("list", "heading") else u.kind
        units = [x for s, e in bounds if (x := self._sub(u, s, e, kind)) is not None]
        return units or [u]

    def _hard_split(self, u: _Unit) -> list[_Unit]:
        """Last resort for a single sentence/line over the limit: split at words, then characters."""
        words = list(_WORD.finditer(self.text[u.start : u.end]))
        if len(words) > 1:
            half = words[len(words) // 2].start()
            return [x for x in (self._sub(u, u.start, u.start + half), self._sub(u, u.start + half, u.end)) if x]
        mid = (u.start + u.end) // 2
        return [_Unit(u.start, mid, u.kind, u.path, 1), _Unit(mid, u.end, u.kind, u.path, 1)]


def chunk_note(
    text: str,
    file: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
    cfg: IndexConfig = IndexConfig(),
    markdown: bool | None = None,
) -> list[Chunk]:
    """Split one note into chunks; `count_tokens` counts what the encoder sees for a passage
    (prompt and special tokens included), which must stay within `max_tokens`. `markdown`:
    whether headings are markdown's (None: by `is_markdown`; readers' documents always are)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    packer = _Packer(text, file, cfg, count_tokens, max_tokens)
    for unit in _parse_units(text, is_markdown(text, file) if markdown is None else markdown):
        packer.add(unit)
    packer.flush(overlap=False, final=True)
    return packer.chunks
